package testkit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// The signature headers of a command, spelled as control.md §7 spells them.
// Written here from the contract, not taken from package sign, so that a
// test verifying with VerifyCommand checks the signer against the spec and
// not against itself.
var sigHeaders = []string{"Kanade-Sig", "Kanade-Sig-Kid", "Kanade-Sig-Alg", "Kanade-Sig-At"}

// SigHeaders lists which of the four Kanade-Sig* headers h carries, in the
// order above (exact spelling, as an agent looks them up).
func SigHeaders(h map[string][]string) []string {
	var out []string
	for _, k := range sigHeaders {
		if _, ok := h[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// TestKey is a fixed Ed25519 key for tests: the secret as
// KANADE_COMMAND_SIGNING_KEY takes it (standard base64 of the 32-byte seed)
// and its public half. Different seeds give different keys.
func TestKey(seed byte) (secret string, pub ed25519.PublicKey) {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return base64.StdEncoding.EncodeToString(s), ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
}

// VerifyCommand checks a command message as an agent holding pub under kid
// does (control.md §7): all four headers or none (none is an error here:
// the caller expects a signed command), alg ed25519, the kid, and an
// Ed25519 signature (standard base64, 64 bytes) over the signing time as 8
// big-endian bytes of milliseconds since the epoch followed by the exact
// body. It returns the signing time in milliseconds.
func VerifyCommand(h map[string][]string, body []byte, kid string, pub ed25519.PublicKey) (int64, error) {
	got := SigHeaders(h)
	if len(got) != len(sigHeaders) {
		return 0, fmt.Errorf("signature headers %v: want all of %v", got, sigHeaders)
	}
	one := func(k string) (string, error) {
		if len(h[k]) != 1 {
			return "", fmt.Errorf("%s: %d values, want 1", k, len(h[k]))
		}
		return h[k][0], nil
	}
	vals := make(map[string]string, len(sigHeaders))
	for _, k := range sigHeaders {
		v, err := one(k)
		if err != nil {
			return 0, err
		}
		vals[k] = v
	}
	if vals["Kanade-Sig-Alg"] != "ed25519" {
		return 0, fmt.Errorf("Kanade-Sig-Alg %q, want ed25519", vals["Kanade-Sig-Alg"])
	}
	if vals["Kanade-Sig-Kid"] != kid {
		return 0, fmt.Errorf("Kanade-Sig-Kid %q, want %q", vals["Kanade-Sig-Kid"], kid)
	}
	at, err := strconv.ParseInt(vals["Kanade-Sig-At"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Kanade-Sig-At %q: not decimal milliseconds", vals["Kanade-Sig-At"])
	}
	sig, err := base64.StdEncoding.DecodeString(vals["Kanade-Sig"])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return 0, fmt.Errorf("Kanade-Sig %q: not the standard base64 of a 64-byte signature", vals["Kanade-Sig"])
	}
	material := binary.BigEndian.AppendUint64(nil, uint64(at))
	material = append(material, body...)
	if !ed25519.Verify(pub, material, sig) {
		return 0, errors.New("signature does not verify over at_ms ‖ body")
	}
	return at, nil
}
