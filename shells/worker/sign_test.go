package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/shells/internal/app"
)

// `kanade-worker keygen` prints the two settings, and they configure the
// worker's signer.
func TestKeygenPrintsSettingsTheWorkerTakes(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"kanade-worker", "keygen", "-kid", "worker-key"},
		func(string) (string, bool) { return "", false }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for line := range strings.Lines(out.String()) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	cfg, err := app.Parse(app.ShellWorker, []string{"kanade-worker"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("the printed settings %v: %v", env, err)
	}
	if cfg.CommandSigner == nil || cfg.CommandSigner.Kid() != "worker-key" || !strings.Contains(out.String(), "worker-key:"+cfg.CommandSigner.Fingerprint()) {
		t.Errorf("signer %v from:\n%s", cfg.CommandSigner, &out)
	}
}
