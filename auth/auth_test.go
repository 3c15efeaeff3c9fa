package auth

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	testNow    = time.Date(2026, 6, 20, 1, 2, 3, 0, time.UTC)
	testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	testStatic = "static-token-0123456789abcdefXYZ"
)

func testClock() time.Time { return testNow }

func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signHS256 returns a signer producing HS256 MACs with secret.
func signHS256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// makeJWT builds a compact JWS from literal JSON so tests can write headers
// and claims no well-behaved library would produce.
func makeJWT(header, claims string, sign func([]byte) []byte) string {
	in := b64s(header) + "." + b64s(claims)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(in)))
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

// claimsJSON is a valid claim set expiring in an hour, with extra members
// appended verbatim.
func claimsJSON(extra string) string {
	c := fmt.Sprintf(`{"sub":"alice","aud":"kanade","exp":%d`, testNow.Add(time.Hour).Unix())
	if extra != "" {
		c += "," + extra
	}
	return c + "}"
}

func validJWT() string {
	return makeJWT(hs256Header, claimsJSON(`"roles":["admin","viewer"]`), signHS256(testSecret))
}

// recorder is the next handler: it remembers whether it was reached and
// with which caller.
type recorder struct {
	reached bool
	caller  *Caller
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.reached = true
	if c, ok := CallerFrom(r.Context()); ok {
		rec.caller = &c
	}
	w.WriteHeader(http.StatusTeapot)
}

func mustMiddleware(t *testing.T, cfg Config, next http.Handler) http.Handler {
	t.Helper()
	h, err := Middleware(cfg, next)
	if err != nil {
		t.Fatalf("Middleware: %v", err)
	}
	return h
}

type outcome struct {
	Status    int
	Challenge string
	Reached   bool
	Caller    *Caller
}

func serve(t *testing.T, cfg Config, target, authz string) (outcome, *httptest.ResponseRecorder) {
	t.Helper()
	rec := &recorder{}
	h := mustMiddleware(t, cfg, rec)
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return outcome{
		Status:    w.Code,
		Challenge: w.Header().Get("WWW-Authenticate"),
		Reached:   rec.reached,
		Caller:    rec.caller,
	}, w
}

var (
	serviceCaller = &Caller{Subject: "service-token", Kind: KindServiceToken, Role: Admin}
	aliceCaller   = &Caller{Subject: "alice", Kind: KindJWT, Role: Admin} // roles ["admin","viewer"]: the highest
	offCaller     = &Caller{Subject: "auth-disabled", Kind: KindAnonymous, Role: Admin}
)

func ok(c *Caller) outcome { return outcome{Status: http.StatusTeapot, Reached: true, Caller: c} }

var (
	noAuth     = outcome{Status: 401, Challenge: "Bearer"}
	badToken   = outcome{Status: 401, Challenge: `Bearer error="invalid_token"`}
	badRequest = outcome{Status: 401, Challenge: `Bearer error="invalid_request"`}
)

func TestMiddlewareModesAndPrecedence(t *testing.T) {
	disabled := Config{Disabled: true, StaticToken: testStatic, JWTSecret: testSecret, Clock: testClock}
	static := Config{StaticToken: testStatic, Clock: testClock}
	jwt := Config{JWTSecret: testSecret, Clock: testClock}
	both := Config{StaticToken: testStatic, JWTSecret: testSecret, Clock: testClock}
	otherJWT := makeJWT(hs256Header, claimsJSON(""), signHS256([]byte("another-secret-of-32-bytes-length!!")))

	tests := []struct {
		name  string
		cfg   Config
		authz string
		want  outcome
	}{
		{"disabled opens /api without a token", disabled, "", ok(offCaller)},
		{"disabled ignores a wrong token", disabled, "Bearer nope", ok(offCaller)},

		{"static only: missing header is 401", static, "", noAuth},
		{"static only: the static token passes as service-token", static, "Bearer " + testStatic, ok(serviceCaller)},
		{"static only: a wrong token is 401", static, "Bearer " + testStatic + "x", badToken},
		{"static only: a prefix of the token is 401", static, "Bearer " + testStatic[:10], badToken},
		{"static only: a valid JWT is 401 without a secret", static, "Bearer " + validJWT(), badToken},

		{"jwt only: missing header is 401", jwt, "", noAuth},
		{"jwt only: a valid JWT passes with its claims", jwt, "Bearer " + validJWT(), ok(aliceCaller)},
		{"jwt only: the static token string is just a bad token", jwt, "Bearer " + testStatic, badToken},
		{"jwt only: a JWT signed with another secret is 401", jwt, "Bearer " + otherJWT, badToken},

		{"both: static token wins", both, "Bearer " + testStatic, ok(serviceCaller)},
		{"both: static mismatch falls through to a valid JWT", both, "Bearer " + validJWT(), ok(aliceCaller)},
		{"both: both wrong is 401", both, "Bearer " + otherJWT, badToken},
		{"both: garbage is 401", both, "Bearer garbage", badToken},

		// RFC 9110 §11.1: the scheme is case-insensitive; 1*SP may separate it.
		{"lower-case bearer scheme is accepted", both, "bearer " + testStatic, ok(serviceCaller)},
		{"upper-case BEARER scheme is accepted", both, "BEARER " + testStatic, ok(serviceCaller)},
		{"two spaces after the scheme are accepted", both, "Bearer  " + testStatic, ok(serviceCaller)},
		{"Basic scheme is refused without an error code", both, "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+testStatic)), noAuth},
		{"the token without a scheme is refused", both, testStatic, noAuth},
		{"Bearer with no token is missing", both, "Bearer", noAuth},
		{"a tab instead of a space is not Bearer", both, "Bearer\t" + testStatic, noAuth},
		{"a token with inner whitespace is malformed", both, "Bearer " + testStatic + " extra", badToken},
		{"an oversized token is refused", both, "Bearer " + strings.Repeat("a", maxTokenLen+1), badToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := serve(t, tt.cfg, "/api/agents", tt.authz)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	rec := &recorder{}
	h := mustMiddleware(t, Config{StaticToken: testStatic}, rec)
	req := httptest.NewRequest(http.MethodGet, "/api/agents", nil)
	req.Header.Add("Authorization", "Bearer "+testStatic)
	req.Header.Add("Authorization", "Bearer "+testStatic)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	got := outcome{Status: w.Code, Challenge: w.Header().Get("WWW-Authenticate"), Reached: rec.reached, Caller: rec.caller}
	if diff := cmp.Diff(badRequest, got); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
}

func TestMiddlewareConfigErrors(t *testing.T) {
	next := &recorder{}
	tests := []struct {
		name    string
		cfg     Config
		next    http.Handler
		wantErr bool
	}{
		{"nothing configured and not disabled is a start-up error", Config{}, next, true},
		{"an empty secret slice counts as none", Config{JWTSecret: []byte{}}, next, true},
		{"a static token with a space could never be sent", Config{StaticToken: "two words-long-enough"}, next, true},
		{"a static token with a newline could never be sent", Config{StaticToken: "abcdefghijklmnopq\n"}, next, true},
		{"a nil next handler is an error", Config{StaticToken: testStatic}, nil, true},
		{"disabled needs no credentials", Config{Disabled: true}, next, false},
		{"static token alone is enough", Config{StaticToken: testStatic}, next, false},
		{"JWT secret alone is enough", Config{JWTSecret: testSecret}, next, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Middleware(tt.cfg, tt.next)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Middleware error = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && h == nil {
				t.Fatal("Middleware returned a nil handler and no error")
			}
		})
	}
}

func TestJWTValidation(t *testing.T) {
	sign := signHS256(testSecret)
	exp := testNow.Add(time.Hour).Unix()
	claims := func(s string) string { return s } // readability in the table

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signRS256 := func(in []byte) []byte {
		d := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(nil, rsaKey, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	signHS384 := func(in []byte) []byte {
		m := hmac.New(sha512.New384, testSecret)
		m.Write(in)
		return m.Sum(nil)
	}
	signHS512 := func(in []byte) []byte {
		m := hmac.New(sha512.New, testSecret)
		m.Write(in)
		return m.Sum(nil)
	}
	noSig := func([]byte) []byte { return nil }

	valid := validJWT()
	parts := strings.Split(valid, ".")
	// Flip one character in the middle of the signature.
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	// Swap in other claims but keep the old signature.
	tamperedClaims := parts[0] + "." + b64s(claimsJSON(`"roles":["root"]`)) + "." + parts[2]

	tests := []struct {
		name       string
		token      string
		clock      time.Time
		wantCaller *Caller
		wantDetail string
	}{
		{"a valid token passes", valid, testNow, aliceCaller, ""},
		{"roles are optional", makeJWT(hs256Header, claimsJSON(""), sign), testNow,
			&Caller{Subject: "alice", Kind: KindJWT, Role: Viewer}, ""},
		{"a header without typ is fine", makeJWT(`{"alg":"HS256"}`, claimsJSON(""), sign), testNow,
			&Caller{Subject: "alice", Kind: KindJWT, Role: Viewer}, ""},
		{"aud as an array containing kanade passes",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":["other","kanade"],"exp":%d}`, exp)), sign), testNow,
			&Caller{Subject: "bob", Kind: KindJWT, Role: Viewer}, ""},
		{"a fractional exp is a NumericDate too",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":"kanade","exp":%d.5}`, exp)), sign), testNow,
			&Caller{Subject: "bob", Kind: KindJWT, Role: Viewer}, ""},

		// Audience.
		{"a wrong audience is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":"other","exp":%d}`, exp)), sign), testNow,
			nil, "token audience does not include kanade"},
		{"an array audience without kanade is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":["a","b"],"exp":%d}`, exp)), sign), testNow,
			nil, "token audience does not include kanade"},
		{"audience matching is case-sensitive",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":"Kanade","exp":%d}`, exp)), sign), testNow,
			nil, "token audience does not include kanade"},
		{"a missing audience is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","exp":%d}`, exp)), sign), testNow,
			nil, "token audience does not include kanade"},
		{"an audience of the wrong type is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":7,"exp":%d}`, exp)), sign), testNow,
			nil, "token has an invalid claim"},

		// Time.
		{"a missing exp is refused",
			makeJWT(hs256Header, `{"sub":"bob","aud":"kanade"}`, sign), testNow,
			nil, "token has no exp claim"},
		{"an exp given as a string is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"bob","aud":"kanade","exp":"%d"}`, exp)), sign), testNow,
			nil, "token has an invalid claim"},
		{"a negative exp is refused",
			makeJWT(hs256Header, `{"sub":"bob","aud":"kanade","exp":-1}`, sign), testNow,
			nil, "token has an invalid claim"},
		{"an expired token is refused", valid, testNow.Add(2 * time.Hour), nil, "token has expired"},
		{"exp within the leeway still passes", valid, testNow.Add(time.Hour + leeway - time.Second), aliceCaller, ""},
		{"exp exactly at the end of the leeway is refused", valid, testNow.Add(time.Hour + leeway), nil, "token has expired"},
		{"nbf in the future is refused",
			makeJWT(hs256Header, claimsJSON(fmt.Sprintf(`"nbf":%d`, testNow.Add(time.Minute).Unix())), sign), testNow,
			nil, "token is not valid yet"},
		{"nbf within the leeway passes",
			makeJWT(hs256Header, claimsJSON(fmt.Sprintf(`"nbf":%d`, testNow.Add(leeway-time.Second).Unix())), sign), testNow,
			&Caller{Subject: "alice", Kind: KindJWT, Role: Viewer}, ""},
		{"nbf in the past passes",
			makeJWT(hs256Header, claimsJSON(fmt.Sprintf(`"nbf":%d`, testNow.Add(-time.Minute).Unix())), sign), testNow,
			&Caller{Subject: "alice", Kind: KindJWT, Role: Viewer}, ""},

		// Subject and roles.
		{"a missing sub is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"aud":"kanade","exp":%d}`, exp)), sign), testNow,
			nil, "token has no sub claim"},
		{"an empty sub is refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"","aud":"kanade","exp":%d}`, exp)), sign), testNow,
			nil, "token has no sub claim"},
		{"roles that are not strings are refused",
			makeJWT(hs256Header, claimsJSON(`"roles":[1,2]`), sign), testNow,
			nil, "token has an invalid claim"},
		{"roles given as one string are refused",
			makeJWT(hs256Header, claimsJSON(`"roles":"admin"`), sign), testNow,
			nil, "token has an invalid claim"},
		{"null roles are refused",
			makeJWT(hs256Header, claimsJSON(`"roles":null`), sign), testNow,
			nil, "token has an invalid claim"},

		// Algorithms and header.
		{"alg none with no signature is refused", makeJWT(`{"alg":"none","typ":"JWT"}`, claimsJSON(""), noSig) + "", testNow,
			nil, "malformed token"},
		{"alg none with an HS256 signature is refused", makeJWT(`{"alg":"none"}`, claimsJSON(""), sign), testNow,
			nil, "token algorithm must be HS256"},
		{"alg None is refused", makeJWT(`{"alg":"None"}`, claimsJSON(""), sign), testNow,
			nil, "token algorithm must be HS256"},
		{"lower-case hs256 is refused", makeJWT(`{"alg":"hs256"}`, claimsJSON(""), sign), testNow,
			nil, "token algorithm must be HS256"},
		{"a missing alg is refused", makeJWT(`{"typ":"JWT"}`, claimsJSON(""), sign), testNow,
			nil, "token algorithm must be HS256"},
		{"an HS384 token is refused", makeJWT(`{"alg":"HS384","typ":"JWT"}`, claimsJSON(""), signHS384), testNow,
			nil, "token algorithm must be HS256"},
		{"an HS512 token is refused", makeJWT(`{"alg":"HS512","typ":"JWT"}`, claimsJSON(""), signHS512), testNow,
			nil, "token algorithm must be HS256"},
		{"an RS256 token is refused", makeJWT(`{"alg":"RS256","typ":"JWT"}`, claimsJSON(""), signRS256), testNow,
			nil, "token algorithm must be HS256"},
		{"an RS256 header over an HS256 MAC is refused", makeJWT(`{"alg":"RS256"}`, claimsJSON(""), sign), testNow,
			nil, "token algorithm must be HS256"},
		{"a crit header is refused even when signed", makeJWT(`{"alg":"HS256","crit":["exp"]}`, claimsJSON(""), sign), testNow,
			nil, "token has critical header parameters"},
		{"a duplicate alg is refused", makeJWT(`{"alg":"none","alg":"HS256"}`, claimsJSON(""), sign), testNow,
			nil, "malformed token"},

		// Signature.
		{"a tampered signature is refused", tamperedSig, testNow, nil, "token signature is invalid"},
		{"tampered claims are refused", tamperedClaims, testNow, nil, "token signature is invalid"},
		{"a truncated signature is refused", parts[0] + "." + parts[1] + "." + parts[2][:20], testNow, nil, "token signature is invalid"},

		// Segments and encoding.
		{"two segments are refused", parts[0] + "." + parts[1], testNow, nil, "invalid token"},
		{"four segments are refused", valid + "." + parts[2], testNow, nil, "invalid token"},
		{"an empty signature segment is refused", parts[0] + "." + parts[1] + ".", testNow, nil, "malformed token"},
		{"an empty header segment is refused", "." + parts[1] + "." + parts[2], testNow, nil, "malformed token"},
		{"padding is refused", parts[0] + "=." + parts[1] + "." + parts[2], testNow, nil, "malformed token"},
		{"standard base64 characters are refused", strings.NewReplacer("-", "+", "_", "/").Replace(parts[0]) + "+." + parts[1] + "." + parts[2], testNow, nil, "malformed token"},
		{"non-canonical base64 trailing bits are refused", "e31." + parts[1] + "." + parts[2], testNow, nil, "malformed token"},
		{"a header that is not JSON is refused", b64s("alg=HS256") + "." + parts[1] + "." + parts[2], testNow, nil, "malformed token"},
		{"a header that is a JSON array is refused", makeJWT(`["HS256"]`, claimsJSON(""), sign), testNow, nil, "malformed token"},
		{"data after the header object is refused", makeJWT(hs256Header+`{}`, claimsJSON(""), sign), testNow, nil, "malformed token"},
		{"claims that are not JSON are refused", makeJWT(hs256Header, `sub=alice`, sign), testNow, nil, "malformed token"},
		{"duplicate claims are refused",
			makeJWT(hs256Header, claims(fmt.Sprintf(`{"sub":"alice","aud":"other","aud":"kanade","exp":%d}`, exp)), sign), testNow,
			nil, "malformed token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{JWTSecret: testSecret, Clock: func() time.Time { return tt.clock }}
			got, w := serve(t, cfg, "/api/agents", "Bearer "+tt.token)
			want := ok(tt.wantCaller)
			if tt.wantCaller == nil {
				want = badToken
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if tt.wantCaller == nil {
				var p map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
					t.Fatalf("body %q: %v", w.Body, err)
				}
				if diff := cmp.Diff(tt.wantDetail, p["detail"]); diff != "" {
					t.Errorf("detail (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestUnauthorizedIsAProblemResponse(t *testing.T) {
	_, w := serve(t, Config{StaticToken: testStatic}, "/api/agents", "")
	if got, want := w.Header().Get("Content-Type"), "application/problem+json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	want := map[string]any{"title": "Unauthorized", "status": float64(401), "detail": "missing bearer token"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
}

// TestFailuresNeverLeakCredentials sends many bad requests and checks that
// neither the presented token, nor any of its segments, nor the configured
// static token or secret appears in a response body, header or log line.
func TestFailuresNeverLeakCredentials(t *testing.T) {
	sign := signHS256(testSecret)
	expired := validJWT()
	wrongAud := makeJWT(hs256Header, fmt.Sprintf(`{"sub":"alice-subject","aud":"elsewhere","exp":%d}`, testNow.Add(time.Hour).Unix()), sign)
	tokens := []string{
		testStatic + "x",
		testStatic[:len(testStatic)-1],
		"Zm9vYmFyYmF6cXV4LW5vdC1hLXRva2Vu",
		expired,
		wrongAud,
		makeJWT(`{"alg":"none"}`, claimsJSON(""), func([]byte) []byte { return nil }),
		makeJWT(`{"alg":"HS512"}`, claimsJSON(""), sign),
		"aaaa.bbbb.cccc.dddd",
		"not-base64!!.also-not.%%%",
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{StaticToken: testStatic, JWTSecret: testSecret, Logger: logger,
		Clock: func() time.Time { return testNow.Add(2 * time.Hour) }}
	h := mustMiddleware(t, cfg, &recorder{})

	for _, tok := range tokens {
		for _, authz := range []string{"Bearer " + tok, "Basic " + tok, tok} {
			logs.Reset()
			req := httptest.NewRequest(http.MethodGet, "/api/agents", nil)
			req.Header.Set("Authorization", authz)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("%q: status %d, want 401", authz, w.Code)
			}
			var out strings.Builder
			out.WriteString(w.Body.String())
			for k, vs := range w.Header() {
				out.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
			}
			out.WriteString(logs.String())
			if logs.Len() == 0 {
				t.Errorf("%q: refusal was not logged at debug level", authz)
			}
			secrets := []string{tok, testStatic, string(testSecret), "alice-subject"}
			for _, seg := range strings.Split(tok, ".") {
				if len(seg) >= 4 {
					secrets = append(secrets, seg)
				}
			}
			for _, s := range secrets {
				if strings.Contains(out.String(), s) {
					t.Errorf("%q: response or log contains %q:\n%s", authz, s, out.String())
				}
			}
		}
	}
}

func TestDisabledWarnsLoudlyOnce(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{}
	h := mustMiddleware(t, Config{Disabled: true, Logger: logger}, rec)

	type record struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	readRecords := func() []record {
		var out []record
		dec := json.NewDecoder(bytes.NewReader(logs.Bytes()))
		for dec.More() {
			var r record
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	recs := readRecords()
	if len(recs) != 1 || recs[0].Level != "WARN" || !strings.Contains(recs[0].Msg, "AUTHENTICATION IS DISABLED") {
		t.Fatalf("start-up records = %+v, want exactly one WARN saying AUTHENTICATION IS DISABLED", recs)
	}
	for _, p := range []string{"/api/agents", "/metrics", "/"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	if got := len(readRecords()); got != 1 {
		t.Errorf("%d log records after serving requests, want the warning only once", got)
	}
	if !rec.reached {
		t.Error("disabled auth did not reach the next handler")
	}

	// Enabled auth does not warn.
	logs.Reset()
	mustMiddleware(t, Config{StaticToken: testStatic, JWTSecret: testSecret, Logger: logger}, rec)
	if logs.Len() != 0 {
		t.Errorf("enabled auth logged %q, want nothing", logs.String())
	}
}

func TestWeakCredentialsWarn(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	mustMiddleware(t, Config{StaticToken: "short", JWTSecret: []byte("short"), Logger: logger}, &recorder{})
	if got := strings.Count(logs.String(), "level=WARN"); got != 2 {
		t.Errorf("%d warnings for a short token and a short secret, want 2:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "short ") || strings.Contains(logs.String(), "=short") {
		t.Errorf("warning quotes the credential:\n%s", logs.String())
	}
}

func TestCallerFromWithoutMiddleware(t *testing.T) {
	if _, ok := CallerFrom(httptest.NewRequest(http.MethodGet, "/", nil).Context()); ok {
		t.Error("CallerFrom found a caller in a bare request")
	}
}
