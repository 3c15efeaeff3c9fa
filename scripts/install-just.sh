#!/usr/bin/env bash
# Installs just (the command runner for the justfile) from npm into .tools/
# and prints the binary's absolute path on stdout. Idempotent.
set -euo pipefail

version="1.57.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
bin="$tools/node_modules/.bin/just"

if ! { [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "just $version" ]]; }; then
	echo "install-just: installing rust-just@$version into $tools" >&2
	mkdir -p "$tools"
	npm install --prefix "$tools" --ignore-scripts --no-audit --no-fund --loglevel=error "rust-just@$version" >&2
	[[ "$("$bin" --version)" == "just $version" ]] || { echo "install-just: $bin is not just $version" >&2; exit 1; }
fi
echo "$bin"
