package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/fanout"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
)

var t0 = time.Date(2026, 9, 30, 9, 0, 0, 0, time.UTC)

type env struct {
	nats *bustest.Server
	db   *storage.DB
	fan  *fanout.Fanout
	now  time.Time
	mu   sync.Mutex
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{nats: bustest.StartBootstrapped(t), db: storagetest.Open(t, nil), now: t0}
	var err error
	e.fan, err = fanout.New(fanout.Config{DB: e.db, Bus: e.nats.Bus, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) set(now time.Time) {
	e.mu.Lock()
	e.now = now
	e.mu.Unlock()
}

// beat makes pcs alive at now.
func (e *env) beat(t *testing.T, pcs ...string) {
	t.Helper()
	var hs []kanade.Heartbeat
	for _, pc := range pcs {
		hs = append(hs, kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: e.clock()}, AgentVersion: "1"})
	}
	if err := e.db.Update(t.Context(), func(tx *storage.Tx) error { return tx.UpsertHeartbeats(t.Context(), hs) }); err != nil {
		t.Fatal(err)
	}
}

func (e *env) groups(t *testing.T, pcGroups map[string][]string) {
	t.Helper()
	for pc, gs := range pcGroups {
		v, _ := json.Marshal(map[string][]string{"groups": gs})
		if _, err := e.nats.Bus.Put(t.Context(), kanade.BucketAgentGroups, pc, v); err != nil {
			t.Fatal(err)
		}
	}
}

// watch collects what arrives on subject from now on.
type watch struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	seen func(*nats.Msg) // called in the subscription goroutine
}

func (e *env) watch(t *testing.T, subject string, seen func(*nats.Msg)) *watch {
	t.Helper()
	w := &watch{seen: seen}
	sub, err := e.nats.NC.Subscribe(subject, func(m *nats.Msg) {
		if w.seen != nil {
			w.seen(m)
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nats.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// wait returns the first n messages, failing after a generous guard.
func (w *watch) wait(t *testing.T, n int) []*nats.Msg {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // a guard against hangs, not a performance target
	for {
		w.mu.Lock()
		got := len(w.msgs)
		w.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*nats.Msg(nil), w.msgs...)
}

func manifest(t *testing.T) *kanade.Manifest {
	t.Helper()
	m, err := kanade.ParseManifest("inv", []byte(`{"id":"inv","version":"1.2.0","execute":{"shell":"sh","script":"uname -a","timeout":"90s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSendPinsRecordsPublishesAndAudits(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// An agent answering the first command must find the version pinned
	// and the execution recorded: check both the moment it arrives.
	var pinned, recorded []string
	var mu sync.Mutex
	commands := e.watch(t, "commands.>", func(m *nats.Msg) {
		v, err := e.nats.Bus.Get(context.Background(), kanade.BucketScriptCurrent, "inv")
		active, _ := e.db.ActiveExecIDs(context.Background(), "inv")
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			pinned = append(pinned, string(v.Value))
		}
		recorded = append(recorded, active...)
	})
	audits := e.watch(t, "audit.>", nil)
	j := 5 * time.Minute
	o, err := e.fan.Send(ctx, fanout.Exec{Manifest: manifest(t), At: e.clock(), TargetCount: 3, Actor: "operator",
		Subjects: []string{"commands.group.canary", "commands.pc.PC-1", "commands.group.canary"},
		Options:  kanade.CommandOptions{Jitter: &j},
		Audit:    map[string]any{"sub": "alice", "source": "cli"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"commands.group.canary", "commands.pc.PC-1"}, o.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
	msgs := commands.wait(t, 2)
	for _, m := range msgs {
		var c kanade.Command
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.ExecID != o.ExecID || c.RequestID != o.RequestID || c.ID != "inv" || c.Version != "1.2.0" ||
			c.JitterSecs == nil || *c.JitterSecs != 300 || c.TimeoutSecs != 90 {
			t.Errorf("%s: %+v", m.Subject, c)
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != o.ExecID+":"+m.Subject {
			t.Errorf("%s: Nats-Msg-Id %q", m.Subject, got)
		}
	}
	mu.Lock()
	if len(pinned) != 2 || pinned[0] != "1.2.0" || len(recorded) != 2 || recorded[0] != o.ExecID {
		t.Errorf("when the commands arrived: script_current %v, executions %v", pinned, recorded)
	}
	mu.Unlock()
	page, err := e.db.ListExecutions(ctx, storage.PageRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].TargetCount == nil || *page.Items[0].TargetCount != 3 ||
		page.Items[0].InitiatedBy == nil || *page.Items[0].InitiatedBy != "operator" || page.Items[0].Status != "pending" {
		t.Errorf("executions: %+v", page.Items)
	}
	a := audits.wait(t, 1)[0]
	if a.Subject != "audit.operator.exec.inv" {
		t.Errorf("audit subject %s", a.Subject)
	}
	var ev struct {
		Target  string         `json:"target"`
		Payload map[string]any `json:"payload"`
	}
	if err := json.Unmarshal(a.Data, &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"exec_id": o.ExecID, "version": "1.2.0", "target_count": 3.0, "wave_mode": false,
		"subjects": []any{"commands.group.canary", "commands.pc.PC-1"}, "subjects_total": 2.0, "sub": "alice", "source": "cli"}
	if diff := cmp.Diff(want, ev.Payload); diff != "" || ev.Target != "inv" {
		t.Errorf("audit target %q, payload (-want +got):\n%s", ev.Target, diff)
	}
}

func TestWavesLaterSurviveInTheDatabaseAndGoOutOnce(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	commands := e.watch(t, "commands.>", nil)
	ro := &kanade.Rollout{Strategy: kanade.StrategyWave, Waves: []kanade.Wave{{Group: "canary", Delay: "0s"}, {Group: "wave1", Delay: "10m"}}}
	if err := ro.Validate(); err != nil {
		t.Fatal(err)
	}
	o, err := e.fan.Send(ctx, fanout.Exec{Manifest: manifest(t), At: e.clock(), Rollout: ro, TargetCount: 1, Actor: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Published != 1 || o.Later != 1 || len(o.Subjects) != 2 {
		t.Fatalf("outcome %+v, want one wave now and one later", o)
	}
	if got := commands.wait(t, 1); got[0].Subject != "commands.group.canary" {
		t.Fatalf("first wave on %s", got[0].Subject)
	}
	// Not due yet: nothing.
	if n, err := e.fan.SendDueWaves(ctx, t0.Add(9*time.Minute)); err != nil || n != 0 {
		t.Fatalf("SendDueWaves before the delay = %d, %v", n, err)
	}
	// Two workers (another Fanout on the same database and NATS) race for it.
	other, err := fanout.New(fanout.Config{DB: e.db, Bus: e.nats.Bus, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	sent := make([]int, 2)
	for i, f := range []*fanout.Fanout{e.fan, other} {
		wg.Go(func() {
			n, err := f.SendDueWaves(ctx, t0.Add(10*time.Minute))
			if err != nil {
				t.Error(err)
			}
			sent[i] = n
		})
	}
	wg.Wait()
	if sent[0]+sent[1] != 1 {
		t.Errorf("the later wave was sent %d times", sent[0]+sent[1])
	}
	commands.wait(t, 2)
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive within this
	if got := commands.wait(t, 2); len(got) != 2 || got[1].Subject != "commands.group.wave1" {
		t.Fatalf("messages %d, second on %s", len(got), got[len(got)-1].Subject)
	}
	later := commands.wait(t, 2)[1]
	var c kanade.Command
	if err := json.Unmarshal(later.Data, &c); err != nil || c.ExecID != o.ExecID {
		t.Errorf("later wave %s (%v), want exec %s", later.Data, err, o.ExecID)
	}
}

func TestAFanOutNothingLeftIsTakenBack(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// Without the EXEC stream no command is acknowledged.
	if err := e.nats.JS.DeleteStream(ctx, kanade.StreamExec); err != nil {
		t.Fatal(err)
	}
	_, err := e.fan.Send(ctx, fanout.Exec{Manifest: manifest(t), At: e.clock(), TargetCount: 1, Actor: "operator",
		Subjects: []string{"commands.all"}})
	if !errors.Is(err, fanout.ErrPublish) {
		t.Fatalf("Send = %v, want ErrPublish", err)
	}
	if ids, err := e.db.ActiveExecIDs(ctx, "inv"); err != nil || len(ids) != 0 {
		t.Errorf("executions after a fan-out that sent nothing: %v, %v", ids, err)
	}
}

func TestTargetCount(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.beat(t, "PC-A", "PC-B", "PC-C")
	e.set(t0.Add(time.Minute))
	e.beat(t, "PC-D")
	e.set(t0.Add(2*time.Minute + time.Second)) // PC-A..C are stale now
	e.beat(t, "PC-E")
	e.groups(t, map[string][]string{"PC-A": {"canary"}, "PC-D": {"canary", "wave1"}, "PC-E": {"wave1"}})
	now := e.clock()
	tests := []struct {
		name   string
		target kanade.Target
		want   int64
	}{
		{"all counts the alive PCs", kanade.Target{All: true}, 2},
		{"pcs count as listed, alive or not, once each", kanade.Target{PCs: []string{"PC-A", "PC-Z", "PC-A"}}, 2},
		{"groups count their alive members", kanade.Target{Groups: []string{"canary"}}, 1},
		{"a union counts each PC once", kanade.Target{Groups: []string{"canary", "wave1"}, PCs: []string{"PC-D", "PC-A"}}, 3},
		{"all and pcs", kanade.Target{All: true, PCs: []string{"PC-A", "PC-E"}}, 3},
		{"nobody still counts one", kanade.Target{Groups: []string{"nobody"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.fan.TargetCount(ctx, tt.target, now)
			if err != nil || got != tt.want {
				t.Errorf("TargetCount = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestReadFleetLeavesOutIdsThatCannotBeSubjects(t *testing.T) {
	e := newEnv(t)
	var skipped []string
	f, err := fanout.New(fanout.Config{DB: e.db, Bus: e.nats.Bus, Clock: e.clock,
		Invalid: func(kind, source, id string) { skipped = append(skipped, kind+":"+id) }})
	if err != nil {
		t.Fatal(err)
	}
	e.beat(t, "PC-A")
	e.groups(t, map[string][]string{"PC-A": {"ok", "not ok"}})
	fl, err := f.ReadFleet(t.Context(), e.clock(), true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"PC-A": {"ok"}}, fl.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"group:not ok"}, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}
