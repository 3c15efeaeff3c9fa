// Package auth authenticates requests to /api/* and /metrics as
// shared/spec/api.md ("Authentication of /api/*") says: a static service token
// or an HS256 JWT, presented as "Authorization: Bearer <token>". It also
// says what the caller may do (Role, control.md §9): the static token and
// disabled authentication act as Admin; a JWT's role is its account's, read
// through Config.Accounts on every request. Which route needs which role is
// the handlers' table; this package only compares.
//
// It is a single http.Handler wrapper so every shell (on-prem HTTP, Lambda)
// gets the same rules. It must never let a request whose path could route to
// an /api/ handler through unauthenticated, never echo a presented token (or
// any part of it) in a response or a log line, and never invent a secret of
// its own: when nothing is configured it refuses to start, and the HTTP shell
// generates a per-installation token with LoadOrCreateToken first.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Config selects the authentication mode. The shells fill it from the
// environment (KANADE_AUTH_DISABLE, KANADE_AUTH_STATIC_TOKEN, KANADE_JWT_SECRET).
type Config struct {
	// Disabled opens everything. It mirrors KANADE_AUTH_DISABLE being set at
	// all (any value, even empty), so a half-configured disable never
	// silently turns into "auth on with no credentials".
	Disabled bool
	// StaticToken is a shared service token (KANADE_AUTH_STATIC_TOKEN).
	// Empty means none.
	StaticToken string
	// JWTSecret is the HS256 key (KANADE_JWT_SECRET). Empty means no JWTs.
	JWTSecret []byte
	// Accounts looks up a JWT's subject on every request that carries one:
	// the account's role is the caller's, and a subject without an account,
	// or with a disabled one, is refused with 401 (control.md §9.1). Nil
	// trusts the token's "roles" claim instead (HighestRole), for an
	// issuer that keeps no accounts here.
	Accounts AccountLookup
	// OpenPaths are exact paths under /api/ that need no credentials,
	// besides /api/version (api.md rule 2), such as the login route. Like
	// /api/version, only the canonical spelling of each is open.
	OpenPaths []string
	// Clock is "now" for exp/nbf checks; nil is time.Now.
	Clock func() time.Time
	// Logger receives the start-up warnings and one debug line per refused
	// request (never the token). Nil discards.
	Logger *slog.Logger
}

// Caller kinds, the value of Caller.Kind.
const (
	KindServiceToken = "service-token"
	KindJWT          = "jwt"
	KindAnonymous    = "anonymous"
)

// Caller is who made a request, as far as authentication could tell. Handlers
// read it (CallerFrom) to attribute audit events.
type Caller struct {
	// Subject is the JWT "sub", "service-token" for the static token,
	// "anonymous" for open paths, or "auth-disabled" when authentication is
	// off.
	Subject string
	// Kind is KindServiceToken, KindJWT or KindAnonymous.
	Kind string
	// Role is what the caller may do: Admin for the static token and with
	// authentication disabled, the account's role for a JWT, NoRole for an
	// anonymous caller of an open path.
	Role Role
}

type callerKey struct{}

// WithCaller returns ctx carrying c. The middleware uses it; tests of other
// packages can use it to build requests as if they had been authenticated.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller the middleware put in ctx. ok is false when
// the request did not pass through the middleware.
func CallerFrom(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(Caller)
	return c, ok
}

var anonymous = Caller{Subject: "anonymous", Kind: KindAnonymous}

// authDisabled is every caller while authentication is off: the audit trail
// names it as upstream does (control.md §0.2), so nobody mistakes such an
// entry for an authenticated one. It acts as admin (control.md §9.1): with
// authentication off there is nobody to refuse.
var authDisabled = Caller{Subject: "auth-disabled", Kind: KindAnonymous, Role: Admin}

// serviceToken is the caller of the static token, an admin (control.md
// §9.1): it is the operator's own key, for automation and for recovering
// from a lost admin password.
var serviceToken = Caller{Subject: KindServiceToken, Kind: KindServiceToken, Role: Admin}

// Middleware wraps next with the rules of api.md, checked in this order:
//
//  1. cfg.Disabled: everything is open (a loud warning is logged once, here).
//  2. Paths that cannot route to /api/ or /metrics are open, and so are
//     exactly /api/version and cfg.OpenPaths. Any path that is not already
//     canonical (see needsAuth) counts as protected, whatever it would
//     route to.
//  3. A bearer token is required (the scheme is matched case-insensitively,
//     as RFC 9110 §11.1 says auth schemes are).
//  4. The static token, compared in constant time, makes the caller
//     "service-token"; a mismatch falls through to
//  5. an HS256 JWT signed with cfg.JWTSecret (see verifyJWT), whose subject
//     must have an enabled account when cfg.Accounts is set.
//
// It returns an error when auth is enabled but neither a static token nor a
// JWT secret is configured (rule 6: the shell must generate a token first;
// on Lambda that is a start-up error), or when the static token could never
// be presented in an Authorization header.
func Middleware(cfg Config, next http.Handler) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("auth: next handler is nil")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Disabled {
		logger.Warn("AUTHENTICATION IS DISABLED: every /api/ endpoint and /metrics is open to anyone who can reach this server; unset KANADE_AUTH_DISABLE to protect it",
			slog.String("env", "KANADE_AUTH_DISABLE"))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), authDisabled)))
		}), nil
	}
	if cfg.StaticToken == "" && len(cfg.JWTSecret) == 0 {
		return nil, errors.New("auth: neither a static token (KANADE_AUTH_STATIC_TOKEN) nor a JWT secret (KANADE_JWT_SECRET) is configured and auth is not disabled")
	}
	if cfg.StaticToken != "" && !validTokenChars(cfg.StaticToken) {
		return nil, errors.New("auth: the static token contains whitespace or control characters, so no Authorization header could carry it")
	}
	if cfg.StaticToken != "" && len(cfg.StaticToken) < 16 {
		logger.Warn("auth: the static token is shorter than 16 characters and easy to guess")
	}
	if n := len(cfg.JWTSecret); n > 0 && n < 32 {
		// RFC 7518 §3.2 wants at least 256 bits of key for HS256.
		logger.Warn("auth: the JWT secret is shorter than 32 bytes (RFC 7518 §3.2 asks for at least 256 bits)",
			slog.Int("bytes", n))
	}
	a := &authenticator{
		next:     next,
		clock:    cfg.Clock,
		logger:   logger,
		accounts: cfg.Accounts,
		open:     map[string]bool{openAPIPath: true},
	}
	for _, p := range cfg.OpenPaths {
		// A route pattern ("/api/x/{id}") is not a path: only literal
		// paths can be open.
		if !strings.HasPrefix(p, "/api/") || !isCanonical(p, p) || canonicalize(p) != p || strings.ContainsAny(p, "{}") {
			return nil, fmt.Errorf("auth: open path %q is not a literal canonical path under /api/", p)
		}
		a.open[p] = true
	}
	if a.clock == nil {
		a.clock = time.Now
	}
	if cfg.StaticToken != "" {
		a.hasStatic = true
		a.staticSum = sha256.Sum256([]byte(cfg.StaticToken))
	}
	if len(cfg.JWTSecret) > 0 {
		a.secret = append([]byte(nil), cfg.JWTSecret...)
	}
	return a, nil
}

type authenticator struct {
	next      http.Handler
	clock     func() time.Time
	logger    *slog.Logger
	accounts  AccountLookup
	open      map[string]bool // exact paths under /api/ open to anyone
	hasStatic bool
	staticSum [sha256.Size]byte
	secret    []byte
}

// failure is why a request was refused: a short reason for the problem body
// (never containing the token) and whether a token had been presented.
type failure struct {
	reason string
	// challenge is the error attribute of WWW-Authenticate ("" for none).
	challenge string
	// err is an infrastructure failure behind the refusal (logged, never
	// sent).
	err error
}

func (a *authenticator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !needsAuth(r.URL, a.open) {
		a.next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), anonymous)))
		return
	}
	c, f := a.authenticate(r)
	if f != nil {
		if f.err != nil {
			// The accounts could not be read: the request is refused, and
			// this is the edge that says why.
			a.logger.ErrorContext(r.Context(), "auth: account lookup failed", slog.Any("error", f.err))
		}
		a.logger.Debug("auth: request refused",
			slog.String("reason", f.reason),
			slog.String("method", r.Method),
			slog.String("path", kanade.Clip(r.URL.Path)),
			slog.String("remote", r.RemoteAddr))
		writeUnauthorized(w, f)
		return
	}
	a.next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), c)))
}

// maxTokenLen bounds the work a single request can ask for; real tokens
// are a few hundred bytes.
const maxTokenLen = 8 << 10

func (a *authenticator) authenticate(r *http.Request) (Caller, *failure) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return Caller{}, &failure{reason: "missing bearer token"}
	}
	if len(values) > 1 {
		return Caller{}, &failure{reason: "more than one Authorization header", challenge: "invalid_request"}
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Caller{}, &failure{reason: "authorization scheme must be Bearer"}
	}
	// RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ].
	token := strings.TrimLeft(rest, " ")
	if token == "" {
		return Caller{}, &failure{reason: "missing bearer token"}
	}
	if len(token) > maxTokenLen || !validTokenChars(token) {
		return Caller{}, &failure{reason: "malformed bearer token", challenge: "invalid_token"}
	}

	if a.hasStatic {
		sum := sha256.Sum256([]byte(token))
		// Comparing fixed-size hashes keeps the comparison constant-time
		// and independent of the configured token's length.
		if subtle.ConstantTimeCompare(sum[:], a.staticSum[:]) == 1 {
			return serviceToken, nil
		}
	}
	if a.secret == nil || strings.Count(token, ".") != 2 {
		return Caller{}, &failure{reason: "invalid token", challenge: "invalid_token"}
	}
	claims, err := verifyJWT(token, a.secret, a.clock())
	if err != nil {
		return Caller{}, &failure{reason: err.Error(), challenge: "invalid_token"}
	}
	c := Caller{Subject: claims.sub, Kind: KindJWT, Role: HighestRole(claims.roles)}
	if a.accounts == nil {
		return c, nil
	}
	// The account, not the token, says what the caller may do (control.md
	// §9.1). Each refusal is a 401, a disabled account included, so the
	// dashboard logs out rather than showing a page of refusals.
	acct, err := a.accounts(r.Context(), claims.sub)
	switch {
	case errors.Is(err, ErrNoAccount):
		return Caller{}, &failure{reason: "unknown account", challenge: "invalid_token"}
	case err != nil:
		return Caller{}, &failure{reason: "auth backend unavailable", err: err}
	case acct.Disabled:
		return Caller{}, &failure{reason: "account disabled", challenge: "invalid_token"}
	case acct.Role == NoRole:
		return Caller{}, &failure{reason: "account has no role", challenge: "invalid_token"}
	}
	c.Role = acct.Role
	return c, nil
}

// validTokenChars reports whether s has no whitespace, control characters or
// non-ASCII bytes: anything else could not be a token68 and only invites
// parser disagreements.
func validTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// writeUnauthorized answers 401 as RFC 9457 problem+json with an RFC 6750
// challenge. f.reason is one of this package's fixed strings.
func writeUnauthorized(w http.ResponseWriter, f *failure) {
	challenge := "Bearer"
	if f.challenge != "" {
		challenge += ` error="` + f.challenge + `"`
	}
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	// Encoding a struct of strings and an int cannot fail; a write error
	// means the client left, and there is no one left to tell.
	_ = json.NewEncoder(w).Encode(problem{Title: "Unauthorized", Status: http.StatusUnauthorized, Detail: f.reason})
}
