package storage_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

var readsBase = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func readsExec(t *testing.T, db *storage.DB, q string, args ...any) {
	t.Helper()
	if err := storage.ExecForTest(context.Background(), db, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func readsPtr[T any](v T) *T { return &v }

// readsTS renders base + d in the stored layout.
func readsTS(d time.Duration) string { return kanade.FormatTime(readsBase.Add(d)) }

// readsRun is the seed of one execution_results row.
type readsRun struct {
	id, pc, job       string // "" = NULL for pc and job
	started, finished *string
	exit              *int64
	skipped, reaped   bool
	stdout, stderr    string
	durationMs        *int64
}

func readsInsertRuns(t *testing.T, db *storage.DB, runs []readsRun) {
	t.Helper()
	for _, r := range runs {
		var pc, job any
		if r.pc != "" {
			pc = r.pc
		}
		if r.job != "" {
			job = r.job
		}
		readsExec(t, db, `INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, job_id,
			version, exit_code, skipped, stdout, stderr, started_at, finished_at, recorded_at, expires_at,
			reaped, parent_result_id, duration_ms) VALUES (?, ?, NULL, ?, ?, '1', ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, ?)`,
			r.id, "req-"+r.id, pc, job, r.exit, r.skipped, r.stdout, r.stderr, r.started, r.finished,
			readsTS(0), r.reaped, r.durationMs)
	}
}

// readsRandomRuns makes n runs with few distinct start times (many ties), a
// few without a start time, and every outcome.
func readsRandomRuns(r *rand.Rand, n int) []readsRun {
	var out []readsRun
	for i := range n {
		run := readsRun{id: fmt.Sprintf("r-%03d-%d", r.IntN(1000), i), pc: fmt.Sprintf("PC-%d", r.IntN(3))}
		if r.IntN(4) > 0 {
			run.job = fmt.Sprintf("job-%d", r.IntN(2))
		}
		if r.IntN(10) > 0 {
			run.started = readsPtr(readsTS(time.Duration(r.IntN(5)) * time.Second))
		}
		switch r.IntN(5) {
		case 0: // running
		case 1:
			run.exit, run.skipped = readsPtr[int64](0), true
		case 2:
			run.exit = readsPtr[int64](0)
		case 3:
			run.exit = readsPtr[int64](2)
		case 4:
			run.exit, run.reaped = readsPtr[int64](-1), true
		}
		if run.exit != nil {
			run.finished = readsPtr(readsTS(time.Minute))
			run.durationMs = readsPtr[int64](1234)
		}
		out = append(out, run)
	}
	return out
}

// readsRunOrder is the brute-force reference of the list order: started_at
// descending with NULL last, then result_id descending.
func readsRunOrder(runs []readsRun) []string {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b readsRun) int {
		switch {
		case a.started == nil && b.started != nil:
			return 1
		case a.started != nil && b.started == nil:
			return -1
		case a.started != nil && *a.started != *b.started:
			return -strings.Compare(*a.started, *b.started)
		}
		return -strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(s))
	for i, r := range s {
		ids[i] = r.id
	}
	return ids
}

// readsWalk fetches every page and returns the ids in the order served. It
// fails on an empty page that promises another, and on a loop.
func readsWalk[T any](t *testing.T, limit int, id func(T) string, list func(cursor string) (kanade.Page[T], error)) []string {
	t.Helper()
	ids := []string{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		p, err := list(cursor)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(p.Items) > limit {
			t.Fatalf("page %d has %d items, limit %d", pages, len(p.Items), limit)
		}
		for _, it := range p.Items {
			ids = append(ids, id(it))
		}
		if p.NextCursor == nil {
			return ids
		}
		if len(p.Items) != limit {
			t.Fatalf("page %d has %d items and a next cursor; a full page was expected", pages, len(p.Items))
		}
		cursor = *p.NextCursor
	}
}

func TestReadsRunPagesWalkEveryRowOnceInOrder(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	runs := readsRandomRuns(rand.New(rand.NewPCG(1, 2)), 120)
	readsInsertRuns(t, db, runs)

	keep := func(pred func(readsRun) bool) []readsRun {
		var out []readsRun
		for _, r := range runs {
			if pred(r) {
				out = append(out, r)
			}
		}
		return out
	}
	filters := []struct {
		name string
		f    storage.RunFilter
		want []readsRun
	}{
		{"no filter", storage.RunFilter{}, runs},
		{"job", storage.RunFilter{JobID: "job-1"}, keep(func(r readsRun) bool { return r.job == "job-1" })},
		{"pc", storage.RunFilter{PCID: "PC-2"}, keep(func(r readsRun) bool { return r.pc == "PC-2" })},
		{"success", storage.RunFilter{Status: storage.RunsSuccess},
			keep(func(r readsRun) bool { return r.exit != nil && *r.exit == 0 && !r.skipped })},
		{"failure", storage.RunFilter{Status: storage.RunsFailure},
			keep(func(r readsRun) bool { return r.exit != nil && *r.exit != 0 && !r.skipped })},
		{"running", storage.RunFilter{Status: storage.RunsRunning}, keep(func(r readsRun) bool { return r.finished == nil })},
		{"skipped", storage.RunFilter{Status: storage.RunsSkipped}, keep(func(r readsRun) bool { return r.skipped })},
		{"job, pc and status together", storage.RunFilter{JobID: "job-0", PCID: "PC-1", Status: storage.RunsFailure},
			keep(func(r readsRun) bool {
				return r.job == "job-0" && r.pc == "PC-1" && r.exit != nil && *r.exit != 0 && !r.skipped
			})},
		{"a job nobody ran", storage.RunFilter{JobID: "nope"}, nil},
	}
	for _, fc := range filters {
		want := readsRunOrder(fc.want)
		if fc.name != "a job nobody ran" && len(want) < 3 {
			t.Fatalf("%s: seed gives only %d rows; the walk proves little", fc.name, len(want))
		}
		for _, limit := range []int{1, 2, 7, 50, storage.MaxPageLimit} {
			t.Run(fmt.Sprintf("%s/limit %d", fc.name, limit), func(t *testing.T) {
				got := readsWalk(t, limit, func(r kanade.Run) string { return r.ResultID },
					func(cursor string) (kanade.Page[kanade.Run], error) {
						f := fc.f
						f.Limit, f.Cursor = limit, cursor
						return db.ListRuns(ctx, f)
					})
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("ids served (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestReadsRunPageBoundaryAtTheNullSection(t *testing.T) {
	// Three runs with a start time, then two without: a page that ends
	// exactly on the last timed run must still promise the untimed ones.
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	readsInsertRuns(t, db, []readsRun{
		{id: "a", started: readsPtr(readsTS(1))}, {id: "b", started: readsPtr(readsTS(1))},
		{id: "c", started: readsPtr(readsTS(2))}, {id: "d"}, {id: "e"},
	})
	var got [][]string
	cursor := ""
	for {
		p, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 3, Cursor: cursor}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range p.Items {
			ids = append(ids, r.ResultID)
		}
		got = append(got, ids)
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if diff := cmp.Diff([][]string{{"c", "b", "a"}, {"e", "d"}}, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
}

func TestReadsRunInsertedWhilePagingNeitherRepeatsNorShifts(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	var runs []readsRun
	for i := range 6 {
		runs = append(runs, readsRun{id: fmt.Sprintf("r%d", i), started: readsPtr(readsTS(time.Duration(i) * time.Second))})
	}
	readsInsertRuns(t, db, runs)
	first, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 3}})
	if err != nil {
		t.Fatal(err)
	}
	// A newer run arrives, as the projection never stops.
	readsInsertRuns(t, db, []readsRun{{id: "new", started: readsPtr(readsTS(time.Hour))}})
	second, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 3, Cursor: *first.NextCursor}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range append(first.Items, second.Items...) {
		got = append(got, r.ResultID)
	}
	if diff := cmp.Diff([]string{"r5", "r4", "r3", "r2", "r1", "r0"}, got); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestReadsGetRunHasOutputAndEveryColumn(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	readsInsertRuns(t, db, []readsRun{{
		id: "r1", pc: "PC-1", job: "job-1", started: readsPtr(readsTS(0)), finished: readsPtr(readsTS(1500 * time.Millisecond)),
		exit: readsPtr[int64](-1), reaped: true, stdout: "out\n", stderr: "reaped by backend", durationMs: readsPtr[int64](1500),
	}})
	got, err := db.GetRun(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	want := kanade.RunDetail{
		Run: kanade.Run{ResultID: "r1", RequestID: readsPtr("req-r1"), PCID: readsPtr("PC-1"), JobID: readsPtr("job-1"),
			Version: readsPtr("1"), ExitCode: readsPtr[int64](-1), StartedAt: readsPtr(readsTS(0)),
			FinishedAt: readsPtr(readsTS(1500 * time.Millisecond)), RecordedAt: readsTS(0), Reaped: true,
			DurationMs: readsPtr[int64](1500)},
		Stdout: readsPtr("out\n"), Stderr: readsPtr("reaped by backend"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("run (-want +got):\n%s", diff)
	}
	page, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]kanade.Run{want.Run}, page.Items); diff != "" {
		t.Errorf("list item (-want +got):\n%s", diff)
	}
}

func TestReadsNotFound(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	for name, get := range map[string]func() error{
		"agent":     func() error { _, err := db.GetAgent(ctx, "PC-missing", readsBase); return err },
		"result":    func() error { _, err := db.GetRun(ctx, "missing"); return err },
		"execution": func() error { _, err := db.GetExecution(ctx, "missing"); return err },
	} {
		if err := get(); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", name, err)
		}
	}
}

func TestReadsRefusesLimitsOutOfRange(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	for _, limit := range []int{-1, 0, storage.MaxPageLimit + 1} {
		p := storage.PageRequest{Limit: limit}
		errs := map[string]error{}
		_, errs["agents"] = db.ListAgents(ctx, storage.AgentFilter{PageRequest: p})
		_, errs["results"] = db.ListRuns(ctx, storage.RunFilter{PageRequest: p})
		_, errs["executions"] = db.ListExecutions(ctx, p)
		_, errs["audit"] = db.ListAudit(ctx, p)
		for name, err := range errs {
			if err == nil || errors.Is(err, storage.ErrInvalidCursor) {
				t.Errorf("%s with limit %d: got %v, want a limit error", name, limit, err)
			}
		}
	}
	if _, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: storage.MaxPageLimit}}); err != nil {
		t.Errorf("limit %d: %v", storage.MaxPageLimit, err)
	}
}

func TestReadsRefusesMalformedCursors(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	readsInsertRuns(t, db, []readsRun{{id: "a", started: readsPtr(readsTS(0))}, {id: "b", started: readsPtr(readsTS(0))}})
	good, err := db.ListRuns(ctx, storage.RunFilter{PageRequest: storage.PageRequest{Limit: 1}})
	if err != nil || good.NextCursor == nil {
		t.Fatalf("first page: %v %+v", err, good)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name, list, cursor string
	}{
		{"not base64", "results", "!!!"},
		{"padded base64", "results", base64.URLEncoding.EncodeToString([]byte(`{"k":"results","i":"a"}`))},
		{"not JSON", "results", b64("hello")},
		{"empty object", "results", b64("{}")},
		{"unknown field", "results", b64(`{"k":"results","i":"a","x":1}`)},
		{"trailing data", "results", b64(`{"k":"results","i":"a"}{}`)},
		{"a results cursor given to executions", "executions", *good.NextCursor},
		{"a results cursor given to agents", "agents", *good.NextCursor},
		{"an agents cursor with a timestamp", "agents", b64(`{"k":"agents","t":"x","i":"a"}`)},
		{"an audit cursor with a text id", "audit", b64(`{"k":"audit","t":"x","i":"a"}`)},
		{"too long", "results", strings.Repeat("A", 5000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := storage.PageRequest{Limit: 5, Cursor: c.cursor}
			var err error
			switch c.list {
			case "results":
				_, err = db.ListRuns(ctx, storage.RunFilter{PageRequest: p})
			case "executions":
				_, err = db.ListExecutions(ctx, p)
			case "agents":
				_, err = db.ListAgents(ctx, storage.AgentFilter{PageRequest: p})
			case "audit":
				_, err = db.ListAudit(ctx, p)
			}
			if !errors.Is(err, storage.ErrInvalidCursor) {
				t.Errorf("got %v, want ErrInvalidCursor", err)
			}
		})
	}
}

func TestReadsExecutionPagesWalkEveryRowOnceInOrder(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	type seed struct {
		id string
		at *string
	}
	var seeds []seed
	for i := range 40 {
		s := seed{id: fmt.Sprintf("e-%02d-%d", r.IntN(100), i)}
		if r.IntN(8) > 0 {
			s.at = readsPtr(readsTS(time.Duration(r.IntN(4)) * time.Millisecond))
		}
		seeds = append(seeds, s)
		readsExec(t, db, `INSERT INTO executions (exec_id, job_id, version, initiated_by, initiated_at, target_count,
			success_count, failure_count, status) VALUES (?, 'job', '1', 'alice', ?, 3, 1, 1, 'running')`, s.id, s.at)
	}
	slices.SortFunc(seeds, func(a, b seed) int {
		switch {
		case a.at == nil && b.at != nil:
			return 1
		case a.at != nil && b.at == nil:
			return -1
		case a.at != nil && *a.at != *b.at:
			return -strings.Compare(*a.at, *b.at)
		}
		return -strings.Compare(a.id, b.id)
	})
	var want []string
	for _, s := range seeds {
		want = append(want, s.id)
	}
	for _, limit := range []int{1, 3, 50} {
		got := readsWalk(t, limit, func(e kanade.Execution) string { return e.ExecID },
			func(cursor string) (kanade.Page[kanade.Execution], error) {
				return db.ListExecutions(ctx, storage.PageRequest{Limit: limit, Cursor: cursor})
			})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d (-want +got):\n%s", limit, diff)
		}
	}
	got, err := db.GetExecution(ctx, seeds[0].id)
	if err != nil {
		t.Fatal(err)
	}
	wantExec := kanade.Execution{ExecID: seeds[0].id, JobID: readsPtr("job"), Version: readsPtr("1"),
		InitiatedBy: readsPtr("alice"), InitiatedAt: seeds[0].at, TargetCount: readsPtr[int64](3),
		SuccessCount: 1, FailureCount: 1, Status: "running"}
	if diff := cmp.Diff(wantExec, got); diff != "" {
		t.Errorf("execution (-want +got):\n%s", diff)
	}
}

func TestReadsAuditPagesWalkEveryRowOnceNewestFirst(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	// ids 1..30 in insertion order; occurred_at has ties and goes backwards,
	// so neither id nor time alone gives the order.
	type seed struct {
		id int64
		at string
	}
	var seeds []seed
	for i := range 30 {
		at := readsTS(time.Duration((i*7)%5) * time.Second)
		var payload any
		if i%3 > 0 {
			payload = fmt.Sprintf(`{"n": %d}`, i)
		}
		readsExec(t, db, `INSERT INTO audit_log (actor, action, target, payload, occurred_at, stream_seq)
			VALUES ('alice', 'job_upsert', 'job', ?, ?, ?)`, payload, at, i+1)
		seeds = append(seeds, seed{int64(i + 1), at})
	}
	slices.SortFunc(seeds, func(a, b seed) int {
		if c := strings.Compare(b.at, a.at); c != 0 {
			return c
		}
		return int(b.id - a.id)
	})
	var want []string
	for _, s := range seeds {
		want = append(want, fmt.Sprint(s.id))
	}
	for _, limit := range []int{1, 4, 50} {
		got := readsWalk(t, limit, func(e kanade.AuditEntry) string { return fmt.Sprint(e.ID) },
			func(cursor string) (kanade.Page[kanade.AuditEntry], error) {
				return db.ListAudit(ctx, storage.PageRequest{Limit: limit, Cursor: cursor})
			})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d (-want +got):\n%s", limit, diff)
		}
	}
	p, err := db.ListAudit(ctx, storage.PageRequest{Limit: storage.MaxPageLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Items {
		wantPayload := "null"
		if (e.ID-1)%3 > 0 {
			wantPayload = fmt.Sprintf(`{"n": %d}`, e.ID-1)
		}
		got := string(e.Payload)
		if e.Payload == nil {
			got = "null"
		}
		if got != wantPayload || e.Actor != "alice" || e.StreamSeq == nil || *e.StreamSeq != e.ID {
			t.Errorf("audit %d: payload %s, actor %q, seq %v", e.ID, got, e.Actor, e.StreamSeq)
		}
	}
}

func readsInsertAgent(t *testing.T, db *storage.DB, pc string, hostname any, beat string) {
	t.Helper()
	readsExec(t, db, `INSERT INTO agents (pc_id, hostname, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
		pc, hostname, beat, beat)
}

func TestReadsAgentOnlineBoundaryIsTheThreshold(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	now := readsBase
	cutoff := now.Add(-2 * time.Minute)
	beats := map[string]time.Time{
		"PC-at-cutoff":     cutoff,
		"PC-1ns-before":    cutoff.Add(-time.Nanosecond),
		"PC-1ns-after":     cutoff.Add(time.Nanosecond),
		"PC-long-gone":     now.Add(-30 * 24 * time.Hour),
		"PC-clock-ahead":   now.Add(time.Hour),
		"PC-just-now":      now,
		"PC-1ms-before-ct": cutoff.Add(-time.Millisecond),
	}
	for pc, at := range beats {
		readsInsertAgent(t, db, pc, nil, kanade.FormatTime(at))
	}
	wantOnline := []string{"PC-1ns-after", "PC-at-cutoff", "PC-clock-ahead", "PC-just-now"}
	wantOffline := []string{"PC-1ms-before-ct", "PC-1ns-before", "PC-long-gone"}

	list := func(status storage.AgentStatus) (online, offline []string) {
		p, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 50},
			OnlineSince: cutoff, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Items {
			if a.Online {
				online = append(online, a.PCID)
			} else {
				offline = append(offline, a.PCID)
			}
		}
		return online, offline
	}
	type split struct{ Online, Offline []string }
	for _, c := range []struct {
		status storage.AgentStatus
		want   split
	}{
		{"", split{wantOnline, wantOffline}},
		{storage.AgentsOnline, split{wantOnline, nil}},
		{storage.AgentsOffline, split{nil, wantOffline}},
	} {
		on, off := list(c.status)
		if diff := cmp.Diff(c.want, split{on, off}); diff != "" {
			t.Errorf("status %q (-want +got):\n%s", c.status, diff)
		}
	}
	for pc, want := range map[string]bool{"PC-at-cutoff": true, "PC-1ns-before": false} {
		a, err := db.GetAgent(ctx, pc, cutoff)
		if err != nil {
			t.Fatal(err)
		}
		if a.Online != want {
			t.Errorf("GetAgent(%s).Online = %v, want %v", pc, a.Online, want)
		}
	}
}

func TestReadsAgentQueryIsALiteralCaseInsensitiveSubstring(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	beat := readsTS(0)
	for pc, host := range map[string]any{
		"PC_1":  "lab-host",
		"PCX1":  nil,
		"100%":  "percent",
		"1000":  "plain",
		`A\B`:   "slash",
		"AB":    "Lab-Upper",
		"other": "x_y",
	} {
		readsInsertAgent(t, db, pc, host, beat)
	}
	for _, c := range []struct {
		q    string
		want []string
	}{
		{"_", []string{"PC_1", "other"}},
		{"%", []string{"100%"}},
		{`\`, []string{`A\B`}},
		{`\B`, []string{`A\B`}},
		{"0%", []string{"100%"}},
		{"pc", []string{"PCX1", "PC_1"}}, // pc_id order: 'X' < '_'

		{"LAB", []string{"AB", "PC_1"}},
		{"c_1", []string{"PC_1"}},
		{"nothing", []string{}},
	} {
		p, err := db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 50}, Query: c.q})
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, a := range p.Items {
			got = append(got, a.PCID)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("q=%q (-want +got):\n%s", c.q, diff)
		}
	}
}

func TestReadsAgentPagesAndColumns(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	var want []string
	for i := range 23 {
		pc := fmt.Sprintf("PC-%02d", (i*7)%23)
		readsInsertAgent(t, db, pc, "h", readsTS(time.Duration(i)*time.Second))
		want = append(want, pc)
	}
	slices.Sort(want)
	for _, limit := range []int{1, 5, 23, 50} {
		got := readsWalk(t, limit, func(a kanade.Agent) string { return a.PCID },
			func(cursor string) (kanade.Page[kanade.Agent], error) {
				return db.ListAgents(ctx, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: limit, Cursor: cursor}})
			})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d (-want +got):\n%s", limit, diff)
		}
	}

	readsExec(t, db, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct,
		agent_rss_bytes, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, last_logon_user,
		last_logon_display_name, command_keys, command_protocols, enforcing, updated_at)
		VALUES ('ZZ-full', 'host', 'windows', '1.2.3', ?, 12.5, 1000, 2000, 3000, '["1.2.2"]', 'u', 'User', NULL, '[]', 0, ?)`,
		readsTS(0), readsTS(time.Second))
	got, err := db.GetAgent(ctx, "ZZ-full", readsBase.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantAgent := kanade.Agent{PCID: "ZZ-full", Hostname: readsPtr("host"), OSFamily: readsPtr("windows"),
		AgentVersion: readsPtr("1.2.3"), LastHeartbeat: readsTS(0), Online: true, AgentCPUPct: readsPtr(12.5),
		AgentRSSBytes: readsPtr[int64](1000), AgentDiskReadBytes: readsPtr[int64](2000),
		AgentDiskWrittenBytes: readsPtr[int64](3000), QuarantinedVersions: []string{"1.2.2"},
		LastLogonUser: readsPtr("u"), LastLogonDisplayName: readsPtr("User"), CommandKeys: nil,
		CommandProtocols: []string{}, Enforcing: readsPtr(false), UpdatedAt: readsTS(time.Second)}
	// EquateEmpty is deliberately absent: NULL (nil) and "[]" must differ.
	if diff := cmp.Diff(wantAgent, got); diff != "" {
		t.Errorf("agent (-want +got):\n%s", diff)
	}
	if got.CommandKeys != nil || got.CommandProtocols == nil {
		t.Errorf("command_keys %#v (want nil), command_protocols %#v (want empty, not nil)", got.CommandKeys, got.CommandProtocols)
	}
}

func TestReadsListsWalkAnIndexInOrder(t *testing.T) {
	db := storagetest.Open(t, nil)
	plans, err := storage.ReadsQueryPlansForTest(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for name, plan := range plans {
		t.Logf("%s: %s", name, strings.Join(plan, " | "))
	}
	for name, index := range map[string]string{
		"results first page":    "execution_results_started",
		"results next page":     "execution_results_started",
		"results without start": "execution_results_started",
		"executions next page":  "executions_initiated_at",
		"audit next page":       "audit_log_occurred_at",
	} {
		plan := strings.Join(plans[name], " | ")
		if !strings.Contains(plan, index) || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan %q, want a walk of %s without a sort", name, plan, index)
		}
	}
	// A PC's runs come from its own index in start order; only ties within
	// one start time are sorted (a partial sort, which stops at the limit).
	if plan := strings.Join(plans["results of a pc next page"], " | "); !strings.Contains(plan, "execution_results_pc_started") ||
		(strings.Contains(plan, "TEMP B-TREE") && !strings.Contains(plan, "LAST TERM") && !strings.Contains(plan, "RIGHT PART")) {
		t.Errorf("results of a pc: plan %q", plan)
	}
}
