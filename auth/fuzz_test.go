package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzJWT signs fuzzed headers and claims with the test secret (so inputs
// reach the claim checks, which a random signature never would) and also
// verifies a fuzzed raw token. Whatever verifies must, read independently
// of verifyJWT: carry a correct HS256 MAC and alg "HS256", no crit, an exp
// not past the test clock (with the leeway), an nbf not in its future, an
// audience containing kanade and a non-empty sub equal to the one returned.
func FuzzJWT(f *testing.F) {
	exp := testNow.Add(time.Hour).Unix()
	for _, s := range []struct{ header, claims string }{
		{hs256Header, claimsJSON(`"roles":["admin","viewer"]`)},
		{`{"alg":"HS256"}`, fmt.Sprintf(`{"sub":"bob","aud":["other","kanade"],"exp":%d.5,"nbf":%d}`, exp, testNow.Unix())},
		{`{"alg":"none"}`, claimsJSON("")},
		{`{"alg":"HS256","crit":["exp"]}`, claimsJSON("")},
		{`{"alg":"HS256","alg":"HS256"}`, claimsJSON("")},
		{hs256Header, fmt.Sprintf(`{"sub":"bob","aud":"Kanade","exp":%d}`, exp)},
		{hs256Header, fmt.Sprintf(`{"sub":"","aud":"kanade","exp":%d}`, exp)},
		{hs256Header, fmt.Sprintf(`{"sub":"bob","aud":"kanade","exp":%d}`, testNow.Unix()-5)},
		{hs256Header, fmt.Sprintf(`{"sub":"bob","aud":"kanade","exp":%d,"nbf":%d}`, exp, testNow.Add(time.Minute).Unix())},
		{hs256Header, `{"sub":"bob","aud":"kanade","exp":1e300}`},
		{hs256Header, `{"sub":"bob","aud":"kanade","exp":"9999999999"}`},
		{hs256Header, claimsJSON(`"roles":null`)},
	} {
		f.Add(s.header, s.claims, validJWT())
	}
	f.Add("", "", "a.b.c")
	f.Add("", "", validJWT()+"=")
	f.Fuzz(func(t *testing.T, header, claims, raw string) {
		for _, tok := range []string{makeJWT(header, claims, signHS256(testSecret)), raw} {
			c, err := verifyJWT(tok, testSecret, testNow)
			if err != nil {
				continue
			}
			checkVerified(t, tok, c)
		}
	})
}

func checkVerified(t *testing.T, tok string, c jwtClaims) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("verified a token of %d segments", len(parts))
	}
	seg := func(i int) []byte {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("verified a token whose segment %d is not base64url: %v", i, err)
		}
		return b
	}
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(seg(2), mac.Sum(nil)) {
		t.Fatal("verified a token without a valid HS256 MAC")
	}
	var header map[string]any
	if err := json.Unmarshal(seg(0), &header); err != nil {
		t.Fatalf("verified a token whose header is not an object: %v", err)
	}
	if header["alg"] != "HS256" {
		t.Fatalf("verified alg %v", header["alg"])
	}
	if _, ok := header["crit"]; ok {
		t.Fatal("verified a token with crit")
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(seg(1)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		t.Fatalf("verified claims that are not an object: %v", err)
	}
	date := func(name string) (float64, bool) {
		n, ok := claims[name].(json.Number)
		if !ok {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(n), 64)
		return v, err == nil
	}
	now := float64(testNow.Unix())
	lee := leeway.Seconds()
	exp, ok := date("exp")
	if !ok || !(now < exp+lee) {
		t.Fatalf("verified exp %v at %v", claims["exp"], testNow)
	}
	if _, present := claims["nbf"]; present {
		if nbf, ok := date("nbf"); !ok || nbf > now+lee {
			t.Fatalf("verified nbf %v at %v", claims["nbf"], testNow)
		}
	}
	inAud := false
	switch aud := claims["aud"].(type) {
	case string:
		inAud = aud == Audience
	case []any:
		for _, a := range aud {
			inAud = inAud || a == Audience
		}
	}
	if !inAud {
		t.Fatalf("verified aud %v", claims["aud"])
	}
	if sub, _ := claims["sub"].(string); sub == "" || sub != c.sub {
		t.Fatalf("verified sub %v, returned %q", claims["sub"], c.sub)
	}
}

// needsAuthPaths are the request targets of TestNeedsAuth.
var needsAuthPaths = []string{
	"/", "/health", "/assets/app.js", "/apiary", "/metrics-dashboard", "/api/version", "/api/version?pretty=1",
	"/assets/my%20file.js", "/api", "/api/", "/api/agents", "/metrics/", "/api/version/", "/API/VERSION",
	"/api/version/../agents", "/api/version%2f..%2fagents", "//api/x", "/./api/x", "/x/../api/x",
	"/api/%2e%2e/api/x", "/%2fapi%2fx", "/api%5cx", "/api./x", "/api%2e/x", "/metrics.", "/api%20/x",
	"/api;x=1/agents", "/api%252fx", "/api%00/x", `/api\x`, "/api\x00/x", "*", "api/x", "/assets/../index.html",
}

// isProtected is what canonicalize promises to find: /api, /api/… and
// /metrics.
func isProtected(c string) bool {
	return c == "/api" || strings.HasPrefix(c, "/api/") || c == "/metrics"
}

// FuzzCanonicalPath checks canonicalize and needsAuth on any path:
// canonicalize is idempotent and yields a clean absolute path, and no
// reading of a request's path that lands under /api or on /metrics (the
// decoded path, the raw one decoded again, Go's ServeMux cleaning,
// canonicalize) is left open, except exactly /api/version.
func FuzzCanonicalPath(f *testing.F) {
	for _, p := range needsAuthPaths {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c := canonicalize(p)
		if again := canonicalize(c); again != c {
			t.Fatalf("canonicalize(%q) = %q, but canonicalize(%q) = %q", p, c, c, again)
		}
		if !strings.HasPrefix(c, "/") || (c != "/" && strings.HasSuffix(c, "/")) {
			t.Fatalf("canonicalize(%q) = %q is not a clean absolute path", p, c)
		}
		// A trailing "/." or "/.." counts too, hence the appended slash.
		if strings.Contains(c, "//") || strings.Contains(c+"/", "/./") || strings.Contains(c+"/", "/../") {
			t.Fatalf("canonicalize(%q) = %q has an empty or dot segment", p, c)
		}
		if isProtected(c) && !needsAuth(&url.URL{Path: p}, versionOnly) && p != openAPIPath {
			t.Fatalf("needsAuth(Path %q) = false, but it canonicalizes to %q", p, c)
		}
		u, err := url.ParseRequestURI(p)
		if err != nil || needsAuth(u, versionOnly) {
			return
		}
		if u.Path == openAPIPath && u.EscapedPath() == openAPIPath {
			return
		}
		readings := []string{u.Path, path.Clean(u.Path), strings.ToLower(path.Clean(u.Path))}
		if twice, err := url.PathUnescape(u.Path); err == nil {
			readings = append(readings, twice)
		}
		for _, r := range readings {
			if isProtected(canonicalize(r)) {
				t.Fatalf("%q is open, but its reading %q canonicalizes to %q", p, r, canonicalize(r))
			}
		}
	})
}
