# syntax=docker/dockerfile:1
#
# The kanade backend as a container image: the HTTP shell (API, dashboard,
# worker in-process unless KANADE_WORKER=off) and the worker shell, static
# binaries on distroless, as an unprivileged user.
#
#   docker build -t kanade-backend .
#   docker run -p 8080:8080 -v kanade-data:/data kanade-backend
#
# compose.yaml runs it beside NATS and sqld with a separate worker. The
# image has no shell: its health check is the binary's own healthcheck
# subcommand. Orchestrators probe GET /healthz (alive) and GET /readyz
# (database and NATS answer) on port 8080, or 9090 for the worker.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    export CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" \
    && ldflags="-s -w -X github.com/kanade-fleet/backend.Version=${VERSION} -X github.com/kanade-fleet/backend.Commit=${COMMIT}" \
    && go build -trimpath -ldflags "$ldflags" -o /out/kanade-http ./shells/http \
    && go build -trimpath -ldflags "$ldflags" -o /out/kanade-worker ./shells/worker \
    && mkdir -p /out/root/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kanade-http /out/kanade-worker /usr/local/bin/
# The data folder belongs to the user the shells run as, so a named volume
# mounted on it starts writable. (Copied as the content of a folder: a
# folder COPY creates itself may stay root's.)
COPY --from=build --chown=65532:65532 /out/root/ /
USER 65532:65532
ENV KANADE_DATA_DIR=/data \
    KANADE_HTTP_ADDR=0.0.0.0:8080 \
    KANADE_ADMIN_ADDR=0.0.0.0:9090 \
    KANADE_LOG_FORMAT=json
VOLUME ["/data"]
# 8080: API, dashboard, probes, metrics (HTTP shell); 9090: probes and
# metrics (worker); 4222: the embedded NATS, when KANADE_NATS_LISTEN opens
# it to agents (with KANADE_NATS_TOKEN).
EXPOSE 8080 9090 4222
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/kanade-http", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/kanade-http"]
