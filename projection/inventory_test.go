package projection

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
)

// invManifest is job inv's manifest with the given explode columns.
func invManifest(columns string) string {
	return `{"id":"inv","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m"},"inventory":{` +
		`"display":[{"field":"host","label":"Host"}],"history_scalars":["os"],` +
		`"explode":[{"field":"apps","table":"inv_apps","primary_key":["name"],"columns":[` + columns + `],"track_history":true}]}}`
}

func (e *env) putJob(id, value string) {
	e.t.Helper()
	if _, err := e.srv.Bus.Put(context.Background(), kanade.BucketJobs, id, []byte(value)); err != nil {
		e.t.Fatal(err)
	}
}

var invSeq atomic.Int64

// invResultMsg is a successful run of job on pc whose stdout is stdout.
func invResultMsg(job, pc, stdout string, at time.Time) sim.Message {
	n := invSeq.Add(1)
	exit := int64(0)
	r := kanade.ExecResult{ResultID: fmt.Sprintf("inv-r%d", n), RequestID: fmt.Sprintf("inv-q%d", n), PcID: pc, ExitCode: &exit,
		Stdout: stdout, StartedAt: kanade.Timestamp{Time: at}, FinishedAt: kanade.Timestamp{Time: at.Add(time.Second)}, ManifestID: job}
	return sim.Message{Subject: "results." + r.RequestID, Data: []byte(js(r)), JetStream: true}
}

// TestInventoryFollowsJobsStoredAndChangedAfterStart: the worker watches
// KV jobs, so a job stored after it started is projected from its first
// result, and a changed spec applies to the next result. The clock is
// frozen and the TTL long, so only the watch can tell.
func TestInventoryFollowsJobsStoredAndChangedAfterStart(t *testing.T) {
	e := newEnv(t)
	r := e.start(func(c *Config, _ context.CancelFunc) { c.ManifestTTL = time.Hour })

	// Before the job exists its results are plain runs.
	e.publish(invResultMsg("inv", "PC-1", `{"host":"a","os":"10","apps":[{"name":"A"}]}`, e.now))
	e.waitCaughtUp()
	if got := e.dump(`SELECT COUNT(*) FROM inventory_facts`); got[0] != "0" {
		t.Fatalf("facts before the job exists: %v", got)
	}

	e.putJob("inv", invManifest(`{"field":"name"}`))
	waitFor(t, func() (bool, string) {
		e.publish(invResultMsg("inv", "PC-1", `{"host":"a","os":"10","apps":[{"name":"A","vendor":"V"}]}`, e.now))
		e.waitCaughtUp()
		n := e.dump(`SELECT COUNT(*) FROM inventory_facts`)[0]
		return n == "1", "facts rows: " + n
	})
	if got := e.dump(`SELECT pc_id, name FROM inv_apps`); !cmp.Equal(got, []string{"PC-1|A"}) {
		t.Errorf("rows %v", got)
	}

	e.putJob("inv", invManifest(`{"field":"name"},{"field":"vendor","index":true}`))
	waitFor(t, func() (bool, string) {
		e.publish(invResultMsg("inv", "PC-1", `{"host":"a","os":"11","apps":[{"name":"A","vendor":"V"}]}`, e.now))
		e.waitCaughtUp()
		got := e.dump(`SELECT COUNT(*) FROM pragma_table_info('inv_apps') WHERE name = 'vendor'`)[0]
		return got == "1", "vendor column: " + got
	})
	if got := e.dump(`SELECT name, vendor FROM inv_apps`); !cmp.Equal(got, []string{"A|V"}) {
		t.Errorf("rows after the spec change %v", got)
	}

	// Deleting the job stops its projection.
	if err := e.srv.Bus.Delete(context.Background(), kanade.BucketJobs, "inv", 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the watch event is asynchronous; nothing to poll for an absence
	before := e.dump(`SELECT recorded_at FROM inventory_facts`)
	e.publish(invResultMsg("inv", "PC-1", `{"host":"b"}`, e.now))
	e.waitCaughtUp()
	if diff := cmp.Diff(before, e.dump(`SELECT recorded_at FROM inventory_facts`)); diff != "" {
		t.Errorf("a deleted job's result was projected:\n%s", diff)
	}
	if n := value(r.w.m.inventory.WithLabelValues("projected")); n < 2 {
		t.Errorf("projected = %v", n)
	}
}

// TestInventorySpecCacheIsBoundedByItsTTL: without any watch running, an
// entry is trusted for the TTL and read again after it.
func TestInventorySpecCacheIsBoundedByItsTTL(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := e.now
	s := newSpecs(e.srv.Bus, func() time.Time { return now }, time.Minute, testLogger(t))
	if h, err := s.spec(ctx, "inv"); h != nil || err != nil {
		t.Fatalf("unknown job: %v, %v", h, err)
	}
	e.putJob("inv", invManifest(`{"field":"name"}`))
	if h, _ := s.spec(ctx, "inv"); h != nil {
		t.Fatal("a fresh negative entry was not trusted")
	}
	now = now.Add(time.Minute)
	h, err := s.spec(ctx, "inv")
	if err != nil || h == nil || len(h.Explode[0].Columns) != 1 {
		t.Fatalf("after the TTL: %v, %v", h, err)
	}
	e.putJob("inv", invManifest(`{"field":"name"},{"field":"v"}`))
	now = now.Add(59 * time.Second)
	if h, _ := s.spec(ctx, "inv"); len(h.Explode[0].Columns) != 1 {
		t.Error("the entry was read again within its TTL")
	}
	now = now.Add(time.Second)
	if h, _ := s.spec(ctx, "inv"); len(h.Explode[0].Columns) != 2 {
		t.Error("a superseded spec outlived the TTL")
	}
	// An invalid manifest (here: a hint naming an undeclared key) means no
	// hint, logged.
	e.putJob("inv", strings.Replace(invManifest(`{"field":"name"}`), `"primary_key":["name"]`, `"primary_key":["nope"]`, 1))
	now = now.Add(time.Minute)
	if h, err := s.spec(ctx, "inv"); h != nil || err != nil {
		t.Errorf("invalid hint: %v, %v", h, err)
	}
}

// TestInventoryReportsFromTheObjectStoreAndBadOnes: a large stdout moved to
// the object store is projected like an inline one; a stdout that is not
// JSON is counted and its run still lands.
func TestInventoryReportsFromTheObjectStoreAndBadOnes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putJob("inv", invManifest(`{"field":"name"},{"field":"kb","type":"integer"}`))
	var apps []string
	for i := range 3000 {
		apps = append(apps, fmt.Sprintf(`{"name":"app-%04d","kb":%d}`, i, i))
	}
	big := `{"host":"h","os":"11","apps":[` + strings.Join(apps, ",") + `]}`
	obj, err := e.srv.JS.ObjectStore(ctx, kanade.ObjectResultOutput)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "big/stdout", []byte(big)); err != nil {
		t.Fatal(err)
	}
	exit := int64(0)
	moved := kanade.ExecResult{ResultID: "big", RequestID: "big", PcID: "PC-1", ExitCode: &exit, StdoutObject: "big/stdout",
		StartedAt: ts("2026-09-30T11:00:00Z"), FinishedAt: ts("2026-09-30T11:00:01Z"), ManifestID: "inv"}
	r := e.start(nil)
	e.publish(sim.Message{Subject: "results.big", Data: []byte(js(moved)), JetStream: true},
		invResultMsg("inv", "PC-2", "Get-CimInstance: access denied", e.now),
		invResultMsg("inv", "PC-3", `{"host":"c","apps":[{"name":"x"}]}`, e.now))
	e.waitCaughtUp()
	if got := e.dump(`SELECT pc_id, COUNT(*), SUM(kb) FROM inv_apps GROUP BY pc_id`); !cmp.Equal(got, []string{"PC-1|3000|4498500", "PC-3|1|NULL"}) {
		t.Errorf("rows %v", got)
	}
	if got := e.dump(`SELECT COUNT(*) FROM execution_results`); got[0] != "3" {
		t.Errorf("runs %v", got)
	}
	if n := value(r.w.m.inventory.WithLabelValues("invalid")); n != 1 {
		t.Errorf("invalid = %v", n)
	}
	if n := value(r.w.m.invEvents); n != 3002 {
		t.Errorf("history events = %v", n)
	}
}

// TestInventoryWithTwoWorkersWritesHistoryOnce: workers racing over one
// stream and database write each report's history once.
func TestInventoryWithTwoWorkersWritesHistoryOnce(t *testing.T) {
	e := newEnv(t)
	e.putJob("inv", invManifest(`{"field":"name"},{"field":"v"}`))
	var msgs []sim.Message
	const pcs = 30
	for pc := range pcs {
		id := fmt.Sprintf("PC-%02d", pc)
		msgs = append(msgs, invResultMsg("inv", id, `{"os":"1","apps":[{"name":"A","v":"1"},{"name":"B","v":"1"}]}`, e.now))
	}
	for pc := range pcs {
		id := fmt.Sprintf("PC-%02d", pc)
		msgs = append(msgs, invResultMsg("inv", id, `{"os":"2","apps":[{"name":"A","v":"2"},{"name":"C","v":"1"}]}`, e.now))
	}
	for range 2 {
		e.startOn(connect(t, e.srv.URL), func(c *Config) { c.BatchSize = 7 })
	}
	// Twice: the second round is all redeliveries.
	for range 2 {
		e.publishSlowly(msgs, 5, 2*time.Millisecond)
	}
	e.waitCaughtUp()
	// Per PC: os, A and B added; then os and A changed, B removed, C
	// added. The second round redelivers the same results: nothing.
	want := []string{"added|120", "changed|60", "removed|30"}
	if diff := cmp.Diff(want, e.dump(`SELECT change_kind, COUNT(*) FROM inventory_history GROUP BY change_kind ORDER BY change_kind`)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

func TestHousekeepingTrimsInventoryHistoryOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, age := range []time.Duration{91 * 24 * time.Hour, 90*24*time.Hour + time.Second, 89 * 24 * time.Hour, time.Hour} {
		if err := e.exec(`INSERT INTO inventory_history (pc_id, job_id, field_path, change_kind, observed_at) VALUES (?, 'inv', 'os', 'added', ?)`,
			fmt.Sprintf("PC-%d", i), kanade.FormatTime(e.now.Add(-age))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.exec(`INSERT INTO inventory_facts (pc_id, job_id, facts_json, recorded_at) VALUES ('PC-0', 'inv', '{}', ?)`,
		kanade.FormatTime(e.now.Add(-400*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{DB: e.db, Bus: e.srv.Bus, Clock: e.clock, HousekeepingBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"PC-2", "PC-3"}, e.dump(`SELECT pc_id FROM inventory_history ORDER BY pc_id`)); diff != "" {
		t.Errorf("history kept (-want +got):\n%s", diff)
	}
	if got := e.dump(`SELECT COUNT(*) FROM inventory_facts`); got[0] != "1" {
		t.Errorf("facts swept: %v", got)
	}
	if n := value(w.m.housekeeping.WithLabelValues("delete_inventory_history")); n != 2 {
		t.Errorf("housekeeping counted %v", n)
	}
	_ = storage.InventoryHistoryRetention
}
