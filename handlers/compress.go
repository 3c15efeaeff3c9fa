package handlers

import (
	"compress/gzip"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
//
// It is written on compress/gzip rather than taken from a library: the one
// tried (gzhttp) brought 0.38 MB of zstd and options into the Lambda
// bootstrap, which must stay under 15 MiB (issue 14).
func compressAPI(next http.Handler) (http.Handler, error) {
	// The compressors are reused (each holds about 800 KB of tables).
	pool := &sync.Pool{New: func() any {
		zw, _ := gzip.NewWriterLevel(io.Discard, gzipLevel) // a valid level: no error
		return zw
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/api/docs") {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept-Encoding")
		if r.Method == http.MethodHead || r.Header.Get("Range") != "" || codingWeights(r.Header.Get("Accept-Encoding"))("gzip") <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w, pool: pool}
		defer gw.finish()
		next.ServeHTTP(gw, r)
	}), nil
}

// gzipLevel is the fastest: an answer is compressed once per request,
// where the dashboard's files are compressed once per process at the best.
// A 500-agent page (225 KB of JSON) took 1.77 ms at level 5 and 0.64 ms at
// level 1, a fifth of the request's CPU, for 9.0 KB against 10.7 KB on the
// wire.
const gzipLevel = gzip.BestSpeed

// gzipWriter decides per answer: it holds the status and the first bytes
// until it knows the answer is compressible text of at least apiGzipMin
// bytes (then gzips it, dropping Content-Length) or not (then passes it
// through as it is, unbuffered from there on).
type gzipWriter struct {
	http.ResponseWriter
	status  int    // held until decided; 0: none written
	held    []byte // body held until decided
	decided bool
	zw      *gzip.Writer // non-nil once compressing
	pool    *sync.Pool   // of *gzip.Writer
}

func (g *gzipWriter) WriteHeader(code int) {
	if g.status != 0 || g.decided {
		return // one final status (statusRecorder forwards only one too)
	}
	if code < 200 {
		g.ResponseWriter.WriteHeader(code) // informational: not the answer
		return
	}
	g.status = code
	h := g.Header()
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified || code == http.StatusPartialContent,
		h.Get("Content-Encoding") != "", h.Get("Content-Range") != "", !apiCompressible(h.Get("Content-Type")):
		g.pass()
	case h.Get("Content-Length") != "":
		if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err != nil || n < apiGzipMin {
			g.pass()
		} else {
			g.compress()
		}
	}
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if g.status == 0 && !g.decided {
		if g.Header().Get("Content-Type") == "" {
			g.Header().Set("Content-Type", http.DetectContentType(b))
		}
		g.WriteHeader(http.StatusOK)
	}
	switch {
	case g.zw != nil:
		return g.zw.Write(b)
	case g.decided:
		return g.ResponseWriter.Write(b)
	}
	if len(g.held)+len(b) < apiGzipMin {
		g.held = append(g.held, b...)
		return len(b), nil
	}
	// Enough to decide: b goes to the compressor as it is, not copied
	// behind what is held (a body is often one Write of all of it).
	g.compress()
	return g.zw.Write(b)
}

// pass sends the held status and bytes as they are.
func (g *gzipWriter) pass() {
	g.decided = true
	if g.status != 0 {
		g.ResponseWriter.WriteHeader(g.status)
	}
	if len(g.held) > 0 {
		g.ResponseWriter.Write(g.held) // an error shows again on the next Write
		g.held = nil
	}
}

// compress starts the gzip stream with what is held.
func (g *gzipWriter) compress() {
	g.decided = true
	h := g.Header()
	h.Set("Content-Encoding", "gzip")
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		h.Set("ETag", "W/"+etag) // the bytes differ from the identity answer's
	}
	g.ResponseWriter.WriteHeader(g.status)
	g.zw = g.pool.Get().(*gzip.Writer)
	g.zw.Reset(g.ResponseWriter)
	if len(g.held) > 0 {
		g.zw.Write(g.held)
		g.held = nil
	}
}

// Flush sends what is written so far: a stream that flushes is not held.
func (g *gzipWriter) Flush() {
	if !g.decided {
		if g.status == 0 {
			g.WriteHeader(http.StatusOK)
		}
		if !g.decided {
			g.pass()
		}
	}
	if g.zw != nil {
		g.zw.Flush()
	}
	http.NewResponseController(g.ResponseWriter).Flush()
}

// finish ends the answer: a short one goes as it is, a gzip stream gets
// its trailer.
func (g *gzipWriter) finish() {
	if !g.decided {
		if g.status == 0 && len(g.held) == 0 {
			return // nothing written: net/http sends its own 200
		}
		g.pass()
	}
	if g.zw != nil {
		g.zw.Close()
		g.zw.Reset(io.Discard)
		g.pool.Put(g.zw)
		g.zw = nil
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

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
