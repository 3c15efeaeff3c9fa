package sim_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/nats-io/nats.go"
)

// TestFleetSendsTelemetry: the simulated agents send a host sample per
// agent per PerfInterval, process ticks from the agents in investigation
// mode, and obs events into OBS_EVENTS, all valid by the ingest rules.
func TestFleetSendsTelemetry(t *testing.T) {
	f := startFleet(t, sim.Config{Agents: 60, Seed: 5})
	hosts := make(chan []byte, 1024)
	procs := make(chan []byte, 1024)
	for subject, ch := range map[string]chan []byte{kanade.SubjectHostPerf: hosts, kanade.SubjectProcessPerf: procs} {
		sub, err := f.srv.NC.Subscribe(subject, func(m *nats.Msg) { ch <- m.Data })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := f.srv.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	f.clock.add(61 * time.Second)
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < 60 {
		select {
		case data := <-hosts:
			var h kanade.HostPerf
			if err := json.Unmarshal(data, &h); err != nil || h.Validate() != nil || h.CPUPct == nil {
				t.Fatalf("host sample %s: %v", data, err)
			}
			seen[h.PcID] = true
		case <-deadline:
			t.Fatalf("host samples from %d of 60 agents", len(seen))
		}
	}
	select {
	case data := <-procs:
		var p kanade.ProcessPerf
		if err := json.Unmarshal(data, &p); err != nil || p.Validate() != nil || len(p.Processes) == 0 {
			t.Fatalf("process tick %s: %v", data, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no process tick")
	}
	st, err := f.srv.JS.Stream(context.Background(), kanade.StreamObsEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n < 60 {
		t.Fatalf("OBS_EVENTS holds %d events, want at least every agent's agent_started", n)
	}
}
