package handlers

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// apiGzipMin is the body size below which an API answer goes as it is:
// gzip's header and trailer are 18 bytes, and a small answer fits one
// packet anyway.
const apiGzipMin = 1024

// compressAPI gzips the answers of /api/ routes for clients that accept
// gzip (respecting q=0), once they reach apiGzipMin bytes, with Vary:
// Accept-Encoding. Only text bodies are compressed (JSON, problems, YAML,
// plain text): downloads (application/octet-stream, with a Content-Length)
// pass through unbuffered and keep their ranges, and an answer that
// already has a Content-Encoding is left alone. The dashboard's files
// and the docs page (spa.go, docs.go) are compressed ahead of time and
// never go through this, and
// neither do /metrics (the Prometheus handler negotiates on its own) and
// the probes.
func compressAPI(next http.Handler) (http.Handler, error) {
	wrap, err := gzhttp.NewWrapper(
		gzhttp.MinSize(apiGzipMin),
		gzhttp.EnableZstd(false),
		gzhttp.CompressionLevel(gzhttpLevel),
		gzhttp.ContentTypeFilter(apiCompressible),
	)
	if err != nil {
		return nil, fmt.Errorf("handlers: gzip wrapper: %w", err)
	}
	gz := wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") && !strings.HasPrefix(r.URL.Path, "/api/docs") {
			gz.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

// gzhttpLevel is a fast level: an answer is compressed once per request,
// where the dashboard's files are compressed once per process at the best.
const gzhttpLevel = 5

// apiCompressible reports whether an answer of content type ct is text
// worth compressing.
func apiCompressible(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch {
	case mt == "application/json", strings.HasSuffix(mt, "+json"),
		strings.Contains(mt, "yaml"), mt == "text/plain", mt == "text/csv":
		return true
	}
	return false
}
