package handlers

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// The gzip middleware's choices by what the handler does: a short body
// goes as it is, a long one gzipped without its Content-Length, a body
// that is flushed goes out as it is written, and a declared long length
// starts compressing at once.
func TestCompressAPIDecides(t *testing.T) {
	long := strings.Repeat(`{"a":1}`, 400)
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantGzip bool
		wantBody string
	}{
		{"short", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"a":1}`)
		}, false, `{"a":1}`},
		{"long in pieces", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; i < len(long); i += 100 {
				io.WriteString(w, long[i:min(i+100, len(long))])
			}
		}, true, long},
		{"declared length", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Content-Length", strconv.Itoa(len(long)))
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, long)
		}, true, long},
		{"flushed stream", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			io.WriteString(w, long)
		}, false, "first" + long},
		{"binary", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			io.WriteString(w, long)
		}, false, long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := compressAPI(tt.handler)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/api/x", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if gz := rec.Header().Get("Content-Encoding") == "gzip"; gz != tt.wantGzip {
				t.Fatalf("gzipped %v, want %v", gz, tt.wantGzip)
			}
			if tt.wantGzip {
				if rec.Header().Get("Content-Length") != "" {
					t.Errorf("Content-Length %q on a gzipped answer", rec.Header().Get("Content-Length"))
				}
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if string(body) != tt.wantBody {
				t.Errorf("body %d bytes, want %d", len(body), len(tt.wantBody))
			}
		})
	}
}
