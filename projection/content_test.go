package projection

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

const checksDump = `SELECT pc_id, check_name, status, detail, recorded_at FROM check_status ORDER BY pc_id, check_name`

const acksDump = `SELECT notification_id, pc_id, user_sid, acked_at, recorded_at FROM notification_acks
	ORDER BY notification_id, pc_id, user_sid`

// checkResult publishes a result of job on pc.
func (e *env) checkResult(n int, job, pc string, exit int64, stdout, stderr string, skipped bool) {
	e.t.Helper()
	r := kanade.ExecResult{ResultID: fmt.Sprintf("r-%d", n), RequestID: fmt.Sprintf("q-%d", n), PcID: pc, ExitCode: &exit,
		Stdout: stdout, Stderr: stderr, Skipped: skipped, ManifestID: job,
		StartedAt: ts("2026-09-30T11:00:00Z"), FinishedAt: ts("2026-09-30T11:00:01Z")}
	e.publishRaw("results."+r.RequestID, js(r))
}

// Check results become check_status rows by the rules of observe.md §3.4,
// and a replay (the offset lost, or the database wiped) leaves exactly the
// same rows: an older state never overwrites a newer one.
func TestChecksProjectFromResults(t *testing.T) {
	e := newEnv(t)
	e.putJob("bitlocker", `{"id":"bitlocker","version":"1","execute":{"shell":"powershell","script":"x","timeout":"1m"},"check":{"name":"bitlocker"}}`)
	e.putJob("av", `{"id":"av","version":"1","execute":{"shell":"powershell","script":"x","timeout":"1m"},
		"check":{"name":"defender_rtp","status_field":"state","detail_field":"info","fleet":true}}`)
	e.putJob("local", `{"id":"local","version":"1","execute":{"shell":"powershell","script":"x","timeout":"1m"},"check":{"name":"tray","fleet":false}}`)
	e.putJob("plain", `{"id":"plain","version":"1","execute":{"shell":"sh","script":"x","timeout":"1m"}}`)
	r := e.start(nil)
	n := 0
	res := func(job, pc string, exit int64, stdout, stderr string, skipped bool) {
		n++
		e.checkResult(n, job, pc, exit, stdout, stderr, skipped)
	}
	res("bitlocker", "PC-1", 0, `{"status":"ok","detail":"all encrypted"}`, "", false)
	res("bitlocker", "PC-1", 0, `{"status":"fail","detail":"C: not encrypted","volumes":[]}`, "", false) // newer wins
	res("bitlocker", "PC-1", 0, `not json`, "", false)                                                   // keeps the state
	res("bitlocker", "PC-1", 0, `{"status":"ok"} {"status":"ok"}`, "", false)                            // two objects: not one
	res("bitlocker", "PC-2", 0, `{"status":"OK","detail":""}`, "", false)                                // not exactly ok
	res("bitlocker", "PC-3", 3, `{"status":"ok"}`, "  "+strings.Repeat("é", 250)+"  ", false)
	res("bitlocker", "PC-4", 1, ``, "", false)
	res("bitlocker", "PC-5", 0, `{"status":"ok"}`, "", true) // skipped: no check ran
	res("av", "PC-1", 0, `{"state":"warn","info":{"b":1,"a":[true]}}`, "", false)
	res("av", "PC-2", 0, `{"state":"fail","info":42.5}`, "", false)
	res("av", "PC-3", 0, `{"state":"ok","info":null,"status":"fail"}`, "", false)
	res("av", "PC-4", 0, `{"state":["ok"],"info":false}`, "", false)
	res("av", "PC-5", 0, `{"state":"ok","info":"`+strings.Repeat("ü", 3000)+`"}`, "", false)
	res("local", "PC-1", 0, `{"status":"fail"}`, "", false)
	res("plain", "PC-1", 0, `{"status":"fail"}`, "", false)
	res("unknown-job", "PC-1", 0, `{"status":"fail"}`, "", false)
	e.waitCaughtUp()

	got := e.dump(checksDump)
	stamp := func(s string) string { return s[strings.LastIndex(s, "|")+1:] }
	want := []string{
		"PC-1|bitlocker|fail|C: not encrypted|",
		`PC-1|defender_rtp|warn|{"b":1,"a":[true]}|`,
		"PC-2|bitlocker|unknown|NULL|",
		"PC-2|defender_rtp|fail|42.5|",
		"PC-3|bitlocker|unknown|check script exited 3: " + strings.Repeat("é", 200) + "|", // the trimmed stderr's first 200 characters
		"PC-3|defender_rtp|ok|NULL|",
		"PC-4|bitlocker|unknown|check script exited 1|",
		"PC-4|defender_rtp|unknown|false|",
		"PC-5|defender_rtp|ok|" + strings.Repeat("ü", 2048) + "|", // cut at 4 KiB
	}
	if len(got) != len(want) {
		t.Fatalf("check_status:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i]+stamp(got[i]) {
			t.Errorf("row %d = %.200s\nwant      %.200s", i, got[i], want[i])
		}
	}
	r.stop()

	// The offset lost: every result is applied again, in stream order,
	// and the rows come out the same (the stale fail → ok → fail sequence
	// does not flip PC-1's state on the way to the same end).
	if err := e.exec(`UPDATE consumer_offsets SET stream_seq = 0 WHERE consumer = ?`, ConsumerResults); err != nil {
		t.Fatal(err)
	}
	r = e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(got, e.dump(checksDump)); diff != "" {
		t.Errorf("after a replay (-before +after):\n%s", diff)
	}
	r.stop()
	// A wiped database rebuilds the same rows.
	e.openDB()
	e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(got, e.dump(checksDump)); diff != "" {
		t.Errorf("rebuilt (-before +after):\n%s", diff)
	}
}

// Acks are kept once per (notification, PC, user): the first in the
// stream stays whatever follows (a re-ack, a redelivery, an earlier
// acked_at arriving later), bad bodies are counted and passed over, and a
// replay or a rebuild changes nothing.
func TestNotificationAcksProjectOnce(t *testing.T) {
	e := newEnv(t)
	ack := func(id, pc, sid, at string) {
		e.publishRaw("events.notifications.acked."+pc+"."+sid+"."+id,
			fmt.Sprintf(`{"notification_id":%q,"pc_id":%q,"user_sid":%q,"acked_at":%q}`, id, pc, sid, at))
	}
	ack("maint-1", "PC-1", "S-1", "2026-09-30T11:00:05Z")
	ack("maint-1", "PC-1", "S-1", "2026-09-30T11:00:01Z") // an earlier instant, later in the stream
	r := e.start(nil)
	ack("maint-1", "PC-1", "S-2", "2026-09-30T11:01:00Z")
	// Ids with dots shift subject tokens; the body's fields are what counts.
	e.publishRaw("events.notifications.acked.PC-2.S-1.a.b", `{"notification_id":"a.b","pc_id":"PC-2","user_sid":"S-1","acked_at":"2026-09-30T11:02:00Z"}`)
	e.publishRaw("events.notifications.acked.x", `{"notification_id":"x"`)
	e.publishRaw("events.notifications.acked.x", `{"notification_id":"x","pc_id":"PC-3","user_sid":"`+strings.Repeat("s", 257)+`","acked_at":"2026-09-30T11:00:00Z"}`)
	e.publishRaw("events.notifications.acked.x", `{"notification_id":"`+strings.Repeat("n", 129)+`","pc_id":"PC-3","user_sid":"S","acked_at":"2026-09-30T11:00:00Z"}`)
	e.publishRaw("events.notifications.acked.x", `{"notification_id":"x","pc_id":"PC-3","user_sid":"S"}`)
	ack("maint-1", "PC-1", "S-1", "2026-09-30T12:00:00Z") // a re-ack
	e.waitCaughtUp()
	got := e.dump(acksDump)
	wantPrefix := []string{
		"a.b|PC-2|S-1|2026-09-30T11:02:00.000000000Z|",
		"maint-1|PC-1|S-1|2026-09-30T11:00:05.000000000Z|",
		"maint-1|PC-1|S-2|2026-09-30T11:01:00.000000000Z|",
	}
	if len(got) != len(wantPrefix) {
		t.Fatalf("notification_acks:\n%s", strings.Join(got, "\n"))
	}
	for i := range got {
		if !strings.HasPrefix(got[i], wantPrefix[i]) {
			t.Errorf("row %d = %s, want %s…", i, got[i], wantPrefix[i])
		}
	}
	if n, err := gatherCount(r.reg, "kanade_projector_decode_failures_total"); err != nil || n == 0 {
		t.Errorf("decode failures not counted: %d %v", n, err)
	}
	r.stop()
	if err := e.exec(`UPDATE consumer_offsets SET stream_seq = 0 WHERE consumer = ?`, ConsumerNotificationAcks); err != nil {
		t.Fatal(err)
	}
	r = e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(got, e.dump(acksDump)); diff != "" {
		t.Errorf("after a replay (-before +after):\n%s", diff)
	}
	r.stop()
	e.openDB()
	e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(got, e.dump(acksDump)); diff != "" {
		t.Errorf("rebuilt (-before +after):\n%s", diff)
	}
}
