package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Audience is the value the JWT "aud" claim must contain.
const Audience = "kanade"

// leeway is how far exp and nbf may be off the clock and still count: five
// seconds absorbs clock skew between the issuer and this host without
// keeping a revoked or expired token alive in any meaningful way.
const leeway = 5 * time.Second

// maxNumericDate is 9999-12-31T23:59:59Z; later "dates" are issuer bugs, not
// tokens meant to expire.
const maxNumericDate = 253402300799

// b64 is the only encoding accepted for JWT segments: base64url without
// padding, and Strict so that each segment has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

type jwtClaims struct {
	sub   string
	roles []string
}

// Reasons a JWT is refused. They go into the problem body, so they say what
// was wrong and never quote the token.
var (
	errMalformed    = errors.New("malformed token")
	errAlg          = errors.New("token algorithm must be HS256")
	errCrit         = errors.New("token has critical header parameters")
	errSignature    = errors.New("token signature is invalid")
	errExpMissing   = errors.New("token has no exp claim")
	errExpired      = errors.New("token has expired")
	errNotYetValid  = errors.New("token is not valid yet")
	errAudience     = errors.New("token audience does not include " + Audience)
	errSubMissing   = errors.New("token has no sub claim")
	errClaimInvalid = errors.New("token has an invalid claim")
)

// verifyJWT checks an HS256 compact JWS (RFC 7515/7519) against secret at now
// and returns its claims. It is hand-rolled on purpose: a few dozen lines of
// standard library are easier to audit than a library's algorithm
// negotiation, which is where "alg":"none" and key-confusion bugs live.
//
// Refused: anything but exactly three non-empty base64url segments (no
// padding, no whitespace, canonical encoding); a header that is not a JSON
// object with unique keys, whose "alg" is not exactly "HS256", or that has a
// "crit" parameter; a wrong signature (compared with hmac.Equal before any
// claim is read); claims without sub, without exp, with exp at or past
// now+leeway, with nbf after now+leeway, or whose aud (string or array) does
// not contain Audience; a "roles" that is not an array of strings. "typ",
// "kid" and claims other than sub, exp, nbf, aud and roles are ignored.
func verifyJWT(token string, secret []byte, now time.Time) (jwtClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return jwtClaims{}, errMalformed
	}
	headerJSON, err := b64.DecodeString(parts[0])
	if err != nil {
		return jwtClaims{}, errMalformed
	}
	header, err := decodeObject(headerJSON)
	if err != nil {
		return jwtClaims{}, errMalformed
	}
	var alg string
	if raw, ok := header["alg"]; !ok || json.Unmarshal(raw, &alg) != nil || alg != "HS256" {
		return jwtClaims{}, errAlg
	}
	if _, ok := header["crit"]; ok {
		return jwtClaims{}, errCrit
	}

	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return jwtClaims{}, errMalformed
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0]))
	mac.Write([]byte{'.'})
	mac.Write([]byte(parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return jwtClaims{}, errSignature
	}

	// From here on the claims were written by someone holding the secret;
	// they are still checked strictly, since issuers have bugs too.
	payloadJSON, err := b64.DecodeString(parts[1])
	if err != nil {
		return jwtClaims{}, errMalformed
	}
	claims, err := decodeObject(payloadJSON)
	if err != nil {
		return jwtClaims{}, errMalformed
	}

	raw, ok := claims["exp"]
	if !ok {
		return jwtClaims{}, errExpMissing
	}
	exp, err := numericDate(raw)
	if err != nil {
		return jwtClaims{}, errClaimInvalid
	}
	if !now.Before(exp.Add(leeway)) {
		return jwtClaims{}, errExpired
	}
	if raw, ok := claims["nbf"]; ok {
		nbf, err := numericDate(raw)
		if err != nil {
			return jwtClaims{}, errClaimInvalid
		}
		if now.Add(leeway).Before(nbf) {
			return jwtClaims{}, errNotYetValid
		}
	}

	raw, ok = claims["aud"]
	if !ok {
		return jwtClaims{}, errAudience
	}
	auds, err := stringOrArray(raw)
	if err != nil {
		return jwtClaims{}, errClaimInvalid
	}
	found := false
	for _, a := range auds {
		if a == Audience {
			found = true
		}
	}
	if !found {
		return jwtClaims{}, errAudience
	}

	var out jwtClaims
	raw, ok = claims["sub"]
	if !ok {
		return jwtClaims{}, errSubMissing
	}
	if err := unmarshalStrict(raw, &out.sub); err != nil {
		return jwtClaims{}, errClaimInvalid
	}
	if out.sub == "" {
		return jwtClaims{}, errSubMissing
	}
	if raw, ok := claims["roles"]; ok {
		if err := unmarshalStrict(raw, &out.roles); err != nil || out.roles == nil {
			return jwtClaims{}, errClaimInvalid
		}
	}
	return out, nil
}

// decodeObject parses b as one JSON object and returns its members,
// refusing duplicate names (RFC 7515 §4 and RFC 7519 §4 say to reject or use
// the last; rejecting leaves no room for parsers to disagree) and anything
// after the closing brace.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("member name is not a string")
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

// unmarshalStrict is json.Unmarshal that also refuses null, which would
// otherwise leave the target at its zero value and pass for "absent".
func unmarshalStrict(raw json.RawMessage, v any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return errors.New("null")
	}
	return json.Unmarshal(raw, v)
}

// numericDate parses an RFC 7519 NumericDate: seconds since the epoch, a
// JSON number, possibly fractional.
func numericDate(raw json.RawMessage) (time.Time, error) {
	// A RawMessage from decodeObject is valid JSON; a leading digit makes it
	// a non-negative number (json.Number alone would also accept "123").
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return time.Time{}, errors.New("NumericDate is not a non-negative number")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f > maxNumericDate {
		return time.Time{}, errors.New("NumericDate out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// stringOrArray parses the "aud" shape: one string or an array of strings.
func stringOrArray(raw json.RawMessage) ([]string, error) {
	var one string
	if err := unmarshalStrict(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := unmarshalStrict(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

// jwtHeader is the header of every token IssueJWT signs.
var jwtHeader = b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// IssueJWT signs the token of a login (control.md §9.3): HS256 over
// {sub, exp, aud: "kanade", roles: [role]}, the shape verifyJWT accepts.
// exp is truncated to whole seconds. The roles claim is informative for
// clients: the middleware takes the role from the account, not the token.
func IssueJWT(secret []byte, sub string, role Role, exp time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: no JWT secret to sign with")
	}
	if sub == "" || role == NoRole {
		return "", errors.New("auth: a token needs a subject and a role")
	}
	claims, err := json.Marshal(struct {
		Sub   string   `json:"sub"`
		Exp   int64    `json:"exp"`
		Aud   string   `json:"aud"`
		Roles []string `json:"roles"`
	}{sub, exp.Unix(), Audience, []string{role.String()}})
	if err != nil {
		return "", fmt.Errorf("auth: encode claims: %w", err)
	}
	signed := jwtHeader + "." + b64.EncodeToString(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return signed + "." + b64.EncodeToString(mac.Sum(nil)), nil
}
