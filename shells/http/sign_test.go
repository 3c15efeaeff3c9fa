package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/nats-io/nats.go"
)

// keygen runs `kanade-http keygen -kid kid` and returns the settings it
// printed and the public key it tells agents about.
func keygen(t *testing.T, kid string) (map[string]string, []byte) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"kanade-http", "keygen", "-kid", kid}, func(string) (string, bool) { return "", false },
		&out, io.Discard); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	var pub []byte
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "#"); ok {
			var entry struct {
				PublicKey string `json:"public_key"`
			}
			if json.Unmarshal([]byte(strings.TrimSpace(c)), &entry) == nil && entry.PublicKey != "" {
				var err error
				if pub, err = base64.StdEncoding.DecodeString(entry.PublicKey); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			settings[k] = v
		}
	}
	if len(settings) != 2 || pub == nil {
		t.Fatalf("keygen printed settings %v and public key %x", settings, pub)
	}
	return settings, pub
}

// The whole loop an operator goes through: keygen, the printed settings
// into the shell's environment, and the commands the shell then publishes
// verify with the printed public key; the API names the same key.
func TestKeygenOutputMakesTheShellSignItsCommands(t *testing.T) {
	settings, pub := keygen(t, "e2e-key")
	ns := bustest.Start(t) // external, so the test sees the commands
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = ns.URL
	for k, v := range settings {
		env[k] = v
	}
	var mu sync.Mutex
	var msgs []*nats.Msg
	sub, err := ns.NC.Subscribe("commands.>", func(m *nats.Msg) { mu.Lock(); msgs = append(msgs, m); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := ns.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	s := start(t, env, "-addr", "127.0.0.1:0")
	s.waitBootstrapped(t)

	sum := sha256.Sum256(pub)
	want := `{"kid":"e2e-key","fingerprint":"` + hex.EncodeToString(sum[:8]) + `"}`
	if code, body := get(t, s.base+"api/command-signing", s.token); code != http.StatusOK || strings.TrimSpace(body) != want {
		t.Errorf("GET /api/command-signing = %d %s, want %s", code, body, want)
	}
	s.putJob(t, "signed", "echo hi")
	s.must(t, http.MethodPost, "/api/exec/signed", `{"target":{"pcs":["PC-1"],"groups":["canary"]}}`, http.StatusOK, nil)
	var got []string
	waitFor(t, "two commands", func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(msgs) < 2 {
			return "none yet"
		}
		got = got[:0]
		for _, m := range msgs {
			at, err := testkit.VerifyCommand(m.Header, m.Data, "e2e-key", pub)
			if err != nil {
				t.Fatalf("%s: %v", m.Subject, err)
			}
			if d := time.Since(time.UnixMilli(at)); d < 0 || d > time.Minute {
				t.Errorf("%s signed %v ago", m.Subject, d)
			}
			got = append(got, m.Subject)
		}
		return ""
	})
	if diff := cmp.Diff([]string{"commands.group.canary", "commands.pc.PC-1"}, got); diff != "" {
		t.Errorf("signed commands (-want +got):\n%s", diff)
	}
}

func TestHalfASigningPairStopsTheStart(t *testing.T) {
	settings, _ := keygen(t, "e2e-key")
	env := freshEnv(t)
	env["KANADE_COMMAND_SIGNING_KEY"] = settings["KANADE_COMMAND_SIGNING_KEY"]
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	err := run(context.Background(), []string{"kanade-http"}, lookup, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "KANADE_COMMAND_SIGNING_KEY") || !strings.Contains(err.Error(), "KANADE_COMMAND_SIGNING_KID") {
		t.Fatalf("run with a key and no kid = %v, want an error naming both variables", err)
	}
	if entries, _ := os.ReadDir(env["KANADE_DATA_DIR"]); len(entries) != 0 {
		t.Errorf("a refused configuration still wrote into the data folder: %v", entries)
	}
}
