package kanade

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Performance samples and the observability timeline (observe.md §1–§2):
// the payloads agents publish on host_perf.{pc_id}, process_perf.{pc_id}
// (core NATS, lossy by design) and obs.{pc_id} (stream OBS_EVENTS), and the
// bounds the backend holds them to. Agents and dashboards depend on every
// name here.

// Subjects of the samples (core NATS, no stream) and of the obs events.
const (
	SubjectHostPerf    = "host_perf.>"
	SubjectProcessPerf = "process_perf.>"
	SubjectObsAll      = "obs.>"
	StreamObsEvents    = "OBS_EVENTS"
)

// SubjectHostPerfOf and SubjectProcessPerfOf are where one PC publishes its
// samples.
func SubjectHostPerfOf(pcID string) string    { return "host_perf." + pcID }
func SubjectProcessPerfOf(pcID string) string { return "process_perf." + pcID }

// Bounds of the ingest port rules (§1.4, §2.3): a message past them is
// dropped and counted, never stored.
const (
	MaxPerfPayloadBytes = 64 * 1024
	// MaxProcessesStored is how many entries of one processes array are
	// stored (the first ones: agents sort by CPU).
	MaxProcessesStored = 500
	// MaxProcessNameBytes is where a process name is cut.
	MaxProcessNameBytes = 260
	MaxObsKindBytes     = 64
	MaxObsSourceBytes   = 128
	MaxObsRecordIDBytes = 256
	MaxObsPayloadBytes  = 64 * 1024
)

// HostPerf is one whole-host sample (§1.1). Every metric is optional: nil
// means the agent could not read it, stored as NULL.
type HostPerf struct {
	PcID                   string    `json:"pc_id"`
	At                     Timestamp `json:"at"`
	CPUPct                 *float64  `json:"cpu_pct,omitempty"`
	CPUCount               *int64    `json:"cpu_count,omitempty"`
	MemUsedBytes           *int64    `json:"mem_used_bytes,omitempty"`
	MemTotalBytes          *int64    `json:"mem_total_bytes,omitempty"`
	SwapUsedBytes          *int64    `json:"swap_used_bytes,omitempty"`
	SwapTotalBytes         *int64    `json:"swap_total_bytes,omitempty"`
	DiskReadBytesPerSec    *float64  `json:"disk_read_bytes_per_sec,omitempty"`
	DiskWrittenBytesPerSec *float64  `json:"disk_written_bytes_per_sec,omitempty"`
	NetRxBytesPerSec       *float64  `json:"net_rx_bytes_per_sec,omitempty"`
	NetTxBytesPerSec       *float64  `json:"net_tx_bytes_per_sec,omitempty"`
}

// Validate applies the ingest rules of §1.4: a pc_id the fleet accepts and
// an instant (the years are checked by Timestamp).
func (h *HostPerf) Validate() error {
	if !ValidPCID(h.PcID) {
		return &FieldError{Field: "pc_id", Rule: rulePCID, Excerpt: Clip(h.PcID)}
	}
	if h.At.IsZero() {
		return &FieldError{Field: "at", Rule: "is required"}
	}
	return nil
}

// ProcessPerf is one tick of a PC's top processes (§1.2).
type ProcessPerf struct {
	PcID      string          `json:"pc_id"`
	At        Timestamp       `json:"at"`
	Processes []ProcessSample `json:"processes"`
}

// ProcessSample is one process of a ProcessPerf tick. CPUPct is percent of
// one core.
type ProcessSample struct {
	PID                    *int64   `json:"pid"`
	Name                   *string  `json:"name"`
	CPUPct                 *float64 `json:"cpu_pct"`
	RSSBytes               *int64   `json:"rss_bytes"`
	DiskReadBytesPerSec    *float64 `json:"disk_read_bytes_per_sec,omitempty"`
	DiskWrittenBytesPerSec *float64 `json:"disk_written_bytes_per_sec,omitempty"`
}

// Validate applies §1.2 and §1.4: pc_id, at, and every entry's required
// fields. It also applies the storing rules that change the message rather
// than drop it: only the first MaxProcessesStored entries are kept, and
// names are cut at MaxProcessNameBytes on a character boundary.
func (p *ProcessPerf) Validate() error {
	if !ValidPCID(p.PcID) {
		return &FieldError{Field: "pc_id", Rule: rulePCID, Excerpt: Clip(p.PcID)}
	}
	if p.At.IsZero() {
		return &FieldError{Field: "at", Rule: "is required"}
	}
	if len(p.Processes) > MaxProcessesStored {
		p.Processes = p.Processes[:MaxProcessesStored]
	}
	for i := range p.Processes {
		e := &p.Processes[i]
		field := func(f string) string { return fmt.Sprintf("processes[%d].%s", i, f) }
		switch {
		case e.PID == nil || *e.PID < 0:
			return &FieldError{Field: field("pid"), Rule: "is required, an integer >= 0"}
		case e.Name == nil:
			return &FieldError{Field: field("name"), Rule: "is required"}
		case e.CPUPct == nil:
			return &FieldError{Field: field("cpu_pct"), Rule: "is required"}
		case e.RSSBytes == nil:
			return &FieldError{Field: field("rss_bytes"), Rule: "is required"}
		}
		if !utf8.ValidString(*e.Name) {
			return &FieldError{Field: field("name"), Rule: "must be UTF-8"}
		}
		if len(*e.Name) > MaxProcessNameBytes {
			cut := cutUTF8(*e.Name, MaxProcessNameBytes)
			e.Name = &cut
		}
	}
	return nil
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Validate applies the ingest bounds of §2.3 to an ObsEvent.
func (e *ObsEvent) Validate() error {
	switch {
	case !ValidPCID(e.PcID):
		return &FieldError{Field: "pc_id", Rule: rulePCID, Excerpt: Clip(e.PcID)}
	case e.At.IsZero():
		return &FieldError{Field: "at", Rule: "is required"}
	case e.Kind == "" || !ValidText(e.Kind, MaxObsKindBytes):
		return &FieldError{Field: "kind", Rule: "must be 1–64 bytes of UTF-8 without control characters", Excerpt: Clip(e.Kind)}
	case e.Source == "" || !ValidText(e.Source, MaxObsSourceBytes):
		return &FieldError{Field: "source", Rule: "must be 1–128 bytes of UTF-8 without control characters", Excerpt: Clip(e.Source)}
	case e.EventRecordID != nil && !ValidText(*e.EventRecordID, MaxObsRecordIDBytes):
		return &FieldError{Field: "event_record_id", Rule: "must be at most 256 bytes of UTF-8 without control characters",
			Excerpt: Clip(*e.EventRecordID)}
	case len(e.Payload) > MaxObsPayloadBytes:
		return &FieldError{Field: "payload", Rule: "must be at most 64 KiB of JSON"}
	}
	return nil
}

// ErrPayloadTooLarge is the drop reason of a sample over MaxPerfPayloadBytes.
var ErrPayloadTooLarge = errors.New("payload over 64 KiB")

// PerfPoint is one bucket of a per-PC host series (§1.6): the AVG of each
// metric's non-NULL values, null when there were none. Every key is always
// present.
type PerfPoint struct {
	At                     Timestamp `json:"at"`
	CPUPct                 *float64  `json:"cpu_pct"`
	MemUsedBytes           *float64  `json:"mem_used_bytes"`
	MemTotalBytes          *float64  `json:"mem_total_bytes"`
	SwapUsedBytes          *float64  `json:"swap_used_bytes"`
	SwapTotalBytes         *float64  `json:"swap_total_bytes"`
	DiskReadBytesPerSec    *float64  `json:"disk_read_bytes_per_sec"`
	DiskWrittenBytesPerSec *float64  `json:"disk_written_bytes_per_sec"`
	NetRxBytesPerSec       *float64  `json:"net_rx_bytes_per_sec"`
	NetTxBytesPerSec       *float64  `json:"net_tx_bytes_per_sec"`
}

// Metrics returns pointers to the nine metrics in storage column order.
func (p *PerfPoint) Metrics() [9]**float64 {
	return [9]**float64{&p.CPUPct, &p.MemUsedBytes, &p.MemTotalBytes, &p.SwapUsedBytes, &p.SwapTotalBytes,
		&p.DiskReadBytesPerSec, &p.DiskWrittenBytesPerSec, &p.NetRxBytesPerSec, &p.NetTxBytesPerSec}
}

// FleetPoint is one bucket of GET /api/perf/fleet.
type FleetPoint struct {
	At    Timestamp `json:"at"`
	Value *float64  `json:"value"`
}

// TopPerfRow is one PC of GET /api/perf/top.
type TopPerfRow struct {
	PcID     string  `json:"pc_id"`
	Hostname *string `json:"hostname"`
	Value    float64 `json:"value"`
}

// InvestigationRow is one PC of GET /api/perf/active-investigations.
type InvestigationRow struct {
	PcID     string    `json:"pc_id"`
	Hostname *string   `json:"hostname"`
	LatestAt Timestamp `json:"latest_at"`
}

// ProcessRow is one process of GET /api/agents/{pc_id}/processes.
type ProcessRow struct {
	PID                    int64    `json:"pid"`
	Name                   string   `json:"name"`
	CPUPct                 float64  `json:"cpu_pct"`
	RSSBytes               int64    `json:"rss_bytes"`
	DiskReadBytesPerSec    *float64 `json:"disk_read_bytes_per_sec"`
	DiskWrittenBytesPerSec *float64 `json:"disk_written_bytes_per_sec"`
}

// TimelinePoint is one bucket of the process timeline: the value of each
// label that had one (a missing key means 0 for stacking).
type TimelinePoint struct {
	At     Timestamp          `json:"at"`
	Values map[string]float64 `json:"values"`
}

// ObsEventRow is one stored ObsEvent as GET /api/obs_events serves it.
type ObsEventRow struct {
	ID            int64           `json:"id"`
	PcID          string          `json:"pc_id"`
	At            Timestamp       `json:"at"`
	Kind          string          `json:"kind"`
	Source        string          `json:"source"`
	EventRecordID *string         `json:"event_record_id"`
	Payload       json.RawMessage `json:"payload" doc:"the event's JSON payload (null allowed)"`
}
