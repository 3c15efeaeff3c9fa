package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
)

// k9Load is the kill9 scenario's generated load and what it must produce.
// Every rule is spelled out so the expectation is plain:
//   - result i belongs to execution (i/10)%E unless i%10 == 9 (ad hoc);
//   - i%20 == 7 is a legacy result (no result_id; its row id is
//     kanade.LegacyResultID(request_id, pc_id));
//   - i%7 == 3 exits 2 (a failure), every other run exits 0;
//   - i%4 == 0 has a started event published before its result, i%4 == 1
//     one published well after it (same result_id and exec_id);
//   - i%50 == 5 is published twice (a second copy, its own Nats-Msg-Id);
//   - every 100th i adds an audit event.
type k9Load struct {
	g      Gen
	n      int
	execs  []string
	target map[string]int64
	msgs   []PubMsg
	audits int
}

func newK9Load(n int) *k9Load {
	l := &k9Load{n: n, g: Gen{Prefix: "kill9", Base: time.Now().Add(-50 * time.Minute).Truncate(time.Second), StdoutBytes: 300,
		Jobs: []string{"k9-inventory", "k9-patch", "k9-cleanup"}, PCs: 400}, target: map[string]int64{}}
	e := max(1, n/200)
	for k := range e {
		l.execs = append(l.execs, uuidFor("kill9/exec", k))
	}
	later := map[int][]PubMsg{}
	for i := range n {
		r, st, _ := l.run(i)
		if i%4 == 0 {
			l.msgs = append(l.msgs, startedMsg(st))
		}
		l.msgs = append(l.msgs, resultMsg(r))
		if i%4 == 1 {
			later[i+300] = append(later[i+300], startedMsg(st))
		}
		if i%50 == 5 {
			dup := resultMsg(r)
			dup.ID = "dup-" + dup.ID
			later[i+700] = append(later[i+700], dup)
		}
		if i%100 == 0 {
			pc := l.g.PC(i)
			a := kanade.AuditEvent{Actor: "operator", Action: "faults", Target: &pc, Payload: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`),
				OccurredAt: kanade.Timestamp{Time: l.g.Base.Add(time.Duration(i) * time.Millisecond)}}
			subj, _ := a.Subject()
			l.msgs = append(l.msgs, PubMsg{Subject: subj, Data: mustJSON(a), ID: "audit-" + strconv.Itoa(i)})
			l.audits++
		}
		l.msgs = append(l.msgs, later[i]...)
		delete(later, i)
	}
	keys := make([]int, 0, len(later))
	for k := range later {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		l.msgs = append(l.msgs, later[k]...)
	}
	// Target counts: every execution's real number of runs, except every
	// fifth, which waits for one run more (it must stay running).
	runs := map[string]int64{}
	for i := range n {
		if _, _, ex := l.run(i); ex != "" {
			runs[ex]++
		}
	}
	for k, ex := range l.execs {
		l.target[ex] = runs[ex]
		if k%5 == 0 {
			l.target[ex]++
		}
	}
	return l
}

// run is result i, its started event and its exec_id.
func (l *k9Load) run(i int) (kanade.ExecResult, kanade.EventStarted, string) {
	exit := int64(0)
	if i%7 == 3 {
		exit = 2
	}
	r := l.g.Result(i, exit)
	ex := ""
	if i%10 != 9 {
		ex = l.execs[(i/10)%len(l.execs)]
	}
	r.ExecID = ex
	st := kanade.EventStarted{ResultID: r.ResultID, RequestID: r.RequestID, ExecID: ex, PcID: r.PcID, StartedAt: r.StartedAt,
		ManifestID: r.ManifestID, Version: "1"}
	if i%20 == 7 {
		r.ResultID = ""
	}
	return r, st, ex
}

// rowID is the result_id row i must have.
func (l *k9Load) rowID(i int) string {
	r, _, _ := l.run(i)
	if r.ResultID == "" {
		return kanade.LegacyResultID(r.RequestID, r.PcID)
	}
	return r.ResultID
}

// execExpect is an execution's expected counters.
type execExpect struct {
	success, failure, target int64
	status                   string
}

func (l *k9Load) expectExecs() map[string]execExpect {
	out := map[string]execExpect{}
	for i := range l.n {
		r, _, ex := l.run(i)
		if ex == "" {
			continue
		}
		x := out[ex]
		if *r.ExitCode == 0 {
			x.success++
		} else {
			x.failure++
		}
		out[ex] = x
	}
	for ex, x := range out {
		x.target = l.target[ex]
		x.status = "running"
		if x.success+x.failure >= x.target {
			x.status = "completed"
		}
		out[ex] = x
	}
	return out
}

// expectCompletions is job_completions: each (job, pc)'s newest successful finish.
func (l *k9Load) expectCompletions() map[string]string {
	out := map[string]string{}
	for i := range l.n {
		r, _, _ := l.run(i)
		if *r.ExitCode != 0 {
			continue
		}
		k := r.ManifestID + "|" + r.PcID
		f := kanade.FormatTime(r.FinishedAt.Time)
		if f > out[k] {
			out[k] = f
		}
	}
	return out
}

// expectDurations is scan_durations over every run (api.md: nearest rank,
// integer mean, smallest result_id among the slowest).
func (l *k9Load) expectDurations() []kanade.ScanDuration {
	type run struct {
		ms int64
		id string
	}
	byJob := map[string][]run{}
	for i := range l.n {
		r, _, _ := l.run(i)
		byJob[r.ManifestID] = append(byJob[r.ManifestID], run{kanade.DurationMillis(r.StartedAt.Time, r.FinishedAt.Time), l.rowID(i)})
	}
	var out []kanade.ScanDuration
	for job, rs := range byJob {
		sort.Slice(rs, func(a, b int) bool { return rs[a].ms < rs[b].ms || rs[a].ms == rs[b].ms && rs[a].id < rs[b].id })
		n := len(rs)
		at := func(num, den int) int64 {
			k := (num*n+den-1)/den - 1
			return rs[min(max(k, 0), n-1)].ms
		}
		var sum int64
		for _, x := range rs {
			sum += x.ms
		}
		maxID := ""
		for _, x := range rs {
			if x.ms == rs[n-1].ms {
				maxID = x.id
				break
			}
		}
		out = append(out, kanade.ScanDuration{JobID: job, Count: int64(n), MinMs: rs[0].ms, P50Ms: at(1, 2), P95Ms: at(19, 20), P99Ms: at(99, 100),
			MaxMs: rs[n-1].ms, MeanMs: sum / int64(n), MaxResultID: &maxID})
	}
	sort.Slice(out, func(a, b int) bool {
		return out[a].P95Ms > out[b].P95Ms || out[a].P95Ms == out[b].P95Ms && out[a].JobID < out[b].JobID
	})
	return out
}

// prepareDB creates the schema (storage.Open migrates) and the executions
// the results belong to.
func (l *k9Load) prepareDB(ctx context.Context, path string) error {
	s, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := s.Close(); err != nil {
		return err
	}
	db, err := openDB(path)
	if err != nil {
		return err
	}
	defer db.Close()
	at := kanade.FormatTime(l.g.Base.Add(-time.Minute))
	for k, ex := range l.execs {
		if _, err := db.ExecContext(ctx, `INSERT INTO executions (exec_id, job_id, target_count, initiated_at, status) VALUES (?, ?, ?, ?, 'pending')`,
			ex, l.g.Jobs[k%len(l.g.Jobs)], l.target[ex], at); err != nil {
			return fmt.Errorf("insert execution: %w", err)
		}
	}
	return nil
}

func runKill9(ctx context.Context, e *Env, r *Result) error {
	l := newK9Load(e.Size.Kill9Results)
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "nats"})
	if err != nil {
		return err
	}
	if err := bootstrap(ctx, ns.URL(), 1); err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-kill9")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000, Rate: float64(len(l.msgs)) / (2.2 * float64(e.Size.Kill9Kills))})
	if err != nil {
		return err
	}
	var jobs []sim.Job
	for _, j := range l.g.Jobs {
		jobs = append(jobs, sim.Job{ID: j, Version: "1", Timeout: time.Hour})
	}
	client, err := bus.NewClient(nc)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := sim.PutManifests(ctx, client, jobs); err != nil {
		return err
	}
	db := filepath.Join(e.Dir, "kill9.db")
	if err := l.prepareDB(ctx, db); err != nil {
		return err
	}
	r.Do("inserted %d executions rows beforehand (target_count = their number of runs, one in five waiting for one run more); manifests with a 1 h timeout in KV jobs", len(l.execs))
	w, err := e.StartWorker(ctx, "worker", e.shellOpts(db, ns.URL(), "data"))
	if err != nil {
		return err
	}
	killer := StartKiller(ctx, 500*time.Millisecond, 3*time.Second, func(int) *Shell { return w })
	start := time.Now()
	acks, err := pub.Publish(ctx, len(l.msgs), func(i int) PubMsg { return l.msgs[i] })
	if err != nil {
		return err
	}
	pubDur := time.Since(start)
	killer.WaitKills(ctx, e.Size.Kill9Kills)
	kills, err := killer.Stop()
	if err != nil {
		return err
	}
	r.Do("published %d messages (%d results, started events before and after their result, %d duplicated results, %d legacy results without result_id, %d audit events) over %s, all acked (%d retries)",
		acks.Count(), l.n, (l.n+49)/50, (l.n+19)/20, l.audits, round(pubDur), pub.Retries())
	r.Do("killed the worker with SIGKILL %d times at random moments (0.5–3 s apart) during the publish, restarting it each time", kills)
	r.Figure("%d results, %d kills", l.n, kills)
	r.Check(kills >= e.Size.Kill9Kills, "at least %d kill -9 (%d)", e.Size.Kill9Kills, kills)

	// Drain with the last incarnation, then stop it cleanly.
	if err := waitSettled(ctx, db, int64(l.n), int64(l.audits), e.Size.Stall); err != nil {
		r.Measure("drain after the kills: %v", err)
	}
	w.Proc.Stop(15 * time.Second)
	var want []string
	for i := range l.n {
		want = append(want, l.rowID(i))
	}
	if _, err := checkLanded(ctx, e, r, "rows", db, want, time.Second); err != nil {
		return err
	}
	if err := l.compareExpected(ctx, r, db); err != nil {
		return err
	}

	// A clean replay: one fresh worker, fresh database, same NATS.
	replay := filepath.Join(e.Dir, "replay.db")
	if err := l.prepareDB(ctx, replay); err != nil {
		return err
	}
	rw, err := e.StartWorker(ctx, "replay-worker", e.shellOpts(replay, ns.URL(), "replay-data"))
	if err != nil {
		return err
	}
	rstart := time.Now()
	if err := waitSettled(ctx, replay, int64(l.n), int64(l.audits), e.Size.Stall); err != nil {
		r.Measure("clean replay: %v", err)
	}
	rw.Proc.Stop(15 * time.Second)
	r.Do("replayed everything with one fresh worker into a fresh database (same executions inserted first) on the same NATS (%s)", round(time.Since(rstart)))
	return compareReplay(ctx, r, db, replay, l.g.Base)
}

// waitSettled waits until the database holds rows finished runs, audit
// entries and no running row, and nothing has changed for 3 s.
func waitSettled(ctx context.Context, path string, rows, audits int64, stall time.Duration) error {
	q := `SELECT (SELECT COUNT(*) FROM execution_results WHERE finished_at IS NOT NULL) || '/' ||
	             (SELECT COUNT(*) FROM execution_results WHERE finished_at IS NULL) || '/' ||
	             (SELECT COUNT(*) FROM audit_log) || '/' ||
	             (SELECT COALESCE(SUM(success_count + failure_count), 0) FROM executions)`
	want := fmt.Sprintf("%d/0/%d/", rows, audits)
	last, lastChange, stable := "", time.Now(), time.Time{}
	for {
		db, err := openDB(path)
		if err != nil {
			return err
		}
		var s string
		err = db.QueryRowContext(ctx, q).Scan(&s)
		db.Close()
		if err == nil && s != last {
			last, lastChange, stable = s, time.Now(), time.Now()
		}
		if len(last) >= len(want) && last[:len(want)] == want && time.Since(stable) > 3*time.Second {
			return nil
		}
		if time.Since(lastChange) > stall {
			return fmt.Errorf("%w for %v: rows finished/running/audit/counted = %s, want %s…", errNoProgress, stall, last, want)
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
}

// compareExpected checks executions, job_completions and scan durations
// against what was published.
func (l *k9Load) compareExpected(ctx context.Context, r *Result, path string) error {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	defer db.Close()
	want := l.expectExecs()
	rows, err := db.QueryContext(ctx, `SELECT exec_id, success_count, failure_count, COALESCE(target_count, -1), status FROM executions`)
	if err != nil {
		return fmt.Errorf("read executions: %w", err)
	}
	var bad []string
	seen := 0
	for rows.Next() {
		var id, status string
		var s, f, t int64
		if err := rows.Scan(&id, &s, &f, &t, &status); err != nil {
			rows.Close()
			return err
		}
		seen++
		x := want[id]
		if s != x.success || f != x.failure || status != x.status {
			bad = append(bad, fmt.Sprintf("%s: success %d failure %d %s, want %d %d %s (target %d)", id[:8], s, f, status, x.success, x.failure, x.status, t))
		}
	}
	rows.Close()
	r.Check(len(bad) == 0 && seen == len(want), "executions: success/failure counters and status of all %d executions equal the expectation (%d differ%s)",
		len(want), len(bad), suffix(bad))

	wantC := l.expectCompletions()
	gotC := map[string]string{}
	crow, err := db.QueryContext(ctx, `SELECT job_id, pc_id, finished_at FROM job_completions`)
	if err != nil {
		return fmt.Errorf("read job_completions: %w", err)
	}
	for crow.Next() {
		var j, p, f string
		if err := crow.Scan(&j, &p, &f); err != nil {
			crow.Close()
			return err
		}
		gotC[j+"|"+p] = f
	}
	crow.Close()
	var badC []string
	for k, v := range wantC {
		if gotC[k] != v {
			badC = append(badC, fmt.Sprintf("%s: %q want %q", k, gotC[k], v))
		}
	}
	for k := range gotC {
		if _, ok := wantC[k]; !ok {
			badC = append(badC, k+": unexpected")
		}
	}
	r.Check(len(badC) == 0, "job_completions: %d (job, pc) rows equal the newest successful finish of each (%d differ%s)", len(wantC), len(badC), suffix(badC))

	s, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	got, err := s.ScanDurations(ctx, l.g.Base.Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("scan durations: %w", err)
	}
	wantD := l.expectDurations()
	gj, wj := mustJSON(got), mustJSON(wantD)
	r.Check(string(gj) == string(wj), "scan-duration summaries (storage.DB.ScanDurations since before all data) equal the ones computed from the published runs")
	if string(gj) != string(wj) {
		r.Measure("scan durations: got %s; want %s", gj, wj)
	}
	return nil
}

func suffix(bad []string) string {
	if len(bad) == 0 {
		return ""
	}
	return ", e.g. " + joinMax(bad, 3)
}

// compareReplay diffs every projection table of the killed run with the
// clean replay (updated_at and consumer_offsets left out; audit_log by
// content, not by its local id).
func compareReplay(ctx context.Context, r *Result, a, b string, base time.Time) error {
	da, err := openDB(a)
	if err != nil {
		return err
	}
	defer da.Close()
	db, err := openDB(b)
	if err != nil {
		return err
	}
	defer db.Close()
	var same []string
	for _, t := range []struct {
		table  string
		ignore []string
	}{
		{"execution_results", nil},
		{"executions", nil},
		{"job_completions", nil},
		{"result_minutes", nil},
		{"audit_log", []string{"id"}},
		{"(SELECT hour, job_id, SUM(runs) AS runs FROM duration_segments GROUP BY hour, job_id)", nil},
	} {
		ta, err := dumpTable(ctx, da, t.table, t.ignore...)
		if err != nil {
			return err
		}
		tb, err := dumpTable(ctx, db, t.table, t.ignore...)
		if err != nil {
			return err
		}
		onlyA, onlyB, nA, nB := DiffDumps(ta, tb, len(ta.Rows)+len(tb.Rows))
		name := t.table
		if len(name) > 20 {
			name = "duration_segments (runs per hour and job)"
		}
		if nA == 0 && nB == 0 {
			same = append(same, fmt.Sprintf("%s (%d rows)", name, len(ta.Rows)))
			continue
		}
		r.Check(false, "%s: the killed run and the clean replay differ: %d rows only in the killed run, %d only in the replay", name, nA, nB)
		r.Quote(name+": differing rows by key (killed run vs replay)", KeyedDiffs(onlyA, onlyB, 5))
	}
	r.Check(true, "identical in the killed run and the clean replay: %s", joinMax(same, 10))
	// The summaries by content: the same answers for windows starting at
	// every hour of the data.
	sa, err := storage.Open(ctx, a, storage.Options{})
	if err != nil {
		return err
	}
	defer sa.Close()
	sb, err := storage.Open(ctx, b, storage.Options{})
	if err != nil {
		return err
	}
	defer sb.Close()
	diff := 0
	for since := base.Add(-time.Hour).Truncate(time.Hour); since.Before(time.Now()); since = since.Add(15 * time.Minute) {
		x, err := sa.ScanDurations(ctx, since)
		if err != nil {
			return err
		}
		y, err := sb.ScanDurations(ctx, since)
		if err != nil {
			return err
		}
		if string(mustJSON(x)) != string(mustJSON(y)) {
			diff++
		}
	}
	r.Check(diff == 0, "scan-duration answers for windows starting every 15 min across the data are identical in both databases (%d differ)", diff)
	return nil
}

var _ = sql.ErrNoRows
