package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoleNamesAndOrder(t *testing.T) {
	for _, r := range []Role{Viewer, Operator, Admin} {
		got, ok := ParseRole(r.String())
		if !ok || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "none", "Admin", "root", " admin"} {
		if r, ok := ParseRole(bad); ok {
			t.Errorf("ParseRole(%q) = %v, want no role", bad, r)
		}
	}
	if !(NoRole < Viewer && Viewer < Operator && Operator < Admin) {
		t.Error("roles are not ordered viewer < operator < admin")
	}
	for _, tt := range []struct {
		names []string
		want  Role
	}{
		{nil, Viewer},
		{[]string{"root", "superuser"}, Viewer},
		{[]string{"operator"}, Operator},
		{[]string{"viewer", "admin", "operator"}, Admin},
		{[]string{"ADMIN", "operator"}, Operator},
	} {
		if got := HighestRole(tt.names); got != tt.want {
			t.Errorf("HighestRole(%q) = %v, want %v", tt.names, got, tt.want)
		}
	}
}

func TestForbiddenIsTheSentenceOfTheContract(t *testing.T) {
	for _, tt := range []struct {
		need   Role
		caller Caller
		want   string
	}{
		{Operator, Caller{Subject: "v", Kind: KindJWT, Role: Viewer}, "operator role required (caller is viewer)"},
		{Admin, Caller{Subject: "o", Kind: KindJWT, Role: Operator}, "admin role required (caller is operator)"},
		{Viewer, anonymous, "no authenticated identity"},
		{Viewer, Caller{}, "no authenticated identity"},
	} {
		if got := Forbidden(tt.need, tt.caller); got != tt.want {
			t.Errorf("Forbidden(%v, %+v) = %q, want %q", tt.need, tt.caller, got, tt.want)
		}
		if tt.caller.Allows(tt.need) {
			t.Errorf("%+v allows %v", tt.caller, tt.need)
		}
	}
	if !serviceToken.Allows(Admin) || !authDisabled.Allows(Admin) || !anonymous.Allows(NoRole) {
		t.Error("the static token and auth-disabled must act as admin; anyone may call a public route")
	}
}

// accountsFake is an AccountLookup over a map, counting its calls.
type accountsFake struct {
	accounts map[string]Account
	err      error
	calls    int
}

func (f *accountsFake) lookup(_ context.Context, username string) (Account, error) {
	f.calls++
	if f.err != nil {
		return Account{}, f.err
	}
	a, ok := f.accounts[username]
	if !ok {
		return Account{}, fmt.Errorf("account %q: %w", username, ErrNoAccount)
	}
	return a, nil
}

func jwtFor(sub string, roles string) string {
	return makeJWT(hs256Header, fmt.Sprintf(`{"sub":%q,"aud":"kanade","exp":%d,"roles":%s}`, sub, testNow.Add(time.Hour).Unix(), roles), signHS256(testSecret))
}

func TestTheAccountNotTheTokenSaysTheRole(t *testing.T) {
	fake := &accountsFake{accounts: map[string]Account{
		"alice": {Role: Viewer}, // the token claims admin
		"bob":   {Role: Admin},  // the token claims viewer
		"carol": {Role: Admin, Disabled: true},
	}}
	var logs bytes.Buffer
	cfg := Config{StaticToken: testStatic, JWTSecret: testSecret, Clock: testClock, Accounts: fake.lookup,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for _, tt := range []struct {
		name  string
		authz string
		want  outcome
		// detail of a 401
		detail string
	}{
		{"a viewer account with an admin claim is a viewer", "Bearer " + jwtFor("alice", `["admin"]`),
			ok(&Caller{Subject: "alice", Kind: KindJWT, Role: Viewer}), ""},
		{"an admin account with a viewer claim is an admin", "Bearer " + jwtFor("bob", `["viewer"]`),
			ok(&Caller{Subject: "bob", Kind: KindJWT, Role: Admin}), ""},
		{"a disabled account is 401, not 403", "Bearer " + jwtFor("carol", `["admin"]`), badToken, "account disabled"},
		{"a subject without an account is 401", "Bearer " + jwtFor("mallory", `["admin"]`), badToken, "unknown account"},
		{"the static token needs no account", "Bearer " + testStatic, ok(serviceCaller), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, w := serve(t, cfg, "/api/agents", tt.authz)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if tt.detail != "" {
				var p map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["detail"] != tt.detail {
					t.Errorf("body %s, want detail %q", w.Body, tt.detail)
				}
			}
		})
	}
	before := fake.calls
	serve(t, cfg, "/api/agents", "Bearer "+testStatic)
	if fake.calls != before {
		t.Error("the static token looked up an account")
	}

	// A database that cannot answer refuses every JWT (fail closed), and
	// says why in the log, not in the response.
	fake.err = errors.New("disk I/O error at /var/lib/kanade")
	got, w := serve(t, cfg, "/api/agents", "Bearer "+jwtFor("bob", `["admin"]`))
	if got.Status != http.StatusUnauthorized || got.Reached {
		t.Errorf("with the lookup failing: %+v", got)
	}
	if strings.Contains(w.Body.String(), "disk") || !strings.Contains(w.Body.String(), "auth backend unavailable") {
		t.Errorf("body %s: want the fixed reason only", w.Body)
	}
	if !strings.Contains(logs.String(), "disk I/O error") {
		t.Errorf("the lookup error was not logged: %s", logs.String())
	}
}

func TestOpenPaths(t *testing.T) {
	cfg := Config{StaticToken: testStatic, Clock: testClock, OpenPaths: []string{"/api/auth/login"}}
	for _, tt := range []struct {
		target string
		open   bool
	}{
		{"/api/auth/login", true},
		{"/api/version", true},
		{"/api/auth/login/", false},
		{"/api/auth/login/x", false},
		{"/API/auth/login", false},
		{"/api/auth//login", false},
		{"/api/auth/%6cogin", false},
		{"/api/auth/login.", false},
		{"/api/auth/me", false},
	} {
		got, _ := serve(t, cfg, tt.target, "")
		if got.Reached != tt.open {
			t.Errorf("%s without a token: reached %v, want %v", tt.target, got.Reached, tt.open)
		}
		if got.Reached && got.Caller.Role != NoRole {
			t.Errorf("%s: an anonymous caller has role %v", tt.target, got.Caller.Role)
		}
	}
	for _, bad := range []string{"/metrics", "/api/../metrics", "/api/Auth/login", "/api/auth/login/", "api/x", "/api/{id}"} {
		if _, err := Middleware(Config{StaticToken: testStatic, OpenPaths: []string{bad}}, http.NotFoundHandler()); err == nil {
			t.Errorf("open path %q accepted", bad)
		}
	}
}

func TestIssuedTokensVerify(t *testing.T) {
	exp := testNow.Add(12 * time.Hour)
	tok, err := IssueJWT(testSecret, "alice", Operator, exp)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifyJWT(tok, testSecret, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if claims.sub != "alice" || !cmp.Equal(claims.roles, []string{"operator"}) {
		t.Errorf("claims = %+v", claims)
	}
	parts := strings.Split(tok, ".")
	payload, _ := b64.DecodeString(parts[1])
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sub": "alice", "exp": float64(exp.Unix()), "aud": "kanade", "roles": []any{"operator"}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if _, err := verifyJWT(tok, testSecret, exp.Add(leeway)); !errors.Is(err, errExpired) {
		t.Errorf("at exp+leeway: %v, want expired", err)
	}
	if _, err := verifyJWT(tok, []byte("another-secret-of-enough-bytes-0123"), testNow); !errors.Is(err, errSignature) {
		t.Errorf("other secret: %v", err)
	}
	if _, err := IssueJWT(nil, "alice", Admin, exp); err == nil {
		t.Error("issued without a secret")
	}
	if _, err := IssueJWT(testSecret, "alice", NoRole, exp); err == nil {
		t.Error("issued without a role")
	}
}

// TestOneLookupPerRequest: the account is read on every request (nothing
// cached in the process, which may be one of many), and once.
func TestOneLookupPerRequest(t *testing.T) {
	fake := &accountsFake{accounts: map[string]Account{"bob": {Role: Operator}}}
	h := mustMiddleware(t, Config{JWTSecret: testSecret, Clock: testClock, Accounts: fake.lookup}, http.NotFoundHandler())
	tok := jwtFor("bob", `["operator"]`)
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/api/agents", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if fake.calls != 3 {
		t.Errorf("%d lookups for 3 requests", fake.calls)
	}
}
