package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/kanade-fleet/backend"
)

// Performance samples and obs events (observe.md §1–§2), so the dashboard's
// charts and timeline have data: every agent publishes a host sample every
// PerfInterval (core NATS), agents in investigation mode (effective config
// process_perf_enabled, not expired; and every 50th agent in the demo, so
// the process views are never empty) a process tick at the same cadence,
// and each agent an agent_started event when it starts and now and then a
// logon or logoff with a record id (JetStream, stream OBS_EVENTS).
//
// They draw from a generator of their own, so the heartbeats and runs of a
// seeded fleet stay what they were before samples existed.

// perfGen is the state of the telemetry: its own random source and each
// agent's slow-moving load, so charts show trends instead of noise.
type perfGen struct {
	rng  *rand.Rand
	load []float64
	// record is each agent's next Windows EventRecordID.
	record []uint64
}

func newPerfGen(seed uint64, agents int) *perfGen {
	g := &perfGen{rng: rand.New(rand.NewPCG(seed^0x70657266, seed)), load: make([]float64, agents), record: make([]uint64, agents)}
	for i := range g.load {
		g.load[i] = 5 + g.rng.Float64()*30
		g.record[i] = 100_000 + uint64(g.rng.IntN(1_000_000))
	}
	return g
}

// HostPerf is agent i's host sample at `at`.
func (f *Fleet) HostPerf(i int, at time.Time) kanade.HostPerf {
	g := f.perf
	l := g.load[i] + (g.rng.Float64()-0.5)*6
	l = math.Min(math.Max(l, 1), 99)
	g.load[i] = l
	cores := int64([]int{4, 8, 8, 16}[i%4])
	total := int64(8+8*(i%3)) << 30
	return kanade.HostPerf{
		PcID: f.PcID(i), At: kanade.Timestamp{Time: at.UTC()},
		CPUPct: ptr(math.Round(l*10) / 10), CPUCount: &cores,
		MemUsedBytes: ptr(int64(float64(total) * (0.3 + l/200))), MemTotalBytes: &total,
		DiskReadBytesPerSec:    ptr(math.Round(g.rng.ExpFloat64() * 512 * 1024)),
		DiskWrittenBytesPerSec: ptr(math.Round(g.rng.ExpFloat64() * 256 * 1024)),
		NetRxBytesPerSec:       ptr(math.Round(g.rng.ExpFloat64() * 128 * 1024)),
		NetTxBytesPerSec:       ptr(math.Round(g.rng.ExpFloat64() * 64 * 1024)),
	}
}

var processNames = []string{"chrome.exe", "MsMpEng.exe", "Teams.exe", "OUTLOOK.EXE", "explorer.exe", "svchost.exe",
	"excel.exe", "OneDrive.exe", "kanade-agent.exe", "SearchIndexer.exe", "dwm.exe", "winword.exe"}

// ProcessPerf is agent i's process tick at `at`: its top processes by CPU.
func (f *Fleet) ProcessPerf(i int, at time.Time, topN int) kanade.ProcessPerf {
	g := f.perf
	p := kanade.ProcessPerf{PcID: f.PcID(i), At: kanade.Timestamp{Time: at.UTC()}}
	for j, name := range processNames[:min(topN, len(processNames))] {
		cpu := math.Round(g.rng.ExpFloat64()*g.load[i]/float64(j+1)*10) / 10
		p.Processes = append(p.Processes, kanade.ProcessSample{PID: ptr(int64(1000 + 4*j + i%4)), Name: ptr(name),
			CPUPct: &cpu, RSSBytes: ptr(int64(50+g.rng.IntN(500)) << 20),
			DiskReadBytesPerSec: ptr(math.Round(g.rng.ExpFloat64() * 64 * 1024))})
	}
	// Sorted by CPU descending, as agents send them.
	for a := 1; a < len(p.Processes); a++ {
		for b := a; b > 0 && *p.Processes[b].CPUPct > *p.Processes[b-1].CPUPct; b-- {
			p.Processes[b], p.Processes[b-1] = p.Processes[b-1], p.Processes[b]
		}
	}
	return p
}

// ObsEvent is one of agent i's timeline events at `at`: kind "" picks a
// logon or logoff from the Security log.
func (f *Fleet) ObsEvent(i int, at time.Time, kind string) kanade.ObsEvent {
	g := f.perf
	if kind == kanade.KindAgentStarted {
		return kanade.ObsEvent{PcID: f.PcID(i), At: kanade.Timestamp{Time: at.UTC()}, Kind: kind, Source: "agent:internal",
			Payload: mustJSON(map[string]string{"version": f.version(i)})}
	}
	kind = []string{"logon", "logon", "logoff"}[g.rng.IntN(3)]
	g.record[i]++
	id := fmt.Sprint(g.record[i])
	return kanade.ObsEvent{PcID: f.PcID(i), At: kanade.Timestamp{Time: at.UTC()}, Kind: kind, Source: "winlog:Security",
		EventRecordID: &id, Payload: mustJSON(map[string]any{"user": fmt.Sprintf(`CORP\user%d`, i), "logon_type": []int{2, 2, 3, 10}[g.rng.IntN(4)]})}
}

// HostPerfMessage, ProcessPerfMessage and ObsMessage wrap them for NATS.
func HostPerfMessage(h kanade.HostPerf) Message {
	return Message{Subject: kanade.SubjectHostPerfOf(h.PcID), Data: mustJSON(h)}
}

func ProcessPerfMessage(p kanade.ProcessPerf) Message {
	return Message{Subject: kanade.SubjectProcessPerfOf(p.PcID), Data: mustJSON(p)}
}

func ObsMessage(e kanade.ObsEvent) Message {
	return Message{Subject: kanade.SubjectObs(e.PcID), Data: mustJSON(e), JetStream: true}
}

// investigating reports whether agent i sends process ticks at now.
func (a *agents) investigating(i int, now time.Time) bool {
	if i%50 == 0 {
		return true
	}
	eff := a.cfgs.layers.Resolve(a.f.PcID(i), a.f.groups.of[i], true).Effective
	if !eff.ProcessPerfEnabled {
		return false
	}
	if eff.ProcessPerfExpiresAt == nil {
		return true
	}
	exp, err := time.Parse(time.RFC3339, *eff.ProcessPerfExpiresAt)
	return err == nil && now.Before(exp)
}

// telemetry publishes what is due by now: host samples (and process ticks)
// every PerfInterval per agent, spread over the interval, and a logon or
// logoff about every ObsInterval per agent.
type telemetry struct {
	nextPerf, nextObs []time.Time
}

func newTelemetry(f *Fleet, now time.Time) *telemetry {
	t := &telemetry{nextPerf: make([]time.Time, f.cfg.Agents), nextObs: make([]time.Time, f.cfg.Agents)}
	for i := range t.nextPerf {
		t.nextPerf[i] = now.Add(time.Duration(f.perf.rng.Int64N(int64(f.cfg.PerfInterval))))
		t.nextObs[i] = now.Add(time.Duration(f.perf.rng.ExpFloat64() * float64(f.cfg.ObsInterval)))
	}
	return t
}

// started is every agent's agent_started event at now.
func (t *telemetry) started(f *Fleet, now time.Time) []Message {
	out := make([]Message, 0, f.cfg.Agents)
	for i := range f.cfg.Agents {
		out = append(out, ObsMessage(f.ObsEvent(i, now, kanade.KindAgentStarted)))
	}
	return out
}

func (t *telemetry) step(a *agents, now time.Time) []Message {
	f := a.f
	var out []Message
	for i := range t.nextPerf {
		if !now.Before(t.nextPerf[i]) {
			out = append(out, HostPerfMessage(f.HostPerf(i, now)))
			if a.investigating(i, now) {
				out = append(out, ProcessPerfMessage(f.ProcessPerf(i, now, 20)))
			}
			t.nextPerf[i] = t.nextPerf[i].Add(f.cfg.PerfInterval)
			if t.nextPerf[i].Before(now) {
				t.nextPerf[i] = now.Add(f.cfg.PerfInterval)
			}
		}
		if !now.Before(t.nextObs[i]) {
			out = append(out, ObsMessage(f.ObsEvent(i, now, "")))
			t.nextObs[i] = now.Add(time.Duration((0.5 + f.perf.rng.ExpFloat64()) * float64(f.cfg.ObsInterval)))
		}
	}
	return out
}
