package storage_test

import (
	"context"
	"database/sql"
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

// bruteVersions is the reference of AgentVersions: one GROUP BY over the
// agents table, in the contract's order.
func bruteVersions(t *testing.T, db *storage.DB, activeSince time.Time) []kanade.AgentVersionCount {
	t.Helper()
	var out []kanade.AgentVersionCount
	err := storage.QueryForTest(t.Context(), db, `SELECT agent_version, COUNT(*), SUM(last_heartbeat >= ?)
		FROM agents GROUP BY agent_version ORDER BY COUNT(*) DESC, agent_version`,
		[]any{kanade.FormatTime(activeSince)}, func(rows *sql.Rows) error {
			var v kanade.AgentVersionCount
			if err := rows.Scan(&v.Version, &v.Total, &v.Active); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if out == nil {
		out = []kanade.AgentVersionCount{}
	}
	return out
}

// TestAgentVersionsMatchABruteForceCount drives the agents table the way
// the projection, DELETE /api/agents/{pc_id} and the prune do (new agents,
// beats moving between minutes, upgrades, agents without a version,
// deletes) and compares the summary-based rollup with a GROUP BY over the
// rows, at cutoffs on and around every instant written.
func TestAgentVersionsMatchABruteForceCount(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	for seed := range uint64(storagetest.Sample(3, 1)) {
		t.Run(fmt.Sprint("seed ", seed+1), func(t *testing.T) {
			db := storagetest.Open(t, nil)
			ctx := context.Background()
			r := rand.New(rand.NewPCG(seed+1, 99))
			versions := []string{"0.43.56", "0.43.55", "0.44.0", "0.43.9"}
			var instants []time.Time
			for round := range 12 {
				var beats []kanade.Heartbeat
				seen := map[string]bool{}
				for range 40 {
					pc := fmt.Sprintf("PC-%03d", r.IntN(60))
					if seen[pc] {
						continue
					}
					seen[pc] = true
					at := randomInstant(r, 10*time.Minute)
					instants = append(instants, at)
					beats = append(beats, kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: at}, AgentVersion: versions[r.IntN(len(versions))]})
				}
				err := db.Update(ctx, func(tx *storage.Tx) error {
					if err := tx.UpsertHeartbeats(ctx, beats); err != nil {
						return err
					}
					// An agent the projection never saw a version of.
					at := randomInstant(r, 10*time.Minute)
					instants = append(instants, at)
					_, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)
						ON CONFLICT (pc_id) DO NOTHING`, fmt.Sprintf("OLD-%02d", r.IntN(10)), kanade.FormatTime(at), kanade.FormatTime(at))
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if _, err := db.DeleteAgent(ctx, fmt.Sprintf("PC-%03d", r.IntN(60))); err != nil {
						t.Fatal(err)
					}
				}
				if round%4 == 3 {
					if err := db.Update(ctx, func(tx *storage.Tx) error {
						_, err := tx.PruneAgents(ctx, fleetBase.Add(-8*time.Minute), 5)
						return err
					}); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, at := range instants {
				for _, since := range []time.Time{at, at.Add(time.Nanosecond), at.Add(-time.Nanosecond), at.Truncate(time.Minute)} {
					got, err := db.AgentVersions(ctx, since)
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(bruteVersions(t, db, since), got); diff != "" {
						t.Fatalf("instant %d, since %s (-brute force +summaries):\n%s", i, kanade.FormatTime(since), diff)
					}
				}
			}
		})
	}
}

func TestAgentVersionsOrderByTotalThenVersionWithNullFirst(t *testing.T) {
	now := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	fresh, stale := kanade.FormatTime(now.Add(-time.Minute)), kanade.FormatTime(now.Add(-3*time.Minute))
	for i, row := range []struct {
		version any
		beat    string
	}{
		{"0.43.9", fresh}, {"0.43.9", stale},
		{"0.43.56", fresh}, {"0.43.56", fresh}, {"0.43.56", stale},
		{nil, stale}, {nil, fresh},
		{"0.44.0", stale}, {"0.44.0", stale},
		{"1.0.0", fresh},
	} {
		mustExec(t, db, `INSERT INTO agents (pc_id, agent_version, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
			fmt.Sprintf("PC-%d", i), row.version, row.beat, row.beat)
	}
	got, err := db.AgentVersions(ctx, now.Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	v := func(s string) *string { return &s }
	want := []kanade.AgentVersionCount{
		{Version: v("0.43.56"), Total: 3, Active: 2},
		{Version: nil, Total: 2, Active: 1},
		{Version: v("0.43.9"), Total: 2, Active: 1},
		{Version: v("0.44.0"), Total: 2, Active: 0},
		{Version: v("1.0.0"), Total: 1, Active: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAgentVersionsOfAnEmptyFleetIsAnEmptyList(t *testing.T) {
	db := storagetest.Open(t, nil)
	got, err := db.AgentVersions(context.Background(), time.Now())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("got %#v, %v; want an empty, non-nil list", got, err)
	}
}

func TestDeleteAgentRemovesOnlyThatRowAndSaysWhetherThereWasOne(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	at := kanade.FormatTime(fleetBase)
	for _, pc := range []string{"PC-1", "PC-2"} {
		mustExec(t, db, `INSERT INTO agents (pc_id, agent_version, last_heartbeat, updated_at) VALUES (?, '1', ?, ?)`, pc, at, at)
	}
	for i, want := range []bool{true, false} {
		got, err := db.DeleteAgent(ctx, "PC-1")
		if err != nil || got != want {
			t.Fatalf("delete #%d = %v, %v; want %v", i, got, err, want)
		}
	}
	if n := mustCount(t, db, `SELECT COUNT(*) FROM agents WHERE pc_id = 'PC-2'`); n != 1 {
		t.Errorf("PC-2 rows = %d", n)
	}
	known, _, err := db.AgentCounts(ctx, fleetBase, time.Minute)
	if err != nil || known != 1 {
		t.Errorf("known = %d, %v; want 1", known, err)
	}
}

func TestPruneAgentsDeletesOnlyBeatsBeforeTheCutoffInBoundedBatches(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	cutoff := fleetBase.Add(-30 * 24 * time.Hour)
	for i, at := range []time.Time{
		cutoff.Add(-time.Nanosecond), cutoff.Add(-time.Hour), cutoff.Add(-24 * time.Hour), cutoff.Add(-48 * time.Hour), cutoff.Add(-72 * time.Hour),
		cutoff, cutoff.Add(time.Nanosecond), fleetBase,
	} {
		mustExec(t, db, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`,
			fmt.Sprintf("PC-%d", i), kanade.FormatTime(at), kanade.FormatTime(at))
	}
	var batches []int64
	for {
		var n int64
		if err := db.Update(ctx, func(tx *storage.Tx) error {
			var err error
			n, err = tx.PruneAgents(ctx, cutoff, 2)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 2 {
			break
		}
	}
	if diff := cmp.Diff([]int64{2, 2, 1}, batches); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	var left []string
	if err := storage.QueryForTest(ctx, db, `SELECT pc_id FROM agents ORDER BY pc_id`, nil, func(rows *sql.Rows) error {
		var pc string
		err := rows.Scan(&pc)
		left = append(left, pc)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"PC-5", "PC-6", "PC-7"}, left); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

// The version rollup reads the summaries and one range of an index, never
// a table.
func TestAgentVersionsReadNoTable(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	plans, err := storage.AgentsQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range plans["versions"] {
		if strings.HasPrefix(d, "SCAN agents") || strings.HasPrefix(d, "SEARCH agents USING INDEX") {
			t.Errorf("%q in %q: the agents table is read", d, plans["versions"])
		}
	}
	t.Log(plans["versions"])
}
