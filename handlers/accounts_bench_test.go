package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkLogin is POST /api/auth/login end to end (throttle rows, the
// account read, the argon2id check, the token), against a real SQLite
// database: the KDF is nearly all of it. "unknown" logs in as accounts
// that do not exist, which must cost the same (password.Burn).
func BenchmarkLogin(b *testing.B) {
	db := storagetest.Open(b, nil)
	srv, err := New(Config{DB: db, Auth: auth.Config{StaticToken: "bench-static-token-0123456789abcdef", JWTSecret: benchSecret}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := BootstrapAdmin(context.Background(), db, "root", "root-password-1"); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, user, pw string
		want           int
	}{
		{"ok", "root", "root-password-1", http.StatusOK},
		{"unknown", "", "some-password", http.StatusUnauthorized},
	} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				user := c.user
				if user == "" {
					user = fmt.Sprintf("nobody%d", i) // a new name and address each time: no throttling
				}
				r := httptest.NewRequest(http.MethodPost, "/api/auth/login",
					strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, c.pw)))
				r.Header.Set("Content-Type", "application/json")
				r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, r)
				if w.Code != c.want {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
