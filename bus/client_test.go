package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
)

func TestKVCompareAndSetAndLists(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b = kanade.BucketSchedules
	if es, err := c.Entries(ctx, b); err != nil || len(es) != 0 {
		t.Fatalf("an empty bucket lists %v, %v; want nothing and no error", es, err)
	}
	if _, err := c.Get(ctx, b, "nope"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Get of a missing key = %v, want ErrNotFound", err)
	}
	if _, err := c.Get(ctx, b, "not a key!"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Get of a key that cannot exist = %v, want ErrNotFound", err)
	}
	rev, err := c.Create(ctx, b, "s1", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, b, "s1", []byte("again")); !errors.Is(err, bus.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	if _, err := c.Update(ctx, b, "s1", []byte("stale"), rev+100); !errors.Is(err, bus.ErrChanged) {
		t.Fatalf("Update at a wrong revision = %v, want ErrChanged", err)
	}
	rev2, err := c.Update(ctx, b, "s1", []byte("two"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, b, "s1", rev); !errors.Is(err, bus.ErrChanged) {
		t.Fatalf("Delete at the old revision = %v, want ErrChanged", err)
	}
	for _, k := range []string{"mark.a.pc.1", "mark.a.pc.2", "mark.b.pc.1"} {
		if _, err := c.Put(ctx, b, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(es []bus.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Key+"="+string(e.Value))
		}
		return out
	}
	es, err := c.Entries(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mark.a.pc.1=mark.a.pc.1", "mark.a.pc.2=mark.a.pc.2", "mark.b.pc.1=mark.b.pc.1", "s1=two"}, keys(es)); diff != "" {
		t.Errorf("Entries (-want +got):\n%s", diff)
	}
	m, err := c.Matching(ctx, b, "mark.a.>")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mark.a.pc.1=mark.a.pc.1", "mark.a.pc.2=mark.a.pc.2"}, keys(m)); diff != "" {
		t.Errorf("Matching (-want +got):\n%s", diff)
	}
	if err := c.Delete(ctx, b, "s1", rev2); err != nil {
		t.Fatal(err)
	}
	if err := c.PutAll(ctx, b, []string{"x1", "x2"}, []byte("v")); err != nil {
		t.Fatal(err)
	}
	es, _ = c.Entries(ctx, b)
	if got := len(es); got != 5 {
		t.Errorf("after a delete and two pipelined puts: %d keys, want 5: %v", got, keys(es))
	}
}

func TestJobsAndTheirTimeouts(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	put := func(id, v string) {
		if _, err := c.Put(ctx, kanade.BucketJobs, id, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	put("good", `{"id":"good","version":"1","execute":{"shell":"sh","script":"true","timeout":"90s"}}`)
	put("broken", `{"id":"broken","version":"1","execute":{"shell":"tcsh","script":"true","timeout":"90s"}}`)
	put("garbage", `{`)
	if m, err := c.Job(ctx, "good"); err != nil || m.ID != "good" {
		t.Fatalf("Job(good) = %v, %v", m, err)
	}
	for _, id := range []string{"broken", "garbage"} {
		if _, err := c.Job(ctx, id); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("Job(%s) = %v, want ErrInvalid", id, err)
		}
	}
	if _, err := c.Job(ctx, "missing"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("Job(missing) = %v, want ErrNotFound", err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := bus.NewTimeouts(c, func() time.Time { return now }, time.Minute)
	for id, want := range map[string]time.Duration{"good": 90 * time.Second, "broken": 0, "garbage": 0, "missing": 0} {
		if got, err := ts.Timeout(ctx, id); err != nil || got != want {
			t.Errorf("Timeout(%s) = %v, %v; want %v", id, got, err, want)
		}
	}
	// Cached for the TTL: an edit shows only after it.
	put("good", `{"id":"good","version":"2","execute":{"shell":"sh","script":"true","timeout":"5m"}}`)
	if got, _ := ts.Timeout(ctx, "good"); got != 90*time.Second {
		t.Errorf("within the TTL: %v, want the cached 90s", got)
	}
	now = now.Add(time.Minute)
	if got, _ := ts.Timeout(ctx, "good"); got != 5*time.Minute {
		t.Errorf("after the TTL: %v, want 5m", got)
	}
}

func TestCommandsAreStoredOncePerMessageID(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	cmd := kanade.Command{ID: "job", Version: "1", RequestID: "req-1", Shell: "sh", Script: "true", TimeoutSecs: 60,
		Staleness: kanade.Staleness{Mode: "cached"}}
	id := func(subject string) string { return "exec-1:" + subject }
	out, err := bus.CommandMessages(cmd, []string{"commands.pc.PC-1", "commands.pc.PC-2"}, id)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Commands(ctx, out); err != nil || n != 2 {
		t.Fatalf("Commands = %d, %v; want 2 acknowledged", n, err)
	}
	// A retried publish (same ids) is acknowledged and not stored again.
	if n, err := c.Commands(ctx, out[:1]); err != nil || n != 1 {
		t.Fatalf("retried Commands = %d, %v; want 1 acknowledged", n, err)
	}
	if _, err := bus.CommandMessages(kanade.Command{ID: "x"}, []string{"commands.all"}, id); err == nil {
		t.Error("a command without request_id was encoded")
	}
	if _, err := c.Commands(ctx, []bus.Outgoing{{Subject: "commands.all", Data: []byte("{}")}}); err == nil {
		t.Error("a command without a message id was published")
	}
	st, err := c.Stream(ctx, kanade.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSeq != 2 {
		t.Errorf("EXEC holds %d messages after a retried publish, want 2", st.LastSeq)
	}
	// Every message carries the same encoded command.
	for _, o := range out {
		var got kanade.Command
		if err := json.Unmarshal(o.Data, &got); err != nil || got.RequestID != "req-1" {
			t.Errorf("%s: %s (%v)", o.Subject, o.Data, err)
		}
	}
}

func TestCommandsCountWhatWasAcknowledged(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	// No stream captures foo.*: JetStream answers "no responders".
	out := []bus.Outgoing{{Subject: "commands.pc.A", Data: []byte("{}"), MsgID: "1"}, {Subject: "foo.bar", Data: []byte("{}"), MsgID: "2"},
		{Subject: "commands.pc.B", Data: []byte("{}"), MsgID: "3"}}
	n, err := c.Commands(ctx, out)
	if err == nil || n != 2 {
		t.Errorf("Commands = %d, %v; want 2 acknowledged and the error of foo.bar", n, err)
	}
}

func TestOutputIsCutAtTheLimit(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	obj, err := s.JS.ObjectStore(ctx, kanade.ObjectResultOutput)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "q/stdout", []byte(strings.Repeat("a", 1000))); err != nil {
		t.Fatal(err)
	}
	text, size, cut, err := c.Output(ctx, "q/stdout", 100)
	if err != nil || len(text) != 100 || size != 1000 || !cut {
		t.Errorf("Output at limit 100 = %d bytes, size %d, cut %v, %v", len(text), size, cut, err)
	}
	if text, _, cut, err := c.Output(ctx, "q/stdout", 5000); err != nil || len(text) != 1000 || cut {
		t.Errorf("Output under the limit = %d bytes, cut %v, %v", len(text), cut, err)
	}
	if _, _, _, err := c.Output(ctx, "q/none", 10); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("missing output = %v, want ErrNotFound", err)
	}
}

func TestReaderHandsOverInOrderAndResumesAfterTheLastOne(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	for i := range 30 {
		subject := "events.started.e.PC-1"
		if i%3 == 0 {
			subject = "events.other" // same stream, another filter
		}
		if err := c.Publish(ctx, subject, fmt.Appendf(nil, "%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	r := c.Read(bus.ReadOptions{Stream: kanade.StreamEvents, Filter: kanade.SubjectEventsStarted, After: 4})
	defer r.Close()
	var got []uint64
	for len(got) < 18 {
		m, err := r.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, m.Seq)
		if len(got) == 8 {
			r.Reopen() // as after a lost connection: carry on after Last
		}
	}
	want := []uint64{5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29, 30}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sequences (-want +got):\n%s", diff)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Next(wctx, 300*time.Millisecond); !errors.Is(err, bus.ErrIdle) {
		t.Errorf("Next at the end = %v, want ErrIdle", err)
	}
	next, _, err := c.Next(ctx, kanade.StreamEvents, kanade.SubjectEventsStarted, 27)
	if err != nil || next != 29 {
		t.Errorf("Next past 27 = %d, %v; want 29", next, err)
	}
}
