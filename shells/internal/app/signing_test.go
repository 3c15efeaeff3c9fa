package app

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/internal/testkit"
)

func TestSigningKeyAndKidMakeASigner(t *testing.T) {
	secret, pub := testkit.TestKey(1)
	other, _ := testkit.TestKey(2)
	tests := []struct {
		name    string
		shell   Shell
		env     map[string]string
		args    []string
		wantKid string // "" for no signer
	}{
		{"neither is unsigned", ShellHTTP, nil, nil, ""},
		{"blank values count as unset", ShellWorker, map[string]string{envSigningKey: " ", envSigningKid: ""}, nil, ""},
		{"both variables sign", ShellHTTP, map[string]string{envSigningKey: secret, envSigningKid: "backend-1"}, nil, "backend-1"},
		{"the worker signs its firings", ShellWorker, map[string]string{envSigningKey: secret, envSigningKid: "backend-1"}, nil, "backend-1"},
		{"Lambda signs what its API sends", ShellLambda, map[string]string{envSigningKey: secret, envSigningKid: "backend-1",
			"KANADE_DB": "libsql://x", "KANADE_NATS_URL": "nats://n", "KANADE_JWT_SECRET": "j"}, nil, "backend-1"},
		{"flags override the variables", ShellHTTP, map[string]string{envSigningKey: other, envSigningKid: "old"},
			[]string{"-command-signing-key", secret, "-command-signing-kid", "backend-2"}, "backend-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.shell, append([]string{"kanade"}, tt.args...), env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantKid == "" {
				if c.CommandSigner != nil {
					t.Errorf("signer %v, want none", c.CommandSigner)
				}
				return
			}
			if c.CommandSigner == nil || c.CommandSigner.Kid() != tt.wantKid {
				t.Fatalf("signer %v, want kid %s", c.CommandSigner, tt.wantKid)
			}
			h := c.CommandSigner.Sign(time.UnixMilli(42), []byte("{}"))
			hm := map[string][]string{"Kanade-Sig": {h.Sig}, "Kanade-Sig-Kid": {h.Kid}, "Kanade-Sig-Alg": {h.Alg}, "Kanade-Sig-At": {h.At}}
			if _, err := testkit.VerifyCommand(hm, []byte("{}"), tt.wantKid, pub); err != nil {
				t.Errorf("not the configured key: %v", err)
			}
		})
	}
}

func TestHalfASigningPairIsRefused(t *testing.T) {
	secret, _ := testkit.TestKey(1)
	lambda := map[string]string{"KANADE_DB": "libsql://x", "KANADE_NATS_URL": "nats://n", "KANADE_JWT_SECRET": "j"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	both := []string{"KANADE_COMMAND_SIGNING_KEY (-command-signing-key)", "KANADE_COMMAND_SIGNING_KID (-command-signing-kid)"}
	tests := []struct {
		name  string
		shell Shell
		env   map[string]string
		args  []string
		want  []string
	}{
		{"a key without its kid", ShellHTTP, with(nil, envSigningKey, secret), nil,
			append(both, "KANADE_COMMAND_SIGNING_KEY is set but KANADE_COMMAND_SIGNING_KID is not")},
		{"a kid without its key", ShellWorker, with(nil, envSigningKid, "backend-1"), nil,
			append(both, "KANADE_COMMAND_SIGNING_KID is set but KANADE_COMMAND_SIGNING_KEY is not")},
		{"a kid given by flag without a key", ShellHTTP, nil, []string{"-command-signing-kid", "backend-1"}, both},
		{"half a pair on Lambda", ShellLambda, with(lambda, envSigningKey, secret), nil,
			[]string{"KANADE_COMMAND_SIGNING_KEY and KANADE_COMMAND_SIGNING_KID go together"}},
		{"a key that is no seed", ShellHTTP, with(nil, envSigningKey, "c2hvcnQ=", envSigningKid, "k"), nil,
			[]string{"KANADE_COMMAND_SIGNING_KEY (-command-signing-key)", "32-byte", "keygen"}},
		{"a kid with a control character", ShellHTTP, with(nil, envSigningKey, secret, envSigningKid, "k\x00"), nil,
			[]string{"KANADE_COMMAND_SIGNING_KID (-command-signing-kid)", "control"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.shell, append([]string{"kanade"}, tt.args...), env(tt.env), io.Discard)
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret[:12]) {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

// keygenOutput runs keygen and splits its output into the settings it
// prints (KEY=value lines) and the agents' key-ring entry (the JSON comment).
func keygenOutput(t *testing.T, out string) (map[string]string, map[string]string) {
	t.Helper()
	settings := map[string]string{}
	var entry map[string]string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if comment, ok := strings.CutPrefix(line, "#"); ok {
			if c := strings.TrimSpace(comment); strings.HasPrefix(c, "{") {
				if err := json.Unmarshal([]byte(c), &entry); err != nil {
					t.Fatalf("key-ring entry %q: %v", line, err)
				}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %q is neither a comment nor a setting", line)
		}
		settings[k] = v
	}
	return settings, entry
}

func TestKeygenOutputConfiguresAShell(t *testing.T) {
	now := time.Date(2026, 7, 28, 23, 30, 0, 0, time.FixedZone("JST", 9*3600)) // the 28th in UTC too
	var out, errOut bytes.Buffer
	if err := Keygen([]string{"kanade-worker", "keygen"}, now, bytes.NewReader(bytes.Repeat([]byte{7}, 32)), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	settings, entry := keygenOutput(t, out.String())
	if diff := cmp.Diff([]string{envSigningKey, envSigningKid}, sortedKeys(settings)); diff != "" {
		t.Fatalf("settings (-want +got):\n%s\noutput:\n%s", diff, &out)
	}
	if settings[envSigningKid] != "backend-20260728" {
		t.Errorf("default kid %q, want backend-20260728 (UTC date of now)", settings[envSigningKid])
	}
	c, err := Parse(ShellWorker, []string{"kanade-worker"}, env(settings), io.Discard)
	if err != nil {
		t.Fatalf("the printed settings do not configure the worker: %v", err)
	}
	// What agents are told (the entry's public key, the reported
	// kid:fingerprint) belongs to the key the printed secret makes.
	pub, err := base64.StdEncoding.DecodeString(entry["public_key"])
	if err != nil || entry["kid"] != "backend-20260728" || entry["label"] != "backend" {
		t.Fatalf("key-ring entry %v (%v)", entry, err)
	}
	h := c.CommandSigner.Sign(now, []byte(`{"id":"x"}`))
	hm := map[string][]string{"Kanade-Sig": {h.Sig}, "Kanade-Sig-Kid": {h.Kid}, "Kanade-Sig-Alg": {h.Alg}, "Kanade-Sig-At": {h.At}}
	if _, err := testkit.VerifyCommand(hm, []byte(`{"id":"x"}`), "backend-20260728", pub); err != nil {
		t.Errorf("a command signed with the printed key does not verify with the printed public key: %v", err)
	}
	if !strings.Contains(out.String(), "backend-20260728:"+c.CommandSigner.Fingerprint()) {
		t.Errorf("the output does not name kid:fingerprint %s:\n%s", c.CommandSigner.Fingerprint(), &out)
	}
	// A chosen kid, and fresh randomness gives another key.
	out.Reset()
	if err := Keygen([]string{"kanade", "keygen", "-kid", "backend-2026-rot.2"}, now, bytes.NewReader(bytes.Repeat([]byte{8}, 32)), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	again, _ := keygenOutput(t, out.String())
	if again[envSigningKid] != "backend-2026-rot.2" || again[envSigningKey] == settings[envSigningKey] {
		t.Errorf("second key %v", again)
	}
}

func TestKeygenRefuses(t *testing.T) {
	random := bytes.NewReader(make([]byte, 64))
	for _, args := range [][]string{
		{"kanade", "keygen", "-kid", "has space"},
		{"kanade", "keygen", "-kid", ""},
		{"kanade", "keygen", "extra"},
		{"kanade", "keygen", "-unknown"},
	} {
		var out bytes.Buffer
		if err := Keygen(args, time.Now(), random, &out, io.Discard); err == nil || out.Len() != 0 {
			t.Errorf("%q: %v, printed %q", args, err, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if err := Keygen([]string{"kanade", "keygen", "-h"}, time.Now(), random, &out, &errOut); err != nil || out.Len() != 0 ||
		!strings.Contains(errOut.String(), "-kid") {
		t.Errorf("keygen -h = %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	if err := Keygen([]string{"kanade", "keygen"}, time.Now(), bytes.NewReader(nil), &out, io.Discard); err == nil {
		t.Error("keygen without randomness made a key")
	}
	if !IsKeygen([]string{"kanade", "keygen"}) || IsKeygen([]string{"kanade", "-addr", "keygen"}) || IsKeygen([]string{"kanade"}) {
		t.Error("IsKeygen")
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
