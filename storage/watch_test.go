package storage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestClaimWatchGivesEachRowToOneClaim runs claims of different tokens at
// once over the same stale agents: every agent is claimed, by exactly one.
func TestClaimWatchGivesEachRowToOneClaim(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	start := fleetBase.Add(-time.Hour)
	const agents = 120
	for i := range agents {
		at := kanade.FormatTime(start.Add(time.Duration(i) * time.Second))
		mustExec(t, db, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`, fmt.Sprintf("PC-%03d", i), at, at)
	}
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := 0; ; round++ {
				token := fmt.Sprintf("w%d-%d", w, round)
				rows, err := db.ClaimWatch(ctx, storage.WatchClaim{Token: token, Now: fleetBase, Lease: time.Minute,
					Since: start, Cutoff: fleetBase.Add(-2 * time.Minute), Limit: 7})
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					if prev, ok := owner[r.PCID]; ok {
						t.Errorf("%s claimed by %s and %s", r.PCID, prev, token)
					}
					owner[r.PCID] = token
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owner) != agents {
		t.Errorf("%d of %d agents claimed", len(owner), agents)
	}
	// Until settled, nobody claims them again.
	rows, err := db.ClaimWatch(ctx, storage.WatchClaim{Token: "late", Now: fleetBase, Lease: time.Minute,
		Since: start, Cutoff: fleetBase.Add(-2 * time.Minute), Limit: 1000})
	if err != nil || len(rows) != 0 {
		t.Errorf("claimed again before the lease passed: %d rows, %v", len(rows), err)
	}
	// Settling one token records its rows, and only its rows.
	tokens := slices.Sorted(func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, tok := range owner {
			if !seen[tok] {
				seen[tok] = true
				if !yield(tok) {
					return
				}
			}
		}
	})
	n, err := db.SettleWatch(ctx, tokens[0], nil)
	if err != nil || n == 0 {
		t.Fatalf("settle %s: %d, %v", tokens[0], n, err)
	}
	if got := mustCount(t, db, `SELECT COUNT(*) FROM agents WHERE offline_since = last_heartbeat`); got != n {
		t.Errorf("%d recorded offline, want %d", got, n)
	}
}

func TestWatchStatementsUseIndexes(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	plans, err := storage.WatchQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for name, details := range plans {
		for _, d := range details {
			if strings.HasPrefix(d, "SCAN agents") {
				t.Errorf("%s scans the agents table: %q", name, details)
			}
		}
		t.Logf("%s: %q", name, details)
	}
}
