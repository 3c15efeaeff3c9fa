package handlers

import "net/http"

func registerSPA(mux *http.ServeMux, cfg *Config) {}
