package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// The fault tests produce, on purpose, what JetStream and the network really
// do: deliveries abandoned half way, consumers deleted under a loop,
// connections reset mid-batch, several workers on one database, crashes
// before and after commits, a stream created anew. Each compares the final
// tables with a reference run that suffered nothing.

// bulk is a larger, varied message set: n runs in four executions (whose
// rows it inserts), stdout of size bytes, every third run announced by a
// started event (published before or after its result), every fifth result
// published twice, every seventh from an old agent without a result_id.
func bulk(t *testing.T, e *env, n, size int) []sim.Message {
	t.Helper()
	base := e.now.Add(-time.Hour)
	for x := 0; x < 4; x++ {
		if err := e.exec(`INSERT INTO executions (exec_id, job_id, target_count, initiated_at) VALUES (?, ?, ?, ?)`,
			fmt.Sprintf("bulk-%d", x), fmt.Sprintf("job-%d", x), n/4, kanade.FormatTime(base)); err != nil {
			t.Fatal(err)
		}
	}
	out := strings.Repeat("x", size)
	var msgs []sim.Message
	for i := 0; i < n; i++ {
		exec, job := fmt.Sprintf("bulk-%d", i%4), fmt.Sprintf("job-%d", i%4)
		pc := fmt.Sprintf("PC-%05d", i)
		req := fmt.Sprintf("req-%d", i/50)
		id := fmt.Sprintf("run-%06d", i)
		started := base.Add(time.Duration(i) * time.Millisecond)
		exit := int64(i % 3 % 2) // two in three succeed
		r := kanade.ExecResult{ResultID: id, RequestID: req, ExecID: exec, PcID: pc, ExitCode: &exit, Stdout: out,
			StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(time.Duration(i%997) * time.Millisecond)},
			ManifestID: job}
		if i%7 == 0 {
			r.ResultID = "" // the projector derives kanade.LegacyResultID(req, pc)
		}
		res := sim.Message{Subject: "results." + req, Data: []byte(js(r)), JetStream: true}
		var ev *sim.Message
		if i%3 == 0 && r.ResultID != "" {
			s := kanade.EventStarted{ResultID: id, RequestID: req, ExecID: exec, PcID: pc, StartedAt: r.StartedAt, ManifestID: job, Version: "1"}
			ev = &sim.Message{Subject: sim.StartedSubject(s), Data: []byte(js(s)), JetStream: true}
		}
		switch {
		case ev != nil && i%2 == 0:
			msgs = append(msgs, *ev, res)
		case ev != nil:
			msgs = append(msgs, res, *ev)
		default:
			msgs = append(msgs, res)
		}
		if i%5 == 0 {
			msgs = append(msgs, res)
		}
	}
	return msgs
}

// reference projects msgs on a fresh server and database with one worker
// and nothing going wrong, and returns the tables to compare with.
func reference(t *testing.T, gen func(e *env) []sim.Message) (runs, execs []string, msgs []sim.Message) {
	t.Helper()
	e := newEnv(t)
	msgs = gen(e)
	e.start(nil)
	e.publish(msgs...)
	e.waitCaughtUp()
	return e.dump(resultsDump), e.dump(execDump), msgs
}

func (e *env) checkAgainst(wantRuns, wantExecs []string) {
	e.t.Helper()
	if diff := cmp.Diff(wantRuns, e.dump(resultsDump)); diff != "" {
		e.t.Errorf("execution_results (-reference +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantExecs, e.dump(execDump)); diff != "" {
		e.t.Errorf("executions (-reference +got):\n%s", diff)
	}
	// Independently of the reference: every run is counted once.
	got := e.dump(`SELECT (SELECT COUNT(*) FROM execution_results), (SELECT SUM(total) FROM result_minutes),
		(SELECT SUM(success_count + failure_count) FROM executions),
		(SELECT COUNT(*) FROM execution_results WHERE exec_id IS NOT NULL AND exit_code IS NOT NULL)`)
	parts := strings.Split(got[0], "|")
	if parts[0] != parts[1] || parts[2] != parts[3] {
		e.t.Errorf("rows %s, result_minutes %s, execution counters %s, finished runs with an execution %s",
			parts[0], parts[1], parts[2], parts[3])
	}
}

// connect opens a worker's own connection that never gives up
// reconnecting.
func connect(t *testing.T, url string) *bus.Client {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := bus.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startOn runs a worker on its own connection.
func (e *env) startOn(c *bus.Client, mutate func(*Config)) *running {
	e.t.Helper()
	return e.start(func(cfg *Config, _ context.CancelFunc) {
		cfg.Bus = c
		if mutate != nil {
			mutate(cfg)
		}
	})
}

// publishSlowly publishes msgs in small groups with pauses, so the faults
// land while messages are in flight.
func (e *env) publishSlowly(msgs []sim.Message, group int, pause time.Duration) {
	e.t.Helper()
	for i := 0; i < len(msgs); i += group {
		e.publish(msgs[i:min(i+group, len(msgs))]...)
		time.Sleep(pause)
	}
}

func TestFaultSeveralWorkersOnOneDatabase(t *testing.T) {
	gen := func(e *env) []sim.Message { return bulk(t, e, 1500, 200) }
	wantRuns, wantExecs, msgs := reference(t, gen)
	for _, workers := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			e := newEnv(t)
			gen(e)
			e.publish(msgs[:len(msgs)/3]...)
			var rs []*running
			for range workers {
				rs = append(rs, e.startOn(connect(t, e.srv.URL), func(c *Config) { c.BatchSize = 17 }))
			}
			e.publishSlowly(msgs[len(msgs)/3:], 97, 5*time.Millisecond)
			e.waitCaughtUp()
			e.checkAgainst(wantRuns, wantExecs)
			// They really shared the work: each applied some batches and
			// found others already applied.
			for i, r := range rs {
				applied := value(r.w.m.applied.WithLabelValues(ConsumerResults))
				t.Logf("worker %d: applied %v results messages, found %v already applied", i, applied,
					value(r.w.m.behind.WithLabelValues(ConsumerResults)))
			}
		})
	}
}

func TestFaultCrashesBeforeAndAfterCommitWithTwoWorkers(t *testing.T) {
	gen := func(e *env) []sim.Message { return bulk(t, e, 1200, 100) }
	wantRuns, wantExecs, msgs := reference(t, gen)
	e := newEnv(t)
	gen(e)
	var crashing atomic.Bool
	crashing.Store(true)
	var before, after atomic.Int64
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	crash := func(n *atomic.Int64) func(string) error {
		return func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if crashing.Load() && rng.IntN(4) == 0 {
				n.Add(1)
				return errCrash
			}
			return nil
		}
	}
	for range 2 {
		e.startOn(connect(t, e.srv.URL), func(c *Config) {
			c.BatchSize = 13
			c.MaxBackoff = 10 * time.Millisecond
			c.inApply, c.afterCommit = crash(&before), crash(&after)
		})
	}
	// A fast machine (or a build without -race) may apply everything in a
	// few large batches before enough crashes land; the stream is then
	// published again, which is what JetStream's redelivery does anyway, so
	// the crashes keep landing on real work and the duplicates must change
	// nothing.
	const want = 8
	rounds := 0
	enough := func() bool { return before.Load() >= want && after.Load() >= want }
	for ; rounds == 0 || !enough() && rounds < 20; rounds++ {
		e.publishSlowly(msgs, 61, 5*time.Millisecond)
		// Each round is worked through before the next, so a slow
		// database (sqld under load) sees its share of crashes too.
		waitFor(t, func() (bool, string) {
			ok, where := e.behind()
			return ok || enough(), fmt.Sprintf("%s; %d+%d crashes", where, before.Load(), after.Load())
		})
	}
	if before.Load() < want || after.Load() < want {
		t.Fatalf("only %d crashes before commit and %d after in %d rounds: the test proves nothing", before.Load(), after.Load(), rounds)
	}
	crashing.Store(false)
	e.waitCaughtUp()
	e.checkAgainst(wantRuns, wantExecs)
	t.Logf("%d crashes before commit, %d after, over %d rounds of publishing", before.Load(), after.Load(), rounds)
}

func TestFaultAbandonedDeliveries(t *testing.T) {
	// A worker stopped at a random moment leaves messages delivered to it
	// and never applied; its successor must start from the offset, not from
	// where the server thinks the consumer was.
	gen := func(e *env) []sim.Message { return bulk(t, e, 1200, 100) }
	wantRuns, wantExecs, msgs := reference(t, gen)
	e := newEnv(t)
	gen(e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.publishSlowly(msgs, 41, 3*time.Millisecond)
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	stops := 0
	// Workers keep being stopped while the publisher runs, and at least
	// eight times in all: a fast machine (or a build without -race) may
	// publish everything within a few cycles, and a stop during the
	// catch-up proves the same thing.
	for published := false; !published || stops < 8; {
		select {
		case <-done:
			published = true
		default:
		}
		r := e.start(func(c *Config, _ context.CancelFunc) { c.BatchSize = 11 })
		time.Sleep(time.Duration(5+rng.IntN(60)) * time.Millisecond)
		r.stop()
		stops++
	}
	e.start(nil)
	e.waitCaughtUp()
	e.checkAgainst(wantRuns, wantExecs)
	t.Logf("%d workers stopped mid-stream", stops)
}

func TestFaultConsumerDeletedUnderTheLoop(t *testing.T) {
	gen := func(e *env) []sim.Message { return bulk(t, e, 1200, 100) }
	wantRuns, wantExecs, msgs := reference(t, gen)
	e := newEnv(t)
	gen(e)
	// Half the messages wait in the stream before the loop starts, so it
	// reads a backlog through its consumer (a loop that has caught up may
	// read the stream directly, with no consumer to delete, and a fast
	// build catches up early); the rest arrive while it runs.
	e.publish(msgs[:len(msgs)/2]...)
	var deletions atomic.Int64
	var batches atomic.Int64
	e.start(func(c *Config, _ context.CancelFunc) {
		c.BatchSize = 7
		c.inApply = func(name string) error {
			if name != ConsumerResults {
				return nil
			}
			batches.Add(1)
			// The server drops the consumer while the loop is inside a
			// batch (an admin, an inactivity timeout, a lost node).
			ctx := context.Background()
			st, err := e.srv.JS.Stream(ctx, kanade.StreamResults)
			if err != nil {
				return err
			}
			for names := st.ConsumerNames(ctx); ; {
				n, ok := <-names.Name()
				if !ok {
					break
				}
				if err := st.DeleteConsumer(ctx, n); err == nil {
					deletions.Add(1)
				}
			}
			return nil
		}
	})
	e.publishSlowly(msgs[len(msgs)/2:], 23, 10*time.Millisecond)
	e.waitCaughtUp()
	e.checkAgainst(wantRuns, wantExecs)
	// After the first deletions the loop mostly reads without a long-lived
	// consumer (3–18 deletions were seen, fewest over sqld); two deletions
	// mid-batch still make the point.
	if deletions.Load() < 2 {
		t.Fatalf("only %d consumers deleted in %d batches; the test proves nothing", deletions.Load(), batches.Load())
	}
	t.Logf("%d consumers deleted mid-batch (%d batches)", deletions.Load(), batches.Load())
}

func TestFaultConnectionResetTwiceASecond(t *testing.T) {
	gen := func(e *env) []sim.Message { return bulk(t, e, 1500, 4096) }
	wantRuns, wantExecs, msgs := reference(t, gen)
	e := newEnv(t)
	gen(e)
	p := startProxy(t, e.srv.URL)
	e.startOn(connect(t, p.url()), nil)
	stop := make(chan struct{})
	var stopOnce sync.Once
	t.Cleanup(func() { stopOnce.Do(func() { close(stop) }) })
	var resets atomic.Int64
	go func() {
		rng := rand.New(rand.NewPCG(5, 6))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(300+rng.IntN(500)) * time.Millisecond):
				resets.Add(int64(p.reset()))
			}
		}
	}()
	began := time.Now()
	e.publishSlowly(msgs, 29, 10*time.Millisecond)
	t.Logf("published in %v", time.Since(began))
	waitFor(t, func() (bool, string) { return resets.Load() >= 10, fmt.Sprintf("%d resets", resets.Load()) })
	t.Logf("10 resets after %v", time.Since(began))
	// The resets go on through the catch-up, ten more of them at least
	// (or until it is done), then stop: that the projector also finishes
	// under resets every 0.3–0.8 s depends on how fast this machine
	// reconnects and applies a batch, which is not what is tested here.
	during := resets.Load() + 10
	waitFor(t, func() (bool, string) {
		return resets.Load() >= during || e.caughtUp(), fmt.Sprintf("%d resets", resets.Load())
	})
	stopOnce.Do(func() { close(stop) })
	e.waitCaughtUp()
	e.checkAgainst(wantRuns, wantExecs)
	t.Logf("%d connections reset", resets.Load())
}

func TestFaultStreamCreatedAnew(t *testing.T) {
	e := newEnv(t)
	r := e.start(nil)
	ctx := context.Background()
	exit := int64(0)
	result := func(id string) sim.Message {
		return sim.Message{Subject: "results.q", JetStream: true, Data: []byte(js(kanade.ExecResult{ResultID: id, RequestID: "q",
			PcID: "PC-1", ExitCode: &exit, StartedAt: ts("2026-09-30T11:00:00Z"), FinishedAt: ts("2026-09-30T11:00:01Z")}))}
	}
	audit := func(action string) sim.Message {
		return sim.Message{Subject: "audit.operator." + action, JetStream: true, Data: []byte(js(kanade.AuditEvent{
			Actor: "operator", Action: action, OccurredAt: ts("2026-09-30T11:00:00Z")}))}
	}
	var old []sim.Message
	for i := range 30 {
		old = append(old, result(fmt.Sprintf("old-%02d", i)), audit(fmt.Sprintf("old%02d", i)))
	}
	e.publish(old...)
	e.waitCaughtUp()
	for _, s := range []string{kanade.StreamResults, kanade.StreamAudit} {
		if err := e.srv.JS.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.srv.Bus.Bootstrap(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Fewer messages than before: the new stream's sequences stay below the
	// old offset, so only the stream's identity can tell it apart.
	e.publish(result("new-1"), result("new-2"), audit("new1"), audit("new2"))
	waitFor(t, func() (bool, string) {
		got := e.dump(`SELECT (SELECT COUNT(*) FROM execution_results), (SELECT COUNT(*) FROM audit_log)`)
		return got[0] == "32|32", "rows, audit entries: " + got[0]
	})
	for _, c := range []string{ConsumerResults, ConsumerAudit} {
		if n := value(r.w.m.resets.WithLabelValues(c)); n != 1 {
			t.Errorf("%s offset resets = %v, want 1", c, n)
		}
	}
}

func TestFaultBigMessagesStayWithinMaxBytes(t *testing.T) {
	e := newEnv(t)
	const maxBytes = 8 << 20
	const n, size = 40, 900 << 10
	exit := int64(0)
	big := strings.Repeat("y", size)
	var msgs []sim.Message
	for i := range n {
		msgs = append(msgs, sim.Message{Subject: "results.big", JetStream: true, Data: []byte(js(kanade.ExecResult{
			ResultID: fmt.Sprintf("big-%02d", i), RequestID: "big", PcID: "PC-1", ExitCode: &exit, Stdout: big,
			StartedAt: ts("2026-09-30T11:00:00Z"), FinishedAt: ts("2026-09-30T11:00:01Z")}))})
	}
	e.publish(msgs...) // a backlog before the worker starts
	var mu sync.Mutex
	var largest int64
	var batches int
	e.start(func(c *Config, _ context.CancelFunc) {
		c.MaxBytes = maxBytes
		c.observe = func(name string, _ int, bytes int64) {
			if name == ConsumerResults {
				mu.Lock()
				largest = max(largest, bytes)
				batches++
				mu.Unlock()
			}
		}
	})
	e.waitCaughtUp()
	if got := e.dump(`SELECT COUNT(*) FROM execution_results`); got[0] != fmt.Sprint(n) {
		t.Fatalf("rows = %s", got[0])
	}
	for i := range n {
		run, err := e.db.GetRun(t.Context(), fmt.Sprintf("big-%02d", i))
		if err != nil || run.Stdout == nil || *run.Stdout != big {
			t.Fatalf("big-%02d: stdout not stored whole (%v)", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// A batch closes at MaxBytes/8 and the queue holds MaxBytes/2, so what
	// one transaction applies stays under MaxBytes/2 plus one message.
	if limit := int64(maxBytes/2 + 2*size); largest > limit {
		t.Errorf("largest batch applied %d bytes, over %d", largest, limit)
	}
	if batches < n*size/(maxBytes/2) {
		t.Errorf("%d batches for %d MB: the budget did not split the backlog", batches, n*size>>20)
	}
}

func TestBudgetLetsABatchLargerThanItselfThroughAlone(t *testing.T) {
	b := newBudget(10)
	ctx := context.Background()
	if err := b.acquire(ctx, 25); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.acquire(wait, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire while over budget = %v, want to wait", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.acquire(ctx, 6) }()
	b.release(25)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if b.used != 10 {
		t.Fatalf("used = %d, want 10", b.used)
	}
}

// proxy forwards TCP to a NATS server and can reset every connection.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, natsURL string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(natsURL, "nats://"), conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.reset() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

// reset drops every connection with an RST and returns how many it cut.
func (p *proxy) reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
		n++
	}
	return n / 2
}
