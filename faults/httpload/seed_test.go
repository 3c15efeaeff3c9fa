package httpload

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/storage"
)

func TestSpreadStaysInsideTheSpanAtAnySize(t *testing.T) {
	first := time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC)
	span := 23*time.Hour - time.Minute
	for _, n := range []int{1, 7, 100_000, 1_000_000, 10_000_000} {
		prev := first.Add(-1)
		for _, i := range []int{0, 1, n / 2, n - 2, n - 1} {
			if i < 0 || i >= n {
				continue
			}
			got := spread(first, span, i, n)
			if got.Before(first) || !got.Before(first.Add(span)) || got.Before(prev) {
				t.Fatalf("n=%d i=%d: %v outside [%v, %v) or before %v", n, i, got, first, first.Add(span), prev)
			}
			prev = got
		}
		// The last instant is one step (plus the division's remainder, under
		// n ns) before the end.
		step := span / time.Duration(n)
		if gap := first.Add(span).Sub(spread(first, span, n-1, n)); gap < step || gap >= step+time.Duration(n) {
			t.Fatalf("n=%d: the last run is %v before the end of the span, want one step (%v)", n, gap, step)
		}
	}
}

// The seeded file holds what Seeded says, all of it inside the 24 h window.
func TestSeed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kanade.db")
	now := time.Now()
	s, err := seed(ctx, path, 300, 3000, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if s.Agents != 300 || s.Runs != 3000 || s.Fresh == 0 || s.Fresh == 300 || s.Failed == 0 || s.Jobs < 150 {
		t.Fatalf("seeded %+v", s)
	}
	db, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	known, active, err := db.AgentCounts(ctx, now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	total, failed, err := db.ResultCounts(ctx, now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if known != 300 || active != int64(s.Fresh) || total != 3000 || failed != int64(s.Failed) {
		t.Fatalf("database: %d known, %d active, %d runs, %d failed; seeded %+v", known, active, total, failed, s)
	}
}
