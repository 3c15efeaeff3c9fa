package handlers_test

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/spa"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

const spaToken = "spa-test-token-0123456789abcdef"

// spaServer builds the whole handler (auth, metrics, every route) over a
// fresh database with files as the dashboard tree.
func spaServer(t *testing.T, files fs.FS) http.Handler {
	t.Helper()
	h, err := handlers.New(handlers.Config{
		DB:   storagetest.Open(t, nil),
		Auth: auth.Config{StaticToken: spaToken},
		SPA:  files,
	})
	if err != nil {
		t.Fatalf("handlers.New: %v", err)
	}
	return h
}

func spaDo(h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func spaFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(spa.FS(), name)
	if err != nil {
		t.Fatalf("read embedded %s: %v", name, err)
	}
	return string(b)
}

// spaAnswer is what a test compares: the status, the media type (without
// parameters), which file the body is (or "" for anything else) and the
// cache policy.
type spaAnswer struct {
	Status       int
	MediaType    string
	Body         string
	CacheControl string
}

func TestSPAServesFilesAndFallsBackToIndex(t *testing.T) {
	h := spaServer(t, spa.FS())
	index := spaFile(t, "index.html")
	appJS := spaFile(t, "assets/app.js")
	appCSS := spaFile(t, "assets/app.css")
	bodies := map[string]string{index: "index.html", appJS: "assets/app.js", appCSS: "assets/app.css"}
	bearer := []string{"Authorization", "Bearer " + spaToken}

	tests := []struct {
		name   string
		method string
		target string
		header []string
		want   spaAnswer
	}{
		{"the root is index.html", "GET", "/", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"index.html by name is served, not redirected", "GET", "/index.html", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"a client-side route survives a reload", "GET", "/agents", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"a deep client-side route survives a reload", "GET", "/agents/PC-1", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"a route with a query survives a reload", "GET", "/results?job_id=inventory&status=failure", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"a missing file outside assets falls back too", "GET", "/favicon.ico", nil,
			spaAnswer{200, "text/html", "index.html", "no-cache"}},
		{"the script has a JavaScript type", "GET", "/assets/app.js", nil,
			spaAnswer{200, "text/javascript", "assets/app.js", "no-cache"}},
		{"the style sheet has a CSS type", "GET", "/assets/app.css", nil,
			spaAnswer{200, "text/css", "assets/app.css", "no-cache"}},
		{"a missing asset is a real 404", "GET", "/assets/missing.js", nil,
			spaAnswer{404, "text/plain", "", ""}},
		{"the assets folder itself is not listed", "GET", "/assets/", nil,
			spaAnswer{404, "text/plain", "", ""}},
		{"an API typo is a problem, never index.html", "GET", "/api/nope", bearer,
			spaAnswer{404, "application/problem+json", "", ""}},
		{"an API typo deeper down too", "GET", "/api/agents/PC-1/nope", bearer,
			spaAnswer{404, "application/problem+json", "", ""}},
		{"the catch-all does not open /api/ without a token", "GET", "/api/nope", nil,
			spaAnswer{401, "application/problem+json", "", "no-store"}},
		{"HEAD of the root", "HEAD", "/", nil,
			spaAnswer{200, "text/html", "", "no-cache"}},
		{"HEAD of a client-side route", "HEAD", "/results/r-1", nil,
			spaAnswer{200, "text/html", "", "no-cache"}},
		{"HEAD of a missing asset", "HEAD", "/assets/missing.js", nil,
			spaAnswer{404, "text/plain", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := spaDo(h, tt.method, tt.target, tt.header...)
			mediaType, _, _ := strings.Cut(rec.Header().Get("Content-Type"), ";")
			if mediaType == "application/javascript" {
				mediaType = "text/javascript" // a system mime.types may say either
			}
			got := spaAnswer{rec.Code, mediaType, bodies[rec.Body.String()], rec.Header().Get("Cache-Control")}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s\nbody: %.200q", tt.method, tt.target, diff, rec.Body.String())
			}
			if tt.method == "HEAD" && rec.Body.Len() != 0 {
				t.Errorf("HEAD %s sent a body of %d bytes", tt.target, rec.Body.Len())
			}
			if rec.Code == 404 && strings.Contains(strings.ToLower(rec.Body.String()), "<html") {
				t.Errorf("%s %s: a 404 carries HTML", tt.method, tt.target)
			}
		})
	}
}

func TestSPAAPINotFoundIsAProblem(t *testing.T) {
	h := spaServer(t, spa.FS())
	rec := spaDo(h, "GET", "/api/nope", "Authorization", "Bearer "+spaToken)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, rec.Body.String())
	}
	want := map[string]any{"title": "Not Found", "status": float64(404), "detail": "no API operation at this path"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
}

func TestSPAHeaders(t *testing.T) {
	h := spaServer(t, spa.FS())
	t.Run("the page forbids inline script and framing", func(t *testing.T) {
		rec := spaDo(h, "GET", "/agents")
		csp := rec.Header().Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
		}
	})
	t.Run("a revalidation with the ETag is a 304", func(t *testing.T) {
		first := spaDo(h, "GET", "/assets/app.js")
		etag := first.Header().Get("ETag")
		if etag == "" {
			t.Fatal("no ETag on /assets/app.js")
		}
		again := spaDo(h, "GET", "/assets/app.js", "If-None-Match", etag)
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("revalidation = %d with %d bytes, want 304 with none", again.Code, again.Body.Len())
		}
		if other := spaDo(h, "GET", "/assets/app.css").Header().Get("ETag"); other == etag {
			t.Errorf("app.css and app.js share the ETag %s", etag)
		}
	})
	t.Run("a fallback page has the ETag of index.html", func(t *testing.T) {
		root := spaDo(h, "GET", "/").Header().Get("ETag")
		deep := spaDo(h, "GET", "/results/r-1").Header().Get("ETag")
		if root == "" || root != deep {
			t.Errorf("ETag of / = %q, of /results/r-1 = %q; want equal and set", root, deep)
		}
	})
}

func TestSPAOtherTrees(t *testing.T) {
	tree := fstest.MapFS{
		"index.html":       {Data: []byte("<!doctype html><title>i</title>")},
		"robots.txt":       {Data: []byte("User-agent: *\n")},
		"docs/guide.html":  {Data: []byte("<p>guide</p>")},
		"assets/x/app.mjs": {Data: []byte("export {}")},
	}
	tests := []struct {
		name   string
		files  fs.FS
		target string
		want   spaAnswer
	}{
		{"a top-level file", tree, "/robots.txt", spaAnswer{200, "text/plain", "User-agent: *\n", "no-cache"}},
		{"a nested file", tree, "/docs/guide.html", spaAnswer{200, "text/html", "<p>guide</p>", "no-cache"}},
		{"a directory is not listed but falls back", tree, "/docs", spaAnswer{200, "text/html", "<!doctype html><title>i</title>", "no-cache"}},
		{"a nested asset", tree, "/assets/x/app.mjs", spaAnswer{200, "text/javascript", "export {}", "no-cache"}},
		{"a missing nested asset", tree, "/assets/x/gone.mjs", spaAnswer{404, "text/plain", "404 page not found\n", ""}},
		{"no dashboard configured serves nothing", nil, "/", spaAnswer{404, "text/plain", "404 page not found\n", ""}},
		{"a tree without index.html has nothing to fall back to", fstest.MapFS{"a.txt": {Data: []byte("a")}}, "/agents",
			spaAnswer{404, "text/plain", "404 page not found\n", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := spaDo(spaServer(t, tt.files), "GET", tt.target)
			mediaType, _, _ := strings.Cut(rec.Header().Get("Content-Type"), ";")
			if mediaType == "application/javascript" {
				mediaType = "text/javascript"
			}
			got := spaAnswer{rec.Code, mediaType, rec.Body.String(), rec.Header().Get("Cache-Control")}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", tt.target, diff)
			}
		})
	}
}

// TestSPAGzip: a client that accepts gzip gets the script gzipped, with an
// ETag of its own and Vary; one that refuses it (q=0) or does not ask gets
// it as it is.
func TestSPAGzip(t *testing.T) {
	h := spaServer(t, spa.FS())
	plain := spaDo(h, http.MethodGet, "/assets/app.js")
	if plain.Header().Get("Content-Encoding") != "" || plain.Body.String() != spaFile(t, "assets/app.js") {
		t.Fatalf("without Accept-Encoding: encoding %q, body of %d bytes", plain.Header().Get("Content-Encoding"), plain.Body.Len())
	}
	gz := spaDo(h, http.MethodGet, "/assets/app.js", "Accept-Encoding", "br, gzip;q=0.8")
	if got := gz.Header().Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", got)
	}
	if got := gz.Header().Get("Vary"); got != "Accept-Encoding" {
		t.Errorf("Vary = %q", got)
	}
	if gz.Header().Get("ETag") == plain.Header().Get("ETag") {
		t.Error("the gzipped and plain answers share an ETag")
	}
	if ct := gz.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("Content-Type = %q", ct)
	}
	gzLen := gz.Body.Len()
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != spaFile(t, "assets/app.js") {
		t.Error("the gzipped body is not the script")
	}
	if gzLen == 0 || len(body) <= gzLen {
		t.Errorf("gzip did not shrink the script: %d → %d", len(body), gzLen)
	}
	refused := spaDo(h, http.MethodGet, "/assets/app.js", "Accept-Encoding", "gzip;q=0")
	if refused.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}
	again := spaDo(h, http.MethodGet, "/assets/app.js", "Accept-Encoding", "gzip", "If-None-Match", gz.Header().Get("ETag"))
	if again.Code != http.StatusNotModified {
		t.Errorf("revalidating the gzipped script: %d, want 304", again.Code)
	}
}
