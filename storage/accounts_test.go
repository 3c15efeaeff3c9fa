package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

var accountsNow = time.Date(2026, 7, 1, 9, 30, 0, 123_000_000, time.UTC)

func flag(b bool) *bool { return &b }

func mustCreate(t *testing.T, db *storage.DB, name, role string) kanade.Account {
	t.Helper()
	a, err := db.CreateAccount(context.Background(), storage.NewAccount{Username: name, Hash: "hash-of-" + name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAccountsRoundTrip(t *testing.T) {
	ctx := context.Background()
	clock := accountsNow
	db := storagetest.Open(t, func() time.Time { return clock })

	if has, err := db.HasAccounts(ctx); err != nil || has {
		t.Fatalf("HasAccounts on a fresh database = %v, %v", has, err)
	}
	created := mustCreate(t, db, "alice", kanade.RoleOperator)
	stamp := kanade.FormatTime(accountsNow)
	want := kanade.Account{Username: "alice", Role: "operator", CreatedAt: stamp, UpdatedAt: stamp}
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if has, err := db.HasAccounts(ctx); err != nil || !has {
		t.Fatalf("HasAccounts = %v, %v", has, err)
	}
	if _, err := db.CreateAccount(ctx, storage.NewAccount{Username: "alice", Hash: "x", Role: "viewer"}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("second alice: %v, want ErrExists", err)
	}
	if _, err := db.CreateAccount(ctx, storage.NewAccount{Username: "bob", Hash: "x", Role: "root"}); err == nil {
		t.Error("role root was stored: the CHECK constraint is missing")
	}

	got, err := db.Account(ctx, "alice")
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("Account = %+v, %v", got, err)
	}
	c, err := db.Credentials(ctx, "alice")
	if err != nil || c.Hash != "hash-of-alice" || c.Account != want {
		t.Errorf("Credentials = %+v, %v", c, err)
	}
	if role, disabled, err := db.AccountAccess(ctx, "alice"); err != nil || role != "operator" || disabled {
		t.Errorf("AccountAccess = %q, %v, %v", role, disabled, err)
	}
	if _, _, err := db.AccountAccess(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("AccountAccess(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := db.Account(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Account(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := db.Credentials(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Credentials(nobody) = %v, want ErrNotFound", err)
	}

	clock = accountsNow.Add(time.Minute)
	updated, err := db.UpdateAccount(ctx, "alice", storage.AccountChange{Role: ptr("viewer"), Disabled: flag(true),
		Hash: ptr("new-hash"), MustChangePassword: flag(true)})
	if err != nil {
		t.Fatal(err)
	}
	want2 := kanade.Account{Username: "alice", Role: "viewer", Disabled: true, MustChangePassword: true,
		CreatedAt: stamp, UpdatedAt: kanade.FormatTime(clock)}
	if diff := cmp.Diff(want2, updated); diff != "" {
		t.Errorf("updated (-want +got):\n%s", diff)
	}
	// An empty change touches only updated_at; nil fields stay.
	if again, err := db.UpdateAccount(ctx, "alice", storage.AccountChange{}); err != nil || again.Role != "viewer" || !again.Disabled {
		t.Errorf("empty change = %+v, %v", again, err)
	}
	if c, _ := db.Credentials(ctx, "alice"); c.Hash != "new-hash" {
		t.Errorf("hash after update = %q", c.Hash)
	}
	if _, err := db.UpdateAccount(ctx, "nobody", storage.AccountChange{Role: ptr("admin")}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("update nobody: %v, want ErrNotFound", err)
	}

	mustCreate(t, db, "carol", kanade.RoleAdmin)
	list, err := db.ListAccounts(ctx)
	if err != nil || len(list) != 2 || list[0].Username != "alice" || list[1].Username != "carol" {
		t.Errorf("ListAccounts = %+v, %v", list, err)
	}
	if err := db.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteAccount(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

func TestLastEnabledAdminIsGuarded(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	mustCreate(t, db, "root", kanade.RoleAdmin)
	mustCreate(t, db, "viewer", kanade.RoleViewer)

	for name, change := range map[string]storage.AccountChange{
		"demote to operator":           {Role: ptr("operator")},
		"disable":                      {Disabled: flag(true)},
		"disable while staying admin":  {Role: ptr("admin"), Disabled: flag(true)},
		"demote with a password reset": {Role: ptr("viewer"), Hash: ptr("other")},
	} {
		if _, err := db.UpdateAccount(ctx, "root", change); !errors.Is(err, storage.ErrLastAdmin) {
			t.Errorf("%s: %v, want ErrLastAdmin", name, err)
		}
	}
	if c, _ := db.Credentials(ctx, "root"); c.Hash != "hash-of-root" || c.Account.Role != "admin" || c.Account.Disabled {
		t.Errorf("a refused change changed the row: %+v", c)
	}
	if err := db.DeleteAccount(ctx, "root"); !errors.Is(err, storage.ErrLastAdmin) {
		t.Errorf("delete the last admin: %v, want ErrLastAdmin", err)
	}
	// What does not remove the last admin is fine.
	if _, err := db.UpdateAccount(ctx, "root", storage.AccountChange{Role: ptr("admin"), Hash: ptr("h2"), Disabled: flag(false)}); err != nil {
		t.Errorf("keep admin, new password: %v", err)
	}
	if err := db.DeleteAccount(ctx, "viewer"); err != nil {
		t.Errorf("delete a viewer: %v", err)
	}
	// A disabled admin does not count: with one enabled and one disabled
	// admin, the enabled one is still the last.
	mustCreate(t, db, "spare", kanade.RoleAdmin)
	if _, err := db.UpdateAccount(ctx, "spare", storage.AccountChange{Disabled: flag(true)}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteAccount(ctx, "root"); !errors.Is(err, storage.ErrLastAdmin) {
		t.Errorf("delete root beside a disabled admin: %v, want ErrLastAdmin", err)
	}
	if err := db.DeleteAccount(ctx, "spare"); err != nil {
		t.Errorf("delete the disabled admin: %v", err)
	}
}

// TestLastAdminGuardHoldsUnderRaces: two admins each try to delete the
// other at once, many times over; one enabled admin always remains.
func TestLastAdminGuardHoldsUnderRaces(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	for round := range 20 {
		a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
		mustCreate(t, db, a, kanade.RoleAdmin)
		mustCreate(t, db, b, kanade.RoleAdmin)
		if round > 0 {
			// Leave only this round's two admins enabled.
			for _, old := range []string{fmt.Sprintf("a%d", round-1), fmt.Sprintf("b%d", round-1)} {
				if err := db.DeleteAccount(ctx, old); err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Fatal(err)
				}
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, victim := range []string{a, b} {
			wg.Go(func() {
				if i == 0 {
					errs[i] = db.DeleteAccount(ctx, victim)
				} else {
					_, errs[i] = db.UpdateAccount(ctx, victim, storage.AccountChange{Role: ptr("viewer")})
				}
			})
		}
		wg.Wait()
		n, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0`)
		if err != nil || n != 1 {
			t.Fatalf("round %d: %d enabled admins (%v); errors %v", round, n, err, errs)
		}
	}
}

func TestCreateFirstAdminOnlyIntoAnEmptyTable(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, func() time.Time { return accountsNow })
	var wg sync.WaitGroup
	created := make([]bool, 4)
	for i := range created {
		wg.Go(func() {
			var err error
			if created[i], err = db.CreateFirstAdmin(ctx, fmt.Sprintf("admin%d", i), "h"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n := 0
	for _, c := range created {
		if c {
			n++
		}
	}
	list, err := db.ListAccounts(ctx)
	if err != nil || n != 1 || len(list) != 1 {
		t.Fatalf("created %v, accounts %+v, %v: want exactly one", created, list, err)
	}
	if a := list[0]; a.Role != "admin" || !a.MustChangePassword || a.Disabled {
		t.Errorf("bootstrap admin = %+v, want an enabled admin who must change the password", a)
	}
}

func TestLoginThrottleCountsPerKeyInASlidingWindow(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	const limit = 3
	window := time.Minute
	now := accountsNow
	reserve := func(at time.Time, keys ...string) time.Duration {
		t.Helper()
		_, wait, err := db.ReserveLoginAttempt(ctx, keys, limit, window, at)
		if err != nil {
			t.Fatal(err)
		}
		return wait
	}
	for i := range limit {
		if w := reserve(now.Add(time.Duration(i)*10*time.Second), "user:alice", "addr:10.0.0.1"); w != 0 {
			t.Fatalf("attempt %d throttled for %v", i+1, w)
		}
	}
	// The fourth within the minute waits until the first leaves the window:
	// made at +0 s, it counts until +60 s; asked at +25.5 s → 35 s (rounded up).
	if w := reserve(now.Add(25*time.Second+500*time.Millisecond), "user:alice", "addr:10.0.0.2"); w != 35*time.Second {
		t.Errorf("fourth attempt for alice: wait %v, want 35s", w)
	}
	// Either key is enough to be throttled: the address too.
	if w := reserve(now.Add(30*time.Second), "user:bob", "addr:10.0.0.1"); w != 30*time.Second {
		t.Errorf("bob from alice's address: wait %v, want 30s", w)
	}
	// A throttled attempt was not recorded: bob from elsewhere is free.
	if w := reserve(now.Add(30*time.Second), "user:bob", "addr:10.0.0.3"); w != 0 {
		t.Errorf("bob from elsewhere: wait %v", w)
	}
	// After the first attempt leaves the window there is room for one.
	if w := reserve(now.Add(60*time.Second), "user:alice", "addr:10.0.0.4"); w != 0 {
		t.Errorf("after the window: wait %v", w)
	}
	if w := reserve(now.Add(61*time.Second), "user:alice", "addr:10.0.0.4"); w != 9*time.Second {
		t.Errorf("then full again: wait %v, want 9s (the +10 s attempt expires at +70 s)", w)
	}
	// Old rows are pruned by later attempts.
	reserve(now.Add(10*time.Minute), "user:zed")
	if n, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM login_failures`); err != nil || n != 1 {
		t.Errorf("rows after ten minutes: %d, %v; want only the newest", n, err)
	}
}

func TestForgivenAttemptsDoNotCount(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	now := accountsNow
	for range 2 {
		if _, w, err := db.ReserveLoginAttempt(ctx, []string{"user:alice", "addr:a"}, 3, time.Minute, now); err != nil || w != 0 {
			t.Fatal(w, err)
		}
	}
	a, w, err := db.ReserveLoginAttempt(ctx, []string{"user:alice", "addr:a"}, 3, time.Minute, now)
	if err != nil || w != 0 {
		t.Fatal(w, err)
	}
	// The third succeeded: it and alice's failures go; the address keeps
	// its two failures.
	if err := db.ForgiveLoginAttempt(ctx, a, "user:alice"); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"user:alice": 0, "addr:a": 2} {
		if n, err := storage.CountForTest(ctx, db, `SELECT COUNT(*) FROM login_failures WHERE key = ?`, key); err != nil || n != want {
			t.Errorf("%s: %d rows, %v; want %d", key, n, err, want)
		}
	}
}

// TestLoginThrottleHoldsUnderRaces: 30 attempts at once on one key record
// exactly the limit; the rest are told to wait.
func TestLoginThrottleHoldsUnderRaces(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 30 {
		wg.Go(func() {
			_, w, err := db.ReserveLoginAttempt(ctx, []string{"user:alice"}, 10, time.Minute, accountsNow)
			if err != nil {
				t.Error(err)
				return
			}
			if w == 0 {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 10 {
		t.Errorf("%d of 30 racing attempts allowed, want 10", allowed)
	}
}

func TestRetryAfter(t *testing.T) {
	now := accountsNow
	at := func(s float64) time.Time { return now.Add(time.Duration(s * float64(time.Second))) }
	for _, tt := range []struct {
		name string
		ats  []time.Time
		want time.Duration
	}{
		{"room", []time.Time{at(-10)}, 0},
		{"full: the oldest frees a slot", []time.Time{at(-50), at(-10)}, 10 * time.Second},
		{"rounds up to whole seconds", []time.Time{at(-50.5), at(-10)}, 10 * time.Second},
		{"a fraction of a second is one second", []time.Time{at(-59.9), at(-1)}, time.Second},
		{"over the limit (a race): waits for enough to expire", []time.Time{at(-50), at(-40), at(-30)}, 20 * time.Second},
		{"already expired", []time.Time{at(-60), at(-61)}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := storage.RetryAfterForTest(tt.ats, 2, time.Minute, now); got != tt.want {
				t.Errorf("retryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}
