package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	natsgo "github.com/nats-io/nats.go"
)

// TestAgentTrafficReachesTheAPI is the whole path a real agent's messages
// take: raw wire-format JSON (as in wire.md, not built from our Go types)
// published to an external NATS server, projected by the worker the shell
// runs in-process, and read back through the authenticated HTTP API.
func TestAgentTrafficReachesTheAPI(t *testing.T) {
	ctx := context.Background()
	nats := bustest.Start(t) // the shell bootstraps the streams itself
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = nats.URL
	s := start(t, env, "-addr", "127.0.0.1:0")
	s.waitBootstrapped(t)

	now := time.Now().UTC()
	at := func(d time.Duration) string { return now.Add(d).Format("2006-01-02T15:04:05.000Z07:00") }
	kv, err := nats.JS.KeyValue(ctx, kanade.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "inventory-hw", []byte(`{"id":"inventory-hw","version":"3","execute":{"shell":"powershell","script":"Get-CimInstance Win32_ComputerSystem","timeout":"10m"}}`)); err != nil {
		t.Fatal(err)
	}
	core := []struct{ subject, data string }{
		{"heartbeat.PC-0123", fmt.Sprintf(`{"pc_id":"PC-0123","at":%q,"agent_version":"0.45.3","hostname":"PC-0123",
			"os_family":"windows","agent_cpu_pct":0.4,"agent_rss_bytes":45056000,"last_logon_user":"CORP\\taro"}`, at(-time.Second))},
		{"audit.operator.exec.PC-0123", fmt.Sprintf(`{"actor":"operator","action":"exec","target":"PC-0123","payload":{"job":"inventory-hw"},"occurred_at":%q}`, at(-time.Minute))},
	}
	stream := []struct{ subject, data string }{
		{"events.started.1d2e3f40.PC-0123", fmt.Sprintf(`{"result_id":"0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11","request_id":"6f1c9e2a","exec_id":"1d2e3f40",
			"pc_id":"PC-0123","started_at":%q,"manifest_id":"inventory-hw","version":"3"}`, at(-10*time.Second))},
		{"results.6f1c9e2a", fmt.Sprintf(`{"result_id":"0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11","request_id":"6f1c9e2a","exec_id":"1d2e3f40",
			"pc_id":"PC-0123","exit_code":0,"stdout":"ok","stderr":"","started_at":%q,"finished_at":%q,"manifest_id":"inventory-hw"}`,
			at(-10*time.Second), at(-10*time.Second+4630*time.Millisecond))},
		{"results.77aa", `{"result_id":"","request_id":"77aa","pc_id":"PC-0456","exit_code":2,"stdout":"","stderr":"boom",
			"started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01Z"}`},
		{"results.bad", `{"request_id":"x","pc_id":` /* malformed: must be skipped */},
	}
	for _, m := range core {
		if err := nats.NC.Publish(m.subject, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range stream {
		if _, err := nats.JS.Publish(ctx, m.subject, []byte(m.data)); err != nil {
			t.Fatalf("publish %s: %v", m.subject, err)
		}
	}

	// eventually polls an API path until check accepts the decoded body (an
	// array body is passed as {"items": [...]}).
	eventually := func(path string, check func(body map[string]any) string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, raw := get(t, s.base+strings.TrimPrefix(path, "/"), s.token)
			why := fmt.Sprintf("status %d: %s", code, raw)
			if code == 200 {
				var v any
				if err := json.Unmarshal([]byte(raw), &v); err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				body, ok := v.(map[string]any)
				if !ok {
					body = map[string]any{"items": v}
				}
				if why = check(body); why == "" {
					return body
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %s", path, why)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	items := func(b map[string]any) []any { v, _ := b["items"].([]any); return v }
	want := func(n int) func(map[string]any) string {
		return func(b map[string]any) string {
			if got := len(items(b)); got != n {
				return fmt.Sprintf("%d items, want %d: %v", got, n, b)
			}
			return ""
		}
	}

	// Heartbeats are core NATS and lossy by design: one sent before the
	// worker's subscription was up is gone, so beat like an agent does
	// until the roster shows it.
	agents := eventually("/api/agents", func(b map[string]any) string {
		if why := want(1)(b); why != "" {
			if err := nats.NC.Publish(core[0].subject, []byte(core[0].data)); err != nil {
				t.Fatal(err)
			}
			return why
		}
		return ""
	})
	a := items(agents)[0].(map[string]any)
	if a["pc_id"] != "PC-0123" || a["last_logon_user"] != `CORP\taro` || a["online"] != true {
		t.Errorf("agent = %v", a)
	}
	eventually("/api/results", want(2))
	run := eventually("/api/results/0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11", func(b map[string]any) string {
		if b["finished_at"] == nil {
			return "not finished yet"
		}
		return ""
	})
	if run["stdout"] != "ok" || run["job_id"] != "inventory-hw" || run["version"] != "3" || run["duration_ms"] != 4630.0 {
		t.Errorf("run = %v", run)
	}
	old := eventually("/api/results?pc_id=PC-0456", want(1))
	if id, _ := items(old)[0].(map[string]any)["result_id"].(string); id == "" {
		t.Errorf("a result without result_id got no derived id: %v", old)
	}
	audit := eventually("/api/audit", want(1))
	if e := items(audit)[0].(map[string]any); e["actor"] != "operator" || e["target"] != "PC-0123" {
		t.Errorf("audit = %v", e)
	}
	eventually("/api/health/scan_durations", func(b map[string]any) string {
		for _, j := range items(b) {
			if j := j.(map[string]any); j["job_id"] == "inventory-hw" && j["count"] == 1.0 && j["max_ms"] == 4630.0 {
				return ""
			}
		}
		return fmt.Sprintf("no inventory-hw entry: %v", b)
	})
	eventually("/api/health/fleet", func(b map[string]any) string {
		agents, _ := b["agents"].(map[string]any)
		if agents["known"] != 1.0 || agents["active"] != 1.0 {
			return fmt.Sprintf("agents %v", agents)
		}
		return ""
	})
	// The malformed result was skipped and counted, not retried forever.
	if code, m := get(t, s.base+"metrics", s.token); code != 200 ||
		!strings.Contains(m, `kanade_projector_decode_failures_total{stream="RESULTS"} 1`) {
		t.Errorf("GET /metrics = %d; no decode failure counted for RESULTS", code)
	}
	s.stop(t)
}

// TestSchedulerRunsInTheShell puts a job and a per_pc schedule into KV the
// way the CLI does; the in-process worker dispatches it to the PC and the
// execution shows in the API.
func TestSchedulerRunsInTheShell(t *testing.T) {
	ctx := context.Background()
	nats := bustest.Start(t)
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = nats.URL
	cmds := make(chan *natsgo.Msg, 16)
	sub, err := nats.NC.ChanSubscribe("commands.>", cmds)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	s := start(t, env, "-addr", "127.0.0.1:0")
	s.waitBootstrapped(t)
	put := func(bucket, key, value string) {
		kv, err := nats.JS.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	put(kanade.BucketJobs, "inventory-hw", `{"id":"inventory-hw","version":"3","execute":{"shell":"sh","script":"uname -a","timeout":"5m"}}`)
	put(kanade.BucketSchedules, "inv-once", `{"id":"inv-once","when":{"per_pc":"once"},"job_id":"inventory-hw","target":{"pcs":["PC-0123"]}}`)
	var cmd kanade.Command
	select {
	case m := <-cmds:
		if m.Subject != "commands.pc.PC-0123" {
			t.Fatalf("command on %s, want commands.pc.PC-0123", m.Subject)
		}
		if err := json.Unmarshal(m.Data, &cmd); err != nil || cmd.ID != "inventory-hw" || cmd.Version != "3" || cmd.TimeoutSecs != 300 {
			t.Fatalf("command %s: %+v %v", m.Data, cmd, err)
		}
	case <-time.After(70 * time.Second): // the reconcile runs at the first tick, then once a minute
		t.Fatal("no command dispatched")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, s.base+"api/executions/"+cmd.ExecID, s.token)
		if code == 200 && strings.Contains(body, `"initiated_by":"scheduler"`) && strings.Contains(body, `"target_count":1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/executions/%s = %d %s", cmd.ExecID, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The executions row is committed before the commands go out, so the
	// firing is counted a moment after the row is visible.
	for {
		code, m := get(t, s.base+"metrics", s.token)
		if code == 200 && strings.Contains(m, `kanade_scheduler_firings_total{kind="per_pc"} 1`) &&
			strings.Contains(m, `kanade_scheduler_missed_firings_total 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics = %d; want the scheduler's firing counted", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop(t)
}
