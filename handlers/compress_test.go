package handlers_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/spa"
)

// TestAPIAnswersAreGzipped: a JSON answer of a client that accepts gzip
// is gzipped once it is big enough (and decodes to the plain answer), a
// small one and one for a client that refuses gzip go as they are, and a
// download passes through whole, with its length and ranges.
func TestAPIAnswersAreGzipped(t *testing.T) {
	e := newManageEnv(t, nil)
	plain := e.getWith("/api/openapi.json")
	if plain.Code != http.StatusOK || plain.Header().Get("Content-Encoding") != "" || plain.Body.Len() < 10_000 {
		t.Fatalf("plain document: %d, %q, %d bytes", plain.Code, plain.Header().Get("Content-Encoding"), plain.Body.Len())
	}
	gz := e.getWith("/api/openapi.json", "Accept-Encoding", "gzip, deflate, br, zstd")
	if gz.Header().Get("Content-Encoding") != "gzip" || !slices.Contains(gz.Header().Values("Vary"), "Accept-Encoding") {
		t.Fatalf("document for a gzip client: Content-Encoding %q, Vary %q", gz.Header().Get("Content-Encoding"), gz.Header().Values("Vary"))
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain.Body.Bytes()) {
		t.Errorf("the gzipped document decodes to %d bytes (%v), want the %d plain ones", len(got), err, plain.Body.Len())
	}
	for _, accept := range []string{"gzip;q=0", "br", "identity"} {
		if rec := e.getWith("/api/openapi.json", "Accept-Encoding", accept); rec.Header().Get("Content-Encoding") != "" || rec.Body.Len() != plain.Body.Len() {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, %d bytes", accept, rec.Header().Get("Content-Encoding"), rec.Body.Len())
		}
	}
	small := e.getWith("/api/version", "Accept-Encoding", "gzip")
	if small.Header().Get("Content-Encoding") != "" || !json.Valid(small.Body.Bytes()) {
		t.Errorf("a small answer: Content-Encoding %q, body %q", small.Header().Get("Content-Encoding"), small.Body)
	}

	// A download of a very compressible object is still sent as it is.
	content := []byte(strings.Repeat(`{"compressible":true}`, 500))
	ct, body := form(t, fileOf(content))
	e.must2(http.StatusOK, e.send(http.MethodPost, "/api/app-packages/text/1.0", ct, string(body)))
	dl := e.getWith("/api/app-packages/text/1.0", "Accept-Encoding", "gzip")
	if dl.Code != http.StatusOK || dl.Header().Get("Content-Encoding") != "" || !bytes.Equal(dl.Body.Bytes(), content) ||
		dl.Header().Get("Content-Length") != "10500" || dl.Header().Get("Accept-Ranges") != "bytes" {
		t.Errorf("download for a gzip client: %d, Content-Encoding %q, %d bytes, length %q, Accept-Ranges %q",
			dl.Code, dl.Header().Get("Content-Encoding"), dl.Body.Len(), dl.Header().Get("Content-Length"), dl.Header().Get("Accept-Ranges"))
	}
	part := e.getWith("/api/app-packages/text/1.0", "Accept-Encoding", "gzip", "Range", "bytes=0-1999")
	if part.Code != http.StatusPartialContent || part.Header().Get("Content-Encoding") != "" || !bytes.Equal(part.Body.Bytes(), content[:2000]) {
		t.Errorf("range for a gzip client: %d, Content-Encoding %q, %d bytes", part.Code, part.Header().Get("Content-Encoding"), part.Body.Len())
	}
}

// TestDocsPageIsPublic (issue 13, bug 10): /api/docs opens in a browser
// without a token, under the dashboard's CSP, holds no secret and loads
// its script from this server; the document it reads stays behind the
// token.
func TestDocsPageIsPublic(t *testing.T) {
	h := spaServer(t, spa.FS())
	page := spaDo(h, http.MethodGet, "/api/docs")
	if page.Code != http.StatusOK || !strings.HasPrefix(page.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /api/docs without a token: %d %q", page.Code, page.Header().Get("Content-Type"))
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if page.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", page.Header().Get("Cache-Control"))
	}
	html := page.Body.String()
	if strings.Contains(html, spaToken) || !strings.Contains(html, `src="/api/docs.js"`) || strings.Contains(html, "<script>") ||
		strings.Contains(html, "https://") {
		t.Errorf("the page: %s", html)
	}
	for path, ctype := range map[string]string{"/api/docs.js": "text/javascript", "/api/docs.css": "text/css"} {
		rec := spaDo(h, http.MethodGet, path)
		got := rec.Header().Get("Content-Type")
		if rec.Code != http.StatusOK || (!strings.HasPrefix(got, ctype) && !strings.HasPrefix(got, "application/javascript")) {
			t.Errorf("GET %s without a token: %d %q", path, rec.Code, got)
		}
	}
	if rec := spaDo(h, http.MethodGet, "/api/docs.js"); !strings.Contains(rec.Body.String(), "'kanade.token'") {
		t.Error("docs.js does not read the dashboard's token key")
	}
	if rec := spaDo(h, http.MethodGet, "/api/openapi.json"); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/openapi.json without a token: %d, want 401", rec.Code)
	}
	if rec := spaDo(h, http.MethodGet, "/api/openapi.json", "Authorization", "Bearer "+spaToken); rec.Code != http.StatusOK {
		t.Errorf("GET /api/openapi.json with the token: %d", rec.Code)
	}
	if rec := spaDo(h, http.MethodGet, "/api/docs/other"); rec.Code == http.StatusOK {
		t.Errorf("GET /api/docs/other: %d, want no page", rec.Code)
	}
}
