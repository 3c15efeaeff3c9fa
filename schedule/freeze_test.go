package schedule

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/testkit"
)

// freezeWorker is a worker whose log the test reads.
func (f *fleet) freezeWorker(logs *testkit.SyncBuffer) *Scheduler {
	f.t.Helper()
	return f.workerLogging(slog.New(slog.NewTextHandler(logs, nil)))
}

func TestFreezeSkipsCalendarFiringsInsideTheWindowAndTheNextOneFires(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "daily", `{"id":"daily","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"pcs":["PC-1"]},"tz":"utc"}`)
	// Frozen from the 10th to the 12th (exclusive), in UTC.
	f.put(kanade.BucketFleetConfig, kanade.KeyFreeze, `{"from":"2026-06-10","until":"2026-06-12","reason":"year-end freeze","tz":"utc"}`)
	logs := &testkit.SyncBuffer{}
	w := f.freezeWorker(logs)
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.freeze.f != nil }, "freeze mirrored")

	f.tickAll(utc(9, 8, 0, 0), w)  // first sight
	f.tickAll(utc(9, 9, 0, 0), w)  // before the window: fires
	f.tickAll(utc(10, 9, 0, 0), w) // inside: skipped
	f.tickAll(utc(11, 9, 0, 5), w) // inside: skipped
	if diff := cmp.Diff([]string{"commands.pc.PC-1"}, f.received()); diff != "" {
		t.Fatalf("commands up to the 11th (-want +got):\n%s", diff)
	}
	if got := strings.Count(logs.String(), "firing skipped: the fleet is frozen"); got != 2 {
		t.Errorf("%d skip lines logged, want 2:\n%s", got, logs)
	}
	if !strings.Contains(logs.String(), "year-end freeze") {
		t.Errorf("the reason is not logged:\n%s", logs)
	}
	if got := counter(w.m.frozen); got != 2 {
		t.Errorf("frozen skips = %v, want 2", got)
	}
	// The first instant after the window fires, once; the skipped ones are
	// not caught up (they were decided, not missed).
	f.tickAll(utc(12, 9, 0, 0), w)
	f.tickAll(utc(12, 9, 0, 1), w)
	if diff := cmp.Diff([]string{"commands.pc.PC-1"}, f.received()); diff != "" {
		t.Errorf("commands on the 12th (-want +got):\n%s", diff)
	}
	if got := counter(w.m.missed); got != 0 {
		t.Errorf("missed = %v: a frozen firing is not a missed one", got)
	}
	// A restarted worker reads the progress and does not fire the skipped
	// instants late either.
	w2 := f.worker()
	f.tickAll(utc(12, 10, 0, 0), w2)
	if got := f.received(); len(got) != 0 {
		t.Errorf("a new worker dispatched %v", got)
	}
}

func TestFreezeChangesAreFollowedAndAnUndecodableValueFreezes(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "daily", `{"id":"daily","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"pcs":["PC-1"]},"tz":"utc"}`)
	logs := &testkit.SyncBuffer{}
	w := f.freezeWorker(logs)
	f.tickAll(utc(8, 8, 0, 0), w)
	f.tickAll(utc(8, 9, 0, 0), w)
	if got := f.received(); len(got) != 1 {
		t.Fatalf("unfrozen day: %v", got)
	}

	// Garbage in the key: fail safe, frozen.
	f.put(kanade.BucketFleetConfig, kanade.KeyFreeze, `{"from":`)
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.freeze.bad }, "undecodable freeze seen")
	f.tickAll(utc(9, 9, 0, 0), w)
	if got := f.received(); len(got) != 0 {
		t.Errorf("fired under an undecodable freeze: %v", got)
	}
	// An empty freeze is active forever.
	f.put(kanade.BucketFleetConfig, kanade.KeyFreeze, `{}`)
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return !w.freeze.bad && w.freeze.f != nil }, "empty freeze seen")
	f.tickAll(utc(10, 9, 0, 0), w)
	if got := f.received(); len(got) != 0 {
		t.Errorf("fired under an empty freeze: %v", got)
	}
	// Thawing is a delete.
	kv, err := f.nats.JS.KeyValue(context.Background(), kanade.BucketFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(context.Background(), kanade.KeyFreeze); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.freeze.f == nil && !w.freeze.bad }, "thaw seen")
	f.tickAll(utc(11, 9, 0, 0), w)
	if got := f.received(); len(got) != 1 {
		t.Errorf("after the thaw: %v, want one command", got)
	}
	if !strings.Contains(logs.String(), "treating the fleet as frozen") {
		t.Errorf("the undecodable value is not logged:\n%s", logs)
	}
}

func TestFreezeSkipsReconciles(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "once", `{"id":"once","when":{"per_pc":"once"},"job_id":"inv","target":{"pcs":["PC-1"]}}`)
	f.put(kanade.BucketFleetConfig, kanade.KeyFreeze, `{"reason":"incident 42","tz":"utc"}`)
	logs := &testkit.SyncBuffer{}
	w := f.freezeWorker(logs)
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.freeze.f != nil }, "freeze mirrored")
	f.tickAll(utc(9, 8, 0, 0), w)
	f.tickAll(utc(9, 8, 1, 0), w)
	if got := f.received(); len(got) != 0 {
		t.Fatalf("per_pc dispatched while frozen: %v", got)
	}
	if !strings.Contains(logs.String(), "reconciles skipped: the fleet is frozen") || !strings.Contains(logs.String(), "incident 42") {
		t.Errorf("the skip is not logged with its reason:\n%s", logs)
	}
	kv, err := f.nats.JS.KeyValue(context.Background(), kanade.BucketFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(context.Background(), kanade.KeyFreeze); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.freeze.f == nil }, "thaw seen")
	f.tickAll(utc(9, 8, 2, 0), w)
	if diff := cmp.Diff([]string{"commands.pc.PC-1"}, f.received()); diff != "" {
		t.Errorf("after the thaw (-want +got):\n%s", diff)
	}
}

// The scheduler does not fire before it knows whether the fleet is frozen.
func TestNothingFiresBeforeTheFreezeStateIsKnown(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "once", `{"id":"once","when":{"per_pc":"once"},"job_id":"inv","target":{"pcs":["PC-1"]}}`)
	w := f.worker()
	w.mu.Lock()
	w.freeze.loaded = false
	w.mu.Unlock()
	f.tickAll(utc(9, 8, 0, 0), w)
	if got := f.received(); len(got) != 0 {
		t.Errorf("fired with the freeze state unknown: %v", got)
	}
}
