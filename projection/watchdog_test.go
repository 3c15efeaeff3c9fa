package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// watchStart is the worker's start in the watchdog tests: WatchSince.
var watchStart = time.Date(2026, 9, 30, 12, 0, 0, 0, time.UTC)

// movingClock is a clock the test moves while workers may read it.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movingClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// at is watchStart plus d.
func at(d time.Duration) time.Time { return watchStart.Add(d) }

// beat projects heartbeats as the heartbeat loop would.
func (e *env) beat(pc string, when time.Time) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.db.Update(ctx, func(tx *storage.Tx) error {
		return tx.UpsertHeartbeats(ctx, []kanade.Heartbeat{{PcID: pc, At: kanade.Timestamp{Time: when}, AgentVersion: "1.0.0"}})
	}); err != nil {
		e.t.Fatal(err)
	}
}

// watcher is a worker that only runs housekeeping rounds when told, on its
// own connection.
func (e *env) watcher(clock *movingClock, mutate func(*Config)) *Worker {
	e.t.Helper()
	cfg := Config{DB: e.db, Bus: connect(e.t, e.srv.URL), Clock: clock.now, WatchSince: watchStart, Logger: testLogger(e.t),
		Housekeeping: -1}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// tap records every message published on obs.> and audit.>, from a
// connection of its own: it sees each publish, also those a stream
// refused or dropped as a duplicate, so a double report cannot hide.
type tap struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (e *env) tap() *tap {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	tp := &tap{}
	for _, s := range []string{"obs.>", "audit.>"} {
		if _, err := nc.Subscribe(s, func(m *nats.Msg) {
			tp.mu.Lock()
			defer tp.mu.Unlock()
			tp.msgs = append(tp.msgs, m)
		}); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return tp
}

// take waits until n messages arrived since the last take (a few seconds
// at most, then a little longer so a message too many shows too) and
// returns them as "subject body" lines, sorted (obs.> and audit.> arrive on
// two subscriptions, in no order between them).
func (tp *tap) take(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tp.mu.Lock()
		got := len(tp.msgs)
		tp.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := []string{}
	for _, m := range tp.msgs {
		out = append(out, m.Subject+" "+string(m.Data))
	}
	tp.msgs = nil
	slices.Sort(out)
	return out
}

// sorted is lines sorted, as take returns them.
func sorted(lines ...string) []string {
	slices.Sort(lines)
	return lines
}

// obsLine and auditLine are the lines tap.take returns for one watchdog
// event: kind of pc at `when`, for the outage that began at since.
func obsLine(kind, pc string, when, since time.Time) string {
	id := fmt.Sprintf("%s:%d", kind, since.UnixMilli())
	return fmt.Sprintf(`obs.%s {"pc_id":"%s","at":"%s","kind":"%s","source":"backend:heartbeat-watchdog","event_record_id":"%s",`+
		`"payload":{"last_heartbeat":"%s","threshold_secs":120}}`, pc, pc, rfc(when), kind, id, rfc(since))
}

func auditLine(kind, pc string, when, since time.Time) string {
	id := fmt.Sprintf("%s:%d", kind, since.UnixMilli())
	return fmt.Sprintf(`audit.backend:heartbeat-watchdog.%s.%s {"actor":"backend:heartbeat-watchdog","action":"%s","target":"%s",`+
		`"payload":{"event_record_id":"%s","last_heartbeat":"%s","threshold_secs":120},"occurred_at":"%s"}`,
		kind, pc, kind, pc, id, rfc(since), rfc(when))
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func TestTransitions(t *testing.T) {
	cutoff := at(10 * time.Minute)
	fresh, stale, older := at(11*time.Minute), at(9*time.Minute), at(2*time.Minute)
	row := func(last time.Time, offline *time.Time) storage.WatchRow {
		return storage.WatchRow{PCID: "PC", LastHeartbeat: last, OfflineSince: offline}
	}
	for _, c := range []struct {
		name string
		row  storage.WatchRow
		want []watchEvent
	}{
		{"fresh and never reported: nothing", row(fresh, nil), nil},
		{"a heartbeat exactly at the cutoff is fresh", row(cutoff, nil), nil},
		{"stale and never reported: offline at the last beat", row(stale, nil),
			[]watchEvent{{"PC", kanade.KindAgentOffline, stale, stale}}},
		{"stale and reported for that beat: nothing", row(stale, &stale), nil},
		{"fresh after a reported outage: online at the new beat", row(fresh, &older),
			[]watchEvent{{"PC", kanade.KindAgentOnline, fresh, older}}},
		{"back and gone again within a round: online, then offline, at the beat between", row(stale, &older),
			[]watchEvent{{"PC", kanade.KindAgentOnline, stale, older}, {"PC", kanade.KindAgentOffline, stale, stale}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := transitions(c.row, cutoff)
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(watchEvent{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestWatchdogReportsOutagesOfAgentsSeenSinceTheStart walks agents through
// rounds of a worker with a moved clock and checks every message on obs.>
// and audit.>, and that the audit entries reach the audit log a running
// projector writes (GET /api/audit).
func TestWatchdogReportsOutagesOfAgentsSeenSinceTheStart(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: watchStart}
	tp := e.tap()
	w := e.watcher(clock, nil)
	round := func(d time.Duration) {
		t.Helper()
		clock.set(at(d))
		if err := w.Housekeep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e.beat("PC-A", at(10*time.Second))
	e.beat("PC-OLD", watchStart.Add(-time.Second)) // last seen before the start: never judged
	e.beat("PC-EDGE", watchStart)                  // at the start: judged
	round(time.Minute)
	if got := tp.take(t, 0); len(got) != 0 {
		t.Fatalf("nobody is stale yet: %v", got)
	}

	round(3 * time.Minute)
	want := sorted(
		obsLine("agent_offline", "PC-EDGE", watchStart, watchStart), auditLine("agent_offline", "PC-EDGE", watchStart, watchStart),
		obsLine("agent_offline", "PC-A", at(10*time.Second), at(10*time.Second)),
		auditLine("agent_offline", "PC-A", at(10*time.Second), at(10*time.Second)),
	)
	if diff := cmp.Diff(want, tp.take(t, 4)); diff != "" {
		t.Errorf("offline (-want +got):\n%s", diff)
	}
	round(4 * time.Minute)
	if got := tp.take(t, 0); len(got) != 0 {
		t.Errorf("an outage reported twice: %v", got)
	}

	// PC-A comes back; PC-EDGE comes back and goes again between rounds.
	e.beat("PC-A", at(4*time.Minute+30*time.Second))
	round(5 * time.Minute)
	want = sorted(
		obsLine("agent_online", "PC-A", at(4*time.Minute+30*time.Second), at(10*time.Second)),
		auditLine("agent_online", "PC-A", at(4*time.Minute+30*time.Second), at(10*time.Second)),
	)
	if diff := cmp.Diff(want, tp.take(t, 2)); diff != "" {
		t.Errorf("online (-want +got):\n%s", diff)
	}
	back := at(5*time.Minute + 10*time.Second)
	e.beat("PC-EDGE", back)
	round(8 * time.Minute)
	want = sorted(
		obsLine("agent_offline", "PC-A", at(4*time.Minute+30*time.Second), at(4*time.Minute+30*time.Second)),
		auditLine("agent_offline", "PC-A", at(4*time.Minute+30*time.Second), at(4*time.Minute+30*time.Second)),
		obsLine("agent_online", "PC-EDGE", back, watchStart), auditLine("agent_online", "PC-EDGE", back, watchStart),
		obsLine("agent_offline", "PC-EDGE", back, back), auditLine("agent_offline", "PC-EDGE", back, back),
	)
	if diff := cmp.Diff(want, tp.take(t, 6)); diff != "" {
		t.Errorf("online and offline again (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"PC-A|" + kanade.FormatTime(at(4*time.Minute+30*time.Second)), "PC-EDGE|" + kanade.FormatTime(back), "PC-OLD|NULL"},
		e.dump(`SELECT pc_id, offline_since FROM agents ORDER BY pc_id`)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}

	// The audit entries reach the audit log, as any other.
	e.start(nil)
	waitFor(t, func() (bool, string) {
		got := e.dump(`SELECT actor || ' ' || action || ' ' || target || ' ' || occurred_at FROM audit_log ORDER BY occurred_at, id`)
		return len(got) == 6, strings.Join(got, "\n")
	})
	if diff := cmp.Diff([]string{
		"backend:heartbeat-watchdog agent_offline PC-EDGE " + kanade.FormatTime(watchStart),
		"backend:heartbeat-watchdog agent_offline PC-A " + kanade.FormatTime(at(10*time.Second)),
		"backend:heartbeat-watchdog agent_online PC-A " + kanade.FormatTime(at(4*time.Minute+30*time.Second)),
		"backend:heartbeat-watchdog agent_offline PC-A " + kanade.FormatTime(at(4*time.Minute+30*time.Second)),
		"backend:heartbeat-watchdog agent_online PC-EDGE " + kanade.FormatTime(back),
		"backend:heartbeat-watchdog agent_offline PC-EDGE " + kanade.FormatTime(back),
	}, e.dump(`SELECT actor || ' ' || action || ' ' || target || ' ' || occurred_at FROM audit_log ORDER BY occurred_at, id`)); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
}

// TestWatchdogOfTwoWorkersReportsEachTransitionOnce runs two workers, each
// on its own connection, through the same rounds at the same time, in small
// batches so that their claims interleave, and counts every publish.
func TestWatchdogOfTwoWorkersReportsEachTransitionOnce(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: watchStart}
	tp := e.tap()
	workers := []*Worker{
		e.watcher(clock, func(c *Config) { c.HousekeepingBatch = 3 }),
		e.watcher(clock, func(c *Config) { c.HousekeepingBatch = 3 }),
	}
	const agents = 60
	for i := range agents {
		e.beat(fmt.Sprintf("PC-%02d", i), at(time.Duration(i)*time.Second))
	}
	rounds := 0
	round := func(d time.Duration) {
		t.Helper()
		rounds++
		clock.set(at(d))
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() {
				if err := w.Housekeep(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	round(5 * time.Minute) // all offline
	for i := range agents / 2 {
		e.beat(fmt.Sprintf("PC-%02d", i), at(5*time.Minute+time.Second))
	}
	round(6 * time.Minute) // half online
	round(7 * time.Minute) // nothing
	round(9 * time.Minute) // that half offline again
	got := tp.take(t, 2*(agents+agents/2+agents/2))
	count := map[string]int{}
	for _, line := range got {
		subject, body, _ := strings.Cut(line, " ")
		var m struct {
			EventRecordID string `json:"event_record_id"`
			Payload       struct {
				EventRecordID string `json:"event_record_id"`
			} `json:"payload"`
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		count[subject+" "+m.EventRecordID+m.Payload.EventRecordID]++
	}
	var twice []string
	for k, n := range count {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s ×%d", k, n))
		}
	}
	slices.Sort(twice)
	if len(twice) > 0 || len(got) != 2*(agents+agents) {
		t.Errorf("%d messages for %d transitions; reported more than once:\n%s", len(got), agents+agents, strings.Join(twice, "\n"))
	}
	// Both took part.
	for i, w := range workers {
		n := value(w.m.housekeeping.WithLabelValues(kanade.KindAgentOffline)) + value(w.m.housekeeping.WithLabelValues(kanade.KindAgentOnline))
		if n == 0 {
			t.Errorf("worker %d published nothing", i)
		}
		t.Logf("worker %d: %v transitions", i, n)
	}
}

// streamSubjects lists the subjects and event_record_ids stored in stream.
func (e *env) streamRecords(stream string) []string {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.srv.JS.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var ev struct {
			EventRecordID string `json:"event_record_id"`
			Payload       struct {
				EventRecordID string `json:"event_record_id"`
			} `json:"payload"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		out = append(out, m.Subject+" "+ev.EventRecordID+ev.Payload.EventRecordID)
	}
	return out
}

// TestWatchdogRetriesBothEventsOfAHostWhenOneFailed lets the stream take
// the first event of a pair (an agent back and gone again within a round)
// and refuse the second: neither is recorded, and the next round publishes
// both again, the first deduplicated by its Nats-Msg-Id.
func TestWatchdogRetriesBothEventsOfAHostWhenOneFailed(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: watchStart}
	w := e.watcher(clock, nil)
	ctx := context.Background()
	e.beat("PC-1", at(10*time.Second))
	clock.set(at(3 * time.Minute))
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	e.beat("PC-1", at(3*time.Minute+10*time.Second)) // back, and gone again by the next round
	clock.set(at(6 * time.Minute))

	// OBS_EVENTS takes one more message, then refuses new ones.
	obs, err := e.srv.JS.Stream(ctx, "OBS_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := obs.CachedInfo().Config
	limited := cfg
	limited.MaxMsgs, limited.Discard = int64(obs.CachedInfo().State.Msgs)+1, jetstream.DiscardNew
	if _, err := e.srv.JS.UpdateStream(ctx, limited); err != nil {
		t.Fatal(err)
	}
	err = w.Housekeep(ctx)
	if err == nil || !strings.Contains(err.Error(), "claimed again next round") {
		t.Fatalf("a lost event must fail the round: %v", err)
	}
	if diff := cmp.Diff([]string{"PC-1|" + kanade.FormatTime(at(10*time.Second)) + "|NULL"},
		e.dump(`SELECT pc_id, offline_since, watch_claim FROM agents`)); diff != "" {
		t.Errorf("after the failure: state (-want +got):\n%s", diff)
	}

	if _, err := e.srv.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	first := "agent_offline:" + fmt.Sprint(at(10*time.Second).UnixMilli())
	backAt := fmt.Sprint(at(3*time.Minute + 10*time.Second).UnixMilli())
	want := []string{"obs.PC-1 " + first, "obs.PC-1 agent_online:" + fmt.Sprint(at(10*time.Second).UnixMilli()), "obs.PC-1 agent_offline:" + backAt}
	if diff := cmp.Diff(want, e.streamRecords("OBS_EVENTS")); diff != "" {
		t.Errorf("OBS_EVENTS (-want +got):\n%s", diff)
	}
	if got := e.streamRecords(kanade.StreamAudit); len(got) != 3 {
		t.Errorf("AUDIT holds %d entries, want 3: %v", len(got), got)
	}
	if diff := cmp.Diff([]string{"PC-1|" + kanade.FormatTime(at(3*time.Minute+10*time.Second)) + "|NULL"},
		e.dump(`SELECT pc_id, offline_since, watch_claim FROM agents`)); diff != "" {
		t.Errorf("after the retry: state (-want +got):\n%s", diff)
	}
}

// TestWatchdogTakesOverAClaimOnlyOnceItsLeasePassed leaves a claim behind
// as a worker that died mid-batch would.
func TestWatchdogTakesOverAClaimOnlyOnceItsLeasePassed(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: at(3 * time.Minute)}
	tp := e.tap()
	w := e.watcher(clock, nil)
	ctx := context.Background()
	e.beat("PC-1", at(10*time.Second))
	rows, err := e.db.ClaimWatch(ctx, storage.WatchClaim{Token: "dead-worker", Now: clock.now(), Lease: watchLease,
		Since: watchStart, Cutoff: at(time.Minute), Limit: 10})
	if err != nil || len(rows) != 1 {
		t.Fatalf("claim: %v %v", rows, err)
	}
	clock.set(at(3*time.Minute + watchLease - time.Second))
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tp.take(t, 0); len(got) != 0 {
		t.Fatalf("a live claim was taken over: %v", got)
	}
	clock.set(at(3*time.Minute + watchLease + time.Second))
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tp.take(t, 2); len(got) != 2 || !strings.HasPrefix(got[1], "obs.PC-1 ") {
		t.Fatalf("the abandoned claim was not taken over: %v", got)
	}
	// The dead worker's late settle changes nothing.
	if n, err := e.db.SettleWatch(ctx, "dead-worker", nil); err != nil || n != 0 {
		t.Errorf("late settle: %d %v", n, err)
	}
}

// TestWatchdogDoesNotRunWithoutAConnection: Housekeep on a worker without
// Bus does the database's part only.
func TestWatchdogDoesNotRunWithoutAConnection(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: at(5 * time.Minute)}
	tp := e.tap()
	w := e.watcher(clock, func(c *Config) { c.Bus = nil })
	e.beat("PC-1", at(10*time.Second))
	if err := w.HousekeepWith(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := tp.take(t, 0); len(got) != 0 {
		t.Errorf("published without a connection: %v", got)
	}
	var _ *bus.Client // the signature the shells use
}

// A row whose pc_id could not be a subject token (never written by the
// projection) is passed over without a publish that would break the
// connection, and the agents around it are reported.
func TestWatchdogPassesOverAPCIDThatIsNoToken(t *testing.T) {
	e := newEnv(t)
	clock := &movingClock{t: at(5 * time.Minute)}
	tp := e.tap()
	w := e.watcher(clock, nil)
	e.beat("PC-1", at(10*time.Second))
	for _, bad := range []string{"a b", "a.b", "*"} {
		if err := e.exec(`INSERT INTO agents (pc_id, last_heartbeat, updated_at) VALUES (?, ?, ?)`,
			bad, kanade.FormatTime(at(20*time.Second)), kanade.FormatTime(at(20*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Housekeep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := tp.take(t, 2)
	if len(got) != 2 || !strings.HasPrefix(got[1], "obs.PC-1 ") {
		t.Errorf("published %v", got)
	}
	if !w.cfg.Bus.Connected() {
		t.Error("the connection went down")
	}
}
