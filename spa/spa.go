// Package spa holds the operator dashboard: plain HTML, CSS and JavaScript
// modules embedded into the binary, so the Go build stays self-contained
// (no npm, no CGO) and every shell serves the same files.
//
// The dashboard must never inject text from the server as HTML: agent
// hostnames, job output and audit payloads come from machines in the field.
// It writes them with textContent only, and the handler that serves it sends a
// Content-Security-Policy that forbids inline script as a second line.
package spa

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// FS returns the dashboard's file tree rooted at dist: index.html at its root
// and the scripts and styles under assets/. handlers.Config.SPA takes it.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only for an invalid path name, and "dist" is a
		// constant: this cannot happen at run time.
		panic("spa: " + err.Error())
	}
	return sub
}
