package auth

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	first, created, err := LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false, want true")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(first)
	if err != nil || len(raw) != 32 {
		t.Errorf("token %q is not 32 bytes of base64url (%d bytes, %v)", first, len(raw), err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode %v, want 0600", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data folder holds %d entries, want only %s (temporary file left behind?)", len(entries), TokenFile)
	}

	second, created, err := LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second token differs (-first +second):\n%s", diff)
	}

	other, _, err := LoadOrCreateToken(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other == first {
		t.Error("two folders got the same token")
	}

	// The generated token is what the shell hands to Middleware.
	got, _ := serve(t, Config{StaticToken: first}, "/api/agents", "Bearer "+first)
	if diff := cmp.Diff(ok(serviceCaller), got); diff != "" {
		t.Errorf("generated token through Middleware (-want +got):\n%s", diff)
	}
	got, _ = serve(t, Config{StaticToken: first}, "/api/agents", "Bearer "+other)
	if got.Status != http.StatusUnauthorized {
		t.Errorf("another folder's token: status %d, want 401", got.Status)
	}
}

func TestLoadOrCreateTokenExistingFiles(t *testing.T) {
	tests := []struct {
		name      string
		content   string
		mode      os.FileMode
		wantToken string
		wantErr   bool
	}{
		{"an operator's token with a trailing newline is trimmed", "my-own-token-1234567890\n", 0o600, "my-own-token-1234567890", false},
		{"a group-readable file is refused", "my-own-token-1234567890\n", 0o640, "", true},
		{"a world-readable file is refused", "my-own-token-1234567890\n", 0o644, "", true},
		{"an empty file is refused", "", 0o600, "", true},
		{"a token with inner spaces is refused", "two words\n", 0o600, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, TokenFile)
			if err := os.WriteFile(name, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(name, tt.mode); err != nil { // beat the umask
				t.Fatal(err)
			}
			token, created, err := LoadOrCreateToken(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if created {
				t.Error("created = true for an existing file")
			}
			if token != tt.wantToken {
				t.Errorf("token = %q, want %q", token, tt.wantToken)
			}
			if b, err := os.ReadFile(name); err != nil || string(b) != tt.content {
				t.Errorf("existing file changed to %q (%v)", b, err)
			}
		})
	}
}

// TestLoadOrCreateTokenConcurrent starts several creators at once, as two
// shell processes sharing a data folder might: exactly one creates the file
// and all agree on its token.
func TestLoadOrCreateTokenConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	var (
		wg     sync.WaitGroup
		tokens [n]string
		made   [n]bool
		errs   [n]error
	)
	for i := range n {
		wg.Go(func() { tokens[i], made[i], errs[i] = LoadOrCreateToken(dir) })
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if made[i] {
			creators++
		}
		if tokens[i] != tokens[0] {
			t.Errorf("caller %d got %q, caller 0 got %q", i, tokens[i], tokens[0])
		}
	}
	if creators != 1 {
		t.Errorf("%d callers created the file, want 1", creators)
	}
}
