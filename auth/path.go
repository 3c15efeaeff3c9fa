package auth

import (
	"net/url"
	"path"
	"strings"
)

// openAPIPath is the /api/ path anyone may read whatever is configured.
const openAPIPath = "/api/version"

// needsAuth decides whether a request must carry credentials, looking only at
// its URL. It errs towards "yes": routers, proxies and file servers disagree
// about "//", dot segments, percent-encoded separators, backslashes, case
// and trailing dots, so any path that is not already in the one canonical
// spelling needs auth, whatever it would route to. Only a canonical path
// that cannot be /api, /api/… or /metrics in any reading is open, plus
// exactly the paths of open (/api/version and the configured open paths),
// spelled exactly so.
//
// With credentials such a request goes on unchanged (Go's ServeMux then
// redirects or routes it as it likes); without them it gets a 401 before any
// router sees it.
func needsAuth(u *url.URL, open map[string]bool) bool {
	if u.Opaque != "" {
		return true
	}
	p, raw := u.Path, u.EscapedPath()
	if p == raw && open[p] {
		return false
	}
	if !isCanonical(p, raw) {
		return true
	}
	c := canonicalize(p)
	return c == "/api" || strings.HasPrefix(c, "/api/") || c == "/metrics"
}

// isCanonical reports whether the decoded path p and its escaped form raw
// are free of everything that lets two spellings reach one resource.
func isCanonical(p, raw string) bool {
	if !strings.HasPrefix(p, "/") {
		return false // "*", "", or something a router may resolve oddly
	}
	lraw := strings.ToLower(raw)
	for _, bad := range []string{
		"%2f", "%5c", // encoded separators
		"%2e", // encoded dots (dot segments, trailing dots)
		"%25", // double encoding, for any layer that decodes twice
		"%00", "\\",
	} {
		if strings.Contains(lraw, bad) {
			return false
		}
	}
	if strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c == 0x7f || c == '\\' {
			return false
		}
	}
	// Every segment: no "." or "..", no trailing dot or space (which some
	// file systems and proxies drop, turning "/api./x" into "/api/x").
	for _, seg := range strings.Split(p[1:], "/") {
		if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
			return false
		}
	}
	return true
}

// canonicalize is the path as the most permissive router could read it:
// backslashes as slashes, cleaned, ";params" and trailing dots and spaces
// cut from each segment, lower-cased. needsAuth only applies it to canonical paths,
// where it mostly lower-cases and drops a trailing slash; it stays complete
// so that the prefix test does not depend on isCanonical being perfect.
func canonicalize(p string) string {
	p = path.Clean("/" + strings.ReplaceAll(p, `\`, "/"))
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";") // path parameters, as some servlet containers strip them
		segs[i] = strings.TrimRight(s, ". ")
	}
	return strings.ToLower(path.Clean(strings.Join(segs, "/")))
}
