package groupmirror_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/groupmirror"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go/jetstream"
)

// fixture is a bootstrapped embedded NATS and a real database.
type fixture struct {
	t    *testing.T
	nats *bustest.Server
	db   *storage.DB
	logs *testkit.SyncBuffer
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, nats: bustest.StartBootstrapped(t), db: storagetest.Open(t, nil), logs: &testkit.SyncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mirror log:\n%s", f.logs)
		}
	})
	return f
}

// start runs a watcher until the returned stop is called (or the test
// ends); stop waits for it to return.
func (f *fixture) start() (stop func()) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- groupmirror.Run(ctx, f.nats.Bus, groupmirror.Config{
			DB: f.db, Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
			Check: 50 * time.Millisecond, Settle: 20 * time.Millisecond, MaxStale: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("Run = %v, want nil when its context ends", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) kv() jetstream.KeyValue {
	f.t.Helper()
	kv, err := f.nats.JS.KeyValue(f.t.Context(), kanade.BucketAgentGroups)
	if err != nil {
		f.t.Fatal(err)
	}
	return kv
}

func (f *fixture) put(pc, value string) {
	f.t.Helper()
	if _, err := f.kv().PutString(f.t.Context(), pc, value); err != nil {
		f.t.Fatal(err)
	}
}

// settled waits until the mirror holds everything the bucket holds now,
// with every member list rebuilt, and returns the overview as "group:
// members" lines.
func (f *fixture) settled() []string {
	f.t.Helper()
	ctx := f.t.Context()
	st, err := f.nats.Bus.KVState(ctx, kanade.BucketAgentGroups)
	if err != nil {
		f.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := f.db.GroupsMirror(ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		if m.Current(st.Created, st.Revision) && m.StaleLists == 0 {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the mirror never caught up with %+v: it stands at %+v", st, m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	gs, err := f.db.GroupOverview(ctx, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	out := []string{}
	for _, g := range gs {
		out = append(out, g.Name+": "+strings.Join(g.Members, " "))
	}
	return out
}

func (f *fixture) want(want ...string) {
	f.t.Helper()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, f.settled()); diff != "" {
		f.t.Errorf("mirror (-want +got):\n%s", diff)
	}
}

func TestMirrorFollowsWritesMadeStraightToTheBucket(t *testing.T) {
	f := newFixture(t)
	f.put("PC-1", `{"groups":["canary","wave1"]}`)
	f.start()
	f.start() // a second worker on the same database changes nothing
	f.want("canary: PC-1", "wave1: PC-1")

	f.put("PC-2", `{"groups":["wave1"],"note":"unknown fields are ignored"}`)
	f.put("PC-3", `{"groups":["東京"]}`)
	f.want("canary: PC-1", "wave1: PC-1 PC-2", "東京: PC-3")

	if err := f.kv().Delete(t.Context(), "PC-1"); err != nil {
		t.Fatal(err)
	}
	f.want("wave1: PC-2", "東京: PC-3")

	f.put("PC-3", `not json`)
	f.put("PC-2", `{"groups":[]}`)
	f.want()
	if !strings.Contains(f.logs.String(), "does not decode") {
		t.Errorf("an undecodable value was not logged:\n%s", f.logs)
	}

	// A burst, as a script assigning PCs one by one makes it.
	for i := range 200 {
		f.put(fmt.Sprintf("PC-%03d", i), fmt.Sprintf(`{"groups":["g%d"]}`, i%2))
	}
	got := f.settled()
	if len(got) != 2 || strings.Count(got[0], "PC-") != 100 || strings.Count(got[1], "PC-") != 100 {
		t.Errorf("after a burst of 200: %.200q", got)
	}
}

func TestMirrorCatchesUpAfterARestart(t *testing.T) {
	f := newFixture(t)
	stop := f.start()
	f.put("PC-1", `{"groups":["a"]}`)
	f.put("PC-2", `{"groups":["b"]}`)
	f.put("PC-3", `{"groups":["c"]}`)
	f.want("a: PC-1", "b: PC-2", "c: PC-3")
	stop()

	// While no worker runs: a key changes, one is deleted, one is purged
	// with its marker gone too, one is new.
	ctx := t.Context()
	f.put("PC-1", `{"groups":["a","b"]}`)
	if err := f.kv().Delete(ctx, "PC-2"); err != nil {
		t.Fatal(err)
	}
	if err := f.kv().Purge(ctx, "PC-3"); err != nil {
		t.Fatal(err)
	}
	if err := f.kv().PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	f.put("PC-4", `{"groups":["d"]}`)
	f.start()
	f.want("a: PC-1", "b: PC-1", "d: PC-4")
}

func TestMirrorFollowsABucketCreatedAgain(t *testing.T) {
	f := newFixture(t)
	f.start()
	for i := range 5 {
		f.put(fmt.Sprintf("PC-%d", i), `{"groups":["old"]}`)
	}
	f.want("old: PC-0 PC-1 PC-2 PC-3 PC-4")
	ctx := t.Context()
	if err := f.nats.JS.DeleteKeyValue(ctx, kanade.BucketAgentGroups); err != nil {
		t.Fatal(err)
	}
	if err := f.nats.Bus.Bootstrap(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Fewer revisions than before: only the bucket's identity tells.
	f.put("PC-9", `{"groups":["new"]}`)
	f.want("new: PC-9")
}

func TestRunNeedsADatabase(t *testing.T) {
	if err := groupmirror.Run(t.Context(), &bus.Client{}, groupmirror.Config{}); err == nil {
		t.Error("Run without a database = nil")
	}
}
