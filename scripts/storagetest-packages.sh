#!/usr/bin/env bash
# Prints the packages whose tests use storage/storagetest (directly or
# through another helper), i.e. the ones worth running again against sqld.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helper=github.com/kanade-fleet/backend/storage/storagetest
go list -e -test -f '{{if .ForTest}}{{.ForTest}}|{{join .Deps " "}}{{end}}' ./... |
	awk -F'|' -v h="$helper" '{ n = split($2, d, " "); for (i = 1; i <= n; i++) if (d[i] == h) { print $1; break } }' |
	sort -u
