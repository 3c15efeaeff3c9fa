package schedule

import (
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
)

// A scheduler on a signing client signs its firings' commands when they go
// out: the firing's own, and a rollout wave's an hour later, at that hour.
func TestFiringsAndTheirLaterWavesAreSigned(t *testing.T) {
	f := newFleet(t)
	secret, pub := testkit.TestKey(9)
	sg, err := sign.New(secret, "backend-sched")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var now time.Time
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(at time.Time, w *Scheduler) {
		mu.Lock()
		now = at
		mu.Unlock()
		f.tickAll(at, w)
	}
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "daily", `{"id":"daily","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"pcs":["PC-1"]},"tz":"utc"}`)
	f.put(kanade.BucketSchedules, "waves", `{"id":"waves","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"all":true},"tz":"utc",
		"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"}]}}`)
	w := f.workerOn(f.nats.Signing(t, sg, clock), slog.New(slog.DiscardHandler))
	tick(utc(10, 8, 0, 0), w)
	tick(utc(10, 9, 0, 0), w)
	tick(utc(10, 10, 0, 0), w)
	var got []string
	for done := false; !done; {
		select {
		case m := <-f.commands:
			at, err := testkit.VerifyCommand(m.Header, m.Data, "backend-sched", pub)
			if err != nil {
				t.Errorf("%s: %v", m.Subject, err)
			}
			got = append(got, m.Subject+" "+time.UnixMilli(at).UTC().Format("15:04"))
		default:
			done = true
		}
	}
	want := []string{"commands.pc.PC-1 09:00", "commands.group.canary 09:00", "commands.group.wave1 10:00"}
	sort.Strings(got)
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signed commands (-want +got):\n%s", diff)
	}
}

// A per_pc firing's chunks (core publishes and the acknowledged last of
// each) carry a valid signature on every message.
func TestPerPCChunksAreSigned(t *testing.T) {
	t0 := utc(10, 12, 0, 0)
	f, pcs := perPCFleet(t, 5, t0)
	secret, pub := testkit.TestKey(9)
	sg, err := sign.New(secret, "backend-sched")
	if err != nil {
		t.Fatal(err)
	}
	w := f.workerOn(f.nats.Signing(t, sg, func() time.Time { return t0 }), slog.New(slog.DiscardHandler))
	w.chunk = 2
	f.tickAll(t0, w)
	var got []string
	for done := false; !done; {
		select {
		case m := <-f.commands:
			if _, err := testkit.VerifyCommand(m.Header, m.Data, "backend-sched", pub); err != nil {
				t.Errorf("%s: %v", m.Subject, err)
			}
			got = append(got, m.Subject)
		default:
			done = true
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(subjectsOf(pcs), got); diff != "" {
		t.Errorf("signed commands (-want +got):\n%s", diff)
	}
}
