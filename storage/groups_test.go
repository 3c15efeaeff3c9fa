package storage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// bucketA and bucketB are two incarnations of KV agent_groups.
var (
	bucketA = time.Date(2026, 3, 1, 0, 0, 0, 123, time.UTC)
	bucketB = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
)

func ms(pc string, rev uint64, groups ...string) storage.Membership {
	return storage.Membership{PCID: pc, Groups: groups, Revision: rev}
}

// overview is GroupOverview as "group: members (alive)" lines.
func overview(t *testing.T, db *storage.DB, alive time.Time) []string {
	t.Helper()
	gs, err := db.GroupOverview(context.Background(), alive)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, g := range gs {
		out = append(out, fmt.Sprintf("%s: %s (%d)", g.Name, strings.Join(g.Members, " "), g.Alive))
	}
	return out
}

func mirrorAt(t *testing.T, db *storage.DB) storage.GroupsMirror {
	t.Helper()
	m, err := db.GroupsMirror(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantOverview(t *testing.T, db *storage.DB, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, overview(t, db, fleetBase)); diff != "" {
		t.Errorf("overview (-want +got):\n%s", diff)
	}
}

func TestGroupsMirrorOrdersEveryWriteByRevision(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	if m := mirrorAt(t, db); m.Current(bucketA, 0) {
		t.Fatalf("a mirror never synced is current: %+v", m)
	}
	// A write-through before any snapshot: kept, but promises nothing.
	if err := db.WriteGroups(ctx, ms("PC-9", 1, "early")); err != nil {
		t.Fatal(err)
	}
	if m := mirrorAt(t, db); !m.Bucket.IsZero() {
		t.Errorf("write-through moved an unsynced mirror: %+v", m)
	}
	// The first snapshot replaces whatever was there.
	if err := db.SyncGroups(ctx, bucketA, 5, []storage.Membership{
		ms("PC-1", 2, "canary", "wave1"), ms("PC-2", 5, "wave1"), ms("PC-3", 4), // PC-3: deleted
	}); err != nil {
		t.Fatal(err)
	}
	wantOverview(t, db, "canary: PC-1 (0)", "wave1: PC-1 PC-2 (0)")
	if m := mirrorAt(t, db); !m.Current(bucketA, 5) || m.Current(bucketA, 6) || m.Current(bucketB, 5) {
		t.Errorf("after the snapshot: %+v", m)
	}

	// A write-through of the very next revision moves the mirror; one
	// after a gap does not, though its row is written.
	if err := db.WriteGroups(ctx, ms("PC-4", 6, "kiosk")); err != nil {
		t.Fatal(err)
	}
	if m := mirrorAt(t, db); m.Revision != 6 {
		t.Errorf("contiguous write-through: mirror at %d, want 6", m.Revision)
	}
	if err := db.WriteGroups(ctx, ms("PC-1", 8, "canary")); err != nil {
		t.Fatal(err)
	}
	if m := mirrorAt(t, db); m.Revision != 6 {
		t.Errorf("write-through after a gap moved the mirror to %d", m.Revision)
	}
	wantOverview(t, db, "canary: PC-1 (0)", "kiosk: PC-4 (0)", "wave1: PC-2 (0)")

	// The watch delivers 7 and 8: 8 is already there, 7 is new; the mirror
	// moves to 8.
	if err := db.ApplyGroups(ctx, bucketA, []storage.Membership{ms("PC-2", 7, "wave2"), ms("PC-1", 8, "canary")}); err != nil {
		t.Fatal(err)
	}
	if m := mirrorAt(t, db); m.Revision != 8 {
		t.Errorf("after the watch: mirror at %d, want 8", m.Revision)
	}
	wantOverview(t, db, "canary: PC-1 (0)", "kiosk: PC-4 (0)", "wave2: PC-2 (0)")

	// Late writes of older revisions change nothing: a value replaced
	// since, and a key deleted since (its row outlives the delete).
	if err := db.ApplyGroups(ctx, bucketA, []storage.Membership{ms("PC-4", 9)}); err != nil { // PC-4 deleted
		t.Fatal(err)
	}
	for _, late := range []storage.Membership{ms("PC-2", 6, "stale"), ms("PC-4", 6, "kiosk"), ms("PC-3", 3, "ghost")} {
		if err := db.WriteGroups(ctx, late); err != nil {
			t.Fatal(err)
		}
	}
	wantOverview(t, db, "canary: PC-1 (0)", "wave2: PC-2 (0)")
	if m := mirrorAt(t, db); m.Revision != 9 {
		t.Errorf("late writes moved the mirror to %d", m.Revision)
	}

	// A watch of another bucket is refused; nothing changes.
	if err := db.ApplyGroups(ctx, bucketB, []storage.Membership{ms("PC-1", 10, "x")}); !errors.Is(err, storage.ErrGroupsMirrorMoved) {
		t.Errorf("apply from another bucket = %v, want ErrGroupsMirrorMoved", err)
	}

	// A later snapshot of the same bucket: PC-1 is gone without a marker
	// (purged), PC-5 is new; PC-6 was written through after the snapshot
	// began and stays. The mirror never moves back.
	if err := db.WriteGroups(ctx, ms("PC-6", 14, "late")); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncGroups(ctx, bucketA, 12, []storage.Membership{ms("PC-2", 7, "wave2"), ms("PC-5", 11, "wave1")}); err != nil {
		t.Fatal(err)
	}
	wantOverview(t, db, "late: PC-6 (0)", "wave1: PC-5 (0)", "wave2: PC-2 (0)")
	if m := mirrorAt(t, db); m.Revision != 12 {
		t.Errorf("after the second snapshot: mirror at %d, want 12", m.Revision)
	}
	if err := db.WriteGroups(ctx, ms("PC-1", 10, "revived?")); err != nil { // older than the purge's bound
		t.Fatal(err)
	}
	wantOverview(t, db, "late: PC-6 (0)", "wave1: PC-5 (0)", "wave2: PC-2 (0)")
	if err := db.SyncGroups(ctx, bucketA, 3, nil); err != nil { // an older snapshot, read slowly
		t.Fatal(err)
	}
	if m := mirrorAt(t, db); m.Revision != 12 {
		t.Errorf("an older snapshot moved the mirror back to %d", m.Revision)
	}

	// The bucket was deleted and created again: its snapshot replaces all.
	if err := db.SyncGroups(ctx, bucketB, 1, []storage.Membership{ms("PC-7", 1, "fresh")}); err != nil {
		t.Fatal(err)
	}
	wantOverview(t, db, "fresh: PC-7 (0)")
	if m := mirrorAt(t, db); !m.Current(bucketB, 1) || m.Current(bucketA, 1) {
		t.Errorf("after the new bucket's snapshot: %+v", m)
	}
}

// beat upserts an agent's heartbeat as the projection does.
func beat(t *testing.T, db *storage.DB, pc string, at time.Time) {
	t.Helper()
	mustExec(t, db, `INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (pc_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat`,
		pc, kanade.FormatTime(at), kanade.FormatTime(at))
}

// TestGroupOverviewMatchesBruteForce plays random heartbeats, agent
// deletes and membership changes in any order and compares every group's
// members and live count with a join of the base tables, at cutoffs on and
// around the stored instants (the minute split is where it would go wrong).
func TestGroupOverviewMatchesBruteForce(t *testing.T) {
	storagetest.AnswersOnly(t)
	t.Parallel() // beside the other brute-force tests (storagetest.AnswersOnly)
	for seed := range uint64(storagetest.Sample(2, 1)) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			ctx := context.Background()
			db := storagetest.Open(t, nil)
			r := rand.New(rand.NewPCG(seed, 7))
			groups := []string{"canary", "wave1", "wave2", "kiosk", "東京"}
			pcs := 60
			var instants []time.Time
			var rev uint64
			randomGroups := func() []string {
				var gs []string
				for _, g := range groups {
					if r.IntN(3) == 0 {
						gs = append(gs, g)
					}
				}
				return kanade.NormalizeGroups(gs)
			}
			var first []storage.Membership
			for i := range pcs / 2 {
				rev++
				first = append(first, ms(fmt.Sprintf("PC-%03d", i), rev, randomGroups()...))
			}
			if err := db.SyncGroups(ctx, bucketA, rev, first); err != nil {
				t.Fatal(err)
			}
			ops := 600
			if db.Remote() {
				ops = 200 // each a few round trips
			}
			for range ops {
				pc := fmt.Sprintf("PC-%03d", r.IntN(pcs))
				switch r.IntN(6) {
				case 0:
					mustExec(t, db, `DELETE FROM agents WHERE pc_id = ?`, pc)
				case 1:
					rev++
					if err := db.ApplyGroups(ctx, bucketA, []storage.Membership{ms(pc, rev, randomGroups()...)}); err != nil {
						t.Fatal(err)
					}
				case 2:
					rev++
					if err := db.WriteGroups(ctx, ms(pc, rev, randomGroups()...)); err != nil {
						t.Fatal(err)
					}
				case 3:
					if r.IntN(10) == 0 { // the worker, now and then
						if _, err := db.RefreshGroupLists(ctx); err != nil {
							t.Fatal(err)
						}
					}
				default:
					at := randomInstant(r, 10*time.Minute)
					instants = append(instants, at)
					beat(t, db, pc, at)
				}
			}
			var checked, partial int
			check := func(lists string) {
				for _, cut := range cutoffs(r, instants) {
					got := overview(t, db, cut)
					want := bruteForceOverview(t, db, cut)
					if diff := cmp.Diff(want, got); diff != "" {
						t.Fatalf("%s, cutoff %s (-brute force +overview):\n%s", lists, kanade.FormatTime(cut), diff)
					}
					for _, line := range got {
						if !strings.HasSuffix(line, "(0)") {
							partial++
						}
					}
					checked++
				}
			}
			if stale := mustCount(t, db, `SELECT COUNT(*) FROM group_lists WHERE stale = 1`); stale == 0 || mirrorAt(t, db).StaleLists != stale {
				t.Fatalf("%d lists stale, the mirror says %d (none: the stale path goes untested)", stale, mirrorAt(t, db).StaleLists)
			}
			check("some lists stale")
			if _, err := db.RefreshGroupLists(ctx); err != nil {
				t.Fatal(err)
			}
			if n := mustCount(t, db, `SELECT COUNT(*) FROM group_lists WHERE stale = 1 OR members IS NULL`); n != 0 {
				t.Errorf("%d lists stale or empty after a refresh", n)
			}
			check("lists refreshed")
			if partial == 0 {
				t.Errorf("no cutoff of %d found a live member: the test checks nothing", checked)
			}
			if n := mustCount(t, db, `SELECT COUNT(*) FROM group_minutes WHERE agents < 0`); n != 0 {
				t.Errorf("%d group_minutes rows count below zero", n)
			}
			zero := mustCount(t, db, `SELECT COUNT(*) FROM group_minutes WHERE agents = 0`)
			if zero == 0 {
				t.Error("no group_minutes row at zero: the prune goes untested")
			}
			if n, err := db.PruneGroupMinutes(ctx); err != nil || n != zero {
				t.Errorf("prune = %d, %v; want the %d rows at zero", n, err, zero)
			}
			check("after the prune")
		})
	}
}

// bruteForceOverview is what GroupOverview must answer, from the base
// tables only.
func bruteForceOverview(t *testing.T, db *storage.DB, cut time.Time) []string {
	t.Helper()
	names := mustStrings(t, db, `SELECT DISTINCT group_name FROM agent_group_members`)
	slices.Sort(names)
	out := []string{}
	for _, g := range names {
		members := mustStrings(t, db, `SELECT pc_id FROM agent_group_members WHERE group_name = ?`, g)
		slices.Sort(members)
		alive := mustCount(t, db, `SELECT COUNT(*) FROM agent_group_members AS m JOIN agents AS a ON a.pc_id = m.pc_id
			WHERE m.group_name = ? AND a.last_heartbeat >= ?`, g, kanade.FormatTime(cut))
		out = append(out, fmt.Sprintf("%s: %s (%d)", g, strings.Join(members, " "), alive))
	}
	return out
}

// mustStrings reads the one text column of q's rows.
func mustStrings(t *testing.T, db *storage.DB, q string, args ...any) []string {
	t.Helper()
	out, err := storage.StringsForTest(context.Background(), db, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

func TestGroupOverviewReadsNoBigTableWhole(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	plans, err := storage.GroupsQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for name, details := range plans {
		for i, d := range details {
			// The members are read whole by design (they are the answer),
			// in primary-key order, never sorted; agents and group_minutes
			// are only searched. (The temporary trees that remain group and
			// order a few rows per group.)
			if strings.HasPrefix(d, "SCAN agents") || strings.HasPrefix(d, "SCAN group_minutes") {
				t.Errorf("%s: %q in plan %q", name, d, details)
			}
			if d == "SCAN agent_group_members" && i+1 < len(details) && strings.Contains(details[i+1], "TEMP B-TREE") {
				t.Errorf("%s: the members are sorted, not read in key order: %q", name, details)
			}
		}
	}
}
