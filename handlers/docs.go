package handlers

import (
	"embed"
	"io/fs"
	"net/http"
)

// apiDocs is the API reference page and its script and style sheet: plain
// files, like the dashboard, so the page runs under the dashboard's CSP (no
// inline script, nothing from another origin).
//
//go:embed apidocs
var apiDocs embed.FS

// registerDocs serves GET /api/docs, the API reference page promised by
// api.md ("an API docs page"), and its two files. They are public (a
// browser opening the link sends no token) and contain nothing secret:
// the script fetches /api/openapi.json, which stays behind the token, with
// the token the dashboard saved in the same browser. huma's own docs page
// is not used: it loads its viewer from a CDN, which the CSP forbids, and
// a page behind a bearer token cannot be opened from a link at all.
func (srv *Server) registerDocs(mux *routes) {
	sub, err := fs.Sub(apiDocs, "apidocs")
	if err != nil {
		// fs.Sub fails only for an invalid name, and "apidocs" is a
		// constant: this cannot happen at run time.
		panic("handlers: " + err.Error())
	}
	h := newSPAHandler(sub)
	mux.Handle("GET /api/docs", h.file("docs.html"))
	mux.Handle("GET /api/docs.js", h.file("docs.js"))
	mux.Handle("GET /api/docs.css", h.file("docs.css"))
}

// file serves the one file name of the tree, whatever the path.
func (h spaHandler) file(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		files, err := h.tree.get(h.files)
		if err != nil {
			spaProblem(w, r, http.StatusInternalServerError, "cannot read the docs page")
			return
		}
		e, ok := files[name]
		if !ok {
			spaNotFound(w, r)
			return
		}
		serveSPAFile(w, r, e)
	}
}
