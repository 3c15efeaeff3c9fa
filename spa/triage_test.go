package spa_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// triageSeed is one execution of "disk-check" on four PCs, written through
// the dispatch and projection write paths: PC-1 succeeds, PC-2 fails, PC-3
// was offline at dispatch and answers later with a skipped result (the
// deadline passed), PC-4 is still running. Older runs of another job lie
// outside the time window the test filters on.
func triageSeed(t *testing.T, db *storage.DB, now time.Time) {
	t.Helper()
	ctx := context.Background()
	four := int64(4)
	res := func(id, pc, job string, exit int64, skipped bool, started time.Time) storage.Result {
		return storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q-" + id, ExecID: "x-t", PcID: pc,
			ManifestID: job, ExitCode: &exit, Skipped: skipped, Stderr: "error: disk D: is full\nmore",
			StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(2 * time.Second)}},
			RecordedAt: started.Add(3 * time.Second)}
	}
	older := func(id, pc string, exit int64) storage.Result {
		r := res(id, pc, "Inventory-HW", exit, false, now.Add(-20*time.Hour))
		r.ExecID = ""
		return r
	}
	err := db.Update(ctx, func(tx *storage.Tx) error {
		for i, host := range []string{"Reception-01", "lab-02", "Kiosk-03", "desk-04"} {
			if _, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
				VALUES (?, ?, 'windows', '1.5.0', ?, ?)`, fmt.Sprintf("PC-%d", i+1), host,
				kanade.FormatTime(now.Add(-10*time.Second)), kanade.FormatTime(now)); err != nil {
				return err
			}
		}
		if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: "x-t", JobID: "disk-check", Version: "2",
			InitiatedBy: "operator", InitiatedAt: now.Add(-30 * time.Minute), TargetCount: &four}); err != nil {
			return err
		}
		if _, err := tx.ApplyStarted(ctx, []storage.Started{{EventStarted: kanade.EventStarted{ResultID: "t-run", RequestID: "q",
			ExecID: "x-t", PcID: "PC-4", StartedAt: kanade.Timestamp{Time: now.Add(-25 * time.Minute)}, ManifestID: "disk-check"},
			RecordedAt: now.Add(-25 * time.Minute), Timeout: time.Hour}}); err != nil {
			return err
		}
		_, err := tx.ApplyResults(ctx, []storage.Result{
			res("t-ok", "PC-1", "disk-check", 0, false, now.Add(-29*time.Minute)),
			res("t-bad", "PC-2", "disk-check", 3, false, now.Add(-28*time.Minute)),
			older("o-1", "PC-1", 0), older("o-2", "PC-3", 0),
		})
		if err != nil {
			return err
		}
		// Later, the PC offline at dispatch comes back, gets the command
		// past its deadline and answers skipped; then a redelivery.
		skip := res("t-skip", "PC-3", "disk-check", 125, true, now.Add(-5*time.Minute))
		if _, err := tx.ApplyResults(ctx, []storage.Result{skip}); err != nil {
			return err
		}
		_, err = tx.ApplyResults(ctx, []storage.Result{skip})
		return err
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// TestTriageInABrowser covers bugs 5, 7 and 12 of issue 13 against the real
// handler: an execution's failed, the fleet tile's and ?status=failure's are
// the same runs, skipped shown apart; ok + failed stays within the target;
// the results page filters by part of a job or PC name in any case, by
// exec_id and by a time range.
func TestTriageInABrowser(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	triageSeed(t, db, now)
	base := dashboard(t, db, clock, nil)
	step := steps(t)
	num := func(t *testing.T, sel string) int {
		t.Helper()
		got := b.texts(t, sel)
		if len(got) != 1 {
			t.Fatalf("%s: %q", sel, got)
		}
		n, err := strconv.Atoi(got[0])
		if err != nil {
			t.Fatalf("%s: %q is not a number", sel, got[0])
		}
		return n
	}
	resultIDs := func(t *testing.T) []string {
		t.Helper()
		return b.texts(t, "table#results tbody tr td:last-child")
	}

	var fleetFailed int
	step("the overview's failed tile counts no skipped run", func(t *testing.T) {
		b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
		b.waitFor(t, "the fleet", `document.querySelector('#fleet a[data-stat="failed"] .num')`)
		fleetFailed = num(t, `#fleet a[data-stat="failed"] .num`)
		if fleetFailed != 1 {
			t.Errorf("fleet failed = %d, want 1 (PC-2; the skip is no failure)", fleetFailed)
		}
	})

	step("an execution shows ok, failed and skipped apart, against its target (bugs 5 and 7)", func(t *testing.T) {
		b.do(t, "open x-t", chromedp.Navigate(base+"/executions/x-t"))
		b.waitFor(t, "the counts", `document.querySelector('#exec-counts [data-stat="skipped"] .num')`)
		ok, failed := num(t, `#exec-counts [data-stat="ok"] .num`), num(t, `#exec-counts [data-stat="failed"] .num`)
		skipped, target := num(t, `#exec-counts [data-stat="skipped"] .num`), num(t, `#exec-counts [data-stat="targets"] .num`)
		if ok != 1 || failed != 1 || skipped != 1 || target != 4 {
			t.Errorf("ok %d failed %d skipped %d target %d, want 1 1 1 4", ok, failed, skipped, target)
		}
		if ok+failed+skipped > target {
			t.Errorf("ok %d + failed %d + skipped %d exceed the target %d (bug 7)", ok, failed, skipped, target)
		}
		if failed != fleetFailed {
			t.Errorf("failed: execution %d, fleet tile %d (bug 5)", failed, fleetFailed)
		}
		want := "3 of 4 PCs answered: 1 succeeded, 1 failed, 1 skipped"
		if got := b.texts(t, "#exec-progress-text"); !cmp.Equal(got, []string{want}) {
			t.Errorf("progress text %q, want %q", got, want)
		}
		if got := browserRun(t, b, "bar label", chromedp.Evaluate[string](`document.querySelector('#exec-progress .progress').getAttribute('aria-label')`)); got != want {
			t.Errorf("bar label %q", got)
		}
		// Its own runs, by exec_id: all four, the running one included.
		b.waitFor(t, "four runs", `document.querySelectorAll('#exec-runs tbody tr').length === 4`)
	})

	step("the failed count leads to the same runs as ?status=failure", func(t *testing.T) {
		b.do(t, "follow failed", clickCSS(`#exec-counts a[data-stat="failed"]`))
		b.waitFor(t, "the failed runs", `location.search.includes('status=failure') && document.querySelectorAll('table#results tbody tr').length === 1`)
		if diff := cmp.Diff([]string{"t-bad"}, resultIDs(t)); diff != "" {
			t.Errorf("failed runs of x-t (-want +got):\n%s", diff)
		}
		// The triage groups count the same failure, not the skip.
		b.waitFor(t, "triage", `document.querySelector('#triage-table tbody tr')`)
		if got := b.texts(t, "#triage-table tbody tr td:nth-child(4)"); !cmp.Equal(got, []string{"1"}) {
			t.Errorf("triage runs %q, want [1]", got)
		}
		b.do(t, "follow skipped", chromedp.Navigate(base+"/executions/x-t"))
		b.do(t, "skipped", clickCSS(`#exec-counts a[data-stat="skipped"]`))
		b.waitFor(t, "the skipped run", `location.search.includes('status=skipped') && document.querySelectorAll('table#results tbody tr').length === 1`)
		if diff := cmp.Diff([]string{"t-skip"}, resultIDs(t)); diff != "" {
			t.Errorf("skipped runs of x-t (-want +got):\n%s", diff)
		}
	})

	step("results filter by part of a job or PC name, in any case (bug 12)", func(t *testing.T) {
		b.do(t, "open results", chromedp.Navigate(base+"/results"))
		b.waitFor(t, "all runs", `document.querySelectorAll('table#results tbody tr').length === 6`)
		b.do(t, "type a part of a hostname", typeInto("pc", "KIOSK"))
		b.waitFor(t, "PC-3's runs", `location.search === '?pc=KIOSK' && document.querySelectorAll('table#results tbody tr').length === 2`)
		if diff := cmp.Diff([]string{"t-skip", "o-2"}, resultIDs(t)); diff != "" {
			t.Errorf("pc=KIOSK (-want +got):\n%s", diff)
		}
		b.do(t, "clear", typeInto("pc", ""))
		b.do(t, "type a part of a job", typeInto("job", "DISK-c"))
		b.waitFor(t, "disk-check's runs", `location.search === '?job=DISK-c' && document.querySelectorAll('table#results tbody tr').length === 4`)
		if diff := cmp.Diff([]string{"t-skip", "t-run", "t-bad", "t-ok"}, resultIDs(t)); diff != "" {
			t.Errorf("job=DISK-c (-want +got):\n%s", diff)
		}
	})

	step("results filter by a time range and by exec_id", func(t *testing.T) {
		// From an hour ago, in the UTC the switch can show: the older runs
		// of Inventory-HW are left out.
		b.do(t, "UTC times", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.tz', 'utc')`))
		b.do(t, "open results", chromedp.Navigate(base+"/results"))
		b.waitFor(t, "all runs", `document.querySelectorAll('table#results tbody tr').length === 6`)
		from := now.Add(-time.Hour).Format("2006-01-02T15:04:05")
		b.do(t, "set since", chromedp.Evaluate[chromedp.Void](`(() => { const e = document.querySelector('input[name="since"]');
			e.value = `+jsString(from)+`; e.dispatchEvent(new Event('change')); })()`))
		b.waitFor(t, "the last hour's runs", `location.search.startsWith('?since=') && document.querySelectorAll('table#results tbody tr').length === 4`)
		wantSince := now.Add(-time.Hour).Truncate(time.Second).Format("2006-01-02T15:04:05.000Z")
		if got := browserRun(t, b, "since in the address", chromedp.Evaluate[string](`new URLSearchParams(location.search).get('since')`)); got != wantSince {
			t.Errorf("since in the address = %q, want %q", got, wantSince)
		}
		// The address carries RFC 3339 and a reload shows the same.
		b.do(t, "reload", chromedp.Reload())
		b.waitFor(t, "the same four", `document.querySelectorAll('table#results tbody tr').length === 4`)
		if got := browserRun(t, b, "since input", chromedp.Evaluate[string](`document.querySelector('input[name="since"]').value`)); got != from {
			t.Errorf("since input after reload = %q, want %q", got, from)
		}
		b.do(t, "open by exec_id", chromedp.Navigate(base+"/results?exec_id=x-t"))
		b.waitFor(t, "the execution's runs", `document.querySelectorAll('table#results tbody tr').length === 4`)
		if hidden := browserRun(t, b, "exec_id input", chromedp.Evaluate[bool](`document.querySelector('input[name="exec_id"]').hidden`)); hidden {
			t.Error("the exec_id filter in the address is not shown")
		}
		if hidden := browserRun(t, b, "job_id input", chromedp.Evaluate[bool](`document.querySelector('input[name="job_id"]').hidden`)); !hidden {
			t.Error("an unset exact job_id filter is shown")
		}
	})

	step("Japanese shows the three counters in its own words", func(t *testing.T) {
		b.do(t, "ja", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('kanade.lang', 'ja')`))
		b.do(t, "open x-t", chromedp.Navigate(base+"/executions/x-t"))
		b.waitFor(t, "progress", `document.querySelector('#exec-progress-text')`)
		want := "4 台中 3 台が応答: 成功 1、失敗 1、スキップ 1"
		if got := b.texts(t, "#exec-progress-text"); !cmp.Equal(got, []string{want}) {
			t.Errorf("ja progress %q, want %q", got, want)
		}
		b.do(t, "en", chromedp.Evaluate[chromedp.Void](`localStorage.removeItem('kanade.lang')`))
	})
	b.noPageErrors(t)
}

// typeInto sets a filter input's text as typing does (an input event).
func typeInto(name, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`(() => { const e = document.querySelector(` + jsString(`input[name="`+name+`"]`) + `);
		e.value = ` + jsString(text) + `; e.dispatchEvent(new Event('input')); })()`)
}

// TestExecutionShowsAllItsRunsInABrowser: an execution's page shows its
// first runs at once and builds the rest after the first frame; all of
// them arrive, newest first, each once.
func TestExecutionShowsAllItsRunsInABrowser(t *testing.T) {
	b := newBrowser(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	db := storagetest.Open(t, clock)
	ctx := context.Background()
	const runs = 120
	target := int64(runs)
	err := db.Update(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: "x-many", JobID: "disk-check", Version: "1",
			InitiatedBy: "operator", InitiatedAt: now.Add(-time.Hour), TargetCount: &target}); err != nil {
			return err
		}
		var batch []storage.Result
		for i := range runs {
			exit := int64(0)
			started := now.Add(-time.Hour + time.Duration(i)*time.Second)
			batch = append(batch, storage.Result{ExecResult: kanade.ExecResult{ResultID: fmt.Sprintf("m-%03d", i),
				RequestID: fmt.Sprintf("q-m-%03d", i), ExecID: "x-many", PcID: fmt.Sprintf("PC-%03d", i), ManifestID: "disk-check",
				ExitCode: &exit, StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: started.Add(time.Second)}},
				RecordedAt: started.Add(2 * time.Second)})
		}
		_, err := tx.ApplyResults(ctx, batch)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	base := dashboard(t, db, clock, nil)
	b.do(t, "open", chromedp.Navigate(base+"/#token="+browserToken))
	b.waitFor(t, "the overview", `document.querySelector('#fleet-status')`)
	b.do(t, "open x-many", chromedp.Navigate(base+"/executions/x-many"))
	b.waitFor(t, "every run", fmt.Sprintf(`document.querySelectorAll('#exec-runs tbody tr').length === %d`, runs))
	got := b.texts(t, "#exec-runs tbody tr td:first-child")
	if len(got) != runs {
		t.Fatalf("%d rows, want %d", len(got), runs)
	}
	for i, pc := range got {
		if want := fmt.Sprintf("PC-%03d", runs-1-i); pc != want {
			t.Fatalf("row %d is %s, want %s (newest first, each once): %q", i, pc, want, got)
		}
	}
}
