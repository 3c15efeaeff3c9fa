package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/auth/password"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/storage"
)

// acctEnv is a handler with accounts: a JWT secret, a fake clock, real
// SQLite and NATS, and every log line (debug included) captured.
type acctEnv struct {
	*manageEnv
	logs *testkit.SyncBuffer
}

const rootPassword = "root-password-Qw3rty!"

func newAcctEnv(t *testing.T, tweak func(*handlers.Config)) *acctEnv {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	e := &acctEnv{logs: logs}
	e.manageEnv = newManageEnv(t, func(c *handlers.Config) {
		l := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Logger, c.Auth.Logger = l, l
		if tweak != nil {
			tweak(c)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	// The first admin as BootstrapAdmin makes it (TestBootstrapAdmin tests
	// that), at the tests' password cost.
	hash, err := password.Hash(rootPassword, testPasswordCost)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := e.db.CreateFirstAdmin(context.Background(), "root", hash); err != nil || !created {
		t.Fatalf("first admin: %v, %v", created, err)
	}
	return e
}

// call serves one request from addr (host:port) with token ("" for none).
func (e *acctEnv) call(token, addr, method, path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
	}
	r.RemoteAddr = addr
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// expect fails the test unless rec has status want.
func expect(t *testing.T, rec *httptest.ResponseRecorder, want int, what string) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, rec.Code, want, rec.Body)
	}
}

func loginBody(user, pw string) string {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return string(b)
}

type loginAnswer struct {
	Token        string `json:"token"`
	Role         string `json:"role"`
	MustChangePW bool   `json:"must_change_pw"`
	Exp          int64  `json:"exp"`
}

// login logs in from 192.0.2.1 and fails the test unless it succeeds.
func (e *acctEnv) login(user, pw string) loginAnswer {
	e.t.Helper()
	rec := e.call("", "192.0.2.1:4000", http.MethodPost, "/api/auth/login", loginBody(user, pw))
	expect(e.t, rec, http.StatusOK, "login "+user)
	var a loginAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// addAccount creates an account through the API as the static token.
func (e *acctEnv) addAccount(user, pw, role string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"username":%q,"password":%q,"role":%q}`, user, pw, role)
	expect(e.t, e.call(testToken, "192.0.2.9:1", http.MethodPost, "/api/accounts", body), http.StatusCreated, "create "+user)
}

func detail(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var p struct {
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return p.Detail
}

func TestLoginIssuesATokenForTheAccount(t *testing.T) {
	e := newAcctEnv(t, nil)
	a := e.login("root", rootPassword)
	if a.Role != "admin" || !a.MustChangePW || a.Exp != manageNow.Add(12*time.Hour).Unix() {
		t.Errorf("login answer %+v: want admin, must_change_pw (bootstrap), exp now+12h", a)
	}
	rec := e.call(a.Token, "192.0.2.1:4000", http.MethodGet, "/api/auth/me", "")
	expect(t, rec, http.StatusOK, "me")
	want := map[string]any{"username": "root", "role": "admin", "must_change_pw": true}
	if diff := cmp.Diff(want, decode(t, rec)); diff != "" {
		t.Errorf("me (-want +got):\n%s", diff)
	}
	rec = e.call(testToken, "192.0.2.1:4000", http.MethodGet, "/api/auth/me", "")
	want = map[string]any{"username": "service-token", "role": "admin", "must_change_pw": false}
	if diff := cmp.Diff(want, decode(t, rec)); diff != "" {
		t.Errorf("me as the static token (-want +got):\n%s", diff)
	}
	if cc := e.call("", "192.0.2.1:4000", http.MethodPost, "/api/auth/login", loginBody("root", rootPassword)).Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("login Cache-Control %q, want no-store", cc)
	}
}

func TestEveryLoginFailureSaysOnlyInvalidCredentials(t *testing.T) {
	e := newAcctEnv(t, nil)
	e.addAccount("dora", "dora-password-1", "operator")
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/dora", `{"disabled":true}`), http.StatusOK, "disable dora")
	var bodies []string
	for i, c := range []struct{ user, pw string }{
		{"root", "wrong-password"},
		{"nobody", rootPassword},
		{"dora", "dora-password-1"}, // right password, disabled account
		{"Root", rootPassword},      // names are case-sensitive
		{"root", ""},
	} {
		// A fresh address each time: this test is not about throttling.
		rec := e.call("", fmt.Sprintf("198.51.100.%d:5000", i), http.MethodPost, "/api/auth/login", loginBody(c.user, c.pw))
		expect(t, rec, http.StatusUnauthorized, c.user+" / "+c.pw)
		bodies = append(bodies, rec.Body.String())
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("failures differ: %s vs %s", bodies[0], b)
		}
	}
	if !strings.Contains(bodies[0], `"detail":"invalid credentials"`) {
		t.Errorf("failure body %s", bodies[0])
	}
}

func TestFailedLoginsAreThrottled(t *testing.T) {
	e := newAcctEnv(t, nil)
	e.addAccount("erin", "erin-password-1", "viewer")
	attempt := func(user, pw, addr string) *httptest.ResponseRecorder {
		return e.call("", addr, http.MethodPost, "/api/auth/login", loginBody(user, pw))
	}

	// Per username: ten failures from ten addresses, then even the right
	// password is refused, from anywhere, until the window has room.
	for i := range 10 {
		e.set(manageNow.Add(time.Duration(i) * time.Second))
		expect(t, attempt("erin", "guess", fmt.Sprintf("203.0.113.%d:1", i)), http.StatusUnauthorized, "guess")
	}
	e.set(manageNow.Add(20 * time.Second))
	rec := attempt("erin", "erin-password-1", "192.0.2.77:1")
	expect(t, rec, http.StatusTooManyRequests, "eleventh attempt")
	// The first failure (at +0 s) leaves the window at +60 s: 40 s to go.
	if ra := rec.Header().Get("Retry-After"); ra != "40" {
		t.Errorf("Retry-After %q, want 40", ra)
	}
	if strings.Contains(rec.Body.String(), "erin-password-1") {
		t.Error("the 429 quotes the password")
	}
	// Another account is not affected.
	expect(t, attempt("root", rootPassword, "192.0.2.78:1"), http.StatusOK, "root meanwhile")
	e.set(manageNow.Add(60 * time.Second))
	expect(t, attempt("erin", "erin-password-1", "192.0.2.77:1"), http.StatusOK, "erin after the window")
	// A success clears the username's failures: ten more may fail.
	for i := range 10 {
		expect(t, attempt("erin", "guess", fmt.Sprintf("203.0.113.%d:2", 50+i)), http.StatusUnauthorized, "guess after success")
	}

	// Per address: ten usernames sprayed from one address, then that
	// address is refused for any username; another address is not.
	e.set(manageNow.Add(10 * time.Minute))
	for i := range 10 {
		expect(t, attempt(fmt.Sprintf("user%d", i), "guess", "198.51.100.7:4444"), http.StatusUnauthorized, "spray")
	}
	rec = attempt("root", rootPassword, "198.51.100.7:5555") // another port, same host
	expect(t, rec, http.StatusTooManyRequests, "spray address")
	if ra := rec.Header().Get("Retry-After"); ra != "60" {
		t.Errorf("Retry-After %q, want 60", ra)
	}
	expect(t, attempt("root", rootPassword, "198.51.100.8:4444"), http.StatusOK, "another address")
	// IPv6 clients are counted by their /64.
	e.set(manageNow.Add(20 * time.Minute))
	for i := range 10 {
		expect(t, attempt("nobody", "guess", fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1)), http.StatusUnauthorized, "ipv6 spray")
	}
	expect(t, attempt("root", rootPassword, "[2001:db8:1:2:ffff::1]:1"), http.StatusTooManyRequests, "same /64")
	expect(t, attempt("root", rootPassword, "[2001:db8:1:3::1]:1"), http.StatusOK, "next /64")
}

func TestTokensExpireOnTheInjectedClock(t *testing.T) {
	e := newAcctEnv(t, nil)
	a := e.login("root", rootPassword)
	e.set(manageNow.Add(12*time.Hour - time.Second))
	expect(t, e.call(a.Token, "192.0.2.1:1", http.MethodGet, "/api/auth/me", ""), http.StatusOK, "just before exp")
	e.set(manageNow.Add(12*time.Hour + 5*time.Second)) // past the 5 s leeway
	rec := e.call(a.Token, "192.0.2.1:1", http.MethodGet, "/api/auth/me", "")
	expect(t, rec, http.StatusUnauthorized, "after exp")
	if d := detail(t, rec); d != "token has expired" {
		t.Errorf("detail %q", d)
	}
}

// TestTheAccountIsReadOnEveryRequest: a disable, a demotion or a deletion
// takes effect on the token already issued, at once.
func TestTheAccountIsReadOnEveryRequest(t *testing.T) {
	e := newAcctEnv(t, nil)
	e.addAccount("olga", "olga-password-1", "operator")
	tok := e.login("olga", "olga-password-1").Token
	expect(t, e.call(tok, "192.0.2.1:1", http.MethodDelete, "/api/freeze", ""), http.StatusNoContent, "operator clears the freeze")

	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/olga", `{"role":"viewer"}`), http.StatusOK, "demote")
	rec := e.call(tok, "192.0.2.1:1", http.MethodDelete, "/api/freeze", "")
	expect(t, rec, http.StatusForbidden, "demoted")
	if d := detail(t, rec); d != "operator role required (caller is viewer)" {
		t.Errorf("403 detail %q", d)
	}

	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/olga", `{"disabled":true}`), http.StatusOK, "disable")
	rec = e.call(tok, "192.0.2.1:1", http.MethodGet, "/api/auth/me", "")
	expect(t, rec, http.StatusUnauthorized, "disabled")
	if d := detail(t, rec); d != "account disabled" {
		t.Errorf("detail %q", d)
	}

	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodDelete, "/api/accounts/olga", ""), http.StatusNoContent, "delete")
	rec = e.call(tok, "192.0.2.1:1", http.MethodGet, "/api/auth/me", "")
	expect(t, rec, http.StatusUnauthorized, "deleted")
	if d := detail(t, rec); d != "unknown account" {
		t.Errorf("detail %q", d)
	}
}

func TestLastEnabledAdminCannotBeRemoved(t *testing.T) {
	e := newAcctEnv(t, nil)
	root := e.login("root", rootPassword).Token
	for _, c := range []struct{ method, body string }{
		{http.MethodPatch, `{"role":"operator"}`},
		{http.MethodPatch, `{"disabled":true}`},
		{http.MethodPatch, `{"role":"viewer","password":"a-new-password"}`},
		{http.MethodDelete, ""},
	} {
		rec := e.call(root, "192.0.2.1:1", c.method, "/api/accounts/root", c.body)
		expect(t, rec, http.StatusConflict, c.method+" "+c.body)
	}
	// Nothing changed, the password of the refused PATCH included.
	e.login("root", rootPassword)

	e.addAccount("ann", "ann-password-1", "admin")
	expect(t, e.call(root, "192.0.2.1:1", http.MethodPatch, "/api/accounts/root", `{"role":"operator"}`), http.StatusOK, "demote root beside ann")
	// root is an operator now: the accounts are out of reach at once.
	rec := e.call(root, "192.0.2.1:1", http.MethodGet, "/api/accounts", "")
	expect(t, rec, http.StatusForbidden, "root as operator")
	if d := detail(t, rec); d != "admin role required (caller is operator)" {
		t.Errorf("403 detail %q", d)
	}
	ann := e.login("ann", "ann-password-1").Token
	expect(t, e.call(ann, "192.0.2.1:1", http.MethodDelete, "/api/accounts/ann", ""), http.StatusConflict, "ann deletes herself, the last admin")
	expect(t, e.call(ann, "192.0.2.1:1", http.MethodDelete, "/api/accounts/root", ""), http.StatusNoContent, "ann deletes root")
}

func TestChangePassword(t *testing.T) {
	e := newAcctEnv(t, nil)
	tok := e.login("root", rootPassword).Token
	change := func(token, old, new string) *httptest.ResponseRecorder {
		body, _ := json.Marshal(map[string]string{"old_password": old, "new_password": new})
		return e.call(token, "192.0.2.1:1", http.MethodPost, "/api/auth/change-password", string(body))
	}
	rec := change(tok, "not-it", "brand-new-password")
	expect(t, rec, http.StatusUnauthorized, "wrong old password")
	if d := detail(t, rec); d != "invalid credentials" {
		t.Errorf("detail %q", d)
	}
	rec = change(tok, rootPassword, "short")
	expect(t, rec, http.StatusUnprocessableEntity, "short new password")
	if strings.Contains(rec.Body.String(), "short\"") || strings.Contains(rec.Body.String(), rootPassword) {
		t.Errorf("the 422 quotes a password: %s", rec.Body)
	}
	expect(t, change(testToken, rootPassword, "brand-new-password"), http.StatusConflict, "the static token has no password")
	expect(t, change(tok, rootPassword, "brand-new-password"), http.StatusNoContent, "change")

	a := e.login("root", "brand-new-password")
	if a.MustChangePW {
		t.Error("must_change_pw still set after the change")
	}
	expect(t, e.call("", "192.0.2.1:4000", http.MethodPost, "/api/auth/login", loginBody("root", rootPassword)), http.StatusUnauthorized, "old password")
}

func TestAccountsCRUD(t *testing.T) {
	e := newAcctEnv(t, nil)
	e.set(manageNow.Add(time.Minute))
	rec := e.call(testToken, "192.0.2.9:1", http.MethodPost, "/api/accounts", `{"username":"j.doe@example.com","password":"j-password-1","role":"viewer","must_change_pw":true}`)
	expect(t, rec, http.StatusCreated, "create")
	stamp := manageNow.Add(time.Minute).Format("2006-01-02T15:04:05.000000000Z")
	want := map[string]any{"username": "j.doe@example.com", "role": "viewer", "disabled": false, "must_change_pw": true,
		"created_at": stamp, "updated_at": stamp}
	if diff := cmp.Diff(want, decode(t, rec)); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPost, "/api/accounts", `{"username":"j.doe@example.com","password":"j-password-2","role":"admin"}`),
		http.StatusConflict, "duplicate")
	for name, body := range map[string]string{
		"username with a space": `{"username":"j doe","password":"j-password-1","role":"viewer"}`,
		"empty username":        `{"username":"","password":"j-password-1","role":"viewer"}`,
		"short password":        `{"username":"kim","password":"kim-pw","role":"viewer"}`,
		"unknown role":          `{"username":"kim","password":"kim-password","role":"root"}`,
		"missing role":          `{"username":"kim","password":"kim-password"}`,
	} {
		rec := e.call(testToken, "192.0.2.9:1", http.MethodPost, "/api/accounts", body)
		expect(t, rec, http.StatusUnprocessableEntity, name)
		if strings.Contains(rec.Body.String(), "kim-pw") {
			t.Errorf("%s: the 422 quotes the password: %s", name, rec.Body)
		}
	}

	rec = e.call(testToken, "192.0.2.9:1", http.MethodGet, "/api/accounts", "")
	expect(t, rec, http.StatusOK, "list")
	var list []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 2 ||
		list[0]["username"] != "j.doe@example.com" || list[1]["username"] != "root" {
		t.Errorf("list %s (%v)", rec.Body, err)
	}

	rec = e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/j.doe@example.com", `{"role":"operator","password":"reset-password-1"}`)
	expect(t, rec, http.StatusOK, "patch")
	if m := decode(t, rec); m["role"] != "operator" || m["must_change_pw"] != true {
		t.Errorf("patched %v", m)
	}
	if a := e.login("j.doe@example.com", "reset-password-1"); a.Role != "operator" || !a.MustChangePW {
		t.Errorf("login after the reset: %+v", a)
	}
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/j.doe@example.com", `{}`), http.StatusUnprocessableEntity, "empty patch")
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodPatch, "/api/accounts/nobody", `{"disabled":true}`), http.StatusNotFound, "patch nobody")
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodDelete, "/api/accounts/nobody", ""), http.StatusNotFound, "delete nobody")
	expect(t, e.call(testToken, "192.0.2.9:1", http.MethodDelete, "/api/accounts/j.doe@example.com", ""), http.StatusNoContent, "delete")

	// Every change is audited as operator with the caller in sub, never
	// with a password.
	events := e.audits()
	var actions []string
	for _, m := range events {
		if strings.Contains(m.Subject, "account_") {
			actions = append(actions, m.Subject)
		}
		if b, _ := json.Marshal(m.Event); strings.Contains(string(b), "password-1") {
			t.Errorf("audit event carries a password: %s", b)
		}
	}
	wantActions := []string{"audit.operator.account_create", "audit.operator.account_update", "audit.operator.account_delete"}
	if diff := cmp.Diff(wantActions, actions); diff != "" {
		t.Errorf("audit subjects (-want +got):\n%s", diff)
	}
}

func TestLoginNeedsAJWTSecret(t *testing.T) {
	e := newAcctEnv(t, func(c *handlers.Config) { c.Auth.JWTSecret = nil })
	rec := e.call("", "192.0.2.1:1", http.MethodPost, "/api/auth/login", loginBody("root", rootPassword))
	expect(t, rec, http.StatusServiceUnavailable, "login without a secret")
	if !strings.Contains(detail(t, rec), "KANADE_JWT_SECRET") {
		t.Errorf("detail %q does not say what to set", detail(t, rec))
	}
}

// TestPasswordsAndHashesNeverLeave runs every account operation with the
// logger at debug level and checks that no response body, header or log
// line carries a password, a stored hash or any piece of one.
func TestPasswordsAndHashesNeverLeave(t *testing.T) {
	e := newAcctEnv(t, nil)
	var responses []*httptest.ResponseRecorder
	do := func(token, method, path, body string) *httptest.ResponseRecorder {
		rec := e.call(token, "192.0.2.1:1", method, path, body)
		responses = append(responses, rec)
		return rec
	}
	passwords := []string{rootPassword, "wrong-password-zz", "pat-password-1", "pat-reset-pw-2", "pat-final-pw-3", "tiny"}
	root := decodeLogin(t, do("", http.MethodPost, "/api/auth/login", loginBody("root", rootPassword)))
	do("", http.MethodPost, "/api/auth/login", loginBody("root", "wrong-password-zz"))
	do("", http.MethodPost, "/api/auth/login", loginBody("nobody", "wrong-password-zz"))
	do(root, http.MethodPost, "/api/accounts", `{"username":"pat","password":"pat-password-1","role":"operator"}`)
	do(root, http.MethodPost, "/api/accounts", `{"username":"tim","password":"tiny","role":"operator"}`)
	do(root, http.MethodPatch, "/api/accounts/pat", `{"password":"pat-reset-pw-2"}`)
	pat := decodeLogin(t, do("", http.MethodPost, "/api/auth/login", loginBody("pat", "pat-reset-pw-2")))
	do(pat, http.MethodPost, "/api/auth/change-password", `{"old_password":"wrong-password-zz","new_password":"pat-final-pw-3"}`)
	do(pat, http.MethodPost, "/api/auth/change-password", `{"old_password":"pat-reset-pw-2","new_password":"tiny"}`)
	do(pat, http.MethodPost, "/api/auth/change-password", `{"old_password":"pat-reset-pw-2","new_password":"pat-final-pw-3"}`)
	do(root, http.MethodGet, "/api/accounts", "")
	do(pat, http.MethodGet, "/api/auth/me", "")
	do("", http.MethodGet, "/api/openapi.json", "")

	var secrets []string
	for _, u := range []string{"root", "pat"} {
		c, err := e.db.Credentials(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(c.Hash, "$") // "", argon2id, v=19, params, salt, key
		secrets = append(secrets, c.Hash, parts[4], parts[5])
	}
	secrets = append(secrets, passwords...)
	logs := e.logs.String()
	if !strings.Contains(logs, "login refused") {
		t.Fatalf("the log misses the refused logins, so this test sees nothing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log carries %q", s)
		}
		for _, rec := range responses {
			if strings.Contains(rec.Body.String(), s) || strings.Contains(fmt.Sprint(rec.Header()), s) {
				t.Errorf("a response carries %q: %s", s, rec.Body)
			}
		}
	}
	for _, rec := range responses {
		if strings.Contains(rec.Body.String(), "argon2") || strings.Contains(rec.Body.String(), "password_hash") {
			t.Errorf("a response names the hash: %s", rec.Body)
		}
	}
}

func decodeLogin(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	expect(t, rec, http.StatusOK, "login")
	var a loginAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a.Token
}

func TestBootstrapAdmin(t *testing.T) {
	ctx := context.Background()
	e := newManageEnv(t, nil)
	if _, err := handlers.BootstrapAdmin(ctx, e.db, "admin", "short"); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("short password: %v", err)
	}
	if _, err := handlers.BootstrapAdmin(ctx, e.db, "bad name", "long-enough-pw"); err == nil {
		t.Error("a username with a space was accepted")
	}
	created, err := handlers.BootstrapAdmin(ctx, e.db, "admin", "long-enough-pw")
	if err != nil || !created {
		t.Fatalf("first: %v, %v", created, err)
	}
	// A restart with the variables still set, or another name, adds nothing.
	for _, name := range []string{"admin", "other"} {
		if created, err := handlers.BootstrapAdmin(ctx, e.db, name, "another-password"); err != nil || created {
			t.Errorf("again as %s: %v, %v", name, created, err)
		}
	}
	list, err := e.db.ListAccounts(ctx)
	if err != nil || len(list) != 1 || list[0].Role != "admin" || !list[0].MustChangePassword {
		t.Errorf("accounts %+v, %v", list, err)
	}
	if _, err := e.db.UpdateAccount(ctx, "admin", storage.AccountChange{}); err != nil {
		t.Error(err)
	}
}

// TestAccountsAreHashedAtTheDefaultCost: a server configured without a
// PasswordCost (every shell) stores password.Default()'s argon2id cost;
// only tests lower it.
func TestAccountsAreHashedAtTheDefaultCost(t *testing.T) {
	e := newAcctEnv(t, func(c *handlers.Config) { c.PasswordCost = password.Params{} })
	e.addAccount("dora", "dora-password-1", "viewer")
	c, err := e.db.Credentials(context.Background(), "dora")
	if err != nil {
		t.Fatal(err)
	}
	d := password.Default()
	if want := fmt.Sprintf("$m=%d,t=%d,p=%d$", d.MemoryKiB, d.Time, d.Threads); !strings.Contains(c.Hash, want) {
		t.Errorf("stored hash %.40s…, want the cost %s", c.Hash, want)
	}
}
