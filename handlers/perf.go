package handlers

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// Performance samples and the observability timeline (observe.md §1–§2).
// Every query parameter arrives as text and is parsed here, so a value that
// does not parse as its type is a 400 naming the parameter (observe.md
// §0.1), not huma's 422. Every parameter is bounded before SQL runs: at
// most maxBuckets buckets per series, windows within the retention, lists
// and texts with byte caps; the only identifiers that reach SQL text come
// from closed lists (storage.PerfMetrics, storage.ProcessMetrics).

// maxBuckets is the bucket cap of every series (§1.6): exactly this many is
// allowed.
const maxBuckets = 10_000

// maxTopWindow is the port's cap on /api/perf/top's window (§1.8).
const maxTopWindow = 31 * 24 * time.Hour

// activeWindow is "in investigation mode now" (§1.9).
const activeWindow = 5 * time.Minute

// readPCID is the §0.3 rule of a pc_id that only reaches SQL: 1–128 bytes of
// UTF-8 without control characters.
func readPCID(loc, v string) error {
	if !kanade.ValidID(v) {
		msg := "must be 1–128 bytes of UTF-8 without control characters"
		return huma.Error400BadRequest(loc+" "+msg, &huma.ErrorDetail{Location: loc, Message: msg, Value: kanade.Clip(v)})
	}
	return nil
}

func timeParam(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := kanade.ParseTime(v)
	if err != nil {
		return nil, badParam(name, v, "must be an RFC 3339 timestamp with a year in 0000–9999")
	}
	return &t, nil
}

// durationParam parses a humantime duration (§0.5) truncated to whole
// seconds; 0 is refused.
func durationParam(name, v string, def time.Duration) (int64, error) {
	if v == "" {
		return int64(def / time.Second), nil
	}
	d, err := kanade.ParseDuration(v)
	if err != nil {
		return 0, badParam(name, v, "must be a duration such as 30s, 5m, 1h or 2d")
	}
	s := int64(d / time.Second)
	if s <= 0 {
		return 0, badParam(name, v, "must be at least one second")
	}
	return s, nil
}

// seriesWindow reads from/to/step with their defaults (to now, from to−1h)
// and the 400s of §1.6.
func (srv *Server) seriesWindow(fromS, toS, stepS string, defStep time.Duration) (from, to time.Time, step int64, err error) {
	step, err = durationParam("step", stepS, defStep)
	if err != nil {
		return
	}
	f, err := timeParam("from", fromS)
	if err != nil {
		return
	}
	t, err := timeParam("to", toS)
	if err != nil {
		return
	}
	to = srv.cfg.Clock().UTC()
	if t != nil {
		to = *t
	}
	from = to.Add(-time.Hour)
	if f != nil {
		from = *f
	}
	if !from.Before(to) {
		err = badParam("from", fromS, "must be before to")
		return
	}
	// ⌊(to − from) / step⌋ to the nanosecond; a window over 200 years
	// (where a Duration saturates) is counted in whole seconds, far over
	// the cap either way.
	buckets := int64(to.Sub(from) / (time.Duration(step) * time.Second))
	if to.Year()-from.Year() > 200 {
		buckets = (to.Unix() - from.Unix()) / step
	}
	if buckets > maxBuckets {
		err = badParam("step", stepS, fmt.Sprintf("gives more than %d buckets over from–to; use a larger step or a shorter window", maxBuckets))
	}
	return
}

// metricAliases are the accepted names of the host metrics (§1.7).
var metricAliases = map[string]string{
	"cpu_pct": "cpu_pct", "cpu": "cpu_pct",
	"mem_used_bytes": "mem_used_bytes", "mem": "mem_used_bytes", "memory": "mem_used_bytes",
	"disk_read_bytes_per_sec": "disk_read_bytes_per_sec", "disk_read": "disk_read_bytes_per_sec",
	"disk_written_bytes_per_sec": "disk_written_bytes_per_sec", "disk_written": "disk_written_bytes_per_sec",
	"net_rx_bytes_per_sec": "net_rx_bytes_per_sec", "net_rx": "net_rx_bytes_per_sec",
	"net_tx_bytes_per_sec": "net_tx_bytes_per_sec", "net_tx": "net_tx_bytes_per_sec",
}

// processAliases are the accepted names of the process metrics (§1.11).
var processAliases = map[string]string{
	"cpu_pct": "cpu_pct", "cpu": "cpu_pct",
	"rss_bytes": "rss_bytes", "rss": "rss_bytes", "mem": "rss_bytes", "memory": "rss_bytes",
	"disk_read_bytes_per_sec": "disk_read_bytes_per_sec", "disk_read": "disk_read_bytes_per_sec",
	"disk_written_bytes_per_sec": "disk_written_bytes_per_sec", "disk_written": "disk_written_bytes_per_sec",
}

func metricParam(v string, aliases map[string]string) (string, error) {
	if v == "" {
		return "cpu_pct", nil
	}
	m, ok := aliases[v]
	if !ok {
		return "", badParam("metric", v, "is not a known metric")
	}
	return m, nil
}

type hostSeriesInput struct {
	PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of UTF-8 without control characters."`
	From string `query:"from" doc:"RFC 3339; default to − 1 h. The window is [from, to)."`
	To   string `query:"to" doc:"RFC 3339; default now."`
	Step string `query:"step" doc:"Bucket width, a duration such as 5m (default 5m, whole seconds); at most 10 000 buckets over the window."`
}

type hostSeries struct {
	PcID        string             `json:"pc_id"`
	From        kanade.Timestamp   `json:"from"`
	To          kanade.Timestamp   `json:"to"`
	StepSeconds int64              `json:"step_seconds"`
	Points      []kanade.PerfPoint `json:"points" nullable:"false"`
}

type fleetSeriesInput struct {
	Metric string `query:"metric" doc:"cpu_pct (default) | cpu, mem_used_bytes | mem | memory, disk_read_bytes_per_sec | disk_read, disk_written_bytes_per_sec | disk_written, net_rx_bytes_per_sec | net_rx, net_tx_bytes_per_sec | net_tx."`
	Agg    string `query:"agg" doc:"avg (default) | mean, or max."`
	From   string `query:"from" doc:"RFC 3339; default to − 1 h. The window is [from, to)."`
	To     string `query:"to" doc:"RFC 3339; default now."`
	Step   string `query:"step" doc:"Bucket width (default 5m); at most 10 000 buckets. A step that is not a multiple of 60 s reads raw samples and is limited to windows of 6 h."`
}

type fleetSeries struct {
	Metric      string              `json:"metric"`
	Agg         string              `json:"agg"`
	From        kanade.Timestamp    `json:"from"`
	To          kanade.Timestamp    `json:"to"`
	StepSeconds int64               `json:"step_seconds"`
	Points      []kanade.FleetPoint `json:"points" nullable:"false"`
}

type topInput struct {
	Metric string `query:"metric" doc:"As /api/perf/fleet (default cpu_pct)."`
	Window string `query:"window" doc:"A duration (default 5m, at most 31d): samples with at > now − window."`
	Limit  string `query:"limit" doc:"Rows, default 5, clamped to 1–50."`
}

type topPerf struct {
	Metric        string              `json:"metric"`
	WindowSeconds int64               `json:"window_seconds"`
	Rows          []kanade.TopPerfRow `json:"rows" nullable:"false"`
}

type investigations struct {
	WindowSeconds int64                     `json:"window_seconds"`
	Rows          []kanade.InvestigationRow `json:"rows" nullable:"false"`
}

type processSnapshot struct {
	PcID      string              `json:"pc_id"`
	LatestAt  *kanade.Timestamp   `json:"latest_at"`
	Processes []kanade.ProcessRow `json:"processes" nullable:"false"`
}

type readPCIDInput struct {
	PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of UTF-8 without control characters."`
}

type timelineInput struct {
	PCID   string `path:"pc_id" doc:"The PC: 1–128 bytes of UTF-8 without control characters."`
	Metric string `query:"metric" doc:"cpu_pct (default) | cpu, rss_bytes | rss | mem | memory, disk_read_bytes_per_sec | disk_read, disk_written_bytes_per_sec | disk_written."`
	From   string `query:"from" doc:"RFC 3339; default to − 1 h."`
	To     string `query:"to" doc:"RFC 3339; default now."`
	Step   string `query:"step" doc:"Bucket width (default 1m); at most 10 000 buckets."`
	Top    string `query:"top" doc:"Names charted, default 5, clamped to 1–20."`
}

type processTimeline struct {
	PcID        string                 `json:"pc_id"`
	Metric      string                 `json:"metric"`
	From        kanade.Timestamp       `json:"from"`
	To          kanade.Timestamp       `json:"to"`
	StepSeconds int64                  `json:"step_seconds"`
	Names       []string               `json:"names" nullable:"false"`
	Points      []kanade.TimelinePoint `json:"points" nullable:"false"`
}

type bodyOutput[T any] struct{ Body T }

func intParam(name, v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, badParam(name, v, "must be an integer")
	}
	return n, nil
}

func (srv *Server) registerPerf(api huma.API) {
	get := func(id, path, summary, desc string) huma.Operation {
		return huma.Operation{OperationID: id, Method: http.MethodGet, Path: path, Summary: summary, Description: desc,
			Tags: []string{"telemetry"}}
	}
	db := srv.cfg.DB
	huma.Register(api, get("agent-perf", "/api/agents/{pc_id}/perf", "A PC's host performance series",
		"One point per epoch-aligned bucket holding a sample, ascending: the AVG of each metric's non-NULL values "+
			"(null when none). 400 for a bad pc_id, timestamp or step, from ≥ to, or more than 10 000 buckets. "+
			"An unknown PC answers points: []."),
		func(ctx context.Context, in *hostSeriesInput) (*bodyOutput[hostSeries], error) {
			if err := readPCID("path.pc_id", in.PCID); err != nil {
				return nil, err
			}
			from, to, step, err := srv.seriesWindow(in.From, in.To, in.Step, 5*time.Minute)
			if err != nil {
				return nil, err
			}
			pts, err := db.HostSeries(ctx, in.PCID, from, to, step)
			if err != nil {
				return nil, srv.dbProblem(ctx, "host perf series", err)
			}
			return &bodyOutput[hostSeries]{hostSeries{PcID: in.PCID, From: kanade.Timestamp{Time: from}, To: kanade.Timestamp{Time: to},
				StepSeconds: step, Points: pts}}, nil
		})
	huma.Register(api, get("fleet-perf", "/api/perf/fleet", "The fleet's host performance series",
		"Per epoch-aligned bucket, the AVG (or MAX) of one metric over every sample of every PC. Served from "+
			"1-minute rollups for steps that are multiples of 60 s. 400 for an unknown metric or agg and as /api/agents/{pc_id}/perf."),
		func(ctx context.Context, in *fleetSeriesInput) (*bodyOutput[fleetSeries], error) {
			metric, err := metricParam(in.Metric, metricAliases)
			if err != nil {
				return nil, err
			}
			var maxAgg bool
			switch in.Agg {
			case "", "avg", "mean":
			case "max":
				maxAgg = true
			default:
				return nil, badParam("agg", in.Agg, "must be avg, mean or max")
			}
			from, to, step, err := srv.seriesWindow(in.From, in.To, in.Step, 5*time.Minute)
			if err != nil {
				return nil, err
			}
			if step%storage.FleetSlot != 0 && to.Sub(from) > storage.MaxRawFleetWindow {
				return nil, badParam("step", in.Step, "that is not a multiple of 60s reads every raw sample; allowed over windows of at most 6h")
			}
			pts, err := db.FleetSeries(ctx, metric, maxAgg, from, to, step)
			if err != nil {
				return nil, srv.dbProblem(ctx, "fleet perf series", err)
			}
			agg := "avg"
			if maxAgg {
				agg = "max"
			}
			return &bodyOutput[fleetSeries]{fleetSeries{Metric: metric, Agg: agg, From: kanade.Timestamp{Time: from},
				To: kanade.Timestamp{Time: to}, StepSeconds: step, Points: pts}}, nil
		})
	huma.Register(api, get("top-perf", "/api/perf/top", "The PCs with the highest average of a metric",
		"Per PC the AVG of the metric over samples with at > now − window, highest first (ties by pc_id); PCs without a "+
			"value are left out. 400 for an unknown metric, a bad or zero window, a window over 31 days, a non-integer limit."),
		func(ctx context.Context, in *topInput) (*bodyOutput[topPerf], error) {
			metric, err := metricParam(in.Metric, metricAliases)
			if err != nil {
				return nil, err
			}
			window, err := durationParam("window", in.Window, 5*time.Minute)
			if err != nil {
				return nil, err
			}
			if time.Duration(window)*time.Second > maxTopWindow || window > int64(maxTopWindow/time.Second) {
				return nil, badParam("window", in.Window, "must be at most 31 days")
			}
			limit, err := intParam("limit", in.Limit, 5)
			if err != nil {
				return nil, err
			}
			limit = min(max(limit, 1), 50)
			rows, err := db.TopPCs(ctx, metric, srv.cfg.Clock().Add(-time.Duration(window)*time.Second), int(limit))
			if err != nil {
				return nil, srv.dbProblem(ctx, "top perf", err)
			}
			return &bodyOutput[topPerf]{topPerf{Metric: metric, WindowSeconds: window, Rows: rows}}, nil
		})
	huma.Register(api, get("active-investigations", "/api/perf/active-investigations", "PCs sending process samples now",
		"PCs with a process sample in the last 5 minutes, newest first (ties by pc_id)."),
		func(ctx context.Context, _ *struct{}) (*bodyOutput[investigations], error) {
			rows, err := db.ActiveInvestigations(ctx, srv.cfg.Clock().Add(-activeWindow))
			if err != nil {
				return nil, srv.dbProblem(ctx, "active investigations", err)
			}
			return &bodyOutput[investigations]{investigations{WindowSeconds: int64(activeWindow / time.Second), Rows: rows}}, nil
		})
	huma.Register(api, get("agent-processes", "/api/agents/{pc_id}/processes", "A PC's newest process tick",
		"Every process of the newest tick stored for the PC, by cpu_pct descending (ties by pid); latest_at null and "+
			"processes [] when there is none. 400 for a bad pc_id."),
		func(ctx context.Context, in *readPCIDInput) (*bodyOutput[processSnapshot], error) {
			if err := readPCID("path.pc_id", in.PCID); err != nil {
				return nil, err
			}
			at, rows, err := db.LatestProcesses(ctx, in.PCID)
			if err != nil {
				return nil, srv.dbProblem(ctx, "latest processes", err)
			}
			out := processSnapshot{PcID: in.PCID, Processes: rows}
			if at != nil {
				out.LatestAt = &kanade.Timestamp{Time: *at}
			}
			return &bodyOutput[processSnapshot]{out}, nil
		})
	huma.Register(api, get("agent-process-timeline", "/api/agents/{pc_id}/processes/timeline", "A PC's top processes over time",
		"The window's top names by AVG(metric), then per bucket the AVG per name, every other process as \"other\". "+
			"400 as /api/agents/{pc_id}/perf and for an unknown metric or a non-integer top."),
		func(ctx context.Context, in *timelineInput) (*bodyOutput[processTimeline], error) {
			if err := readPCID("path.pc_id", in.PCID); err != nil {
				return nil, err
			}
			metric, err := metricParam(in.Metric, processAliases)
			if err != nil {
				return nil, err
			}
			from, to, step, err := srv.seriesWindow(in.From, in.To, in.Step, time.Minute)
			if err != nil {
				return nil, err
			}
			top, err := intParam("top", in.Top, 5)
			if err != nil {
				return nil, err
			}
			top = min(max(top, 1), 20)
			names, pts, err := db.ProcessTimeline(ctx, in.PCID, metric, from, to, step, int(top))
			if err != nil {
				return nil, srv.dbProblem(ctx, "process timeline", err)
			}
			return &bodyOutput[processTimeline]{processTimeline{PcID: in.PCID, Metric: metric, From: kanade.Timestamp{Time: from},
				To: kanade.Timestamp{Time: to}, StepSeconds: step, Names: names, Points: pts}}, nil
		})
	srv.registerObs(api, get)
}

// Bounds of the obs_events parameters (§2.4).
const (
	obsMaxLimit      = 5000
	obsMaxListItems  = 100
	obsMaxItemBytes  = 128
	obsMaxValueBytes = 1024
)

var payloadKeyRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

type obsInput struct {
	PCID         string `query:"pc_id" doc:"Exact match."`
	From         string `query:"from" doc:"RFC 3339: at >= from."`
	To           string `query:"to" doc:"RFC 3339: at < to."`
	Kind         string `query:"kind" doc:"Exact match."`
	Source       string `query:"source" doc:"Exact match."`
	Kinds        string `query:"kinds" doc:"Comma-separated kinds to include (at most 100, each ≤ 128 bytes)."`
	KindsEx      string `query:"kinds_ex" doc:"Comma-separated kinds to exclude."`
	Sources      string `query:"sources" doc:"Comma-separated sources to include."`
	SourcesEx    string `query:"sources_ex" doc:"Comma-separated sources to exclude."`
	LogonType    string `query:"logon_type" doc:"Integer: payload.logon_type equals it."`
	PayloadKey   string `query:"payload_key" doc:"[A-Za-z0-9_]+: with payload_value, payload.<key> equals the value (as text, or as a number)."`
	PayloadValue string `query:"payload_value" doc:"At most 1 KiB."`
	Limit        string `query:"limit" doc:"1–5000, default 200."`
	Cursor       string `query:"cursor" doc:"next_cursor of the previous page."`
}

type obsPage struct {
	Events     []kanade.ObsEventRow `json:"events" nullable:"false"`
	NextCursor *string              `json:"next_cursor,omitempty" doc:"present when the page is full: pass it as cursor for the next page"`
}

type obsRecentInput struct {
	Limit string `query:"limit" doc:"1–5000, default 50."`
}

type obsKinds struct {
	Kinds []string `json:"kinds" nullable:"false"`
}

type obsSources struct {
	Sources []string `json:"sources" nullable:"false"`
}

func listParam(name, v string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if len(item) > obsMaxItemBytes || !kanade.ValidText(item, obsMaxItemBytes) {
			return nil, badParam(name, item, "items must be at most 128 bytes of UTF-8 without control characters")
		}
		out = append(out, item)
	}
	if len(out) > obsMaxListItems {
		return nil, badParam(name, v, "must list at most 100 items")
	}
	return out, nil
}

func limitParam(v string, def int64) (int, error) {
	n, err := intParam("limit", v, def)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > obsMaxLimit {
		return 0, badParam("limit", v, "must be 1–5000")
	}
	return int(n), nil
}

func (srv *Server) obsFilter(in *obsInput) (storage.ObsFilter, error) {
	var f storage.ObsFilter
	var err error
	if in.PCID != "" {
		if err := readPCID("query.pc_id", in.PCID); err != nil {
			return f, err
		}
		f.PCID = in.PCID
	}
	if f.From, err = timeParam("from", in.From); err != nil {
		return f, err
	}
	if f.To, err = timeParam("to", in.To); err != nil {
		return f, err
	}
	lists := []struct {
		name, v string
		dst     *[]string
	}{{"kinds", in.Kinds, &f.Kinds}, {"kinds_ex", in.KindsEx, &f.KindsEx}, {"sources", in.Sources, &f.Sources},
		{"sources_ex", in.SourcesEx, &f.SourcesEx}}
	for _, l := range lists {
		if *l.dst, err = listParam(l.name, l.v); err != nil {
			return f, err
		}
	}
	// kind and source (old URLs) are one-item include lists, ANDed with
	// the others.
	for _, one := range []struct {
		name, v string
		dst     *[]string
	}{{"kind", in.Kind, &f.Kinds}, {"source", in.Source, &f.Sources}} {
		if one.v == "" {
			continue
		}
		if !kanade.ValidText(one.v, obsMaxItemBytes) {
			return f, badParam(one.name, one.v, "must be at most 128 bytes of UTF-8 without control characters")
		}
		if len(*one.dst) > 0 && !contains(*one.dst, one.v) {
			*one.dst = []string{"\x00"} // matches nothing: both constraints hold
		} else {
			*one.dst = []string{one.v}
		}
	}
	if in.LogonType != "" {
		n, err := intParam("logon_type", in.LogonType, 0)
		if err != nil {
			return f, err
		}
		f.LogonType = &n
	}
	key := strings.TrimSpace(in.PayloadKey)
	if key != "" && !payloadKeyRe.MatchString(key) {
		return f, badParam("payload_key", in.PayloadKey, "must match [A-Za-z0-9_]+")
	}
	if len(in.PayloadValue) > obsMaxValueBytes {
		return f, badParam("payload_value", in.PayloadValue, "must be at most 1 KiB")
	}
	if key != "" && in.PayloadValue != "" {
		f.PayloadKey = key
		v := in.PayloadValue
		f.PayloadValue = &v
	}
	if f.Limit, err = limitParam(in.Limit, 200); err != nil {
		return f, err
	}
	f.Cursor = in.Cursor
	return f, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (srv *Server) registerObs(api huma.API, get func(id, path, summary, desc string) huma.Operation) {
	db := srv.cfg.DB
	list := func(ctx context.Context, f storage.ObsFilter) (*bodyOutput[obsPage], error) {
		events, next, err := db.ListObsEvents(ctx, f, srv.cfg.Logger)
		if err != nil {
			return nil, srv.readsProblem(ctx, "list obs events", f.Cursor, err)
		}
		return &bodyOutput[obsPage]{obsPage{Events: events, NextCursor: next}}, nil
	}
	huma.Register(api, get("list-obs-events", "/api/obs_events", "The observability timeline",
		"Events newest first (at, then id, descending), all filters ANDed; next_cursor when the page is full. "+
			"400 for a parameter that does not parse, a limit outside 1–5000, a bad payload_key, a list or value over its bound, "+
			"or a cursor this list did not issue."),
		func(ctx context.Context, in *obsInput) (*bodyOutput[obsPage], error) {
			f, err := srv.obsFilter(in)
			if err != nil {
				return nil, err
			}
			return list(ctx, f)
		})
	huma.Register(api, get("recent-obs-events", "/api/obs_events/recent", "The newest events",
		"The same events as /api/obs_events without filters, newest first; limit 1–5000 (default 50), else 400."),
		func(ctx context.Context, in *obsRecentInput) (*bodyOutput[obsPage], error) {
			limit, err := limitParam(in.Limit, 50)
			if err != nil {
				return nil, err
			}
			out, err := list(ctx, storage.ObsFilter{Limit: limit})
			if err != nil {
				return nil, err
			}
			out.Body.NextCursor = nil
			return out, nil
		})
	huma.Register(api, get("obs-event-kinds", "/api/obs_events/kinds", "Every event kind",
		"The distinct kinds of stored events, bytewise sorted, at most 1 000."),
		func(ctx context.Context, _ *struct{}) (*bodyOutput[obsKinds], error) {
			v, err := db.ObsVocab(ctx, "kind")
			if err != nil {
				return nil, srv.dbProblem(ctx, "list obs kinds", err)
			}
			return &bodyOutput[obsKinds]{obsKinds{Kinds: v}}, nil
		})
	huma.Register(api, get("obs-event-sources", "/api/obs_events/sources", "Every event source",
		"The distinct sources of stored events, bytewise sorted, at most 1 000."),
		func(ctx context.Context, _ *struct{}) (*bodyOutput[obsSources], error) {
			v, err := db.ObsVocab(ctx, "source")
			if err != nil {
				return nil, srv.dbProblem(ctx, "list obs sources", err)
			}
			return &bodyOutput[obsSources]{obsSources{Sources: v}}, nil
		})
}
