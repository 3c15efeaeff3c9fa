package sign_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
)

// headerMap is what a message would carry.
func headerMap(h sign.Headers) map[string][]string {
	return map[string][]string{sign.HeaderSig: {h.Sig}, sign.HeaderKid: {h.Kid}, sign.HeaderAlg: {h.Alg}, sign.HeaderAt: {h.At}}
}

// The RFC 8032 test key 1 signed by OpenSSL (openssl pkeyutl -sign -rawin)
// over be64(1700000000000) ‖ {"id":"job"}: Ed25519 is deterministic, so the
// signature, the header spelling and the fingerprint are pinned against a
// second implementation.
func TestSignMatchesAnIndependentImplementation(t *testing.T) {
	s, err := sign.New("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=", "backend-1")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign(time.UnixMilli(1700000000000), []byte(`{"id":"job"}`))
	want := sign.Headers{Sig: "8mov0B1ReKi8SJk4wSaa0B8Hg7pCKX3lTYuho8U12GfcXiENFIGVIjPdmdXxwEVYAYihIAnki3OsfHor4+WHAQ==",
		Kid: "backend-1", Alg: "ed25519", At: "1700000000000"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if got := []string{sign.HeaderSig, sign.HeaderKid, sign.HeaderAlg, sign.HeaderAt}; !cmp.Equal(got,
		[]string{"Kanade-Sig", "Kanade-Sig-Kid", "Kanade-Sig-Alg", "Kanade-Sig-At"}) {
		t.Errorf("header names %v", got)
	}
	// RFC 8032's public key d75a9801…511a, hashed with sha256sum.
	if s.Fingerprint() != "21fe31dfa154a261" || s.PublicKey() != "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" {
		t.Errorf("fingerprint %s, public key %s", s.Fingerprint(), s.PublicKey())
	}
	if diff := cmp.Diff(sign.Identity{Kid: "backend-1", Fingerprint: "21fe31dfa154a261"}, s.Identity()); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
}

func TestASignatureVerifiesOnlyOverTheBytesAndTimeSigned(t *testing.T) {
	secret, pub := testkit.TestKey(1)
	_, otherPub := testkit.TestKey(2)
	s, err := sign.New(secret, "k1")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 7, 28, 1, 2, 3, 456_789_000, time.UTC)
	body := []byte(`{"id":"job","request_id":"r1"}`)
	h := headerMap(s.Sign(at, body))
	ms, err := testkit.VerifyCommand(h, body, "k1", pub)
	if err != nil || ms != at.UnixMilli() {
		t.Fatalf("verify = %d, %v; want %d", ms, err, at.UnixMilli())
	}
	tests := []struct {
		name string
		h    map[string][]string
		body []byte
		pub  []byte
	}{
		{"a body changed by one byte", h, []byte(`{"id":"jod","request_id":"r1"}`), pub},
		{"another key", h, body, otherPub},
		{"a signing time moved by a millisecond", with(h, "Kanade-Sig-At", fmt.Sprint(at.UnixMilli()+1)), body, pub},
		{"another kid", with(h, "Kanade-Sig-Kid", "k2"), body, pub},
		{"a missing header", without(h, "Kanade-Sig-Alg"), body, pub},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := testkit.VerifyCommand(tt.h, tt.body, "k1", tt.pub); err == nil {
				t.Error("verified")
			}
		})
	}
	// Times before 1970 and far ahead go through the same signed integer.
	for _, at := range []time.Time{time.UnixMilli(-1), time.UnixMilli(1 << 50)} {
		if ms, err := testkit.VerifyCommand(headerMap(s.Sign(at, body)), body, "k1", pub); err != nil || ms != at.UnixMilli() {
			t.Errorf("at %d: %d, %v", at.UnixMilli(), ms, err)
		}
	}
}

func with(h map[string][]string, k, v string) map[string][]string {
	out := without(h, k)
	out[k] = []string{v}
	return out
}

func without(h map[string][]string, k string) map[string][]string {
	out := map[string][]string{}
	for key, v := range h {
		if key != k {
			out[key] = v
		}
	}
	return out
}

func TestNewRefusesWhatCannotSign(t *testing.T) {
	good, _ := testkit.TestKey(1)
	tests := []struct {
		name, secret, kid string
		want              error
	}{
		{"a blank kid", good, "  ", sign.ErrKid},
		{"a kid with spaces around it", good, " k1", sign.ErrKid},
		{"a kid with a line break", good, "k1\r\nX-Evil: 1", sign.ErrKid},
		{"a key that is not base64", "not base64!", "k1", sign.ErrKey},
		{"unpadded base64", strings.TrimRight(good, "="), "k1", sign.ErrKey},
		{"URL-safe base64", "-_" + good[2:], "k1", sign.ErrKey},
		{"a 64-byte private key instead of the seed", good + good, "k1", sign.ErrKey},
		{"16 bytes", "AAAAAAAAAAAAAAAAAAAAAA==", "k1", sign.ErrKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sign.New(tt.secret, tt.kid)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), good[:10]) {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

func TestGenerateMakesKeysNewAccepts(t *testing.T) {
	a, err := sign.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sign.Generate(rand.Reader)
	sa, err := sign.New(a, "k")
	if err != nil || a == b {
		t.Fatalf("New(generated) = %v; two keys equal: %v", err, a == b)
	}
	if _, err := sign.Generate(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Error("a short read made a key")
	}
	if len(sa.Fingerprint()) != 16 || strings.Trim(sa.Fingerprint(), "0123456789abcdef") != "" {
		t.Errorf("fingerprint %q: want 16 lower-case hex digits", sa.Fingerprint())
	}
}

func TestASignerNeverPrintsItsKey(t *testing.T) {
	secret, _ := testkit.TestKey(3)
	s, err := sign.New(secret, "k1")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", slog.Any("signer", s))
	for _, text := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logs.String()} {
		if !strings.Contains(text, "k1") || strings.Contains(text, secret[:8]) || strings.Contains(text, "[") {
			t.Errorf("printed %q", text)
		}
	}
	var none *sign.Signer
	if none.Identity().Signing() || none.String() != "unsigned" {
		t.Errorf("a nil signer: %+v %s", none.Identity(), none)
	}
}
