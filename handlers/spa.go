package handlers

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spaCSP keeps the dashboard to its own files: no inline script, no third
// party, no framing. The dashboard shows text that agents wrote; if a bug ever
// let some of it be parsed as HTML, the browser still refuses to run it.
const spaCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// The cache policies of the dashboard's answers.
const (
	// cacheImmutable is a fingerprinted asset: its name changes with its
	// content, so a browser may keep it for a year without asking again.
	cacheImmutable = "public, max-age=31536000, immutable"
	// cacheRevalidate is an asset under its plain name (a page of an older
	// release, a bookmark): kept, but revalidated on every use (a 304).
	cacheRevalidate = "no-cache"
	// cacheNever is index.html: it names the fingerprinted assets of the
	// running release, so a browser must never reuse an old copy.
	cacheNever = "no-store"
)

// registerSPA serves the embedded dashboard on the catch-all "GET /" (which
// also answers HEAD): the more specific /api/..., probe and /metrics routes
// registered by the other files win over it.
func (srv *Server) registerSPA(mux *routes) {
	if srv.cfg.SPA == nil {
		return
	}
	mux.Handle("GET /", newSPAHandler(srv.cfg.SPA))
}

// spaHandler answers, for a cleaned path:
//   - a file of the tree: that file, under its plain name or, for a file
//     under assets/, its fingerprinted one (assets/app.<hash>.js);
//   - under /assets/ and missing: 404 (a stale page asking for a script must
//     see an error, not HTML parsed as JavaScript);
//   - under /api/: a 404 problem, never index.html, so a typo in an API path
//     gets an answer a client can read;
//   - anything else: index.html with 200, so a reload on a client-side route
//     such as /agents/PC-1 keeps working.
//
// The tree is embedded and never changes while the process runs, so the
// handler keeps one immutable table derived from it, built on first use
// (spaTree): the fingerprints, the rewritten index.html and each file's
// compressed forms, each computed once instead of once per request. Nothing
// in it depends on a request.
type spaHandler struct {
	files fs.FS
	tree  *spaTree
}

func newSPAHandler(files fs.FS) spaHandler {
	return spaHandler{files: files, tree: &spaTree{}}
}

// spaTree is the dashboard's files as served, by request name (no leading
// slash); build fills it once.
type spaTree struct {
	once  sync.Once
	err   error
	files map[string]spaEntry
}

// spaEntry is one name a file is served under, with that name's cache
// policy: a fingerprinted name and the plain one share their body.
type spaEntry struct {
	body  *spaBody
	cache string
}

// spaBody is a file's content (references to other assets rewritten to
// their fingerprinted names) and its compressed forms, made when first
// asked for.
type spaBody struct {
	name  string // the file's name in the tree, for its content type
	ctype string
	data  []byte
	tag   string // a hash of data, the ETag's base
	br    spaEncoded
	gz    spaEncoded
}

// spaEncoded is one compressed form of a body: nil when compressing does
// not make it smaller.
type spaEncoded struct {
	once sync.Once
	data []byte
}

func (e *spaEncoded) get(data []byte, compress func([]byte) ([]byte, error)) []byte {
	e.once.Do(func() {
		if len(data) < spaCompressMin {
			return
		}
		// The input is the embedded tree: neither writer fails on a
		// bytes.Buffer, and if one ever did, identity is still correct.
		if c, err := compress(data); err == nil && len(c) < len(data) {
			e.data = c
		}
	})
	return e.data
}

// spaCompressMin is the size below which compression saves too little to
// bother.
const spaCompressMin = 1024

func (h spaHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clean := path.Clean("/" + r.URL.Path)
	if clean == "/api" || strings.HasPrefix(clean, "/api/") {
		spaProblem(w, r, http.StatusNotFound, "no API operation at this path")
		return
	}
	files, err := h.tree.get(h.files)
	if err != nil {
		spaProblem(w, r, http.StatusInternalServerError, "cannot read the dashboard files")
		return
	}
	name := strings.TrimPrefix(clean, "/")
	if name == "" {
		name = "index.html"
	}
	e, ok := files[name]
	if !ok {
		if name == "assets" || strings.HasPrefix(name, "assets/") {
			spaNotFound(w, r)
			return
		}
		if e, ok = files["index.html"]; !ok {
			// No index.html in the tree: nothing to fall back to.
			spaNotFound(w, r)
			return
		}
	}
	serveSPAFile(w, r, e)
}

func (t *spaTree) get(files fs.FS) (map[string]spaEntry, error) {
	t.once.Do(func() { t.files, t.err = buildSPATree(files) })
	return t.files, t.err
}

// buildSPATree reads every regular file of the tree and gives each file
// under assets/ a fingerprinted name: its base name with the first 12 hex
// digits of its content's SHA-256 before the extension. References to an
// asset in the other files ("/assets/app.js" in index.html, "./i18n.js" in
// a module of the same folder) are rewritten to the fingerprinted names,
// an asset's own references first, so that a fingerprint covers everything
// the file loads. index.html is never cached, so a release is picked up by
// the next page load; the assets it names may be cached for good.
func buildSPATree(files fs.FS) (map[string]spaEntry, error) {
	raw := map[string][]byte{}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		raw[name] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the dashboard tree: %w", err)
	}
	fp := spaFingerprinter{raw: raw, done: map[string][]byte{}, hashed: map[string]string{}, busy: map[string]bool{}}
	out := make(map[string]spaEntry, 2*len(raw))
	for name := range raw {
		data := fp.resolve(name)
		body := newSPABody(name, data)
		cache := cacheRevalidate
		if path.Ext(name) == ".html" {
			cache = cacheNever
		}
		out[name] = spaEntry{body: body, cache: cache}
		if hashed, ok := fp.hashed[name]; ok {
			if _, taken := raw[hashed]; !taken {
				out[hashed] = spaEntry{body: body, cache: cacheImmutable}
			}
		}
	}
	return out, nil
}

func newSPABody(name string, data []byte) *spaBody {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	sum := sha256.Sum256(data)
	return &spaBody{name: name, ctype: ctype, data: data, tag: base64.RawURLEncoding.EncodeToString(sum[:16])}
}

// spaFingerprinter rewrites the tree's references to assets, depth first.
type spaFingerprinter struct {
	raw    map[string][]byte
	done   map[string][]byte // name -> content with its references rewritten
	hashed map[string]string // asset name -> fingerprinted name
	busy   map[string]bool   // being resolved: a reference cycle stays plain
}

// spaRewritten are the files whose references to assets are rewritten.
var spaRewritten = map[string]bool{".html": true, ".js": true, ".mjs": true, ".css": true}

func (f *spaFingerprinter) resolve(name string) []byte {
	if b, ok := f.done[name]; ok {
		return b
	}
	data := f.raw[name]
	if spaRewritten[path.Ext(name)] {
		f.busy[name] = true
		for other := range f.raw {
			if other == name || f.busy[other] || !strings.HasPrefix(other, "assets/") {
				continue
			}
			refs := spaReferences(name, other)
			if !containsAny(data, refs) {
				continue
			}
			f.resolve(other)
			hashed := f.hashed[other]
			for _, ref := range refs {
				to := strings.Replace(ref, path.Base(other), path.Base(hashed), 1)
				data = bytes.ReplaceAll(data, []byte(ref), []byte(to))
			}
		}
		delete(f.busy, name)
	}
	f.done[name] = data
	if strings.HasPrefix(name, "assets/") {
		sum := sha256.Sum256(data)
		ext := path.Ext(name)
		f.hashed[name] = strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:6]) + ext
	}
	return data
}

// spaReferences are the spellings of a reference from file to asset,
// quotes included so that "app.js" never matches inside "webapp.js": the
// absolute path from anywhere, and "./name" from a file of the same folder
// (a module's import).
func spaReferences(file, asset string) []string {
	var refs []string
	for _, q := range []string{`"`, `'`} {
		refs = append(refs, q+"/"+asset+q)
		if path.Dir(file) == path.Dir(asset) {
			refs = append(refs, q+"./"+path.Base(asset)+q)
		}
	}
	return refs
}

func containsAny(data []byte, subs []string) bool {
	for _, s := range subs {
		if bytes.Contains(data, []byte(s)) {
			return true
		}
	}
	return false
}

// serveSPAFile sends one file: its content type, an ETag of the content
// (of the encoding sent), the entry's cache policy, and Vary:
// Accept-Encoding, since the body depends on that header. A client that
// accepts brotli or gzip gets the precomputed compressed body. An
// If-None-Match naming the ETag is a 304; HEAD gets the headers of GET.
// An uncompressed answer goes through http.ServeContent, which also serves
// ranges; a compressed one is always whole (a server may ignore Range).
func serveSPAFile(w http.ResponseWriter, r *http.Request, e spaEntry) {
	b := e.body
	hdr := w.Header()
	hdr.Add("Vary", "Accept-Encoding")
	hdr.Set("Cache-Control", e.cache)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if path.Ext(b.name) == ".html" {
		hdr.Set("Content-Security-Policy", spaCSP)
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("X-Frame-Options", "DENY")
	}
	data, coding := b.data, ""
	switch spaCoding(r.Header.Get("Accept-Encoding")) {
	case "br":
		if c := b.br.get(b.data, brotliBytes); c != nil {
			data, coding = c, "br"
		} else if c := b.gz.get(b.data, gzipBytes); c != nil {
			data, coding = c, "gzip"
		}
	case "gzip":
		if c := b.gz.get(b.data, gzipBytes); c != nil {
			data, coding = c, "gzip"
		}
	}
	etag := `"` + b.tag + map[string]string{"": "", "br": "-br", "gzip": "-gz"}[coding] + `"`
	hdr.Set("ETag", etag)
	hdr.Set("Content-Type", b.ctype)
	if coding == "" {
		http.ServeContent(w, r, b.name, time.Time{}, bytes.NewReader(data))
		return
	}
	hdr.Set("Content-Encoding", coding)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		hdr.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

// etagMatches is If-None-Match's weak comparison (RFC 9110 §13.1.2):
// "*", or any listed tag equal to etag once a W/ prefix is dropped.
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// spaCoding picks the content coding of an answer from Accept-Encoding
// (RFC 9110 §12.5.3): "br" or "gzip", whichever has the higher weight
// (brotli on a tie: smaller), or "" for identity. A coding listed with
// q=0 is refused, and one not listed takes the weight of "*" if that is
// listed, else is not accepted. An element whose weight does not parse is
// ignored. A build without brotli (see brotliBuilt) never picks it.
func spaCoding(header string) string {
	weight := codingWeights(header)
	br, gz := weight("br"), weight("gzip")
	if !brotliBuilt {
		br = 0
	}
	switch {
	case br > 0 && br >= gz:
		return "br"
	case gz > 0:
		return "gzip"
	}
	return ""
}

// codingWeights parses Accept-Encoding into the weight of a coding (see
// spaCoding): 0 for one refused or not accepted.
func codingWeights(header string) func(coding string) float64 {
	q := map[string]float64{}
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding == "" {
			continue
		}
		weight := 1.0
		if params = strings.TrimSpace(params); params != "" {
			name, v, ok := strings.Cut(params, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			weight = f
		}
		q[coding] = weight
	}
	return func(c string) float64 {
		if w, ok := q[c]; ok {
			return w
		}
		return q["*"]
	}
}

// gzipBytes is data gzipped at the best compression: done once per file.
func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spaNotFound is http.NotFound without a body for HEAD.
func spaNotFound(w http.ResponseWriter, r *http.Request) {
	spaWrite(w, r, http.StatusNotFound, "text/plain; charset=utf-8", []byte("404 page not found\n"))
}

// spaProblem writes an RFC 9457 problem like huma's, for the few answers this
// handler gives outside huma.
func spaProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	body, err := json.Marshal(struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{http.StatusText(status), status, detail})
	if err != nil { // three plain fields cannot fail to encode
		panic(err)
	}
	spaWrite(w, r, status, "application/problem+json", body)
}

func spaWrite(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
