#!/usr/bin/env bash
# Lints the OpenAPI document a real server serves, as a client would see it:
# builds the HTTP shell, starts it on loopback with a throwaway data folder
# and its embedded NATS, fetches /api/openapi.json with the token the shell
# generated, and runs Redocly's linter with its recommended rules. Any error
# or warning fails. Redocly CLI is installed from npm into .tools/ on first
# use. Usage: scripts/lint-openapi.sh [document.json to keep a copy]
set -euo pipefail

version="2.77.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
redocly="$tools/node_modules/.bin/redocly"

if ! [[ -x "$redocly" ]] || ! grep -q "\"version\": *\"$version\"" "$tools/node_modules/@redocly/cli/package.json" 2>/dev/null; then
	echo "lint-openapi: installing @redocly/cli@$version into $tools" >&2
	mkdir -p "$tools"
	npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "@redocly/cli@$version" >&2
fi

work="$(mktemp -d)"
pid=""
cleanup() {
	if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && CGO_ENABLED=0 go build -o "$work/kanade-http" ./shells/http)
# Port 0 and -1: the kernel picks free ports; the shell prints its address.
KANADE_WORKER=off "$work/kanade-http" -addr 127.0.0.1:0 -data-dir "$work/data" -nats-listen 127.0.0.1:-1 \
	>"$work/out" 2>"$work/log" &
pid=$!
url=""
for _ in $(seq 1 300); do
	url="$(sed -n 's|^kanade: listening on \(http://[0-9.:]*\)/.*|\1|p' "$work/out" | head -1)"
	[[ -n "$url" ]] && break
	kill -0 "$pid" 2>/dev/null || { echo "lint-openapi: the server exited:" >&2; cat "$work/log" >&2; exit 1; }
	sleep 0.1
done
[[ -n "$url" ]] || { echo "lint-openapi: the server printed no address in 30 s" >&2; cat "$work/log" >&2; exit 1; }
token="$(sed -n 's|^kanade: dashboard .*#token=\([^ ]*\).*|\1|p' "$work/out" | head -1)"

doc="${1:-$work/openapi.json}"
# node's fetch rather than curl: npm is here anyway, curl may not be.
URL="$url/api/openapi.json" TOKEN="$token" DOC="$doc" node -e '
fetch(process.env.URL, { headers: { Authorization: "Bearer " + process.env.TOKEN } })
  .then(async (r) => {
    if (!r.ok) throw new Error(process.env.URL + ": " + r.status + " " + (await r.text()));
    require("fs").writeFileSync(process.env.DOC, await r.text());
  })
  .catch((e) => { console.error("lint-openapi:", e.message); process.exit(1); });'
echo "lint-openapi: $url/api/openapi.json ($(wc -c <"$doc") bytes)"

# Telemetry and the update check would reach for the internet.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1 \
	"$redocly" lint --extends=recommended --max-problems=1000 --format=stylish "$doc" 2>&1 |
	grep -v '[║╔╚]' | tee "$work/lint"
# redocly exits 0 on warnings; the contract is none of either.
if ! grep -q 'Your API description is valid' "$work/lint" || grep -q 'warning' "$work/lint"; then
	echo "lint-openapi: Redocly reports problems (above)" >&2
	exit 1
fi
