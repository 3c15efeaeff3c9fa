package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// hostileJS are the JetStream payload kinds that must each be counted as a
// decode failure (never applied, never blocking what follows).
var hostileJS = []struct {
	name    string
	subject string
	body    func(i int) string
}{
	{"invalid JSON (result)", "results.h", func(i int) string { return `{"result_id": "h-` + strconv.Itoa(i) + `", "exit_code": ` }},
	{"wrong types (result)", "results.h", func(i int) string {
		return `{"result_id": ` + strconv.Itoa(i) + `, "request_id": ["x"], "pc_id": {}, "exit_code": "0", "stdout": 1, "stderr": false, "started_at": 5, "finished_at": true}`
	}},
	{"huge exit_code (result)", "results.h", func(i int) string {
		return hostileResult(i, func(m map[string]any) { m["exit_code"] = json_number("123456789012345678901234567890") })
	}},
	{"control characters in ids (result)", "results.h", func(i int) string {
		return hostileResult(i, func(m map[string]any) {
			m["result_id"] = "h\u0000\u0007\n-" + strconv.Itoa(i)
			m["pc_id"] = "PC\u0001\u001b[31m"
		})
	}},
	{"year 0000 (result)", "results.h", func(i int) string {
		return hostileResult(i, func(m map[string]any) {
			m["started_at"] = "0000-01-01T00:00:00Z"
			m["finished_at"] = "0000-01-01T00:00:01Z"
		})
	}},
	{"stdout_object of 3,100 characters (result)", "results.h", func(i int) string {
		return hostileResult(i, func(m map[string]any) { m["stdout_object"] = strings.Repeat("o", 3100) })
	}},
	{"pc_id of 5,000 characters (result)", "results.h", func(i int) string {
		return hostileResult(i, func(m map[string]any) { m["pc_id"] = strings.Repeat("P", 5000) })
	}},
	{"manifest_id of 5,000 characters (started event)", "events.started.hx.PC-h", func(i int) string {
		return string(mustJSON(kanade.EventStarted{ResultID: uuidFor("hostile/started", i), RequestID: "r", PcID: "PC-h",
			StartedAt: kanade.Timestamp{Time: time.Now()}, ManifestID: strings.Repeat("m", 5000)}))
	}},
	{"invalid JSON (started event)", "events.started.hx.PC-h", func(i int) string { return `not json ` + strconv.Itoa(i) }},
	{"control characters in pc_id (started event)", "events.started.hx.PC-h", func(i int) string {
		return string(mustJSON(kanade.EventStarted{ResultID: uuidFor("hostile/started-cc", i), RequestID: "r", PcID: "PC\u0000\t\u007f",
			StartedAt: kanade.Timestamp{Time: time.Now()}}))
	}},
	{"invalid JSON (audit)", "audit.operator.hostile", func(i int) string { return `{"actor": "operator", "action": ` }},
	{"wrong types (audit)", "audit.operator.hostile", func(i int) string {
		return `{"actor": 7, "action": ["x"], "occurred_at": 1700000000}`
	}},
}

// json_number marks a raw JSON number in a map rendered by hostileResult.
type json_number string

// hostileResult is a valid-looking result (edited by edit) rendered by hand
// so that raw numbers and odd strings survive.
func hostileResult(i int, edit func(map[string]any)) string {
	now := time.Now().UTC()
	m := map[string]any{"result_id": uuidFor("hostile/result", i), "request_id": uuidFor("hostile/request", i), "pc_id": "PC-h",
		"exit_code": json_number("0"), "stdout": "", "stderr": "", "started_at": now.Format(time.RFC3339Nano),
		"finished_at": now.Format(time.RFC3339Nano), "manifest_id": "hostile-job"}
	edit(m)
	var b strings.Builder
	b.WriteString("{")
	first := true
	for k, v := range m {
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(strconv.Quote(k) + ":")
		switch x := v.(type) {
		case json_number:
			b.WriteString(string(x))
		default:
			b.Write(mustJSON(x))
		}
	}
	b.WriteString("}")
	return b.String()
}

// hostileBeats are heartbeat payloads no agent could send.
var hostileBeats = []func(i int) (subject, body string){
	func(i int) (string, string) { return "heartbeat.PC-h", `{"pc_id": ` },
	func(i int) (string, string) {
		pc := strings.Repeat("H", 5000)
		return "heartbeat.PC-long", `{"pc_id":"` + pc + `","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"1"}`
	},
	func(i int) (string, string) {
		return "heartbeat.PC-cc", `{"pc_id":"PC\u0000\u0007x","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"1"}`
	},
	func(i int) (string, string) {
		return "heartbeat.PC-dot", `{"pc_id":"evil.pc.>","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"1"}`
	},
	func(i int) (string, string) {
		return "heartbeat.PC-star", `{"pc_id":"* >","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"1"}`
	},
	func(i int) (string, string) {
		return "heartbeat.PC-y0", `{"pc_id":"PC-y0","at":"0000-01-01T00:00:00Z","agent_version":"1"}`
	},
	func(i int) (string, string) {
		return "heartbeat.PC-big", `{"pc_id":"PC-big","at":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","agent_version":"1","agent_rss_bytes":1e400}`
	},
	func(i int) (string, string) { return "heartbeat.PC-types", `{"pc_id":5,"at":[],"agent_version":{}}` },
}

const goodPCs = 20

func runHostile(ctx context.Context, e *Env, r *Result) error {
	h := e.Size.Hostile
	ns, err := e.StartNATS(ctx, NatsOptions{Name: "nats", MaxPayload: "8MB"})
	if err != nil {
		return err
	}
	db := e.Dir + "/hostile.db"
	w, err := e.StartWorker(ctx, "worker", e.shellOpts(db, ns.URL(), "data"))
	if err != nil {
		return err
	}
	nc, err := connectNATS(ns.URL(), "faults-hostile")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 500})
	if err != nil {
		return err
	}
	var cmdMu sync.Mutex
	commands := map[string]int{}
	sub, err := nc.Subscribe("commands.>", func(m *nats.Msg) {
		cmdMu.Lock()
		commands[m.Subject]++
		cmdMu.Unlock()
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	g := Gen{Prefix: "hostile-good", Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"good-job"}, PCs: goodPCs}
	// Warm up with good results so the RSS baseline is a working worker's.
	warm := 2000
	acksW, err := pub.Publish(ctx, warm, okResults(g))
	if err != nil {
		return err
	}
	if _, err := waitRows(ctx, int64(warm), e.Size.Stall, func(ctx context.Context) (int64, error) { return finishedRows(ctx, db) }); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	sleep(ctx, 2*time.Second)
	base, err := w.Proc.Mem()
	if err != nil {
		return err
	}
	var peak Mem
	mctx, stopMem := context.WithCancel(ctx)
	defer stopMem()
	var memWG sync.WaitGroup
	memWG.Add(1)
	go func() {
		defer memWG.Done()
		for sleep(mctx, 250*time.Millisecond) == nil {
			if m, err := w.Proc.Mem(); err == nil {
				peak.RSS = max(peak.RSS, m.RSS)
				peak.HWM = max(peak.HWM, m.HWM)
			}
		}
	}()

	// The interleaved load: even positions good, odd hostile. Good: results
	// (two with years 0001 and 9999), started events before some results,
	// audit events. Hostile: the kinds above in turn, plus two 5 MB payloads.
	type item struct {
		msg     PubMsg
		hostile bool
		kind    string
		goodRow string
	}
	var items []item
	kinds := map[string]int{}
	goodRes := 0
	var want []string
	for i := range warm {
		if acksW.Has(i) {
			want = append(want, g.ResultID(i))
		}
	}
	for i := range h {
		gi := warm + i
		switch {
		case i%20 == 0:
			a := kanade.AuditEvent{Actor: "operator", Action: "hostile-test", Payload: []byte(`{"ok":true}`), OccurredAt: kanade.Timestamp{Time: time.Now()}}
			subj, _ := a.Subject()
			items = append(items, item{msg: PubMsg{Subject: subj, Data: mustJSON(a), ID: "good-audit-" + strconv.Itoa(i)}})
		default:
			res := g.Result(gi, 0)
			switch i {
			case 1:
				// Not 0001-01-01T00:00:00Z itself: that instant is the
				// "unset" value of Go and .NET, and counts as absent.
				res.StartedAt = kanade.Timestamp{Time: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)}
				res.FinishedAt = kanade.Timestamp{Time: time.Date(1, 1, 1, 0, 0, 2, 0, time.UTC)}
			case 3:
				res.StartedAt = kanade.Timestamp{Time: time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC)}
				res.FinishedAt = kanade.Timestamp{Time: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
			}
			if i%10 == 5 {
				st := kanade.EventStarted{ResultID: res.ResultID, RequestID: res.RequestID, PcID: res.PcID, StartedAt: res.StartedAt, ManifestID: res.ManifestID, Version: "1"}
				items = append(items, item{msg: startedMsg(st)})
			}
			items = append(items, item{msg: resultMsg(res), goodRow: res.ResultID})
			goodRes++
		}
		k := hostileJS[i%len(hostileJS)]
		body := k.body(i)
		kind := k.name
		if i == h/3 || i == 2*h/3 {
			body, kind = `{"result_id":"`+strings.Repeat("5", 5<<20), "5 MB payload (result)"
		}
		kinds[kind]++
		items = append(items, item{msg: PubMsg{Subject: k.subject, Data: []byte(body), ID: "hostile-" + strconv.Itoa(i)}, hostile: true, kind: kind})
	}
	// Heartbeats: the good PCs and the hostile ones, interleaved, on core NATS.
	hbDone := make(chan error, 1)
	go func() {
		for i := 0; i < h/5; i++ {
			pc := g.PC(i)
			hb := kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: time.Now()}, AgentVersion: "0.45.3"}
			if err := nc.Publish("heartbeat."+pc, mustJSON(hb)); err != nil {
				hbDone <- err
				return
			}
			subj, body := hostileBeats[i%len(hostileBeats)](i)
			if err := nc.Publish(subj, []byte(body)); err != nil {
				hbDone <- err
				return
			}
			if i%100 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		hbDone <- nc.Flush()
	}()
	start := time.Now()
	acks, err := pub.Publish(ctx, len(items), func(i int) PubMsg { return items[i].msg })
	if err != nil {
		return err
	}
	if err := <-hbDone; err != nil {
		return fmt.Errorf("heartbeats: %w", err)
	}
	hostileAcked, goodAcked := 0, 0
	for i, it := range items {
		if !acks.Has(i) {
			continue
		}
		if it.hostile {
			hostileAcked++
		} else {
			goodAcked++
			if it.goodRow != "" {
				want = append(want, it.goodRow)
			}
		}
	}
	var kindList []string
	for _, k := range hostileJS {
		kindList = append(kindList, fmt.Sprintf("%s ×%d", k.name, kinds[k.name]))
	}
	kindList = append(kindList, fmt.Sprintf("5 MB payload ×%d", kinds["5 MB payload (result)"]))
	r.Do("nats-server with max_payload 8MB, one worker; %d good JetStream messages (%d results, two of them in years 0001 and 9999; started events; audit events) interleaved with %d hostile ones, all acked, in %s", goodAcked, goodRes, hostileAcked, round(time.Since(start)))
	r.Do("hostile JetStream kinds: %s", strings.Join(kindList, "; "))
	r.Do("%d good heartbeats from %d PCs interleaved with %d hostile ones on core NATS (invalid JSON, a 5,000-character pc_id, control characters, pc_ids with '.', '*' and '>', year 0000, a number too big for int64, wrong types)", h/5, goodPCs, h/5)

	d, err := checkLanded(ctx, e, r, "good results", db, want, e.Size.Stall)
	if err != nil {
		return err
	}
	// The per_pc schedule, after the hostile heartbeats were flushed.
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := putJob(ctx, js, "hostile-job"); err != nil {
		return err
	}
	if err := putSchedule(ctx, js, "hostile-per-pc", `{"id":"hostile-per-pc","when":{"per_pc":"once"},"job_id":"hostile-job","target":{"all":true},"tz":"utc"}`); err != nil {
		return err
	}
	r.Do("then put a per_pc \"once\" schedule targeting all alive PCs, and listened on commands.>")
	reached := 0
	for t := time.Now(); time.Since(t) < 30*time.Second; {
		reached = 0
		cmdMu.Lock()
		for i := range goodPCs {
			if commands["commands.pc."+g.PC(i)] > 0 {
				reached++
			}
		}
		cmdMu.Unlock()
		if reached == goodPCs {
			break
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	cmdMu.Lock()
	var odd []string
	for s := range commands {
		pc := strings.TrimPrefix(s, "commands.pc.")
		if !strings.HasPrefix(pc, "PC-1") {
			odd = append(odd, oneLine(fmt.Sprintf("%q", s), 60))
		}
	}
	cmdMu.Unlock()
	r.Check(reached == goodPCs, "the per_pc schedule fired at all %d good PCs (%d reached)", goodPCs, reached)
	r.Check(len(odd) == 0, "no command went to a hostile pc_id (%d odd subjects%s)", len(odd), suffix(odd))

	sleep(ctx, 3*time.Second)
	stopMem()
	memWG.Wait()
	end, _ := w.Proc.Mem()
	rd, rdBody := e.readyz(ctx, w.URL)
	r.Check(rd.Status == http.StatusOK && rdBody.Checks["nats"] == "ok" && !w.Proc.Exited(), "the worker is alive and its NATS connection up afterwards (/readyz %d, nats %q)", rd.Status, rdBody.Checks["nats"])
	ctl := w.LogGrep(3, "maximum control line")
	ctlServer := ns.Proc.LogGrep(3, "maximum control line")
	r.Check(len(ctl) == 0 && len(ctlServer) == 0, "no \"maximum control line\" in the worker's log (%d) nor in nats-server's (%d)", len(ctl), len(ctlServer))
	r.Quote("worker log: maximum control line", ctl)
	r.Quote("nats-server log: maximum control line", ctlServer)
	reconnects := w.LogGrep(3, "NATS disconnected")
	r.Quote("worker log: disconnects", reconnects)
	m, err := e.scrape(ctx, w.URL)
	if err != nil {
		return err
	}
	jsStreams := map[string]bool{kanade.StreamResults: true, kanade.StreamEvents: true, kanade.StreamAudit: true}
	decode := m.Sum("kanade_projector_decode_failures_total", func(l map[string]string) bool { return jsStreams[l["stream"]] })
	r.Check(int(decode) == hostileAcked, "decode failures over RESULTS, EVENTS and AUDIT (%.0f) equal the hostile JetStream messages sent (%d)", decode, hostileAcked)
	// The scheduler's own audit event of the per_pc firing is not counted.
	audits, err := queryInt(ctx, db, `SELECT COUNT(*) FROM audit_log WHERE actor <> 'scheduler'`)
	if err != nil {
		return err
	}
	r.Measure("audit_log rows: %d (good audit events sent: %d)", audits, h/20)
	r.Check(audits == int64(h/20), "every good audit event landed, and no hostile one (%d rows, want %d)", audits, h/20)
	growth := peak.RSS - base.RSS
	const bound = 160 << 20
	r.Measure("worker RSS: %d MiB after the warm-up (baseline), peak %d MiB during the hostile load, %d MiB at the end; VmHWM %d MiB", base.RSS>>20, peak.RSS>>20, end.RSS>>20, end.HWM>>20)
	r.Check(growth <= bound, "worker RSS stays flat: peak − baseline = %d MiB ≤ %d MiB", growth>>20, bound>>20)
	r.Note("RSS bound: the projector may buffer up to KANADE_PROJECTOR_MAX_BYTES (default 64 MiB) of fetched messages; the two 5 MB payloads add their raw bytes and a failed decode; EVENTS is read by two consumers since the notification-acks projection (started and acks each fetch the hostile events and the 5 MB payloads), so 160 MiB over the warmed-up baseline allows for that plus Go heap slack (131 MiB measured once the acks and obs projections were merged, 96 MiB the bound before), while a per-message leak of the 10k hostile messages (≥ 3 KB each for the long-id kinds) or buffering the whole stream would exceed it.")
	r.Figure("%d hostile + %d good; decode failures %.0f/%d; %d missing; RSS +%d MiB", hostileAcked, goodAcked, decode, hostileAcked, len(d.Missing), growth>>20)
	return nil
}

// putJob stores a minimal Manifest in KV jobs.
func putJob(ctx context.Context, js jetstream.JetStream, id string) error {
	kv, err := js.KeyValue(ctx, kanade.BucketJobs)
	if err != nil {
		return fmt.Errorf("KV %s: %w", kanade.BucketJobs, err)
	}
	m := kanade.Manifest{ID: id, Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "true", Timeout: "60s"}}
	if _, err := kv.Put(ctx, id, mustJSON(m)); err != nil {
		return fmt.Errorf("put job %s: %w", id, err)
	}
	return nil
}

// putSchedule stores a Schedule JSON in KV schedules.
func putSchedule(ctx context.Context, js jetstream.JetStream, id, body string) error {
	kv, err := js.KeyValue(ctx, kanade.BucketSchedules)
	if err != nil {
		return fmt.Errorf("KV %s: %w", kanade.BucketSchedules, err)
	}
	if _, err := kv.Put(ctx, id, []byte(body)); err != nil {
		return fmt.Errorf("put schedule %s: %w", id, err)
	}
	return nil
}
