package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestLongOutputsAreStoredPackedAndReadWhole: outputs of every length
// around the packing threshold, compressible or not, packed ahead (as the
// projector does) or by ApplyResults, inserted or filling in a started
// run, read back whole; long compressible ones take less room than their
// text, and a row written as plain TEXT (before packing existed) still
// reads.
func TestLongOutputsAreStoredPackedAndReadWhole(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(' ' + rng.IntN(95))
		}
		return string(b)
	}
	outputs := map[string]string{
		"empty": "", "short": "ok\n", "below": strings.Repeat("a", 1023), "at": strings.Repeat("b", 1024),
		"json":  strings.Repeat(`{"name":"Google Chrome","version":"120.0.1"},`, 500),
		"noise": noise(4096), "utf8": strings.Repeat("日本語の出力 ", 300), "huge": strings.Repeat("line of output\n", 70_000),
	}
	exit := int64(0)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var rs []storage.Result
	var started []storage.Started
	i := 0
	for name, out := range outputs {
		for _, mode := range []string{"packed", "unpacked", "started"} {
			id := name + "-" + mode
			r := storage.Result{ExecResult: kanade.ExecResult{ResultID: id, RequestID: "q", PcID: "PC", ExitCode: &exit,
				StartedAt: kanade.Timestamp{Time: at}, FinishedAt: kanade.Timestamp{Time: at.Add(time.Second)},
				ManifestID: "job", Stdout: out, Stderr: strings.ToUpper(out)}, RecordedAt: at.Add(time.Duration(i) * time.Second)}
			i++
			switch mode {
			case "packed":
				r.Pack()
			case "started":
				started = append(started, storage.Started{EventStarted: kanade.EventStarted{ResultID: id, RequestID: "q", PcID: "PC",
					StartedAt: kanade.Timestamp{Time: at}, ManifestID: "job"}, RecordedAt: at})
			}
			rs = append(rs, r)
		}
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ApplyStarted(ctx, started); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO execution_results (result_id, request_id, pc_id, exit_code, skipped, stdout, stderr, reaped, recorded_at)
			VALUES ('legacy', 'q', 'PC', 0, 0, ?, NULL, 0, '2026-05-01T00:00:00.000000000Z')`, outputs["json"])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error {
		st, err := tx.ApplyResults(ctx, rs)
		if err == nil && st.Inserted+st.Updated != len(rs) {
			err = fmt.Errorf("%+v for %d results", st, len(rs))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for name, out := range outputs {
		for _, mode := range []string{"packed", "unpacked", "started"} {
			id := name + "-" + mode
			run, err := db.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if run.Stdout == nil || *run.Stdout != out || run.Stderr == nil || *run.Stderr != strings.ToUpper(out) {
				t.Errorf("%s: output not read back whole (stdout %d bytes of %d)", id, len(text(run.Stdout)), len(out))
			}
			stored := int(invRows(t, db, `SELECT LENGTH(CAST(stdout AS BLOB)) FROM execution_results WHERE result_id = ?`, id)[0][0].(int64))
			compressible := len(out) >= 1024 && name != "noise"
			if compressible && stored > len(out)/2 || !compressible && stored != len(out) {
				t.Errorf("%s: %d bytes stored for %d of output", id, stored, len(out))
			}
		}
	}
	run, err := db.GetRun(ctx, "legacy")
	if err != nil || run.Stdout == nil || *run.Stdout != outputs["json"] || run.Stderr != nil {
		t.Errorf("a row stored as text: %v", err)
	}
}

func text(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// factsText is a read route's facts as text.
func factsText(v any) string {
	if b, ok := v.(json.RawMessage); ok {
		return string(b)
	}
	return fmt.Sprintf("%T", v)
}

// TestInventoryFactsArePackedAndReadWhole: a report's facts are stored
// packed and the read routes serve the text as received.
func TestInventoryFactsArePackedAndReadWhole(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	spec := swSpec(t)
	var apps []string
	for i := range 200 {
		apps = append(apps, fmt.Sprintf(`{"name":"App %d","source":"x64","version":"1.%d"}`, i, i))
	}
	report := report("11", 8, apps...)
	r := invResult("r1", "PC-1", 0, report, spec)
	r.Pack()
	applyInv(t, db, r, invResult("r2", "PC-2", 0, "\ufeff"+report, spec))
	if stored := int(invRows(t, db, `SELECT MAX(LENGTH(CAST(facts_json AS BLOB))) FROM inventory_facts`)[0][0].(int64)); stored > len(report)/2 {
		t.Errorf("%d bytes of facts stored for a %d-byte report", stored, len(report))
	}
	for _, pc := range []string{"PC-1", "PC-2"} {
		got, err := db.InventoryOfPC(ctx, pc)
		if err != nil || len(got) != 1 || factsText(got[0].Facts) != report {
			t.Errorf("%s: facts not read back as received (%v)", pc, err)
		}
	}
	byJob, err := db.InventoryByJob(ctx, "inventory-sw")
	if err != nil || len(byJob.Rows) != 2 || factsText(byJob.Rows[0].Facts) != report || factsText(byJob.Rows[1].Facts) != report {
		t.Errorf("by job: facts not read back as received (%v)", err)
	}
	run, err := db.GetRun(ctx, "r1")
	if err != nil || text(run.Stdout) != report {
		t.Errorf("the inventory run's stdout: %v", err)
	}
}
