package projection

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// TestRetentionShrinksSlowTransactionsAndStaysExact runs retention with a
// clock that makes every housekeeping transaction look a second long: the
// rows per transaction must halve from HousekeepingBatch down to the floor
// (so the projector never waits behind a long one), and still exactly the
// runs past the window go, with the per-minute counters and scan_durations
// equal to a database that only ever held the runs kept.
func TestRetentionShrinksSlowTransactionsAndStaysExact(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 4))
	exit0, exit1 := int64(0), int64(1)
	var old, kept []storage.Result
	for i := range 700 {
		age := 91*24*time.Hour + time.Duration(rng.Int64N(int64(48*time.Hour))) // past the window
		if i%7 == 0 {
			age = time.Duration(rng.Int64N(int64(89 * 24 * time.Hour))) // inside it
		}
		rec := e.now.Add(-age)
		exit := &exit0
		if rng.IntN(5) == 0 {
			exit = &exit1
		}
		r := storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("r%03d", i), RequestID: fmt.Sprintf("q%03d", i),
			PcID: fmt.Sprintf("PC-%d", i%13), ExitCode: exit, ManifestID: fmt.Sprintf("job-%d", i%5),
			StartedAt:  kanade.Timestamp{Time: rec.Add(-time.Duration(rng.Int64N(int64(time.Hour))))},
			FinishedAt: kanade.Timestamp{Time: rec}}, RecordedAt: rec}
		if i%7 == 0 {
			kept = append(kept, r)
		} else {
			old = append(old, r)
		}
	}
	apply := func(rs []storage.Result) {
		t.Helper()
		if err := e.db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, rs); return err }); err != nil {
			t.Fatal(err)
		}
	}
	apply(old)
	apply(kept)

	// The clock stands still (every transaction quick) until the fifth
	// delete_results transaction starts; from then on every reading of it is
	// a second later (every transaction slow).
	var ticks atomic.Int64
	var slow atomic.Bool
	clock := func() time.Time {
		if slow.Load() {
			return e.now.Add(time.Duration(ticks.Add(1)) * time.Second)
		}
		return e.now.Add(time.Duration(ticks.Load()) * time.Second)
	}
	var mu sync.Mutex
	var limits []int
	type warm struct{ limit, rows int }
	var warms []warm
	w, err := New(Config{DB: e.db, Clock: clock, HousekeepingBatch: 64, HousekeepingRest: -1, Logger: testLogger(t),
		warmed: func(limit int, found map[string]int) {
			mu.Lock()
			warms = append(warms, warm{limit, found[""]})
			mu.Unlock()
		},
		inHousekeep: func(action string, limit int) {
			if action == "delete_results" {
				mu.Lock()
				limits = append(limits, limit)
				if len(limits) == 5 {
					slow.Store(true)
				}
				mu.Unlock()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.HousekeepWith(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := limits
	mu.Unlock()
	// Small first, doubled while quick up to the batch, then halved while
	// slow down to the least.
	want := []int{minHousekeepingBatch, 2 * minHousekeepingBatch, 4 * minHousekeepingBatch, 64, 64, 32, 16, minHousekeepingBatch}
	if len(got) < len(want)+2 || !slices.Equal(got[:len(want)], want) || got[len(got)-1] != minHousekeepingBatch {
		t.Errorf("rows per delete_results transaction = %v, want %v, then %d", got, want, minHousekeepingBatch)
	}
	// Each transaction was warmed first, with its own limit, and the warm
	// read found the rows it then deleted (a libSQL server is not warmed).
	var wantWarms []warm
	left := len(old)
	for _, l := range got {
		n := min(l, left)
		if e.db.Remote() {
			n = 0
		}
		wantWarms = append(wantWarms, warm{l, n})
		left -= min(l, left)
	}
	mu.Lock()
	if diff := cmp.Diff(wantWarms, warms, cmp.AllowUnexported(warm{})); diff != "" {
		t.Errorf("warm reads before delete_results transactions (-want +got):\n%s", diff)
	}
	mu.Unlock()

	const (
		results = `SELECT result_id, exit_code, recorded_at FROM execution_results ORDER BY result_id`
		minutes = `SELECT minute, total, failed FROM result_minutes WHERE total <> 0 OR failed <> 0 ORDER BY minute`
	)
	since := e.now.Add(-100 * 24 * time.Hour)
	scan := func() []kanade.ScanDuration {
		t.Helper()
		s, err := e.db.ScanDurations(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	gotRows, gotMinutes, gotScan := e.dump(results), e.dump(minutes), scan()

	e.openDB() // brute force: a database that only ever held the kept runs
	apply(kept)
	if len(gotRows) != len(kept) {
		t.Errorf("%d runs left after retention, want the %d inside the window", len(gotRows), len(kept))
	}
	if diff := cmp.Diff(e.dump(results), gotRows); diff != "" {
		t.Errorf("runs kept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(e.dump(minutes), gotMinutes); diff != "" {
		t.Errorf("result_minutes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(scan(), gotScan); diff != "" {
		t.Errorf("scan_durations (-want +got):\n%s", diff)
	}
}

// TestHousekeepingRestsBetweenTransactions: with a clock that makes every
// housekeeping transaction take 100 ms, housekeeping waits HousekeepingRest
// times that after each transaction that another of the same step follows
// (what it dirtied is still to be checkpointed), never after a step's last,
// and not at all with a negative HousekeepingRest. delete_results' warm
// read counts too (one more reading of the clock: 100 ms more).
func TestHousekeepingRestsBetweenTransactions(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		want  time.Duration // each rest
	}{{0, 100 * time.Millisecond}, {2.5, 250 * time.Millisecond}, {-1, 0}} {
		t.Run(fmt.Sprint(tc.ratio), func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			var old []storage.Result
			exit0 := int64(0)
			for i := range 100 {
				rec := e.now.Add(-91*24*time.Hour - time.Duration(i)*time.Minute)
				old = append(old, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("r%03d", i),
					RequestID: fmt.Sprintf("q%03d", i), PcID: "PC-1", ManifestID: "job", ExitCode: &exit0,
					StartedAt: kanade.Timestamp{Time: rec.Add(-time.Second)}, FinishedAt: kanade.Timestamp{Time: rec}}, RecordedAt: rec})
			}
			if err := e.db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, old); return err }); err != nil {
				t.Fatal(err)
			}
			var ticks atomic.Int64 // every reading of the clock 100 ms after the one before
			clock := func() time.Time { return e.now.Add(time.Duration(ticks.Add(1)) * 100 * time.Millisecond) }
			var mu sync.Mutex
			var events []string
			w, err := New(Config{DB: e.db, Clock: clock, HousekeepingBatch: 16, HousekeepingTxTime: time.Hour,
				HousekeepingRest: tc.ratio, Logger: testLogger(t),
				inHousekeep: func(action string, limit int) {
					mu.Lock()
					events = append(events, action)
					mu.Unlock()
				},
				rest: func(ctx context.Context, d time.Duration) error {
					mu.Lock()
					events = append(events, "rest "+d.String())
					mu.Unlock()
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.HousekeepWith(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if n := e.dump(`SELECT COUNT(*) FROM execution_results`); !slices.Equal(n, []string{"0"}) {
				t.Fatalf("%v runs left after retention, want 0", n)
			}
			// A rest between two transactions of the same step, none after
			// a step's last. delete_results: 10, 16, 16, 16, 16, 16 and 10
			// rows, six full transactions.
			var txs, want []string
			for _, s := range events {
				if !strings.HasPrefix(s, "rest") {
					txs = append(txs, s)
				}
			}
			for j, s := range txs {
				want = append(want, s)
				if tc.want > 0 && j+1 < len(txs) && txs[j+1] == s {
					rest := tc.want
					if s == "delete_results" {
						rest *= 2 // its warm read's time too: one more tick
					}
					want = append(want, "rest "+rest.String())
				}
			}
			if diff := cmp.Diff(want, events); diff != "" {
				t.Errorf("housekeeping's transactions and rests (-want +got):\n%s", diff)
			}
			if got := strings.Count(strings.Join(events, ","), "delete_results"); got != 7 {
				t.Errorf("%d delete_results transactions, want 7: %v", got, events)
			}
		})
	}
}

// TestHousekeepingWarmIsAnAdvanceOnly: a warm read cut short at
// housekeepingWarmTime still lets its transaction run (the read is only
// ever ahead of the transaction's own), while a warm read that fails for
// another reason fails the step before its transaction, as the
// transaction would have.
func TestHousekeepingWarmIsAnAdvanceOnly(t *testing.T) {
	e := newEnv(t)
	w, err := New(Config{DB: e.db, HousekeepingRest: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var txs int
	fn := func(tx *storage.Tx, limit int) (int64, error) { txs++; return 0, nil }
	start := time.Now()
	slow := func(ctx context.Context, limit int) error {
		<-ctx.Done()
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if _, err := w.repeat(t.Context(), step{action: "delete_results", fn: fn, warm: slow}, 0); err != nil {
		t.Fatalf("a warm read cut short failed the step: %v", err)
	}
	if took := time.Since(start); txs != 1 || took < housekeepingWarmTime {
		t.Errorf("%d transactions after %v; want 1 after the warm read's %v", txs, took, housekeepingWarmTime)
	}
	broken := func(ctx context.Context, limit int) error { return errors.New("disk I/O error") }
	if _, err := w.repeat(t.Context(), step{action: "delete_results", fn: fn, warm: broken}, 0); err == nil || !strings.Contains(err.Error(), "disk I/O error") {
		t.Errorf("a failed warm read: err = %v, want the read's error", err)
	}
	if txs != 1 {
		t.Errorf("%d transactions, want none after the failed warm read", txs-1)
	}
}

// seedExpired stores n runs past the result window (and one inside it),
// recorded a minute apart.
func (e *env) seedExpired(n int) {
	e.t.Helper()
	var rs []storage.Result
	exit0 := int64(0)
	for i := range n + 1 {
		rec := e.now.Add(-91*24*time.Hour - time.Duration(i)*time.Minute)
		if i == n {
			rec = e.now.Add(-time.Hour)
		}
		rs = append(rs, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("r%03d", i),
			RequestID: fmt.Sprintf("q%03d", i), PcID: "PC-1", ManifestID: "job", ExitCode: &exit0,
			StartedAt: kanade.Timestamp{Time: rec.Add(-time.Second)}, FinishedAt: kanade.Timestamp{Time: rec}}, RecordedAt: rec})
	}
	if err := e.db.Update(context.Background(), func(tx *storage.Tx) error { _, err := tx.ApplyResults(context.Background(), rs); return err }); err != nil {
		e.t.Fatal(err)
	}
}

// housekeepLog records a worker's housekeeping transactions (action and
// limit) and rests, in order.
type housekeepLog struct {
	mu     sync.Mutex
	events []string
}

func (l *housekeepLog) add(s string) {
	l.mu.Lock()
	l.events = append(l.events, s)
	l.mu.Unlock()
}

func (l *housekeepLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *housekeepLog) hooks(c *Config) {
	c.inHousekeep = func(action string, limit int) { l.add(fmt.Sprintf("%s %d", action, limit)) }
	c.rest = func(ctx context.Context, d time.Duration) error { l.add("rest " + d.String()); return nil }
}

// results is the delete_results part of the log.
func (l *housekeepLog) results() []string {
	var out []string
	events := l.get()
	for i, s := range events {
		if strings.HasPrefix(s, "delete_results") || (strings.HasPrefix(s, "rest") && i > 0 && strings.HasPrefix(events[i-1], "delete_results")) {
			out = append(out, s)
		}
	}
	return out
}

// TestHousekeepingPacesRetention: a round with a spread counts the runs
// past the window and deletes them at the pace that takes the spread,
// in transactions of what that pace deletes in pacedEvery (at least
// minHousekeepingBatch rows), resting after each until its rows' share of
// the spread has passed; and it deletes the runs after every other step.
// A round that finds maxPacedRows or more (a backlog) is not paced: it
// deletes as a round without a spread does, with only the rests of
// HousekeepingRest.
func TestHousekeepingPacesRetention(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rows    int
		spread  time.Duration
		maxRows int
		want    []string
	}{
		// 50 rows over 100 s: 0.5 rows/s, so transactions of 10 rows (the
		// floor), each followed by 20 s less the 0.2 s its warm read and
		// transaction took (a clock reading is 100 ms).
		{"paced", 50, 100 * time.Second, 0, []string{
			"delete_results 10", "rest 19.8s", "delete_results 10", "rest 19.8s", "delete_results 10", "rest 19.8s",
			"delete_results 10", "rest 19.8s", "delete_results 10", "rest 19.8s", "delete_results 10"}},
		// 300 rows over 10 s: 30 rows/s, transactions of up to 30 rows
		// (they double from 10 while quick), each resting until its
		// share (a row's is 1/30 s) has passed, or at least HousekeepingRest
		// times the 0.2 s it took.
		{"capped at a second's pace", 300, 10 * time.Second, 0, []string{
			"delete_results 10", "rest 200ms", "delete_results 20", "rest 466.666666ms",
			"delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms",
			"delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms",
			"delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms", "delete_results 30", "rest 800ms",
			"delete_results 30"}},
		// A backlog: as many rows as maxPacedRows. As without a spread.
		{"backlog", 50, 100 * time.Second, 50, []string{
			"delete_results 10", "rest 200ms", "delete_results 20", "rest 200ms", "delete_results 40"}},
		{"no spread", 50, 0, 0, []string{
			"delete_results 10", "rest 200ms", "delete_results 20", "rest 200ms", "delete_results 40"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.seedExpired(tc.rows)
			var ticks atomic.Int64 // every reading of the clock 100 ms after the one before
			clock := func() time.Time { return e.now.Add(time.Duration(ticks.Add(1)) * 100 * time.Millisecond) }
			var log housekeepLog
			cfg := Config{DB: e.db, Clock: clock, HousekeepingTxTime: time.Hour, Logger: testLogger(t), maxPacedRows: tc.maxRows}
			log.hooks(&cfg)
			w, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.HousekeepOver(t.Context(), nil, tc.spread); err != nil {
				t.Fatal(err)
			}
			if n := e.dump(`SELECT COUNT(*) FROM execution_results`); !slices.Equal(n, []string{"1"}) {
				t.Fatalf("%v runs left after retention, want the 1 inside the window", n)
			}
			if diff := cmp.Diff(tc.want, log.results()); diff != "" {
				t.Errorf("delete_results' transactions and rests (-want +got):\n%s", diff)
			}
			events := log.get()
			if last := events[len(events)-1]; !strings.HasPrefix(last, "delete_results") {
				t.Errorf("the round ended with %q, want delete_results last: %v", last, events)
			}
		})
	}
}

// TestHousekeepingLoopSpreadsRetention: the worker's own housekeeping loop
// spreads a round's run deletes over RetentionSpread of its period: 20 rows in a 40 s period are deleted over 30 s.
func TestHousekeepingLoopSpreadsRetention(t *testing.T) {
	e := newEnv(t)
	e.seedExpired(20)
	var log housekeepLog
	e.start(func(c *Config, _ context.CancelFunc) {
		c.Housekeeping = 40 * time.Second
		c.HousekeepingTxTime = time.Hour
		log.hooks(c)
	})
	want := []string{"delete_results 10", "rest 15s", "delete_results 10", "rest 15s", "delete_results 10"}
	deadline := time.Now().Add(10 * time.Second)
	for len(log.results()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(want, log.results()); diff != "" {
		t.Errorf("delete_results' transactions and rests (-want +got):\n%s", diff)
	}
}
