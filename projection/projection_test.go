package projection

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// env is one NATS server and one database, plus a raw SQL handle for
// dumping tables.
type env struct {
	t   *testing.T
	srv *bustest.Server
	dsn string
	db  *storage.DB
	raw *sql.DB
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, srv: bustest.StartBootstrapped(t), now: time.Date(2026, 9, 30, 12, 0, 0, 0, time.UTC)}
	e.openDB()
	return e
}

// openDB opens a fresh, empty database (a wiped one, when called again).
func (e *env) openDB() {
	e.t.Helper()
	e.dsn = storagetest.DSN(e.t)
	db, err := storage.Open(context.Background(), e.dsn, storage.Options{Clock: e.clock})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	driver := "sqlite"
	if strings.Contains(e.dsn, "://") {
		driver = "libsql"
	}
	raw, err := sql.Open(driver, e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { raw.Close() })
	e.db, e.raw = db, raw
}

func (e *env) clock() time.Time { return e.now }

// testLogger writes the worker's log to the test's log, shown only when the
// test fails or runs with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// exec seeds rows through the write path's transaction (triggers run).
func (e *env) exec(q string, args ...any) error {
	ctx := context.Background()
	return e.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
}

type running struct {
	w      *Worker
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

// start runs a worker until the test ends or stop is called.
func (e *env) start(mutate func(*Config, context.CancelFunc)) *running {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{DB: e.db, Bus: e.srv.Bus, Clock: e.clock, Registerer: reg, Logger: testLogger(e.t),
		BatchSize: 50, HeartbeatFlush: 50 * time.Millisecond, Housekeeping: -1,
		MaxBackoff: 200 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg, cancel)
	}
	w, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &running{w: w, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := w.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	e.t.Cleanup(r.stop)
	return r
}

func (e *env) publish(msgs ...sim.Message) {
	e.t.Helper()
	if err := sim.Publish(context.Background(), e.srv.Bus, msgs...); err != nil {
		e.t.Fatal(err)
	}
	if err := e.srv.NC.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) publishRaw(subject string, data string) {
	e.t.Helper()
	if _, err := e.srv.JS.Publish(context.Background(), subject, []byte(data)); err != nil {
		e.t.Fatal(err)
	}
}

// waitCaughtUp waits until every consumer's database offset reaches the
// last sequence of its stream (asynchronous processing, not a time rule).
func (e *env) waitCaughtUp() {
	e.t.Helper()
	waitFor(e.t, e.behind)
}

// caughtUp reports whether every projection has applied its stream.
func (e *env) caughtUp() bool {
	ok, _ := e.behind()
	return ok
}

// behind reports whether every projection has applied its stream, and
// where the first that has not stands.
func (e *env) behind() (bool, string) {
	ctx := context.Background()
	for _, spec := range defaultConsumers() {
		s, err := e.srv.JS.Stream(ctx, spec.Stream)
		if err != nil {
			return false, err.Error()
		}
		// Streams are shared (EVENTS holds started events and
		// notification acks): a consumer is done at the last message of
		// its own filter.
		var last uint64
		if s.CachedInfo().State.Msgs > 0 {
			m, err := s.GetLastMsgForSubject(ctx, spec.Filter)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return false, err.Error()
			default:
				last = m.Sequence
			}
		}
		off, err := e.db.Offset(ctx, spec.Name)
		if err != nil {
			return false, err.Error()
		}
		if off.Seq < last {
			return false, fmt.Sprintf("%s at %d of %d", spec.Name, off.Seq, last)
		}
	}
	return true, ""
}

// resultsDone reports whether off is the RESULTS stream's last sequence.
func (e *env) resultsDone(off uint64) bool {
	s, err := e.srv.JS.Stream(context.Background(), kanade.StreamResults)
	return err == nil && off >= s.CachedInfo().State.LastSeq
}

func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	// A guard against hangs, not a performance target: it fires after 60 s
	// in which the state cond reports did not change (a projection at 3474
	// of 5760 that moves on is slow, not stuck, on a loaded machine), and
	// after 10 minutes in any case.
	const still, most = 60 * time.Second, 10 * time.Minute
	start := time.Now()
	last, lastChange := "", start
	for {
		ok, why := cond()
		if ok {
			return
		}
		now := time.Now()
		if why != last {
			last, lastChange = why, now
		}
		if now.Sub(lastChange) > still || now.Sub(start) > most {
			t.Fatalf("timed out after %v (%v without change): %s", now.Sub(start).Round(time.Second),
				now.Sub(lastChange).Round(time.Second), why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump returns every row of q as text, for whole-table comparisons.
func (e *env) dump(q string, args ...any) []string {
	e.t.Helper()
	rows, err := e.raw.Query(q, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				parts[i] = "NULL"
			case []byte:
				parts[i] = string(v)
			default:
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func ts(s string) kanade.Timestamp {
	t, err := kanade.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return kanade.Timestamp{Time: t}
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

func TestEndToEndProjectsEveryStream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kv, err := e.srv.JS.KeyValue(ctx, kanade.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "inventory-hw", []byte(`{"id":"inventory-hw","version":"3","execute":{"shell":"sh","script":"x","timeout":"5m"},"extra":1}`)); err != nil {
		t.Fatal(err)
	}
	obj, err := e.srv.JS.ObjectStore(ctx, kanade.ObjectResultOutput)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "q2/stdout", []byte("big output")); err != nil {
		t.Fatal(err)
	}
	if err := e.exec(`INSERT INTO executions (exec_id, job_id, target_count, initiated_at) VALUES ('e1', 'inventory-hw', 2, '2026-09-30T11:59:00.000000000Z')`); err != nil {
		t.Fatal(err)
	}
	r := e.start(nil)

	exit0, exit3 := int64(0), int64(3)
	started := kanade.EventStarted{ResultID: "r1", RequestID: "q1", ExecID: "e1", PcID: "PC-1", StartedAt: ts("2026-09-30T11:59:30Z"), ManifestID: "inventory-hw", Version: "3"}
	e.publish(sim.Message{Subject: "events.started.e1.PC-1", Data: []byte(js(started)), JetStream: true})
	e.waitCaughtUp()
	// The running row: expires_at = its stream timestamp + 5m + max(2m, 2m30s).
	got := e.dump(`SELECT result_id, exit_code, finished_at, version,
		CAST(ROUND((julianday(expires_at) - julianday(recorded_at)) * 86400) AS INTEGER) FROM execution_results`)
	if len(got) != 1 || !strings.HasPrefix(got[0], "r1|NULL|NULL|3|") || strings.Split(got[0], "|")[4] != "450" {
		t.Fatalf("running row = %v", got)
	}
	if st := e.dump(`SELECT status FROM executions`); st[0] != "running" {
		t.Fatalf("execution status = %v, want running", st)
	}

	e.publish(
		sim.Message{Subject: "results.q1", Data: []byte(js(kanade.ExecResult{ResultID: "r1", RequestID: "q1", ExecID: "e1", PcID: "PC-1", ExitCode: &exit0,
			Stdout: "ok", StartedAt: ts("2026-09-30T11:59:30Z"), FinishedAt: ts("2026-09-30T11:59:34.25Z"), ManifestID: "inventory-hw"})), JetStream: true},
		sim.Message{Subject: "results.q2", Data: []byte(js(kanade.ExecResult{ResultID: "r2", RequestID: "q2", ExecID: "e1", PcID: "PC-2", ExitCode: &exit3,
			StdoutObject: "q2/stdout", StderrObject: "q2/missing", Stderr: "", StartedAt: ts("2026-09-30T11:59:31+09:00"), FinishedAt: ts("2026-09-30T11:59:35+09:00")})), JetStream: true},
		sim.Message{Subject: "audit.operator.exec.PC-1", Data: []byte(js(kanade.AuditEvent{Actor: "operator", Action: "exec", Target: ptr("PC-1"),
			Payload: json.RawMessage(`{"job":"inventory-hw"}`), OccurredAt: ts("2026-09-30T11:58:00Z")})), JetStream: true},
		sim.HeartbeatMessage(kanade.Heartbeat{PcID: "PC-1", At: ts("2026-09-30T11:59:50Z"), AgentVersion: "0.45.3", Hostname: ptr("host1"),
			OsFamily: ptr("windows"), LastLogonUser: ptr(`CORP\taro`), Enforcing: ptr(false), CommandKeys: &[]string{}}),
	)
	e.waitCaughtUp()
	waitFor(t, func() (bool, string) {
		n := e.dump(`SELECT COUNT(*) FROM agents`)
		return n[0] == "1", "agents: " + n[0]
	})

	want := []string{
		"r1|q1|e1|PC-1|inventory-hw|3|0|0|ok||2026-09-30T11:59:30.000000000Z|2026-09-30T11:59:34.250000000Z|0|4250",
		"r2|q2|e1|PC-2|NULL|NULL|3|0|big output||2026-09-30T02:59:31.000000000Z|2026-09-30T02:59:35.000000000Z|0|4000",
	}
	if diff := cmp.Diff(want, e.dump(`SELECT result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped, stdout, stderr,
		started_at, finished_at, reaped, duration_ms FROM execution_results ORDER BY result_id`)); diff != "" {
		t.Errorf("execution_results (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1|1|completed"}, e.dump(`SELECT success_count, failure_count, status FROM executions`)); diff != "" {
		t.Errorf("executions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`operator|exec|PC-1|{"job":"inventory-hw"}|2026-09-30T11:58:00.000000000Z|1`},
		e.dump(`SELECT actor, action, target, payload, occurred_at, stream_seq FROM audit_log`)); diff != "" {
		t.Errorf("audit_log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`PC-1|host1|windows|0.45.3|2026-09-30T11:59:50.000000000Z|CORP\taro|[]|0`},
		e.dump(`SELECT pc_id, hostname, os_family, agent_version, last_heartbeat, last_logon_user, command_keys, enforcing FROM agents`)); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
	// recorded_at is the stream timestamp, not the (frozen) test clock.
	if rec := e.dump(`SELECT COUNT(*) FROM execution_results WHERE recorded_at = ?`, kanade.FormatTime(e.now)); rec[0] != "0" {
		t.Errorf("%s rows have recorded_at from the clock, want stream timestamps", rec[0])
	}
	if n := value(r.w.m.missingOutput); n != 1 {
		t.Errorf("missing output objects = %v, want 1", n)
	}
}

// runMessages generates one fleet's runs: three executions with
// target_count, plus ad-hoc runs.
func runMessages(t *testing.T, e *env) []sim.Message {
	t.Helper()
	f := sim.NewFleet(sim.Config{Agents: 20, Seed: 7, LateRate: 0.3, DuplicateRate: 0.3, FailureRate: 0.2, SkipRate: 0.1})
	jobs := f.Config().Jobs
	var msgs []sim.Message
	base := e.now.Add(-time.Hour)
	for x := 0; x < 3; x++ {
		exec := fmt.Sprintf("exec-%d", x)
		if err := e.exec(`INSERT INTO executions (exec_id, job_id, target_count, initiated_at) VALUES (?, ?, 12, ?)`,
			exec, jobs[x].ID, kanade.FormatTime(base)); err != nil {
			t.Fatal(err)
		}
		for a := 0; a < 15; a++ { // more answers than the target: completed anyway
			run := f.Run(sim.RunSpec{Agent: a, Job: jobs[x], ExecID: exec, RequestID: "req-" + exec, StartedAt: base.Add(time.Duration(a) * time.Second)})
			if x == 2 {
				// This execution's results name neither it nor the job (only
				// the started events do), so a result projected first must
				// be completed by its later started event.
				for i, m := range run.Messages {
					if strings.HasPrefix(m.Subject, "results.") {
						run.Messages[i].Data = stripFields(t, m.Data, "exec_id", "manifest_id")
					}
				}
			}
			msgs = append(msgs, run.Messages...)
		}
	}
	for a := 0; a < 20; a++ {
		run := f.Run(sim.RunSpec{Agent: a, Job: jobs[3], StartedAt: base.Add(time.Duration(a) * time.Minute)})
		msgs = append(msgs, run.Messages...)
	}
	return msgs
}

func stripFields(t *testing.T, data []byte, fields ...string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		delete(m, f)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const resultsDump = `SELECT result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped, stdout, stderr,
	started_at, finished_at, reaped, parent_result_id, duration_ms FROM execution_results ORDER BY result_id`
const execDump = `SELECT * FROM executions ORDER BY exec_id`

func TestOrderIndependence(t *testing.T) {
	reference := func() ([]string, []string, []sim.Message) {
		e := newEnv(t)
		msgs := runMessages(t, e)
		e.start(nil)
		e.publish(msgs...)
		e.waitCaughtUp()
		return e.dump(resultsDump), e.dump(execDump), msgs
	}
	wantRuns, wantExecs, msgs := reference()
	if len(wantRuns) != 65 {
		t.Fatalf("reference has %d runs, want 65", len(wantRuns))
	}
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("permutation %d", seed), func(t *testing.T) {
			e := newEnv(t)
			runMessages(t, e)
			rng := rand.New(rand.NewPCG(seed, 99))
			perm := append([]sim.Message(nil), msgs...)
			for i := 0; i < len(msgs)/3; i++ { // duplicates of random messages
				perm = append(perm, msgs[rng.IntN(len(msgs))])
			}
			rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			// Half before the projector starts, half while it runs.
			e.publish(perm[:len(perm)/2]...)
			e.start(nil)
			e.publish(perm[len(perm)/2:]...)
			e.waitCaughtUp()
			if diff := cmp.Diff(wantRuns, e.dump(resultsDump)); diff != "" {
				t.Errorf("execution_results differ (-ordered +permuted):\n%s", diff)
			}
			if diff := cmp.Diff(wantExecs, e.dump(execDump)); diff != "" {
				t.Errorf("executions differ (-ordered +permuted):\n%s", diff)
			}
		})
	}
}

func TestCrashSafety(t *testing.T) {
	tests := []struct {
		name string
		hook func(cfg *Config, crash func())
	}{
		{"crash right after a commit", func(cfg *Config, crash func()) {
			cfg.afterCommit = func(string) error { crash(); return errCrash }
		}},
		{"crash in the middle of a batch", func(cfg *Config, crash func()) {
			cfg.inApply = func(string) error { crash(); return errCrash }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			msgs := runMessages(t, e)
			wantRuns, wantExecs := func() ([]string, []string) {
				ref := newEnv(t)
				runMessages(t, ref)
				ref.start(nil)
				ref.publish(msgs...)
				ref.waitCaughtUp()
				return ref.dump(resultsDump), ref.dump(execDump)
			}()
			e.publish(msgs...)
			// Crash on the 1st, 2nd, 3rd batch of a fresh worker, restarting
			// each time; a worker that catches up before its crash is stopped.
			crashes := 0
			for crashAt := 1; crashAt <= 3; crashAt++ {
				var mu sync.Mutex
				batches := 0
				crashed := false
				r := e.start(func(cfg *Config, cancel context.CancelFunc) {
					cfg.BatchSize = 7
					tt.hook(cfg, func() {})
					wrap := func(fn func(string) error) func(string) error {
						if fn == nil {
							return nil
						}
						return func(c string) error {
							mu.Lock()
							defer mu.Unlock()
							if c != ConsumerResults || crashed {
								return nil
							}
							batches++
							if batches == crashAt {
								crashed = true
								cancel()
								return fn(c)
							}
							return nil
						}
					}
					cfg.afterCommit, cfg.inApply = wrap(cfg.afterCommit), wrap(cfg.inApply)
				})
				waitFor(t, func() (bool, string) {
					mu.Lock()
					defer mu.Unlock()
					if crashed {
						return true, ""
					}
					off, err := e.db.Offset(context.Background(), ConsumerResults)
					return err == nil && off.Seq > 0 && e.resultsDone(off.Seq), "crash or catch-up"
				})
				r.stop()
				if crashed {
					crashes++
				}
			}
			if crashes < 2 {
				t.Fatalf("only %d crashes injected; the test proves nothing", crashes)
			}
			e.start(nil)
			e.waitCaughtUp()
			if diff := cmp.Diff(wantRuns, e.dump(resultsDump)); diff != "" {
				t.Errorf("execution_results after crashes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantExecs, e.dump(execDump)); diff != "" {
				t.Errorf("executions after crashes (-want +got):\n%s", diff)
			}
			// result_minutes counts every row once.
			if got := e.dump(`SELECT SUM(total) FROM result_minutes`); got[0] != "65" {
				t.Errorf("result_minutes total = %s, want 65", got[0])
			}
		})
	}
}

func TestMalformedMessagesAreCountedAndSkipped(t *testing.T) {
	e := newEnv(t)
	exit := int64(0)
	good := func(i int) string {
		return js(kanade.ExecResult{ResultID: fmt.Sprintf("r%02d", i), RequestID: "q", PcID: "PC", ExitCode: &exit,
			StartedAt: ts("2026-09-30T11:00:00Z"), FinishedAt: ts("2026-09-30T11:00:01Z")})
	}
	bad := []string{`{not json`, `{"request_id":"q","pc_id":"PC"}`, `{"result_id":"x","request_id":"q","pc_id":"PC","exit_code":0,"started_at":"yesterday","finished_at":"2026-09-30T11:00:01Z"}`, ``}
	for i := 0; i < 20; i++ {
		e.publishRaw("results.q", good(i))
		if i%5 == 0 {
			e.publishRaw("results.q", bad[i/5])
		}
	}
	e.publishRaw("events.started.e.PC", `{"result_id":""}`)
	e.publishRaw("audit.operator.x", `[]`)
	e.publishRaw("audit.operator.y", js(kanade.AuditEvent{Actor: "operator", Action: "y", OccurredAt: ts("2026-09-30T11:00:00Z")}))
	r := e.start(nil)
	waitFor(t, func() (bool, string) { return r.w.heartbeatsReady(), "heartbeat subscription" })
	if err := e.srv.NC.Publish("heartbeat.PC", []byte(`{"pc_id":"PC"}`)); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp()
	if got := e.dump(`SELECT COUNT(*) FROM execution_results`); got[0] != "20" {
		t.Errorf("rows = %s, want all 20 good results", got[0])
	}
	if got := e.dump(`SELECT COUNT(*) FROM audit_log`); got[0] != "1" {
		t.Errorf("audit rows = %s, want 1", got[0])
	}
	waitFor(t, func() (bool, string) {
		n := value(r.w.m.decodeFailures.WithLabelValues("heartbeat"))
		return n == 1, fmt.Sprintf("heartbeat failures %v", n)
	})
	for stream, want := range map[string]float64{kanade.StreamResults: 4, kanade.StreamEvents: 1, kanade.StreamAudit: 1} {
		if got := value(r.w.m.decodeFailures.WithLabelValues(stream)); got != want {
			t.Errorf("decode failures for %s = %v, want %v", stream, got, want)
		}
	}
	// The metric is exported on the registry under its public name.
	if n, err := gatherCount(r.reg, "kanade_projector_decode_failures_total"); err != nil || n != 5 {
		t.Errorf("gathered decode failure series = %d (%v), want 5", n, err)
	}
}

func TestWipedDatabaseRebuildsFromStreams(t *testing.T) {
	e := newEnv(t)
	msgs := runMessages(t, e)
	msgs = append(msgs, sim.NewFleet(sim.Config{Agents: 3, Seed: 1}).Audit(e.now))
	r := e.start(nil)
	e.publish(msgs...)
	e.waitCaughtUp()
	wantRuns, wantExecs, wantAudit := e.dump(resultsDump), e.dump(execDump), e.dump(`SELECT * FROM audit_log`)
	r.stop()

	// A restart on the same database resumes after the offset: it receives
	// nothing it already applied.
	r = e.start(nil)
	e.waitCaughtUp()
	time.Sleep(100 * time.Millisecond) // let every consumer loop start
	for _, spec := range defaultConsumers() {
		if n := value(r.w.m.behind.WithLabelValues(spec.Name)); n != 0 {
			t.Errorf("%s received %v messages it had applied", spec.Name, n)
		}
		if n := value(r.w.m.applied.WithLabelValues(spec.Name)); n != 0 {
			t.Errorf("%s applied %v messages again", spec.Name, n)
		}
	}
	r.stop()

	e.openDB() // wiped: a brand-new file
	runMessages(t, e)
	r = e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(wantRuns, e.dump(resultsDump)); diff != "" {
		t.Errorf("rebuilt execution_results (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantExecs, e.dump(execDump)); diff != "" {
		t.Errorf("rebuilt executions (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantAudit, e.dump(`SELECT * FROM audit_log`)); diff != "" {
		t.Errorf("rebuilt audit_log (-before +after):\n%s", diff)
	}
	if n := value(r.w.m.applied.WithLabelValues(ConsumerResults)); n == 0 {
		t.Errorf("the wiped database was rebuilt without applying a results message")
	}
}

func TestHeartbeatMerge(t *testing.T) {
	full := kanade.Heartbeat{PcID: "PC", At: ts("2026-09-30T11:00:00Z"), AgentVersion: "1", Hostname: ptr("h"), OsFamily: ptr("windows"),
		LastLogonUser: ptr("u"), LastLogonDisplayName: ptr("U"), CommandKeys: &[]string{"k"}, CommandProtocols: &[]string{"p"},
		Enforcing: ptr(true), AgentCPUPct: ptr(1.5), QuarantinedVersions: []string{"0.1"}}
	ping := kanade.Heartbeat{PcID: "PC", At: ts("2026-09-30T11:00:30Z"), AgentVersion: "2", AgentCPUPct: ptr(0.5)}
	renamed := kanade.Heartbeat{PcID: "PC", At: ts("2026-09-30T11:01:00Z"), AgentVersion: "2", Hostname: ptr("h2"),
		LastLogonUser: ptr("v"), Enforcing: ptr(false), CommandKeys: &[]string{}}
	const q = `SELECT hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct, quarantined_versions, last_logon_user,
		last_logon_display_name, command_keys, command_protocols, enforcing FROM agents`
	tests := []struct {
		name    string
		flushes [][]kanade.Heartbeat // each inner slice is delivered, then flushed
		want    string
	}{
		{"a ping reply does not erase the logon user", [][]kanade.Heartbeat{{full}, {ping}},
			`h|windows|2|2026-09-30T11:00:30.000000000Z|0.5|NULL|u|U|["k"]|["p"]|1`},
		{"same within one flush window", [][]kanade.Heartbeat{{full, ping}},
			`h|windows|2|2026-09-30T11:00:30.000000000Z|0.5|NULL|u|U|["k"]|["p"]|1`},
		{"an older beat arriving later loses", [][]kanade.Heartbeat{{ping, full}},
			`h|windows|2|2026-09-30T11:00:30.000000000Z|0.5|NULL|u|U|["k"]|["p"]|1`},
		{"carried values replace, hostname keeps its first value", [][]kanade.Heartbeat{{full}, {ping, renamed}},
			`h|windows|2|2026-09-30T11:01:00.000000000Z|NULL|NULL|v|U|[]|["p"]|0`},
		{"first hostname wins inside a window too", [][]kanade.Heartbeat{{renamed, full, ping}},
			`h|windows|2|2026-09-30T11:01:00.000000000Z|NULL|NULL|v|U|[]|["p"]|0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.start(func(c *Config, _ context.CancelFunc) { c.HeartbeatFlush = time.Hour })
			waitFor(t, func() (bool, string) { return r.w.heartbeatsReady(), "subscription" })
			for _, beats := range tt.flushes {
				for _, h := range beats {
					e.publish(sim.HeartbeatMessage(h))
				}
				waitFor(t, func() (bool, string) {
					n := value(r.w.m.hbReceived)
					return n >= float64(countBeats(tt.flushes, beats)), "received"
				})
				r.w.flushNow()
			}
			if diff := cmp.Diff([]string{tt.want}, e.dump(q)); diff != "" {
				t.Errorf("agents (-want +got):\n%s", diff)
			}
		})
	}
}

// countBeats is how many beats were published up to and including upto.
func countBeats(all [][]kanade.Heartbeat, upto []kanade.Heartbeat) int {
	n := 0
	for _, b := range all {
		n += len(b)
		if &b[0] == &upto[0] {
			break
		}
	}
	return n
}

func TestHousekeeping(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := kanade.FormatTime(e.now.Add(-91 * 24 * time.Hour))
	for i, stmt := range []string{
		`INSERT INTO executions (exec_id, initiated_at, status) VALUES ('pend-old', '` + kanade.FormatTime(e.now.Add(-61*time.Minute)) + `', 'pending')`,
		`INSERT INTO executions (exec_id, initiated_at, status) VALUES ('pend-new', '` + kanade.FormatTime(e.now.Add(-59*time.Minute)) + `', 'pending')`,
		`INSERT INTO executions (exec_id, initiated_at, status) VALUES ('ancient', '` + old + `', 'completed')`,
		`INSERT INTO audit_log (actor, action, occurred_at) VALUES ('a', 'old', '` + kanade.FormatTime(e.now.Add(-366*24*time.Hour)) + `')`,
		`INSERT INTO audit_log (actor, action, occurred_at) VALUES ('a', 'new', '` + kanade.FormatTime(e.now.Add(-364*24*time.Hour)) + `')`,
	} {
		if err := e.exec(stmt); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
	exit := int64(0)
	var seed []storage.Result
	for i := 0; i < 25; i++ {
		rec := e.now.Add(-91 * 24 * time.Hour)
		if i%5 == 0 {
			rec = e.now.Add(-89 * 24 * time.Hour)
		}
		seed = append(seed, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("r%02d", i), RequestID: "q", PcID: "PC",
			ExitCode: &exit, StartedAt: kanade.Timestamp{Time: rec}, FinishedAt: kanade.Timestamp{Time: rec.Add(10 * time.Millisecond)},
			ManifestID: "job"}, RecordedAt: rec})
	}
	if err := e.db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.ApplyResults(ctx, seed); return err }); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.ApplyStarted(ctx, []storage.Started{{EventStarted: kanade.EventStarted{ResultID: "running", RequestID: "q", PcID: "PC",
			StartedAt: kanade.Timestamp{Time: e.now.Add(-time.Hour)}, ManifestID: "job"}, RecordedAt: e.now.Add(-time.Hour), Timeout: 10 * time.Minute}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{DB: e.db, Bus: e.srv.Bus, Clock: e.clock, HousekeepingBatch: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pend-new|pending", "pend-old|expired"}, e.dump(`SELECT exec_id, status FROM executions ORDER BY exec_id`)); diff != "" {
		t.Errorf("executions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r00|0", "r05|0", "r10|0", "r15|0", "r20|0", "running|-1"}, e.dump(`SELECT result_id, exit_code FROM execution_results ORDER BY result_id`)); diff != "" {
		t.Errorf("results kept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"new"}, e.dump(`SELECT action FROM audit_log`)); diff != "" {
		t.Errorf("audit kept (-want +got):\n%s", diff)
	}
	if got := e.dump(`SELECT SUM(total) FROM result_minutes`); got[0] != "6" {
		t.Errorf("result_minutes total = %s, want 6", got[0])
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// gatherCount counts the series of one metric family in reg.
func gatherCount(reg *prometheus.Registry, name string) (int, error) {
	fams, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.GetMetric()), nil
		}
	}
	return 0, nil
}

// TestAHeartbeatFlushInFlightAtShutdownFinishes stops the worker while a
// periodic heartbeat flush is about to write: the flush must complete, not
// fail on the cancelled context (an error in the log and a second write by
// the shutdown flush).
func TestAHeartbeatFlushInFlightAtShutdownFinishes(t *testing.T) {
	e := newEnv(t)
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	r := e.start(func(cfg *Config, _ context.CancelFunc) {
		cfg.HeartbeatFlush = 10 * time.Millisecond
		cfg.inFlush = func() { once.Do(func() { close(inside); <-release }) }
	})
	waitFor(t, func() (bool, string) { return r.w.heartbeatsReady(), "heartbeat subscription" })
	e.publish(sim.HeartbeatMessage(kanade.Heartbeat{PcID: "PC-MID-FLUSH", At: ts("2026-09-30T11:59:59Z"), AgentVersion: "1"}))
	<-inside
	r.cancel() // the signal arrives while the flush is under way
	close(release)
	<-r.done
	if n := value(r.w.m.applyErrors.WithLabelValues("heartbeats")); n != 0 {
		t.Errorf("%v heartbeat flush errors: the flush in flight was cut short", n)
	}
	if got := e.dump(`SELECT COUNT(*) FROM agents WHERE pc_id = 'PC-MID-FLUSH'`); got[0] != "1" {
		t.Errorf("the beat of the flush in flight is not in the database")
	}
}

// TestGracefulShutdownFinishesTheBatchInFlight stops the worker while a
// results batch is inside its transaction: Run must commit that batch and
// write the buffered heartbeats before it returns.
func TestGracefulShutdownFinishesTheBatchInFlight(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	msgs := runMessages(t, e)
	e.publish(msgs...)
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	r := e.start(func(cfg *Config, _ context.CancelFunc) {
		cfg.BatchSize = 7
		cfg.HeartbeatFlush = time.Hour // only the shutdown flush writes beats
		cfg.inApply = func(c string) error {
			if c == ConsumerResults {
				once.Do(func() { close(inside); <-release })
			}
			return nil
		}
	})
	waitFor(t, func() (bool, string) { return r.w.heartbeatsReady(), "heartbeat subscription" })
	e.publish(sim.HeartbeatMessage(kanade.Heartbeat{PcID: "PC-LAST", At: ts("2026-09-30T11:59:59Z"), AgentVersion: "1"}))
	waitFor(t, func() (bool, string) { return value(r.w.m.hbReceived) >= 1, "heartbeat received" })
	<-inside
	r.cancel() // the signal arrives mid-transaction
	close(release)
	<-r.done

	off, err := e.db.Offset(ctx, ConsumerResults)
	if err != nil {
		t.Fatal(err)
	}
	if off.Seq == 0 {
		t.Fatal("the batch in flight at shutdown was not committed")
	}
	if got := e.dump(`SELECT COUNT(*) FROM agents WHERE pc_id = 'PC-LAST'`); got[0] != "1" {
		t.Errorf("buffered heartbeat not written at shutdown")
	}
	// And a restart carries on from there to the same rows as an
	// uninterrupted run.
	e.start(nil)
	e.waitCaughtUp()
	if got := e.dump(`SELECT COUNT(*) FROM execution_results`); got[0] != "65" {
		t.Errorf("after restart: %s runs, want 65", got[0])
	}
}
