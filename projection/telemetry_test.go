package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

const obsDump = `SELECT pc_id, at, kind, source, event_record_id, payload FROM obs_events
	ORDER BY pc_id, at, kind, source, event_record_id, payload`

// obsMessages are the test's obs events: events with a record id (an agent
// re-sends them; the copies must collapse), events without one (two rows),
// and messages that must be counted and skipped.
func obsMessages() (good []string, bad []string) {
	for i := range 30 {
		ev := kanade.ObsEvent{PcID: fmt.Sprintf("PC-%d", i%4), At: ts(fmt.Sprintf("2026-09-30T11:%02d:00Z", i)),
			Kind: []string{"logon", "logoff", "boot"}[i%3], Source: "winlog:Security",
			Payload: json.RawMessage(fmt.Sprintf(`{"logon_type":%d}`, i%3))}
		if i%5 != 0 {
			ev.EventRecordID = ptr(fmt.Sprint(1000 + i))
		}
		good = append(good, js(ev))
	}
	bad = []string{
		`{not json`,
		js(kanade.ObsEvent{PcID: "PC.1", At: ts("2026-09-30T11:00:00Z"), Kind: "k", Source: "s"}), // pc_id not a token
		js(kanade.ObsEvent{PcID: "PC-1", At: ts("2026-09-30T11:00:00Z"), Kind: strings.Repeat("k", 65), Source: "s"}),
		js(kanade.ObsEvent{PcID: "PC-1", At: ts("2026-09-30T11:00:00Z"), Kind: "k", Source: ""}),
		js(kanade.ObsEvent{PcID: "PC-1", At: ts("2026-09-30T11:00:00Z"), Kind: "k", Source: "s", EventRecordID: ptr(strings.Repeat("r", 257))}),
		js(kanade.ObsEvent{PcID: "PC-1", At: ts("2026-09-30T11:00:00Z"), Kind: "k", Source: "s",
			Payload: json.RawMessage(`"` + strings.Repeat("p", 64*1024) + `"`)}),
		`{"pc_id":"PC-1","at":"0000-01-01T00:00:00Z","kind":"k","source":"s"}`,
	}
	return good, bad
}

// TestObsEventsProjection: OBS_EVENTS lands in obs_events exactly once in
// effect whatever the order, the duplicates, a crash mid-batch or a wiped
// database; malformed messages are counted and skipped without blocking.
func TestObsEventsProjection(t *testing.T) {
	good, bad := obsMessages()
	// Reference: every good message once, in order.
	ref := newEnv(t)
	for _, m := range good {
		ref.publishRaw("obs."+pcOf(m), m)
	}
	ref.start(nil)
	ref.waitCaughtUp()
	want := ref.dump(obsDump)
	if len(want) != 30 {
		t.Fatalf("reference has %d rows, want 30", len(want))
	}

	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 8))
	var msgs []string
	for _, m := range good {
		msgs = append(msgs, m)
		var ev kanade.ObsEvent
		_ = json.Unmarshal([]byte(m), &ev)
		if ev.EventRecordID != nil && rng.IntN(2) == 0 {
			msgs = append(msgs, m) // re-sent by the agent: a second stream message
		}
	}
	msgs = append(msgs, bad...)
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	for _, m := range msgs[:len(msgs)/2] {
		e.publishRaw("obs."+pcOf(m), m)
	}
	crashes := 0
	r := e.start(func(c *Config, _ context.CancelFunc) {
		c.BatchSize = 7
		c.inApply = func(consumer string) error {
			if consumer == ConsumerObs && crashes < 3 {
				crashes++
				return errCrash
			}
			return nil
		}
	})
	for _, m := range msgs[len(msgs)/2:] {
		e.publishRaw("obs."+pcOf(m), m)
	}
	e.publishRaw("obs.PC-other", good[1]) // subject disagrees with the body: stored under the body's pc_id
	e.waitCaughtUp()
	if diff := cmp.Diff(want, e.dump(obsDump)); diff != "" {
		t.Errorf("obs_events differ (-in order once +shuffled, duplicated, crashed):\n%s", diff)
	}
	if crashes != 3 {
		t.Errorf("crashes = %d, want 3", crashes)
	}
	// A batch read again after a crash counts its bad messages again.
	if got := value(r.w.m.decodeFailures.WithLabelValues(kanade.StreamObsEvents)); got < float64(len(bad)) {
		t.Errorf("decode failures = %v, want at least %d", got, len(bad))
	}
	if got := value(r.w.m.obsMismatch); got < 1 { // more when its batch was read again after a crash
		t.Errorf("pc_id mismatches = %v, want at least 1", got)
	}
	if got := e.dump(`SELECT value || '=' || n FROM obs_event_vocab WHERE field = 'kind' ORDER BY value`); strings.Join(got, ",") != "boot=10,logoff=10,logon=10" {
		t.Errorf("kind counts %v", got)
	}

	// A wiped database rebuilds the same rows from the stream.
	r.stop()
	e.openDB()
	e.start(nil)
	e.waitCaughtUp()
	if diff := cmp.Diff(want, e.dump(obsDump)); diff != "" {
		t.Errorf("obs_events after a wipe differ:\n%s", diff)
	}
}

func pcOf(m string) string {
	var ev struct {
		PcID string `json:"pc_id"`
	}
	if json.Unmarshal([]byte(m), &ev) != nil || !kanade.ValidToken(ev.PcID) {
		return "junk"
	}
	return ev.PcID
}

const hostDump = `SELECT pc_id, at, at_unix, cpu_pct, mem_used_bytes FROM host_perf_samples ORDER BY pc_id, at`
const rollupDump = `SELECT pc_id, slot, cpu_pct_n, round(cpu_pct_s, 6), cpu_pct_x, mem_used_bytes_n, mem_used_bytes_x FROM host_perf_5m ORDER BY pc_id, slot`
const fleetDump = `SELECT slot, cpu_pct_n, round(cpu_pct_s, 6), cpu_pct_x FROM host_perf_fleet_1m ORDER BY slot`

// TestPerfSamplesProjection: host and process samples over core NATS land
// once (re-published copies, in any order, add nothing to rows or
// rollups), and malformed ones are counted and dropped.
func TestPerfSamplesProjection(t *testing.T) {
	var samples []string
	for i := range 200 {
		h := kanade.HostPerf{PcID: fmt.Sprintf("PC-%d", i%5), At: ts("2026-09-30T10:00:00Z")}
		h.At.Time = h.At.Add(time.Duration(i*37) * time.Second)
		if i%7 != 0 {
			h.CPUPct = ptr(float64(i % 100))
		}
		if i%3 == 0 {
			h.MemUsedBytes = ptr(int64(i) * 1_000_000)
		}
		samples = append(samples, js(h))
	}
	run := func(t *testing.T, msgs []string) ([]string, []string, []string, *running, *env) {
		e := newEnv(t)
		r := e.start(nil)
		waitFor(t, func() (bool, string) { return r.w.perfReady.Load(), "perf subscription" })
		for _, m := range msgs {
			subj := "host_perf." + pcOf(m)
			if strings.Contains(m, "processes") {
				subj = "process_perf." + pcOf(m)
			}
			if err := e.srv.NC.Publish(subj, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.srv.NC.Flush(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() (bool, string) {
			n := value(r.w.m.perfReceived.WithLabelValues("host")) + value(r.w.m.perfReceived.WithLabelValues("process"))
			return int(n) == len(msgs), fmt.Sprintf("received %v of %d", n, len(msgs))
		})
		r.w.flushPerfNow()
		return e.dump(hostDump), e.dump(rollupDump), e.dump(fleetDump), r, e
	}
	wantHost, wantRoll, wantFleet, _, _ := run(t, samples)
	if len(wantHost) != 200 {
		t.Fatalf("reference has %d rows", len(wantHost))
	}

	rng := rand.New(rand.NewPCG(3, 4))
	msgs := append([]string{}, samples...)
	msgs = append(msgs, samples[:120]...) // re-published
	bad := []string{`{nope`, `{"pc_id":"PC 1","at":"2026-09-30T10:00:00Z"}`, `{"pc_id":"PC-1"}`,
		`{"pc_id":"PC-1","at":"0000-06-01T00:00:00Z"}`,
		`{"pc_id":"PC-1","at":"2026-09-30T10:00:00Z","pad":"` + strings.Repeat("x", 64*1024) + `"}`}
	msgs = append(msgs, bad...)
	procs := kanade.ProcessPerf{PcID: "PC-1", At: ts("2026-09-30T10:00:00Z")}
	for i := range 600 {
		name := "p.exe"
		if i == 0 {
			name = strings.Repeat("é", 150) // 300 bytes
		}
		procs.Processes = append(procs.Processes, kanade.ProcessSample{PID: ptr(int64(i % 550)), Name: ptr(name),
			CPUPct: ptr(1.0), RSSBytes: ptr(int64(1))})
	}
	msgs = append(msgs, js(procs), js(kanade.ProcessPerf{PcID: "PC-2", At: ts("2026-09-30T10:00:00Z"), Processes: []kanade.ProcessSample{}}),
		`{"pc_id":"PC-1","at":"2026-09-30T10:00:00Z","processes":[{"pid":-1,"name":"x","cpu_pct":1,"rss_bytes":1}]}`)
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	host, roll, fleet, r, e := run(t, msgs)
	if diff := cmp.Diff(wantHost, host); diff != "" {
		t.Errorf("host_perf_samples differ:\n%s", diff)
	}
	if diff := cmp.Diff(wantRoll, roll); diff != "" {
		t.Errorf("host_perf_5m differs (a duplicate counted?):\n%s", diff)
	}
	if diff := cmp.Diff(wantFleet, fleet); diff != "" {
		t.Errorf("host_perf_fleet_1m differs:\n%s", diff)
	}
	if got := value(r.w.m.perfDropped.WithLabelValues("invalid")); got != float64(len(bad)+1) {
		t.Errorf("dropped = %v, want %d", got, len(bad)+1)
	}
	// The first 500 entries (pids 0..499, distinct) are stored, names cut at
	// a character boundary; the empty tick stores nothing.
	if got := e.dump(`SELECT COUNT(*), MAX(length(CAST(name AS BLOB))), COUNT(DISTINCT pc_id) FROM process_perf_samples`); got[0] != "500|260|1" {
		t.Errorf("process rows %v, want 500|260|1", got)
	}
}
