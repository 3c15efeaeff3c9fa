package handlers

import "net/http"

func registerProbes(mux *http.ServeMux, cfg *Config) {}
