package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Result
		want Status
	}{
		{"all checks passed", Result{Checks: []Check{{OK: true}}}, Pass},
		{"one failed check fails", Result{Checks: []Check{{OK: true}, {OK: false}}}, Fail},
		{"an error fails even with passed checks", Result{Checks: []Check{{OK: true}}, Err: errors.New("x")}, Fail},
		{"no check at all fails: it proved nothing", Result{}, Fail},
		{"a skip is never a pass", Result{SkipReason: "needs root", Checks: []Check{{OK: true}}}, Skipped},
		{"a failed check beats a skip", Result{SkipReason: "needs root", Checks: []Check{{OK: false}}}, Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Status(); got != tc.want {
				t.Errorf("Status() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRender(t *testing.T) {
	pass := &Result{Name: "ingest", Title: "acceptance", Duration: 75 * time.Second}
	pass.Do("published %d results", 100)
	pass.Measure("rate %s", "1000/s")
	pass.Figure("100 results")
	pass.Check(true, "rows = %d", 100)
	fail := &Result{Name: "kill9", Duration: 2 * time.Second}
	fail.Figure("a | b")
	fail.Check(false, "counters equal")
	fail.Quote("worker log", []string{`{"level":"ERROR","msg":"boom"}`})
	skip := &Result{Name: "db-unwritable", SkipReason: "mount impossible"}
	var b strings.Builder
	h := Header{Date: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), Commit: "abc123-dirty", Size: "ci", NProc: 2,
		LoadStart: "1.00 0.50 0.20", LoadEnd: "2.00 1.00 0.50", GoVersion: "go1.26", Command: "go run ./faults -size ci", Wall: 3 * time.Minute}
	if err := Render(&b, h, []*Result{pass, fail, skip}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| commit | `abc123-dirty` |",
		"| size | `ci` |",
		"| nproc | 2 |",
		"| load average (start → end) | 1.00 0.50 0.20 → 2.00 1.00 0.50 |",
		"1 passed, 1 failed, 1 skipped.",
		"| [ingest](#ingest) | **PASS** | 100 results | 1m15s |",
		"| [kill9](#kill9) | **FAIL** | a \\| b | 2s |",
		"| [db-unwritable](#db-unwritable) | **SKIPPED** | skipped: mount impossible |",
		"## kill9",
		"- **FAIL**: counters equal",
		"- pass: rows = 100",
		"What was done:\n\n- published 100 results",
		"worker log:\n\n```text\n{\"level\":\"ERROR\",\"msg\":\"boom\"}\n```",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q\n--- report:\n%s", want, out)
		}
	}
}
