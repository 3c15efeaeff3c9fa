package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/storage"
)

// Accounts and login (control.md §9.3): POST /api/auth/login issues the
// JWT the rest of the API accepts; GET /api/auth/me and POST
// /api/auth/change-password are the caller's own; /api/accounts is the
// admins'. Roles are enforced by the gate (routeRoles), not here.
//
// Passwords and hashes never reach a response, a log line or an error
// message: the hash is read by the two password checks only, and a
// password's problems are described without quoting it.

// tokenTTL is how long a login's JWT lasts (upstream: 12 h). The account is
// read again on every request, so this bounds only how long a token
// outlives a deleted account's password, not a disable or a role change.
const tokenTTL = 12 * time.Hour

// Login throttling: at most loginLimit failed attempts per username and per
// client address within loginWindow; then 429 with Retry-After. The count
// is in SQL (storage.ReserveLoginAttempt): the handlers keep no state
// between requests and may run as many processes.
const (
	loginLimit  = 10
	loginWindow = time.Minute
)

// invalidCredentials is the one answer to every failed password check
// (unknown user, wrong password, disabled account), so a caller cannot tell
// which usernames exist.
const invalidCredentials = "invalid credentials"

// accountOf is the auth middleware's AccountLookup: the account a JWT
// names, as the database has it now.
func (srv *Server) accountOf(ctx context.Context, username string) (auth.Account, error) {
	name, disabled, err := srv.cfg.DB.AccountAccess(ctx, username)
	if errors.Is(err, storage.ErrNotFound) {
		return auth.Account{}, auth.ErrNoAccount
	}
	if err != nil {
		return auth.Account{}, err
	}
	role, _ := auth.ParseRole(name) // the CHECK constraint keeps it one of the three
	return auth.Account{Role: role, Disabled: disabled}, nil
}

// withKDF runs fn, a password hash or check, once a KDF slot is free (see
// Server.kdf), or gives up when ctx ends.
func (srv *Server) withKDF(ctx context.Context, fn func()) error {
	select {
	case srv.kdf <- struct{}{}:
	case <-ctx.Done():
		return huma.Error503ServiceUnavailable("gave up waiting to check the password")
	}
	defer func() { <-srv.kdf }()
	fn()
	return nil
}

// hashPassword checks pw against the password rules (a 422 at field, never
// quoting it) and hashes it.
func (srv *Server) hashPassword(ctx context.Context, field, pw string) (string, error) {
	if err := password.Check(pw); err != nil {
		return "", huma.Error422UnprocessableEntity(err.Error(), &huma.ErrorDetail{Location: "body." + field, Message: err.Error()})
	}
	var h string
	var herr error
	if err := srv.withKDF(ctx, func() { h, herr = password.Hash(pw, srv.cfg.PasswordCost) }); err != nil {
		return "", err
	}
	if herr != nil {
		return "", srv.dbProblem(ctx, "hash password", herr)
	}
	return h, nil
}

// clientKey is the throttle key of a request's client address. An IPv6
// client is keyed by its /64, which one host or home usually holds whole;
// anything that does not parse (a proxy's odd RemoteAddr) is keyed as is,
// clipped. Behind a reverse proxy every client shares the proxy's address:
// the per-address limit then counts them together.
func clientKey(remoteAddr string) string {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "addr:" + kanade.Clip(host)
	case ip.Is4() || ip.Is4In6():
		return "addr:" + ip.Unmap().String()
	default:
		p, _ := ip.WithZone("").Prefix(64)
		return "addr:" + p.String()
	}
}

func userKey(username string) string { return "user:" + username }

// checkPassword runs one throttled password check of username from addr:
// reserve an attempt (429 when the username or the address has used its
// failures), check, and take the attempt back if it succeeded. It answers
// the account, or a 401 "invalid credentials" for any failed check.
func (srv *Server) checkPassword(ctx context.Context, username, pw, addr, what string) (kanade.Account, error) {
	log := srv.cfg.Logger.With(slog.String("username", kanade.Clip(username)), slog.String("client", addr))
	attempt, wait, err := srv.cfg.DB.ReserveLoginAttempt(ctx, []string{userKey(username), addr}, loginLimit, loginWindow, srv.cfg.Clock())
	if err != nil {
		return kanade.Account{}, srv.dbProblem(ctx, what, err)
	}
	if wait > 0 {
		log.WarnContext(ctx, what+" throttled", slog.Duration("retry_after", wait))
		secs := int64(wait / time.Second)
		return kanade.Account{}, huma.ErrorWithHeaders(
			huma.NewError(http.StatusTooManyRequests, "too many failed attempts for this username or from this address; retry after "+strconv.FormatInt(secs, 10)+" s"),
			http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}})
	}
	creds, err := srv.cfg.DB.Credentials(ctx, username)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return kanade.Account{}, srv.dbProblem(ctx, what, err)
	}
	var ok bool
	var verr error
	if err := srv.withKDF(ctx, func() {
		if creds.Hash == "" {
			// No such account: spend the same time as for one, so timing
			// does not say which usernames exist.
			password.Burn(pw, srv.cfg.PasswordCost)
			return
		}
		ok, verr = password.Verify(pw, creds.Hash)
	}); err != nil {
		return kanade.Account{}, err
	}
	reason := ""
	switch {
	case creds.Hash == "":
		reason = "unknown account"
	case verr != nil:
		reason = "stored hash unreadable"
		log.ErrorContext(ctx, what+": the account's password hash cannot be read; reset its password", slog.Any("error", verr))
	case !ok:
		reason = "wrong password"
	case creds.Account.Disabled:
		reason = "account disabled"
	}
	if reason != "" {
		log.InfoContext(ctx, what+" refused", slog.String("reason", reason))
		return kanade.Account{}, huma.Error401Unauthorized(invalidCredentials)
	}
	if err := srv.cfg.DB.ForgiveLoginAttempt(ctx, attempt, userKey(username)); err != nil {
		// The password was right; a leftover row only counts against
		// the limit for a minute.
		log.WarnContext(ctx, what+": successful attempt not taken back", slog.Any("error", err))
	}
	return creds.Account, nil
}

// clientInput captures the request's client address for the throttle:
// embedded in an input, its Resolve is the input's, which huma calls before
// the handler.
type clientInput struct{ addr string }

func (c *clientInput) Resolve(ctx huma.Context) []error {
	c.addr = clientKey(ctx.RemoteAddr())
	return nil
}

// Passwords carry no length limits in the schema: huma would quote the
// offending value in its 422. password.Check says what is wrong instead.

type loginInput struct {
	clientInput
	Body struct {
		Username string `json:"username" maxLength:"256"`
		Password string `json:"password"`
	}
}

type loginOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         struct {
		Token              string `json:"token" doc:"an HS256 JWT for Authorization: Bearer"`
		Role               string `json:"role" enum:"viewer,operator,admin"`
		MustChangePassword bool   `json:"must_change_pw" doc:"the password was set by someone else; POST /api/auth/change-password"`
		Exp                int64  `json:"exp" doc:"when the token expires, in seconds since the Unix epoch"`
	}
}

type meOutput struct {
	Body struct {
		Username           string `json:"username" doc:"the account, or service-token / auth-disabled"`
		Role               string `json:"role" enum:"viewer,operator,admin"`
		MustChangePassword bool   `json:"must_change_pw"`
	}
}

type changePasswordInput struct {
	clientInput
	Body struct {
		OldPassword string `json:"old_password"`
		NewPassword string `json:"new_password"`
	}
}

type createAccountInput struct {
	Body struct {
		Username           string `json:"username" maxLength:"64" doc:"1–64 characters of [A-Za-z0-9._@-]"`
		Password           string `json:"password" doc:"at least 8 characters"`
		Role               string `json:"role" enum:"viewer,operator,admin"`
		MustChangePassword bool   `json:"must_change_pw,omitempty" doc:"ask the user to choose a new password after the first login"`
	}
}

type accountPathInput struct {
	Username string `path:"username" maxLength:"256"`
}

type updateAccountInput struct {
	Username string `path:"username" maxLength:"256"`
	Body     struct {
		Role     *string `json:"role,omitempty" enum:"viewer,operator,admin"`
		Password *string `json:"password,omitempty" doc:"a new password; the user must change it after the next login"`
		Disabled *bool   `json:"disabled,omitempty" doc:"a disabled account cannot log in, and its tokens stop working at once"`
	}
}

type accountOutput struct{ Body kanade.Account }

func (srv *Server) registerAccounts(api huma.API) {
	tags := []string{"accounts"}
	register(api, huma.Operation{OperationID: "login", Method: http.MethodPost, Path: "/api/auth/login",
		Summary: "Log in with a username and password", Tags: tags,
		Description: "Answers an HS256 JWT for the account ({sub, exp, aud: kanade, roles: [role]}, valid 12 h) with its role " +
			"and must_change_pw. Any failed check (unknown user, wrong password, disabled account) is 401 \"invalid credentials\". " +
			"After 10 failed attempts within a minute for one username or from one address: 429 with Retry-After. " +
			"503 when the server has no KANADE_JWT_SECRET to sign with.",
		Errors: []int{http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable}},
		func(ctx context.Context, in *loginInput) (*loginOutput, error) {
			secret := srv.cfg.Auth.JWTSecret
			if len(secret) == 0 {
				return nil, huma.Error503ServiceUnavailable("account login is not configured: set KANADE_JWT_SECRET to sign tokens")
			}
			a, err := srv.checkPassword(ctx, in.Body.Username, in.Body.Password, in.addr, "login")
			if err != nil {
				return nil, err
			}
			role, _ := auth.ParseRole(a.Role)
			exp := srv.cfg.Clock().Add(tokenTTL).Truncate(time.Second)
			token, err := auth.IssueJWT(secret, a.Username, role, exp)
			if err != nil {
				return nil, srv.dbProblem(ctx, "sign token", err)
			}
			srv.cfg.Logger.InfoContext(ctx, "login", slog.String("username", a.Username), slog.String("role", a.Role), slog.String("client", in.addr))
			out := &loginOutput{CacheControl: "no-store"}
			out.Body.Token, out.Body.Role, out.Body.MustChangePassword, out.Body.Exp = token, a.Role, a.MustChangePassword, exp.Unix()
			return out, nil
		})

	register(api, huma.Operation{OperationID: "me", Method: http.MethodGet, Path: "/api/auth/me",
		Summary: "Who am I", Tags: tags,
		Description: "The caller's username and effective role: the account's for a JWT, admin for the static token " +
			"(service-token) and with authentication disabled (auth-disabled)."},
		func(ctx context.Context, _ *struct{}) (*meOutput, error) {
			c, _ := auth.CallerFrom(ctx)
			out := &meOutput{}
			out.Body.Username, out.Body.Role = c.Subject, c.Role.String()
			if c.Kind == auth.KindJWT {
				a, err := srv.cfg.DB.Account(ctx, c.Subject)
				if err != nil {
					// The middleware found it a moment ago.
					return nil, srv.dbProblem(ctx, "read account", err)
				}
				out.Body.MustChangePassword = a.MustChangePassword
			}
			return out, nil
		})

	register(api, huma.Operation{OperationID: "change-password", Method: http.MethodPost, Path: "/api/auth/change-password",
		Summary: "Change one's own password", Tags: tags,
		Description: "For a JWT caller: checks old_password (throttled like the login; a wrong one is 401 \"invalid credentials\"), " +
			"stores new_password (at least 8 characters) and clears must_change_pw. 204. The static token and " +
			"auth-disabled have no account: 409.",
		Errors: []int{http.StatusUnauthorized, http.StatusConflict, http.StatusTooManyRequests}},
		func(ctx context.Context, in *changePasswordInput) (*struct{}, error) {
			c, _ := auth.CallerFrom(ctx)
			if c.Kind != auth.KindJWT {
				return nil, huma.Error409Conflict(c.Subject + " has no account and no password to change")
			}
			if err := password.Check(in.Body.NewPassword); err != nil {
				return nil, huma.Error422UnprocessableEntity(err.Error(), &huma.ErrorDetail{Location: "body.new_password", Message: err.Error()})
			}
			if _, err := srv.checkPassword(ctx, c.Subject, in.Body.OldPassword, in.addr, "password change"); err != nil {
				return nil, err
			}
			h, err := srv.hashPassword(ctx, "new_password", in.Body.NewPassword)
			if err != nil {
				return nil, err
			}
			no := false
			if _, err := srv.cfg.DB.UpdateAccount(ctx, c.Subject, storage.AccountChange{Hash: &h, MustChangePassword: &no}); err != nil {
				return nil, srv.accountProblem(ctx, c.Subject, err)
			}
			srv.audit(ctx, "password_change", c.Subject, nil)
			return nil, nil
		})

	register(api, huma.Operation{OperationID: "list-accounts", Method: http.MethodGet, Path: "/api/accounts",
		Summary: "Every account", Tags: tags,
		Description: "Accounts by username, as a JSON array; never their password hashes."},
		func(ctx context.Context, _ *struct{}) (*struct{ Body []kanade.Account }, error) {
			list, err := srv.cfg.DB.ListAccounts(ctx)
			if err != nil {
				return nil, srv.dbProblem(ctx, "list accounts", err)
			}
			return &struct{ Body []kanade.Account }{list}, nil
		})

	register(api, huma.Operation{OperationID: "create-account", Method: http.MethodPost, Path: "/api/accounts",
		Summary: "Create an account", Tags: tags, DefaultStatus: http.StatusCreated,
		Description: "201 with the account; 409 when the username is taken. Audits account_create.",
		Errors:      []int{http.StatusConflict}},
		func(ctx context.Context, in *createAccountInput) (*accountOutput, error) {
			b := in.Body
			if !kanade.ValidUsername(b.Username) {
				fe := &kanade.FieldError{Field: "username", Rule: kanade.RuleUsername, Excerpt: kanade.Clip(b.Username)}
				return nil, invalid(fe)
			}
			h, err := srv.hashPassword(ctx, "password", b.Password)
			if err != nil {
				return nil, err
			}
			a, err := srv.cfg.DB.CreateAccount(ctx, storage.NewAccount{Username: b.Username, Hash: h, Role: b.Role, MustChangePassword: b.MustChangePassword})
			if err != nil {
				return nil, srv.accountProblem(ctx, b.Username, err)
			}
			srv.audit(ctx, "account_create", a.Username, map[string]any{"role": a.Role, "must_change_pw": a.MustChangePassword})
			return &accountOutput{a}, nil
		})

	register(api, huma.Operation{OperationID: "update-account", Method: http.MethodPatch, Path: "/api/accounts/{username}",
		Summary: "Change an account's role, password or disabled flag", Tags: tags,
		Description: "Any of role, password, disabled; a new password makes the user change it after the next login. " +
			"Answers the account. 409, and no change at all, when it would disable or demote the last enabled admin. " +
			"Audits account_update (never the password).",
		Errors: []int{http.StatusNotFound, http.StatusConflict}},
		func(ctx context.Context, in *updateAccountInput) (*accountOutput, error) {
			b := in.Body
			if b.Role == nil && b.Password == nil && b.Disabled == nil {
				return nil, huma.Error422UnprocessableEntity("nothing to change: give role, password or disabled",
					&huma.ErrorDetail{Location: "body", Message: "give role, password or disabled"})
			}
			c := storage.AccountChange{Role: b.Role, Disabled: b.Disabled}
			if b.Password != nil {
				h, err := srv.hashPassword(ctx, "password", *b.Password)
				if err != nil {
					return nil, err
				}
				yes := true
				c.Hash, c.MustChangePassword = &h, &yes
			}
			a, err := srv.cfg.DB.UpdateAccount(ctx, in.Username, c)
			if err != nil {
				return nil, srv.accountProblem(ctx, in.Username, err)
			}
			srv.audit(ctx, "account_update", a.Username, map[string]any{"role": b.Role, "disabled": b.Disabled, "password_reset": b.Password != nil})
			return &accountOutput{a}, nil
		})

	register(api, huma.Operation{OperationID: "delete-account", Method: http.MethodDelete, Path: "/api/accounts/{username}",
		Summary: "Delete an account", Tags: tags, DefaultStatus: http.StatusNoContent,
		Description: "204; its tokens stop working at once. 409 for the last enabled admin. Audits account_delete.",
		Errors:      []int{http.StatusNotFound, http.StatusConflict}},
		func(ctx context.Context, in *accountPathInput) (*struct{}, error) {
			if err := srv.cfg.DB.DeleteAccount(ctx, in.Username); err != nil {
				return nil, srv.accountProblem(ctx, in.Username, err)
			}
			srv.audit(ctx, "account_delete", in.Username, nil)
			return nil, nil
		})
}

// accountProblem maps the accounts' storage errors to their answers.
func (srv *Server) accountProblem(ctx context.Context, username string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return huma.Error404NotFound("no account " + strconv.Quote(kanade.Clip(username)))
	case errors.Is(err, storage.ErrExists):
		return huma.Error409Conflict("account " + strconv.Quote(kanade.Clip(username)) + " already exists")
	case errors.Is(err, storage.ErrLastAdmin):
		return huma.Error409Conflict("refused: " + strconv.Quote(kanade.Clip(username)) + " is the last enabled admin")
	}
	return srv.dbProblem(ctx, "accounts", err)
}

// BootstrapAdmin creates the first admin (control.md §9.3) from
// KANADE_BOOTSTRAP_ADMIN_USER and _PASSWORD when the accounts table is
// empty, with must_change_pw set. It hashes only when the table is empty
// (a restart with the variables still set costs one COUNT), and the insert
// itself only goes into an empty table, so two processes starting at once
// create one admin. created reports whether this call created it.
func BootstrapAdmin(ctx context.Context, db *storage.DB, username, pw string) (created bool, err error) {
	if !kanade.ValidUsername(username) {
		return false, errors.New("bootstrap admin: username " + kanade.RuleUsername)
	}
	if err := password.Check(pw); err != nil {
		return false, errors.New("bootstrap admin: " + err.Error())
	}
	has, err := db.HasAccounts(ctx)
	if err != nil || has {
		return false, err
	}
	h, err := password.Hash(pw, password.Default())
	if err != nil {
		return false, err
	}
	return db.CreateFirstAdmin(ctx, username, h)
}
