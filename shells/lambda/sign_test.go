package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
)

// The Lambda API publishes commands too (exec, run): it signs them with the
// configured key and names it; half a pair stops the cold start.
func TestLambdaNamesItsSigningKeyAndRefusesHalfAPair(t *testing.T) {
	secret, _ := testkit.TestKey(3)
	sg, err := sign.New(secret, "lambda-key")
	if err != nil {
		t.Fatal(err)
	}
	env := testEnv(t)
	env["KANADE_COMMAND_SIGNING_KEY"], env["KANADE_COMMAND_SIGNING_KID"] = secret, "lambda-key"
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	req := httptest.NewRequest(http.MethodGet, "/api/command-signing", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	want := `{"kid":"lambda-key","fingerprint":"` + sg.Fingerprint() + `"}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("GET /api/command-signing = %d %s, want %s", rec.Code, rec.Body, want)
	}

	delete(env, "KANADE_COMMAND_SIGNING_KEY")
	_, _, err = newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "KANADE_COMMAND_SIGNING_KEY and KANADE_COMMAND_SIGNING_KID go together") {
		t.Fatalf("newHandler with a kid and no key = %v", err)
	}
}
