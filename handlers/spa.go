package handlers

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// spaCSP keeps the dashboard to its own files: no inline script, no third
// party, no framing. The dashboard shows text that agents wrote; if a bug ever
// let some of it be parsed as HTML, the browser still refuses to run it.
const spaCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// registerSPA serves the embedded dashboard on the catch-all "GET /" (which
// also answers HEAD): the more specific /api/..., probe and /metrics routes
// registered by the other files win over it.
func (srv *Server) registerSPA(mux *routes) {
	if srv.cfg.SPA == nil {
		return
	}
	mux.Handle("GET /", spaHandler{files: srv.cfg.SPA})
}

// spaHandler answers, for a cleaned path:
//   - a file of the tree: that file;
//   - under /assets/ and missing: 404 (a stale page asking for a script must
//     see an error, not HTML parsed as JavaScript);
//   - under /api/: a 404 problem, never index.html, so a typo in an API path
//     gets an answer a client can read;
//   - anything else: index.html with 200, so a reload on a client-side route
//     such as /agents/PC-1 keeps working.
//
// Nothing is cached in the process: the tree is small and embedded, and
// reading it per request keeps the handler stateless.
type spaHandler struct {
	files fs.FS
}

func (h spaHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clean := path.Clean("/" + r.URL.Path)
	if clean == "/api" || strings.HasPrefix(clean, "/api/") {
		spaProblem(w, r, http.StatusNotFound, "no API operation at this path")
		return
	}
	name := strings.TrimPrefix(clean, "/")
	if name == "" {
		name = "index.html"
	}
	data, err := h.read(name)
	switch {
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		spaProblem(w, r, http.StatusInternalServerError, "cannot read the dashboard file")
		return
	case name == "assets" || strings.HasPrefix(name, "assets/"):
		spaNotFound(w, r)
		return
	default:
		name = "index.html"
		if data, err = h.read(name); err != nil {
			// No index.html in the tree: nothing to fall back to.
			spaNotFound(w, r)
			return
		}
	}
	serveSPAFile(w, r, name, data)
}

// read returns the content of a regular file, and fs.ErrNotExist for a
// directory or an invalid name, so neither is ever listed.
func (h spaHandler) read(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, fs.ErrNotExist
	}
	info, err := fs.Stat(h.files, name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fs.ErrNotExist
	}
	return fs.ReadFile(h.files, name)
}

// serveSPAFile sends data with the content type of name's extension, an ETag
// of its content and Cache-Control: no-cache. The file names carry no
// fingerprint, so a browser must revalidate every load; the ETag makes that a
// cheap 304 (embedded files have no modification time to use instead).
// http.ServeContent handles HEAD, ranges and If-None-Match.
//
// A client that accepts gzip gets the file gzipped (the dashboard's script
// is about 80 KB, 20 KB gzipped), with an ETag of its own and Vary, so a
// cache never hands one encoding to a client that asked for the other.
func serveSPAFile(w http.ResponseWriter, r *http.Request, name string, data []byte) {
	sum := sha256.Sum256(data)
	hdr := w.Header()
	etag := base64.RawURLEncoding.EncodeToString(sum[:16])
	hdr.Add("Vary", "Accept-Encoding")
	if len(data) >= spaGzipMin && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		if gz, err := gzipBytes(data); err == nil {
			ctype := mime.TypeByExtension(path.Ext(name))
			if ctype == "" {
				ctype = "application/octet-stream"
			}
			hdr.Set("Content-Type", ctype)
			hdr.Set("Content-Encoding", "gzip")
			data = gz
			etag += "-gz"
		}
	}
	hdr.Set("ETag", `"`+etag+`"`)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if path.Ext(name) == ".html" {
		hdr.Set("Content-Security-Policy", spaCSP)
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("X-Frame-Options", "DENY")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// spaGzipMin is the size below which gzip saves too little to bother.
const spaGzipMin = 1024

// acceptsGzip reads an Accept-Encoding header: gzip listed without q=0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

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
