package handlers_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/andybalholm/brotli"
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
	// The bodies as served (index.html and app.js name fingerprinted
	// assets, so they are not the embedded bytes; TestSPAFingerprints
	// checks those).
	served := func(path string) string { return spaDo(h, "GET", path).Body.String() }
	bodies := map[string]string{served("/index.html"): "index.html", served("/assets/app.js"): "assets/app.js",
		served("/assets/app.css"): "assets/app.css"}
	if len(bodies) != 3 {
		t.Fatalf("index.html, app.js and app.css are not three different bodies")
	}
	bearer := []string{"Authorization", "Bearer " + spaToken}

	tests := []struct {
		name   string
		method string
		target string
		header []string
		want   spaAnswer
	}{
		{"the root is index.html", "GET", "/", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"index.html by name is served, not redirected", "GET", "/index.html", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"a client-side route survives a reload", "GET", "/agents", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"a deep client-side route survives a reload", "GET", "/agents/PC-1", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"a route with a query survives a reload", "GET", "/results?job_id=inventory&status=failure", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"a missing file outside assets falls back too", "GET", "/favicon.ico", nil,
			spaAnswer{200, "text/html", "index.html", "no-store"}},
		{"the script has a JavaScript type", "GET", "/assets/app.js", nil,
			spaAnswer{200, "text/javascript", "assets/app.js", "no-cache"}},
		{"the style sheet has a CSS type", "GET", "/assets/app.css", nil,
			spaAnswer{200, "text/css", "assets/app.css", "no-cache"}},
		{"a missing asset is a real 404", "GET", "/assets/missing.js", nil,
			spaAnswer{404, "text/plain", "", ""}},
		{"a fingerprint of no file is a real 404", "GET", "/assets/app.000000000000.js", nil,
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
			spaAnswer{200, "text/html", "", "no-store"}},
		{"HEAD of a client-side route", "HEAD", "/results/r-1", nil,
			spaAnswer{200, "text/html", "", "no-store"}},
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
		{"a nested page is never cached either", tree, "/docs/guide.html", spaAnswer{200, "text/html", "<p>guide</p>", "no-store"}},
		{"a directory is not listed but falls back", tree, "/docs", spaAnswer{200, "text/html", "<!doctype html><title>i</title>", "no-store"}},
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

// spaFetch is one answer of the handler with its body decoded by its
// Content-Encoding.
type spaFetch struct {
	rec     *httptest.ResponseRecorder
	coding  string
	decoded []byte
}

func spaGet(t *testing.T, h http.Handler, method, target, accept string, header ...string) spaFetch {
	t.Helper()
	if accept != "" {
		header = append(header, "Accept-Encoding", accept)
	}
	rec := spaDo(h, method, target, header...)
	f := spaFetch{rec: rec, coding: rec.Header().Get("Content-Encoding")}
	if rec.Body.Len() == 0 { // HEAD, 304
		return f
	}
	var r io.Reader = bytes.NewReader(rec.Body.Bytes())
	switch f.coding {
	case "":
	case "br":
		r = brotli.NewReader(r)
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("%s %s: gzip: %v", method, target, err)
		}
		r = zr
	default:
		t.Fatalf("%s %s: Content-Encoding %q", method, target, f.coding)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s %s: decode %s: %v", method, target, f.coding, err)
	}
	f.decoded = b
	return f
}

// TestSPACompression: each file is sent in the best coding the client
// accepts (brotli, then gzip, then none; q=0 refuses one), decoding byte
// for byte to the uncompressed answer, with an ETag per coding, Vary, a
// Content-Length of what is sent, the same headers for HEAD, and a 304
// for a revalidation with the ETag of that coding.
func TestSPACompression(t *testing.T) {
	h := spaServer(t, spa.FS())
	index := spaFingerprintedIndex(t, h)
	targets := []string{"/", "/agents/PC-1", "/assets/app.js", "/assets/app.css", "/assets/i18n.js", index.js, index.css}
	tests := []struct {
		accept, want string
	}{
		{"", ""},
		{"identity", ""},
		{"gzip", "gzip"},
		{"br", "br"},
		{"gzip, deflate, br, zstd", "br"},
		{"BR;Q=0.9, gzip;q=0.5", "br"},
		{"br;q=0.5, gzip", "gzip"},
		{"gzip, br;q=0", "gzip"},
		{"br, gzip;q=0", "br"},
		{"br;q=0, gzip;q=0", ""},
		{"gzip;q=0.000", ""},
		{"*", "br"},
		{"*;q=0", ""},
		{"gzip;q=0, *", "br"},
		{"br;q=nonsense, gzip", "gzip"},
		{"deflate", ""},
	}
	for _, target := range targets {
		plain := spaGet(t, h, "GET", target, "")
		if plain.rec.Code != http.StatusOK || plain.coding != "" {
			t.Fatalf("GET %s without Accept-Encoding: %d, coding %q", target, plain.rec.Code, plain.coding)
		}
		etags := map[string]string{}
		for _, tt := range tests {
			got := spaGet(t, h, "GET", target, tt.accept)
			hdr := got.rec.Header()
			if got.coding != tt.want {
				t.Errorf("GET %s, Accept-Encoding %q: coding %q, want %q", target, tt.accept, got.coding, tt.want)
				continue
			}
			if !bytes.Equal(got.decoded, plain.decoded) {
				t.Errorf("GET %s, Accept-Encoding %q: the %q body decodes to %d bytes that differ from the %d plain ones",
					target, tt.accept, got.coding, len(got.decoded), len(plain.decoded))
			}
			if got.coding != "" && got.rec.Body.Len() >= len(plain.decoded) {
				t.Errorf("GET %s in %s: %d bytes, not smaller than %d", target, got.coding, got.rec.Body.Len(), len(plain.decoded))
			}
			if cl := hdr.Get("Content-Length"); cl != strconv.Itoa(got.rec.Body.Len()) {
				t.Errorf("GET %s in %q: Content-Length %q for %d bytes", target, got.coding, cl, got.rec.Body.Len())
			}
			if v := hdr.Values("Vary"); !slices.Contains(v, "Accept-Encoding") {
				t.Errorf("GET %s: Vary %q", target, v)
			}
			etag := hdr.Get("ETag")
			if prev, ok := etags[got.coding]; ok && prev != etag {
				t.Errorf("GET %s in %q: ETag %s, earlier %s", target, got.coding, etag, prev)
			}
			etags[got.coding] = etag

			head := spaGet(t, h, "HEAD", target, tt.accept)
			if head.rec.Body.Len() != 0 || head.coding != got.coding || head.rec.Header().Get("Content-Length") != hdr.Get("Content-Length") ||
				head.rec.Header().Get("ETag") != etag || head.rec.Header().Get("Cache-Control") != hdr.Get("Cache-Control") {
				t.Errorf("HEAD %s, Accept-Encoding %q: %d body bytes, coding %q, length %q, ETag %q; GET: %q, %q, %q",
					target, tt.accept, head.rec.Body.Len(), head.coding, head.rec.Header().Get("Content-Length"),
					head.rec.Header().Get("ETag"), got.coding, hdr.Get("Content-Length"), etag)
			}
			for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
				again := spaGet(t, h, "GET", target, tt.accept, "If-None-Match", inm)
				if again.rec.Code != http.StatusNotModified || again.rec.Body.Len() != 0 || again.rec.Header().Get("ETag") != etag {
					t.Errorf("GET %s in %q with If-None-Match %s: %d with %d bytes, ETag %q; want 304 without a body",
						target, got.coding, inm, again.rec.Code, again.rec.Body.Len(), again.rec.Header().Get("ETag"))
				}
			}
		}
		if len(etags) != 3 || etags[""] == etags["gzip"] || etags[""] == etags["br"] || etags["gzip"] == etags["br"] {
			t.Errorf("GET %s: ETags per coding %q, want three different ones", target, etags)
		}
		stale := spaGet(t, h, "GET", target, "br", "If-None-Match", etags["gzip"])
		if stale.rec.Code != http.StatusOK {
			t.Errorf("GET %s in br with the gzip ETag: %d, want 200 (another representation)", target, stale.rec.Code)
		}
	}
}

// spaIndexRefs are the fingerprinted assets index.html names.
type spaIndexRefs struct{ js, css string }

var spaRefRE = regexp.MustCompile(`"(/assets/app\.[0-9a-f]{12}\.(js|css))"`)

func spaFingerprintedIndex(t *testing.T, h http.Handler) spaIndexRefs {
	t.Helper()
	var refs spaIndexRefs
	for _, m := range spaRefRE.FindAllStringSubmatch(spaDo(h, "GET", "/").Body.String(), -1) {
		if m[2] == "js" {
			refs.js = m[1]
		} else {
			refs.css = m[1]
		}
	}
	if refs.js == "" || refs.css == "" {
		t.Fatalf("index.html names no fingerprinted app.js and app.css: %+v", refs)
	}
	return refs
}

// TestSPAFingerprints: index.html names the assets by fingerprint; those
// names are cached for good and serve what the plain names serve, which
// are revalidated; the fingerprint is of the content as served, and the
// script's own import of i18n.js is fingerprinted too; index.html is never
// cached and keeps its CSP.
func TestSPAFingerprints(t *testing.T) {
	h := spaServer(t, spa.FS())
	refs := spaFingerprintedIndex(t, h)
	index := spaDo(h, "GET", "/")
	if got := index.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("index.html Cache-Control %q, want no-store", got)
	}
	if !strings.Contains(index.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("index.html lost its CSP: %q", index.Header().Get("Content-Security-Policy"))
	}
	if strings.Contains(index.Body.String(), `"/assets/app.js"`) {
		t.Error("index.html still names the plain /assets/app.js")
	}
	for plain, hashed := range map[string]string{"/assets/app.js": refs.js, "/assets/app.css": refs.css} {
		p, f := spaDo(h, "GET", plain), spaDo(h, "GET", hashed)
		if f.Code != http.StatusOK || f.Body.String() != p.Body.String() {
			t.Errorf("%s: %d, same body as %s: %v", hashed, f.Code, plain, f.Body.String() == p.Body.String())
		}
		if got := f.Header().Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("%s Cache-Control %q", hashed, got)
		}
		if got := p.Header().Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s Cache-Control %q, want no-cache", plain, got)
		}
		sum := sha256.Sum256(f.Body.Bytes())
		if !strings.Contains(hashed, "."+hex.EncodeToString(sum[:6])+".") {
			t.Errorf("%s is not named by the SHA-256 of its content", hashed)
		}
	}
	js := spaDo(h, "GET", refs.js).Body.String()
	m := regexp.MustCompile(`from '\./(i18n\.[0-9a-f]{12}\.js)'`).FindStringSubmatch(js)
	if m == nil {
		t.Fatal("app.js does not import a fingerprinted i18n.js")
	}
	i18n := spaDo(h, "GET", "/assets/"+m[1])
	if i18n.Code != http.StatusOK || i18n.Body.String() != spaFile(t, "assets/i18n.js") ||
		i18n.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("/assets/%s: %d, Cache-Control %q, the embedded i18n.js: %v", m[1], i18n.Code,
			i18n.Header().Get("Cache-Control"), i18n.Body.String() == spaFile(t, "assets/i18n.js"))
	}
	// Apart from the rewritten import, app.js is the embedded file.
	if strings.Replace(js, m[1], "i18n.js", 1) != spaFile(t, "assets/app.js") {
		t.Error("app.js as served differs from the embedded file beyond its import")
	}
	if got := spaDo(h, "GET", "/assets/app.css").Body.String(); got != spaFile(t, "assets/app.css") {
		t.Error("app.css as served is not the embedded file")
	}
}

// TestSPAFingerprintFollowsImports: a change to a module changes the
// fingerprint of every module that imports it, so a cached importer never
// loads a stale import; names that only look alike are not rewritten, and a
// cycle of imports still serves.
func TestSPAFingerprintFollowsImports(t *testing.T) {
	tree := func(dep string) fstest.MapFS {
		return fstest.MapFS{
			"index.html":     {Data: []byte(`<script type="module" src="/assets/main.js"></script><a href="/assets/main.jsx">x</a>`)},
			"assets/main.js": {Data: []byte(`import { x } from './dep.js'; import './a.js'; const s = "webdep.js";`)},
			"assets/dep.js":  {Data: []byte(dep)},
			"assets/a.js":    {Data: []byte(`import './b.js';`)},
			"assets/b.js":    {Data: []byte(`import './a.js';`)},
		}
	}
	mainOf := func(files fs.FS) (string, string) {
		h := spaServer(t, files)
		m := regexp.MustCompile(`"/assets/(main\.[0-9a-f]{12}\.js)"`).FindStringSubmatch(spaDo(h, "GET", "/").Body.String())
		if m == nil {
			t.Fatalf("index.html: %s", spaDo(h, "GET", "/").Body.String())
		}
		rec := spaDo(h, "GET", "/assets/"+m[1])
		if rec.Code != http.StatusOK {
			t.Fatalf("/assets/%s: %d", m[1], rec.Code)
		}
		return m[1], rec.Body.String()
	}
	name1, body1 := mainOf(tree("export const x = 1;"))
	name2, body2 := mainOf(tree("export const x = 2;"))
	if name1 == name2 || body1 == body2 {
		t.Errorf("main.js is %s and %s after its import changed; want different names and bodies", name1, name2)
	}
	if !regexp.MustCompile(`from '\./dep\.[0-9a-f]{12}\.js'`).MatchString(body1) || !strings.Contains(body1, `"webdep.js"`) {
		t.Errorf("main.js as served: %s", body1)
	}
	h := spaServer(t, tree("export const x = 1;"))
	if got := spaDo(h, "GET", "/").Body.String(); !strings.Contains(got, `"/assets/main.jsx"`) {
		t.Errorf("a name that only starts like an asset was rewritten: %s", got)
	}
	for _, name := range []string{"/assets/a.js", "/assets/b.js"} {
		if rec := spaDo(h, "GET", name); rec.Code != http.StatusOK {
			t.Errorf("%s in an import cycle: %d", name, rec.Code)
		}
	}
}

// TestSPASmallFilesGoAsTheyAre: a file under the compression threshold is
// sent as it is whatever the client accepts.
func TestSPASmallFilesGoAsTheyAre(t *testing.T) {
	h := spaServer(t, fstest.MapFS{"index.html": {Data: []byte("<!doctype html><title>i</title>")}})
	got := spaGet(t, h, "GET", "/", "br, gzip")
	if got.coding != "" || string(got.decoded) != "<!doctype html><title>i</title>" {
		t.Errorf("a small page: coding %q, body %q", got.coding, got.decoded)
	}
	if v := got.rec.Header().Values("Vary"); !slices.Contains(v, "Accept-Encoding") {
		t.Errorf("Vary %q", v)
	}
}

// spaGzipBudget is issue 13's budget for the dashboard's files together,
// as a browser that accepts gzip receives them.
const spaGzipBudget = 60_000

// TestSPAAssetsWithinTheirGzipBudget: every file of the embedded
// dashboard, fetched through the handler with gzip accepted, adds up to
// less than spaGzipBudget bytes on the wire (a file too small to gain from
// compression counts as sent).
func TestSPAAssetsWithinTheirGzipBudget(t *testing.T) {
	h := spaServer(t, spa.FS())
	total, files := 0, 0
	err := fs.WalkDir(spa.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		got := spaGet(t, h, "GET", "/"+path, "gzip")
		if got.rec.Code != http.StatusOK {
			t.Errorf("GET /%s: %d", path, got.rec.Code)
		}
		total += got.rec.Body.Len()
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("the embedded dashboard has no files")
	}
	t.Logf("%d files, %d bytes gzipped", files, total)
	if total >= spaGzipBudget {
		t.Errorf("the dashboard's %d files are %d bytes gzipped, over the %d-byte budget", files, total, spaGzipBudget)
	}
}
