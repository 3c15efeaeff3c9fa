package handlers

import "github.com/danielgtaylor/huma/v2"

func registerReads(api huma.API, cfg *Config) {}
