package handlers

import "net/http"

func registerMetrics(mux *http.ServeMux, cfg *Config) {}
