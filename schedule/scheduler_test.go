package schedule

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fleet is one NATS server and one database shared by several schedulers,
// as several workers of one deployment share them.
type fleet struct {
	t        testing.TB
	nats     *bustest.Server
	dsn      string
	db       *storage.DB
	commands chan *nats.Msg
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	f := &fleet{t: t, nats: bustest.StartBootstrapped(t), dsn: storagetest.DSN(t), commands: make(chan *nats.Msg, 1<<16)}
	f.db = f.open()
	// A channel subscription is filled by the connection's read loop itself,
	// so after a Flush every command the server routed to us is in it.
	sub, err := f.nats.NC.ChanSubscribe("commands.>", f.commands)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return f
}

// open opens another handle on the shared database (another worker's).
func (f *fleet) open() *storage.DB {
	f.t.Helper()
	db, err := storage.Open(context.Background(), f.dsn, storage.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { db.Close() })
	return db
}

func (f *fleet) put(bucket, key, value string) {
	f.t.Helper()
	ctx := context.Background()
	kv, err := f.nats.JS.KeyValue(ctx, bucket)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, []byte(value)); err != nil {
		f.t.Fatal(err)
	}
}

// worker starts a scheduler's schedules watch (not its ticker: the test
// drives tick with its own instants) and waits until it has loaded.
func (f *fleet) worker() *Scheduler {
	f.t.Helper()
	return f.workerLogging(slog.New(slog.DiscardHandler))
}

// workerLogging is worker with its log going to log.
func (f *fleet) workerLogging(log *slog.Logger) *Scheduler {
	f.t.Helper()
	return f.workerOn(f.nats.Bus, log)
}

// workerOn is a worker publishing through c (another client of the same
// server: a signing one).
func (f *fleet) workerOn(c *bus.Client, log *slog.Logger) *Scheduler {
	f.t.Helper()
	s, err := New(Config{DB: f.open(), Bus: c, Registerer: prometheus.NewRegistry(), Logger: log,
		Clock: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.watch(ctx) }()
	freeze := make(chan struct{})
	go func() { defer close(freeze); s.watchFreeze(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done; <-freeze })
	waitFor(f.t, func() bool { return s.Loaded() }, "schedules loaded")
	return s
}

// tickAll ticks every scheduler at the same instant, concurrently.
func (f *fleet) tickAll(at time.Time, ws ...*Scheduler) {
	f.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = w.tick(context.Background(), at) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			f.t.Fatalf("tick at %v: %v", at, err)
		}
	}
	if err := f.nats.NC.Flush(); err != nil {
		f.t.Fatal(err)
	}
}

// received returns the subjects of the commands delivered so far, sorted,
// and forgets them.
func (f *fleet) received() []string {
	f.t.Helper()
	if err := f.nats.NC.Flush(); err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for {
		select {
		case m := <-f.commands:
			var c kanade.Command
			if err := json.Unmarshal(m.Data, &c); err != nil || c.ID != "inv" || c.ExecID == "" || c.RequestID == "" {
				f.t.Fatalf("command on %s: %+v, %v", m.Subject, c, err)
			}
			out = append(out, m.Subject)
		default:
			sort.Strings(out)
			return out
		}
	}
}

// count runs a COUNT query on the shared database through its own handle.
func (f *fleet) count(q string, args ...any) int {
	f.t.Helper()
	driver := "sqlite"
	if strings.Contains(f.dsn, "://") {
		driver = "libsql"
	}
	raw, err := sql.Open(driver, f.dsn)
	if err != nil {
		f.t.Fatal(err)
	}
	defer raw.Close()
	var n int
	if err := raw.QueryRow(q, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// audits returns the actions of the audit events in the AUDIT stream.
func (f *fleet) audits() []string {
	f.t.Helper()
	ctx := context.Background()
	cons, err := f.nats.JS.OrderedConsumer(ctx, kanade.StreamAudit, jetstream.OrderedConsumerConfig{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for {
		mb, err := cons.FetchNoWait(100)
		if err != nil {
			f.t.Fatal(err)
		}
		n := 0
		for m := range mb.Messages() {
			n++
			var ev kanade.AuditEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				f.t.Fatal(err)
			}
			out = append(out, m.Subject())
		}
		if n == 0 {
			return out
		}
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func counter(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		m.Write(&d)
		if d.Counter != nil {
			sum += d.Counter.GetValue()
		}
	}
	return sum
}

const job = `{"id":"inv","version":"4","execute":{"shell":"sh","script":"uname -a","timeout":"5m"}}`

func utc(day, hh, mm, ss int) time.Time { return time.Date(2026, 6, day, hh, mm, ss, 0, time.UTC) }

func TestCalendarFiringIsDispatchedOnceAcrossWorkers(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "daily", `{"id":"daily","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"pcs":["PC-1","PC-2"]},"tz":"utc","jitter":"30s"}`)
	ws := []*Scheduler{f.worker(), f.worker(), f.worker()}

	f.tickAll(utc(10, 8, 59, 59), ws...) // first sight: nothing before now fires
	if got := f.received(); len(got) != 0 {
		t.Fatalf("fired before 09:00: %v", got)
	}
	for _, at := range []time.Time{utc(10, 9, 0, 0), utc(10, 9, 0, 1), utc(10, 9, 0, 30)} {
		f.tickAll(at, ws...)
	}
	if diff := cmp.Diff([]string{"commands.pc.PC-1", "commands.pc.PC-2"}, f.received()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if n := f.count(`SELECT COUNT(*) FROM executions WHERE initiated_by = 'scheduler' AND job_id = 'inv' AND version = '4' AND target_count = 2 AND status = 'pending'`); n != 1 {
		t.Errorf("%d matching executions rows, want 1", n)
	}
	kv, _ := f.nats.JS.KeyValue(context.Background(), kanade.BucketScriptCurrent)
	if e, err := kv.Get(context.Background(), "inv"); err != nil || string(e.Value()) != "4" {
		t.Errorf("script_current[inv] = %v, %v; want 4", e, err)
	}
	if diff := cmp.Diff([]string{"audit.scheduler.exec.inv"}, f.audits()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	var fired float64
	for _, w := range ws {
		fired += counter(w.m.firings)
	}
	if fired != 1 {
		t.Errorf("firings across workers = %v, want 1", fired)
	}
	// The next day fires again, once.
	f.tickAll(utc(11, 9, 0, 0), ws...)
	if got := f.received(); len(got) != 2 {
		t.Errorf("second day: %v", got)
	}
}

func TestMissedFiringsAreRecordedOnceAndTheNewestRunsLateWithinTheDeadline(t *testing.T) {
	for _, tt := range []struct {
		name      string
		deadline  string
		wantCmds  int
		wantAudit []string
	}{
		{"no starting_deadline: all missed", "", 0,
			[]string{"audit.scheduler.schedule_missed.inv", "audit.scheduler.schedule_missed.inv", "audit.scheduler.schedule_missed.inv"}},
		{"within the deadline the newest runs late", `,"starting_deadline":"3h"`, 1,
			[]string{"audit.scheduler.schedule_missed.inv", "audit.scheduler.schedule_missed.inv", "audit.scheduler.exec.inv"}},
		{"past the deadline it is missed too", `,"starting_deadline":"30m"`, 0,
			[]string{"audit.scheduler.schedule_missed.inv", "audit.scheduler.schedule_missed.inv", "audit.scheduler.schedule_missed.inv"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			f.put(kanade.BucketJobs, "inv", job)
			f.put(kanade.BucketSchedules, "daily", `{"id":"daily","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"all":true},"tz":"utc"`+tt.deadline+`}`)
			// The last worker stopped on the 1st at 08:00; two start on the 3rd at 10:00.
			if err := f.db.Update(context.Background(), func(tx *storage.Tx) error {
				return tx.SetScheduleChecked(context.Background(), "daily", utc(1, 8, 0, 0))
			}); err != nil {
				t.Fatal(err)
			}
			ws := []*Scheduler{f.worker(), f.worker()}
			f.tickAll(utc(3, 10, 0, 0), ws...)
			f.tickAll(utc(3, 10, 0, 1), ws...)
			if got := f.received(); len(got) != tt.wantCmds {
				t.Errorf("commands = %v, want %d", got, tt.wantCmds)
			}
			got := f.audits()
			sort.Strings(got)
			want := append([]string(nil), tt.wantAudit...)
			sort.Strings(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
			// A restarted worker does not report them again.
			f.tickAll(utc(3, 10, 5, 0), f.worker())
			if got := f.audits(); len(got) != len(tt.wantAudit) {
				t.Errorf("after a restart: %d audit events, want %d", len(got), len(tt.wantAudit))
			}
		})
	}
}

func TestPerPCGoesToPCsWithoutCompletionAndWaitsOutTheDispatchWindow(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	f.put(kanade.BucketJobs, "inv", job) // timeout 5m: window = 5m + 90s
	f.put(kanade.BucketSchedules, "each", `{"id":"each","when":{"per_pc":{"every":"1d"}},"job_id":"inv","target":{"all":true,"pcs":["PC-9"]}}`)
	t0 := utc(10, 12, 0, 0)
	beats := func(at time.Time, pcs ...string) {
		var hs []kanade.Heartbeat
		for _, pc := range pcs {
			hs = append(hs, kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: at}, AgentVersion: "1"})
		}
		if err := f.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, hs) }); err != nil {
			t.Fatal(err)
		}
	}
	success := func(pc string, at time.Time) {
		zero := int64(0)
		r := storage.Result{ExecResult: kanade.ExecResult{ResultID: kanade.NewUUID(), RequestID: "q", PcID: pc, ExitCode: &zero,
			StartedAt: kanade.Timestamp{Time: at.Add(-time.Second)}, FinishedAt: kanade.Timestamp{Time: at}, ManifestID: "inv"}, RecordedAt: at}
		if err := f.db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, []storage.Result{r}); return err }); err != nil {
			t.Fatal(err)
		}
	}
	beats(t0.Add(-time.Hour), "PC-4") // stale: not expected
	success("PC-1", t0.Add(-time.Hour))
	ws := []*Scheduler{f.worker(), f.worker()}
	tick := func(at time.Time) {
		beats(at.Add(-10*time.Second), "PC-1", "PC-2", "PC-3")
		f.tickAll(at, ws...)
	}

	tick(t0)
	if diff := cmp.Diff([]string{"commands.pc.PC-2", "commands.pc.PC-3", "commands.pc.PC-9"}, f.received()); diff != "" {
		t.Errorf("first reconcile (-want +got):\n%s", diff)
	}
	if n := f.count(`SELECT COUNT(*) FROM executions WHERE target_count = 3`); n != 1 {
		t.Errorf("%d executions with target_count 3, want 1", n)
	}
	// Within the window nothing goes again, though nobody answered.
	for _, m := range []time.Duration{time.Minute, 6 * time.Minute} {
		tick(t0.Add(m))
		if got := f.received(); len(got) != 0 {
			t.Errorf("at +%v (inside the window): %v", m, got)
		}
	}
	// PC-2 answered; after the window the others go again.
	success("PC-2", t0.Add(2*time.Minute))
	tick(t0.Add(7 * time.Minute))
	if diff := cmp.Diff([]string{"commands.pc.PC-3", "commands.pc.PC-9"}, f.received()); diff != "" {
		t.Errorf("after the window (-want +got):\n%s", diff)
	}
	// A day after PC-1's success, it is due again.
	tick(t0.Add(23 * time.Hour))
	if got := f.received(); !cmp.Equal(got, []string{"commands.pc.PC-1", "commands.pc.PC-3", "commands.pc.PC-9"}) {
		t.Errorf("a day later: %v", got)
	}
}

func TestAnInvalidValueKeepsThePreviousRegistration(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	valid := `{"id":"s","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"all":true},"tz":"utc"}`
	f.put(kanade.BucketSchedules, "s", valid)
	w := f.worker()
	registered := func() *kanade.Schedule {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.schedules["s"]
	}
	if registered() == nil {
		t.Fatal("valid schedule not registered")
	}
	f.put(kanade.BucketSchedules, "s", `{"id":"s","when":{"calendar":{"at":"25:00"}},"job_id":"inv","target":{"all":true}}`)
	f.put(kanade.BucketSchedules, "other", `not json`)
	waitFor(t, func() bool { return counter(w.m.invalid) == 2 }, "two invalid values counted")
	if s := registered(); s == nil || s.When.Calendar.At != "09:00" {
		t.Errorf("after an invalid change: %+v, want the 09:00 version", s)
	}
	kv, _ := f.nats.JS.KeyValue(context.Background(), kanade.BucketSchedules)
	if err := kv.Delete(context.Background(), "s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return registered() == nil }, "delete unregisters")
}

func TestRolloutWaveWaitsForItsDelayAcrossARestart(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "waves", `{"id":"waves","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"all":true},"tz":"utc",
		"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"}]}}`)
	w := f.worker()
	f.tickAll(utc(10, 8, 0, 0), w)
	f.tickAll(utc(10, 9, 0, 0), w)
	if diff := cmp.Diff([]string{"commands.group.canary"}, f.received()); diff != "" {
		t.Errorf("at the firing (-want +got):\n%s", diff)
	}
	// The worker restarts (a new process), twice over.
	ws := []*Scheduler{f.worker(), f.worker()}
	f.tickAll(utc(10, 9, 59, 59), ws...)
	if got := f.received(); len(got) != 0 {
		t.Errorf("before the delay: %v", got)
	}
	f.tickAll(utc(10, 10, 0, 0), ws...)
	f.tickAll(utc(10, 10, 0, 1), ws...)
	if diff := cmp.Diff([]string{"commands.group.wave1"}, f.received()); diff != "" {
		t.Errorf("after the delay (-want +got):\n%s", diff)
	}
	if n := f.count(`SELECT COUNT(*) FROM executions`); n != 1 {
		t.Errorf("%d executions, want 1 for both waves", n)
	}
}

// TestManyWorkersWithSkewedClocksFireEachScheduleOnce runs five workers whose
// ticks land at different moments around the firing (as real workers'
// tickers and clocks do) over twenty schedules due at the same minute.
func TestManyWorkersWithSkewedClocksFireEachScheduleOnce(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	const n = 20
	for i := range n {
		f.put(kanade.BucketSchedules, fmt.Sprintf("s%02d", i), fmt.Sprintf(
			`{"id":"s%02d","when":{"calendar":{"at":"09:00"}},"job_id":"inv","target":{"pcs":["PC-%02d"]},"tz":"utc"}`, i, i))
	}
	var ws []*Scheduler
	for range 5 {
		ws = append(ws, f.worker())
	}
	f.tickAll(utc(10, 8, 59, 0), ws...)
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			skew := time.Duration(i) * 700 * time.Millisecond
			for _, at := range []time.Time{utc(10, 8, 59, 59).Add(skew), utc(10, 9, 0, 0).Add(skew), utc(10, 9, 0, 2).Add(skew)} {
				if err := w.tick(context.Background(), at); err != nil {
					t.Errorf("worker %d at %v: %v", i, at, err)
				}
			}
		}()
	}
	wg.Wait()
	got := f.received()
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("commands.pc.PC-%02d", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if c := f.count(`SELECT COUNT(*) FROM executions`); c != n {
		t.Errorf("%d executions, want %d", c, n)
	}
}

// TestANewScheduleIsReconciledAtTheNextTick: a per_pc schedule put in the
// middle of a minute is not left waiting for the next minute.
func TestANewScheduleIsReconciledAtTheNextTick(t *testing.T) {
	f := newFleet(t)
	f.put(kanade.BucketJobs, "inv", job)
	w := f.worker()
	t0 := utc(10, 12, 0, 5)
	f.tickAll(t0, w) // this minute's reconcile ran, with nothing to do
	f.put(kanade.BucketSchedules, "each", `{"id":"each","when":{"per_pc":"once"},"job_id":"inv","target":{"pcs":["PC-1"]}}`)
	waitFor(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.schedules["each"] != nil
	}, "the schedule registered")
	f.tickAll(t0.Add(time.Second), w)
	if diff := cmp.Diff([]string{"commands.pc.PC-1"}, f.received()); diff != "" {
		t.Errorf("at the next tick (-want +got):\n%s", diff)
	}
	f.tickAll(t0.Add(2*time.Second), w) // not again within the minute
	if got := f.received(); len(got) != 0 {
		t.Errorf("again: %v", got)
	}
}

// TestInvalidIDsReadBackFromStorageAreSkipped: a database written before
// pc_ids were checked may hold ones that cannot be subject tokens, and KV
// agent_groups may hold such group names. The reconcile skips and counts
// them and still sends every good PC its command; one long pc_id in a
// publish would otherwise close the worker's NATS connection.
func TestInvalidIDsReadBackFromStorageAreSkipped(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "each", `{"id":"each","when":{"per_pc":"once"},"job_id":"inv","target":{"all":true}}`)
	f.put(kanade.BucketAgentGroups, "PC-1", `{"groups":["lab","bad.group"]}`)
	t0 := utc(10, 12, 0, 0)
	var hs []kanade.Heartbeat
	for _, pc := range []string{"PC-1", "DESKTOP-ABC12", "PC.3", "PC 4", strings.Repeat("P", 5000)} {
		hs = append(hs, kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: t0.Add(-10 * time.Second)}, AgentVersion: "1"})
	}
	if err := f.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, hs) }); err != nil {
		t.Fatal(err)
	}
	w := f.worker()

	// Bounded: a publish on a closed connection would wait for its ack forever.
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.tick(tctx, t0); err != nil {
		t.Fatalf("tick: %v", err)
	}
	if diff := cmp.Diff([]string{"commands.pc.DESKTOP-ABC12", "commands.pc.PC-1"}, f.received()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if n := f.count(`SELECT COUNT(*) FROM executions WHERE target_count = 2`); n != 1 {
		t.Errorf("%d executions with target_count 2, want 1", n)
	}
	// Three pc_ids from agents, one group from agent_groups.
	if got := counter(w.m.invalidIDs); got != 4 {
		t.Errorf("kanade_scheduler_invalid_ids_total = %v, want 4", got)
	}
}

// A firing sends what the agents need beyond the script: the script
// object's digest, and the retry of on_failure (the schedule's over the
// job's).
func TestFiringsCarryTheScriptDigestAndTheRetry(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	store, err := f.nats.JS.ObjectStore(ctx, kanade.ObjectScripts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, "inv/4", []byte("uname -a")); err != nil {
		t.Fatal(err)
	}
	f.put(kanade.BucketJobs, "inv", `{"id":"inv","version":"4","execute":{"shell":"sh","script_object":"inv/4","timeout":"5m"},"on_failure":{"retry":{"max":5,"backoff":"1m"}}}`)
	f.put(kanade.BucketSchedules, "a", `{"id":"a","when":{"per_pc":"once"},"job_id":"inv","target":{"pcs":["PC-1"]},"on_failure":{"retry":{"max":2,"backoff":"30s"}}}`)
	f.put(kanade.BucketSchedules, "b", `{"id":"b","when":{"per_pc":"once"},"job_id":"inv","target":{"pcs":["PC-2"]}}`)
	w := f.worker()
	f.tickAll(utc(9, 8, 0, 0), w)
	got := map[string]kanade.Command{}
	for len(got) < 2 {
		select {
		case m := <-f.commands:
			var c kanade.Command
			if err := json.Unmarshal(m.Data, &c); err != nil {
				t.Fatal(err)
			}
			got[m.Subject] = c
		case <-time.After(10 * time.Second):
			t.Fatalf("commands: %v", got)
		}
	}
	sum := sha256.Sum256([]byte("uname -a"))
	for subject, want := range map[string]*kanade.RetrySpec{"commands.pc.PC-1": {Max: 2, BackoffSecs: 30}, "commands.pc.PC-2": {Max: 5, BackoffSecs: 60}} {
		c := got[subject]
		if diff := cmp.Diff(want, c.Retry); diff != "" {
			t.Errorf("%s retry (-want +got):\n%s", subject, diff)
		}
		if c.ScriptObject != "inv/4" || c.ScriptObjectSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: script object %q digest %q", subject, c.ScriptObject, c.ScriptObjectSHA256)
		}
	}
}
