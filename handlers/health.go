package handlers

import "github.com/danielgtaylor/huma/v2"

func registerHealth(api huma.API, cfg *Config) {}
