package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// fleetBase is a minute boundary; every random timestamp lies around it.
var fleetBase = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func mustExec(t *testing.T, db *storage.DB, q string, args ...any) {
	t.Helper()
	if err := storage.ExecForTest(context.Background(), db, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func mustCount(t *testing.T, db *storage.DB, q string, args ...any) int64 {
	t.Helper()
	n, err := storage.CountForTest(context.Background(), db, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// randomInstant returns an instant within span before fleetBase (and up to a
// minute after it), often on an exact minute or second boundary, because
// boundaries are where a split-by-minute count goes wrong.
func randomInstant(r *rand.Rand, span time.Duration) time.Time {
	t := fleetBase.Add(-time.Duration(r.Int64N(int64(span)))).Add(time.Duration(r.Int64N(int64(time.Minute))))
	switch r.IntN(4) {
	case 0:
		return t.Truncate(time.Minute)
	case 1:
		return t.Truncate(time.Second)
	}
	return t
}

// seedFleet writes agents and runs with random timestamps and then moves,
// finishes, reaps, skips and deletes some of them, as the projection and the
// housekeeper would. It returns every instant it wrote, as cutoff candidates.
func seedFleet(t *testing.T, db *storage.DB, r *rand.Rand) []time.Time {
	t.Helper()
	var instants []time.Time
	// One transaction: the triggers fire per statement all the same, and a
	// remote database is not asked for thousands of commits.
	ctx := context.Background()
	err := db.Update(ctx, func(tx *storage.Tx) error {
		exec := func(q string, args ...any) {
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		const agents = 200
		for i := range agents {
			at := randomInstant(r, 10*time.Minute)
			instants = append(instants, at)
			exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`,
				fmt.Sprintf("PC-%04d", i), kanade.FormatTime(at), kanade.FormatTime(at))
		}
		for range 400 {
			pc := fmt.Sprintf("PC-%04d", r.IntN(agents+20))
			at := randomInstant(r, 10*time.Minute)
			instants = append(instants, at)
			switch r.IntN(5) {
			case 0: // the housekeeping of a decommissioned PC
				exec(`DELETE FROM agents WHERE pc_id = ?`, pc)
			case 1: // a beat within the same second: same minute, no trigger
				exec(`UPDATE agents SET last_heartbeat = substr(last_heartbeat, 1, 20) || '123456789Z' WHERE pc_id = ?`, pc)
			default: // the projection's upsert, new or moving between minutes
				exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)
				ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`,
					pc, kanade.FormatTime(at), kanade.FormatTime(at))
			}
		}

		exitCodes := []any{nil, 0, 0, 0, 1, 2, -1, 121, 126}
		const runs = 1500
		for i := range runs {
			at := randomInstant(r, 26*time.Hour)
			if i%50 == 0 {
				at = fleetBase.Add(-24 * time.Hour) // exactly on the default window's edge
			}
			instants = append(instants, at)
			code := exitCodes[r.IntN(len(exitCodes))]
			skipped := 0
			if code != nil && r.IntN(6) == 0 {
				skipped = 1
			}
			exec(`INSERT INTO execution_results (result_id, exit_code, skipped, recorded_at) VALUES (?, ?, ?, ?)`,
				fmt.Sprintf("r-%05d", i), code, skipped, kanade.FormatTime(at))
		}
		for range 800 {
			id := fmt.Sprintf("r-%05d", r.IntN(runs))
			switch r.IntN(6) {
			case 0:
				exec(`DELETE FROM execution_results WHERE result_id = ?`, id)
			case 1: // a result finishes a running row
				exec(`UPDATE execution_results SET exit_code = ?, skipped = 0 WHERE result_id = ? AND exit_code IS NULL`,
					exitCodes[1+r.IntN(len(exitCodes)-1)], id)
			case 2: // the reaper
				exec(`UPDATE execution_results SET exit_code = -1, reaped = 1 WHERE result_id = ?`, id)
			case 3: // a late result turns a failure into a skip
				exec(`UPDATE execution_results SET exit_code = 126, skipped = 1 WHERE result_id = ?`, id)
			case 4: // a replay with a different stream timestamp
				at := randomInstant(r, 26*time.Hour)
				instants = append(instants, at)
				exec(`UPDATE execution_results SET recorded_at = ? WHERE result_id = ?`, kanade.FormatTime(at), id)
			default: // an update touching no counted column
				exec(`UPDATE execution_results SET stdout = 'x' WHERE result_id = ?`, id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return instants
}

// cutoffs returns the instants the counts are checked at: minute boundaries,
// mid-minute instants, instants equal to a stored timestamp and one
// nanosecond either side of it, and instants before and after everything.
func cutoffs(r *rand.Rand, instants []time.Time) []time.Time {
	out := []time.Time{
		fleetBase.Add(-48 * time.Hour),
		fleetBase.Add(-24 * time.Hour),
		fleetBase.Add(-2 * time.Minute),
		fleetBase.Add(-2*time.Minute + 30*time.Second + 500*time.Millisecond),
		fleetBase.Add(-time.Nanosecond),
		fleetBase,
		fleetBase.Add(time.Hour),
	}
	for range 25 {
		at := instants[r.IntN(len(instants))]
		out = append(out, at, at.Add(-time.Nanosecond), at.Add(time.Nanosecond), at.Truncate(time.Minute))
	}
	return out
}

func TestFleetCountsMatchBruteForce(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	for seed := range uint64(storagetest.Sample(2, 1)) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			ctx := context.Background()
			db := storagetest.Open(t, nil)
			r := rand.New(rand.NewPCG(seed, 42))
			instants := seedFleet(t, db, r)

			var partial int // cutoffs where some but not all rows count
			// Cutoffs in each half of their minute: the edge is subtracted
			// in the first and added in the second (fleet.go).
			var halves [2]int
			for _, cutoff := range cutoffs(r, instants) {
				text := kanade.FormatTime(cutoff)
				if into := cutoff.Sub(cutoff.Truncate(time.Minute)); into > 0 {
					halves[min(into/(time.Minute/2), 1)]++
				}

				// AgentCounts takes now and a threshold; vary both.
				threshold := time.Duration(r.Int64N(int64(5 * time.Minute)))
				known, active, err := db.AgentCounts(ctx, cutoff.Add(threshold), threshold)
				if err != nil {
					t.Fatal(err)
				}
				wantKnown := mustCount(t, db, `SELECT COUNT(*) FROM agents`)
				wantActive := mustCount(t, db, `SELECT COUNT(*) FROM agents WHERE last_heartbeat >= ?`, text)
				if diff := cmp.Diff([2]int64{wantKnown, wantActive}, [2]int64{known, active}); diff != "" {
					t.Errorf("AgentCounts at cutoff %s: (-brute force +got) [known active]:\n%s", text, diff)
				}

				total, failed, err := db.ResultCounts(ctx, cutoff)
				if err != nil {
					t.Fatal(err)
				}
				wantTotal := mustCount(t, db, `SELECT COUNT(*) FROM execution_results WHERE recorded_at >= ?`, text)
				wantFailed := mustCount(t, db, `SELECT COUNT(*) FROM execution_results WHERE recorded_at >= ?
					AND exit_code IS NOT NULL AND exit_code <> 0 AND skipped = 0`, text)
				if diff := cmp.Diff([2]int64{wantTotal, wantFailed}, [2]int64{total, failed}); diff != "" {
					t.Errorf("ResultCounts since %s: (-brute force +got) [total failed]:\n%s", text, diff)
				}
				if 0 < active && active < known && 0 < failed && failed < total {
					partial++
				}
			}
			// Guard against a vacuous pass: the data must make the cutoffs matter.
			if partial < 10 || halves[0] < 10 || halves[1] < 10 {
				t.Fatalf("only %d cutoffs split the data, %v in each half of a minute; the test data is too tame", partial, halves)
			}
		})
	}
}

func TestFleetCountsOnEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	known, active, err := db.AgentCounts(ctx, fleetBase, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	total, failed, err := db.ResultCounts(ctx, fleetBase.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([4]int64{0, 0, 0, 0}, [4]int64{known, active, total, failed}); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestFleetCountsRuleExamples(t *testing.T) {
	// The failure rule of api.md, one row each, all in the same minute as
	// the cutoff but after it (so the base-table half of the query counts them).
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	at := kanade.FormatTime(fleetBase.Add(30 * time.Second))
	rows := []struct {
		code    any
		skipped int
	}{{nil, 0}, {0, 0}, {1, 0}, {-1, 0}, {126, 1}, {0, 1}, {123, 0}}
	for i, row := range rows {
		mustExec(t, db, `INSERT INTO execution_results (result_id, exit_code, skipped, recorded_at) VALUES (?, ?, ?, ?)`,
			fmt.Sprint(i), row.code, row.skipped, at)
	}
	for _, since := range []time.Time{fleetBase, fleetBase.Add(-time.Hour)} {
		total, failed, err := db.ResultCounts(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		// Failures: 1, -1 (reaped), 123. Not: NULL (running), 0, skips.
		if diff := cmp.Diff([2]int64{7, 3}, [2]int64{total, failed}); diff != "" {
			t.Errorf("since %s (-want +got) [total failed]:\n%s", since, diff)
		}
	}
}

var storedTables = map[string]bool{
	"agents": true, "execution_results": true, "agent_version_minutes": true, "agent_versions": true, "result_minutes": true, "fleet_counters": true,
}

func TestFleetCountsDoNotScanBigTables(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	plans, err := storage.FleetQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for name, details := range plans {
		if len(details) == 0 {
			t.Fatalf("%s: empty plan", name)
		}
		for _, d := range details {
			// A SCAN of a one-row subquery result (m, r, CONSTANT ROW) is
			// fine; a SCAN of a stored table is not.
			if table, ok := strings.CutPrefix(d, "SCAN "); ok && storedTables[strings.Fields(table)[0]] {
				t.Errorf("%s query plan scans: %q (plan %q)", name, d, details)
			}
		}
		// The edge of the window (the cutoff's own minute) is a range of an
		// index holding every column it counts: a row lookup per heartbeat
		// or result was ~10 ms at 10M runs a day.
		base := map[bool]string{true: "agents", false: "execution_results"}[strings.HasPrefix(name, "agents")]
		covered := false
		for _, d := range details {
			covered = covered || strings.HasPrefix(d, "SEARCH "+base+" USING COVERING INDEX ")
		}
		if !covered {
			t.Errorf("%s: the edge is not an index-only range of %s (plan %q)", name, base, details)
		}
	}
}
