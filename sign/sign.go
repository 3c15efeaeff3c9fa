// Package sign is command provenance (control.md §7, upstream #1165): the
// backend signs every Command it publishes with an Ed25519 key, and agents
// that hold the public half can tell its commands from bytes that anyone
// else with publish rights placed on commands.*. Only the backend holds the
// private key; agents hold public keys, which are not secrets.
//
// The signature travels in four NATS headers beside the body, never in it,
// so an agent that predates signing reads a signed Command exactly as an
// unsigned one. It covers the signing time and the exact body bytes
// (at_ms ‖ body), so an agent verifies what it received before decoding it
// and no canonical JSON is needed; the time is covered so that a captured
// command cannot be made to look fresh by editing a header.
//
// The package knows nothing of NATS: bus turns Headers into message headers.
// A Signer never prints its private key (String, LogValue, GoString).
package sign

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The header names and the one algorithm (control.md §7; upstream
// kanade-shared signing.rs SIG, SIG_KID, SIG_ALG, SIG_AT, ALG_ED25519). A
// message carries all four or none: agents read any one alone as a broken
// signing claim, not as an unsigned command.
const (
	// HeaderSig is the standard base64 (padded) of the 64-byte signature.
	HeaderSig = "Kanade-Sig"
	// HeaderKid names the key; agents pick the public key by it.
	HeaderKid = "Kanade-Sig-Kid"
	// HeaderAlg is AlgEd25519.
	HeaderAlg = "Kanade-Sig-Alg"
	// HeaderAt is the signing time, decimal milliseconds since the Unix
	// epoch; it is covered by the signature.
	HeaderAt = "Kanade-Sig-At"

	// AlgEd25519 is the only algorithm agents accept.
	AlgEd25519 = "ed25519"
)

// Headers are the four header values of one signed message.
type Headers struct {
	Sig, Kid, Alg, At string
}

// Signer signs commands with one Ed25519 key under its kid. The key and
// the kid exist only together: a key signing under an id the fleet knows
// for another key reads, on every agent, as a forgery.
type Signer struct {
	key ed25519.PrivateKey
	kid string
	fp  string
}

// SeedSize is the length of the secret: an Ed25519 seed.
const SeedSize = ed25519.SeedSize

// Errors of New, so a caller can name the setting at fault.
var (
	// ErrKey: the secret is not the base64 of a seed.
	ErrKey = errors.New("signing key")
	// ErrKid: the kid cannot name a key.
	ErrKid = errors.New("signing key id")
)

// New builds a Signer from the secret as KANADE_COMMAND_SIGNING_KEY holds
// it (standard base64, padded, of the 32-byte seed) and its kid. The errors
// never repeat the secret.
func New(secret, kid string) (*Signer, error) {
	if err := checkKid(kid); err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(secret))
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 (padded)", ErrKey)
	}
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: want the base64 of a %d-byte Ed25519 seed, got %d bytes", ErrKey, SeedSize, len(seed))
	}
	key := ed25519.NewKeyFromSeed(seed)
	return &Signer{key: key, kid: kid, fp: Fingerprint(key.Public().(ed25519.PublicKey))}, nil
}

// checkKid refuses a kid agents could never match or a header cannot
// carry: blank (an empty Kanade-Sig-Kid names no key, so every provisioned
// agent would report a rotation gone wrong), surrounded by spaces, or with
// control characters (a line break would end the header).
func checkKid(kid string) error {
	if strings.TrimSpace(kid) == "" {
		return fmt.Errorf("%w: must not be blank", ErrKid)
	}
	if strings.TrimSpace(kid) != kid {
		return fmt.Errorf("%w %q: must not start or end with spaces", ErrKid, kid)
	}
	if strings.ContainsFunc(kid, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) {
		return fmt.Errorf("%w %q: must not contain control characters", ErrKid, kid)
	}
	return nil
}

// Generate makes a new secret from random (crypto/rand.Reader), in the
// format New takes.
func Generate(random io.Reader) (string, error) {
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(random, seed); err != nil {
		return "", fmt.Errorf("signing key: read randomness: %w", err)
	}
	return base64.StdEncoding.EncodeToString(seed), nil
}

// Sign signs body as sent at at: the signature covers at's milliseconds
// since the epoch as 8 big-endian bytes (a signed integer), then body.
func (s *Signer) Sign(at time.Time, body []byte) Headers {
	ms := at.UnixMilli()
	material := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint64(material, uint64(ms))
	material = append(material, body...)
	sig := ed25519.Sign(s.key, material)
	return Headers{Sig: base64.StdEncoding.EncodeToString(sig), Kid: s.kid, Alg: AlgEd25519,
		At: strconv.FormatInt(ms, 10)}
}

// Kid is the id agents know the key by.
func (s *Signer) Kid() string { return s.kid }

// PublicKey is the public half, standard base64 of its 32 bytes: what
// agents put in their key ring.
func (s *Signer) PublicKey() string {
	return base64.StdEncoding.EncodeToString(s.key.Public().(ed25519.PublicKey))
}

// Fingerprint is the public key's fingerprint (see the function).
func (s *Signer) Fingerprint() string { return s.fp }

// Identity is what the backend says about its key (GET
// /api/command-signing); the zero Identity says it does not sign. It holds
// nothing secret, so it can go where the Signer must not.
type Identity struct {
	Kid, Fingerprint string
}

// Signing reports whether the identity names a key.
func (i Identity) Signing() bool { return i.Kid != "" }

// Identity is s's public identity; a nil Signer has the zero one.
func (s *Signer) Identity() Identity {
	if s == nil {
		return Identity{}
	}
	return Identity{Kid: s.kid, Fingerprint: s.fp}
}

// Fingerprint is the first 8 bytes of SHA-256 over the raw 32-byte public
// key, lower-case hex: what agents report as kid:fingerprint in their
// heartbeats' command_keys, so an operator can compare the fleet's keys
// with the one the backend signs with.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// String names the key without its secret.
func (s *Signer) String() string {
	if s == nil {
		return "unsigned"
	}
	return s.kid + ":" + s.fp
}

// GoString keeps %#v from printing the key.
func (s *Signer) GoString() string { return "sign.Signer(" + s.String() + ")" }

// LogValue keeps a logged Signer to its kid and fingerprint.
func (s *Signer) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("unsigned")
	}
	return slog.GroupValue(slog.String("kid", s.kid), slog.String("fingerprint", s.fp))
}
