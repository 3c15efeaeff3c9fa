package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/negotiation"
	"github.com/kanade-fleet/backend"
)

// RecentWindow is the look-back of recent_results and the default of
// scan_durations' since (a shell warms that window at start).
const RecentWindow = 24 * time.Hour

// Fleet statuses of api.md.
const (
	fleetOK       = "ok"
	fleetUnknown  = "unknown"
	fleetDegraded = "degraded"
)

// Parts of the rollup, the keys of FleetHealth.Errors and of the
// kanade_fleet_check_failed metric.
const (
	partAgents        = "agents"
	partJetStream     = "jetstream"
	partRecentResults = "recent_results"
	partProjection    = "projection"
)

// FleetHealth is the body of GET /api/health/fleet (api.md). The same body is
// sent with 200 and 503 so a monitor can read why.
type FleetHealth struct {
	Status        string             `json:"status" enum:"ok,unknown,degraded" doc:"degraded (HTTP 503): a JetStream resource is missing, a part could not be read, or stale/known reached the configured ratio; unknown: no agent known yet; ok otherwise."`
	Agents        FleetAgents        `json:"agents"`
	JetStream     FleetJetStream     `json:"jetstream"`
	RecentResults FleetRecentResults `json:"recent_results"`
	Projection    FleetProjection    `json:"projection"`
	ObservedAt    time.Time          `json:"observed_at" doc:"The one now every cutoff was computed from."`
	// Errors is present only when a part could not be read or a projection
	// is stalled; the numbers of an unreadable part are then null rather
	// than a misleading 0.
	Errors map[string]string `json:"errors,omitempty" doc:"Why a part could not be read (or, for projection, why it is stalled), keyed agents, jetstream, recent_results or projection. Absent when all is well."`
}

// FleetProjection says whether what agents send reaches the database: per
// projected stream, how far the database is and what waits. A projection
// that makes no progress while messages wait degrades the fleet: the
// counts above would otherwise show an outage as a quiet fleet.
type FleetProjection struct {
	AllOK             bool              `json:"all_ok" doc:"No projection is stalled."`
	StallAfterSeconds float64           `json:"stall_after_seconds" doc:"A projection is stalled when its offset has not moved for this long while a message has waited as long (KANADE_PROJECTION_STALL)."`
	Consumers         []FleetProjecting `json:"consumers"`
}

// FleetProjecting is one projected stream.
type FleetProjecting struct {
	Name                      string     `json:"name" doc:"The projection (its offset's key in the database)."`
	Stream                    string     `json:"stream"`
	AppliedSeq                *uint64    `json:"applied_seq" nullable:"true" doc:"Every message up to this stream sequence is in the database; null when the database could not be read."`
	Pending                   *uint64    `json:"pending" nullable:"true" doc:"Messages stored after applied_seq (for a stream the projection shares with other subjects, an upper bound); null when JetStream could not be asked."`
	OldestUnappliedAgeSeconds *float64   `json:"oldest_unapplied_age_seconds" nullable:"true" doc:"How long the first message past applied_seq has waited; null when none waits or it is unknown."`
	LastProgressAt            *time.Time `json:"last_progress_at" nullable:"true" doc:"When applied_seq last moved; null if never."`
	LastError                 *string    `json:"last_error" nullable:"true" doc:"The projector's most recent failure, kept after recovery; null if none is known."`
	LastErrorAt               *time.Time `json:"last_error_at" nullable:"true"`
	Stalled                   bool       `json:"stalled"`
}

// FleetAgents counts agents by freshness. All three are null when the
// database could not be read.
type FleetAgents struct {
	Known  *int64 `json:"known" nullable:"true"`
	Active *int64 `json:"active" nullable:"true" doc:"Agents whose last heartbeat is within the stale threshold of observed_at."`
	Stale  *int64 `json:"stale" nullable:"true"`
}

// FleetJetStream summarizes the probe of every resource of the bootstrap
// contract.
type FleetJetStream struct {
	AllOK   bool     `json:"all_ok"`
	Healthy int      `json:"healthy"`
	Total   int      `json:"total"`
	Missing []string `json:"missing" doc:"Resources that are absent or could not be checked."`
}

// FleetRecentResults counts runs recorded in the window. Total and failed are
// null when the database could not be read.
type FleetRecentResults struct {
	WindowHours int    `json:"window_hours"`
	Total       *int64 `json:"total" nullable:"true"`
	Failed      *int64 `json:"failed" nullable:"true" doc:"Finished, non-skipped runs with a non-zero exit code (a reaped run, -1, included)."`
}

// HealthCheck is the application/health+json rendering of the fleet rollup
// (draft-inadarei-api-health-check).
type HealthCheck struct {
	Status      string                        `json:"status" enum:"pass,warn,fail"`
	Description string                        `json:"description"`
	ReleaseID   string                        `json:"releaseId"`
	Output      string                        `json:"output,omitempty"`
	Checks      map[string][]HealthCheckEntry `json:"checks"`
}

// HealthCheckEntry is one measurement of a HealthCheck.
type HealthCheckEntry struct {
	ComponentType string    `json:"componentType" enum:"system,datastore,component"`
	ObservedValue *float64  `json:"observedValue,omitempty" doc:"Absent when the value could not be read."`
	ObservedUnit  string    `json:"observedUnit"`
	Status        string    `json:"status" enum:"pass,warn,fail"`
	Time          time.Time `json:"time"`
	Output        string    `json:"output,omitempty"`
}

const (
	mediaJSON   = "application/json"
	mediaHealth = "application/health+json"
)

type fleetHealthInput struct {
	Accept string `header:"Accept" doc:"application/health+json selects the IETF health-check format."`
}

type fleetHealthOutput struct {
	Status       int
	CacheControl string `header:"Cache-Control"`
	// ContentType overrides huma's negotiation, which knows only JSON; the
	// operation documents both media types itself.
	ContentType string `header:"Content-Type" hidden:"true"`
	// Body is a FleetHealth or a HealthCheck, as documented per media type.
	Body any
}

type scanDurationsInput struct {
	Since string `query:"since" format:"date-time" doc:"RFC 3339 instant, any offset; runs finished at or after it. Default: 24 h before now." example:"2026-06-20T10:00:00+09:00"`
}

type scanDurationsOutput struct {
	Body []kanade.ScanDuration
}

// JetStreamStatus is the body of GET /api/jetstream/status.
type JetStreamStatus struct {
	Streams      []ResourceState `json:"streams"`
	KVBuckets    []ResourceState `json:"kv_buckets"`
	ObjectStores []ResourceState `json:"object_stores"`
}

// ResourceState is one probed resource.
type ResourceState struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	Error  string `json:"error,omitempty" doc:"Why the resource could not be checked; absent when the server answered."`
}

type jetStreamStatusOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         JetStreamStatus
}

func (srv *Server) registerHealth(api huma.API) {
	registry := api.OpenAPI().Components.Schemas
	both := func() map[string]*huma.MediaType {
		return map[string]*huma.MediaType{
			mediaJSON:   {Schema: registry.Schema(reflect.TypeFor[FleetHealth](), true, "FleetHealth")},
			mediaHealth: {Schema: registry.Schema(reflect.TypeFor[HealthCheck](), true, "HealthCheck")},
		}
	}
	noStore := map[string]*huma.Param{"Cache-Control": {Schema: &huma.Schema{Type: huma.TypeString}}}
	huma.Register(api, huma.Operation{
		OperationID: "get-fleet-health",
		Method:      http.MethodGet,
		Path:        "/api/health/fleet",
		Summary:     "Fleet health rollup",
		Description: "Agent freshness, JetStream resources and recent failures, for monitors. 503 with the same body when degraded.",
		Tags:        []string{"health"},
		Responses: map[string]*huma.Response{
			"200": {Description: "ok or unknown", Content: both(), Headers: noStore},
			"503": {Description: "degraded; the body says why", Content: both(), Headers: noStore},
		},
	}, func(ctx context.Context, in *fleetHealthInput) (*fleetHealthOutput, error) {
		h := srv.fleetHealth(ctx)
		out := &fleetHealthOutput{Status: http.StatusOK, CacheControl: "no-store", ContentType: mediaJSON, Body: h}
		if h.Status == fleetDegraded {
			out.Status = http.StatusServiceUnavailable
		}
		if negotiation.SelectQValueFast(in.Accept, []string{mediaJSON, mediaHealth}) == mediaHealth {
			out.ContentType = mediaHealth
			out.Body = h.healthCheck(srv)
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-scan-durations",
		Method:      http.MethodGet,
		Path:        "/api/health/scan_durations",
		Summary:     "Run-time percentiles per job",
		Description: "Finished runs with finished_at >= since, one row per job, sorted by p95 descending then job_id.",
		Tags:        []string{"health"},
	}, func(ctx context.Context, in *scanDurationsInput) (*scanDurationsOutput, error) {
		since := srv.cfg.Clock().Add(-RecentWindow)
		if in.Since != "" {
			t, err := kanade.ParseTime(in.Since)
			if err != nil {
				return nil, huma.Error422UnprocessableEntity("invalid query parameter since",
					&huma.ErrorDetail{Location: "query.since", Message: err.Error(), Value: in.Since})
			}
			since = t
		}
		rows, err := srv.cfg.DB.ScanDurations(ctx, since)
		if err != nil {
			srv.cfg.Logger.ErrorContext(ctx, "scan durations", slog.Any("error", err))
			return nil, huma.Error500InternalServerError("scan durations could not be read")
		}
		if rows == nil {
			rows = []kanade.ScanDuration{} // [] on the wire, never null
		}
		return &scanDurationsOutput{Body: rows}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-jetstream-status",
		Method:      http.MethodGet,
		Path:        "/api/jetstream/status",
		Summary:     "JetStream resources of the bootstrap contract",
		Tags:        []string{"health"},
	}, func(ctx context.Context, _ *struct{}) (*jetStreamStatusOutput, error) {
		ctx, cancel := context.WithTimeout(ctx, srv.cfg.ProbeTimeout)
		defer cancel()
		out := &jetStreamStatusOutput{CacheControl: "no-store", Body: JetStreamStatus{
			Streams: []ResourceState{}, KVBuckets: []ResourceState{}, ObjectStores: []ResourceState{},
		}}
		for _, st := range srv.probe(ctx) {
			rs := ResourceState{Name: st.Name, Exists: st.Exists}
			if st.Err != nil {
				rs.Error = st.Err.Error()
			}
			switch st.Kind {
			case kanade.KindStream:
				out.Body.Streams = append(out.Body.Streams, rs)
			case kanade.KindKeyValue:
				out.Body.KVBuckets = append(out.Body.KVBuckets, rs)
			case kanade.KindObjectStore:
				out.Body.ObjectStores = append(out.Body.ObjectStores, rs)
			}
		}
		return out, nil
	})
}

// probe returns exactly one status per resource of the bootstrap contract,
// in its order, by ctx's deadline: a resource the prober did not report, or
// did not report in time, is missing with the reason.
func (srv *Server) probe(ctx context.Context) []kanade.ResourceStatus {
	resources := kanade.Resources(1)
	out := make([]kanade.ResourceStatus, len(resources))
	for i, r := range resources {
		out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name, Err: errors.New("not probed: no JetStream prober configured")}
	}
	if srv.cfg.Prober == nil {
		return out
	}
	// The Prober promises to honour ctx, but it is an interface: a slow one
	// must not hang the health endpoint.
	answer := make(chan []kanade.ResourceStatus, 1)
	go func() { answer <- srv.cfg.Prober.Probe(ctx) }()
	var got []kanade.ResourceStatus
	select {
	case got = <-answer:
	case <-ctx.Done():
		for i := range out {
			out[i].Err = fmt.Errorf("probe %s %s: %w", out[i].Kind, out[i].Name, ctx.Err())
		}
		return out
	}
	byName := make(map[string]kanade.ResourceStatus, len(got))
	for _, st := range got {
		byName[string(st.Kind)+"/"+st.Name] = st
	}
	for i := range out {
		if st, ok := byName[string(out[i].Kind)+"/"+out[i].Name]; ok {
			out[i] = st
		} else {
			out[i].Err = errors.New("not reported by the prober")
		}
	}
	return out
}

// probeShare holds the latest JetStream probe of the fleet rollup, so that
// requests arriving together ask the server once. It keeps one probe, the
// last one sent: a request uses it only if it was sent within
// Config.ProbeMaxAge before the request arrived, and sends its own otherwise.
type probeShare struct {
	mu   sync.Mutex
	last *probeFlight
}

// probeFlight is one probe: sent at sent (the monotonic wall clock, not
// Config.Clock, which a test or benchmark may stop), answered when done is
// closed.
type probeFlight struct {
	sent     time.Time
	done     chan struct{}
	statuses []kanade.ResourceStatus
}

// sharedProbe returns the statuses of a probe sent no earlier than
// ProbeMaxAge before arrived, sending one if there is none, and the age of
// the answer (arrived − sent). It returns by ctx's deadline: a probe not
// answered by then leaves every resource unchecked with ctx's error, as
// probe does. A probe outlives a request that gives up (another may be
// waiting for it), but never its own ProbeTimeout.
func (srv *Server) sharedProbe(ctx context.Context, arrived time.Time) ([]kanade.ResourceStatus, time.Duration) {
	if srv.cfg.Prober == nil {
		return srv.probe(ctx), 0
	}
	srv.probes.mu.Lock()
	f := srv.probes.last
	if f == nil || f.sent.Before(arrived.Add(-srv.cfg.ProbeMaxAge)) {
		f = &probeFlight{sent: time.Now(), done: make(chan struct{})}
		srv.probes.last = f
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), srv.cfg.ProbeTimeout)
		go func() {
			defer cancel()
			f.statuses = srv.probe(pctx)
			close(f.done)
		}()
	}
	srv.probes.mu.Unlock()
	select {
	case <-f.done:
		return f.statuses, arrived.Sub(f.sent)
	case <-ctx.Done():
		resources := kanade.Resources(1)
		out := make([]kanade.ResourceStatus, len(resources))
		for i, r := range resources {
			out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name,
				Err: fmt.Errorf("probe %s %s: %w", r.Kind, r.Name, ctx.Err())}
		}
		return out, arrived.Sub(f.sent)
	}
}

// fleetHealth computes the rollup from one now. The JetStream probes and the
// two database reads run concurrently under one ProbeTimeout, so a dead NATS
// or database gives a prompt, explicit degraded instead of a hung request.
//
// The JetStream part is the one probe sharedProbe picks: sent after the
// request arrived by default, or within Config.ProbeMaxAge before it.
func (srv *Server) fleetHealth(ctx context.Context) FleetHealth {
	arrived := time.Now()
	now := srv.cfg.Clock().UTC()
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.ProbeTimeout)
	defer cancel()

	var (
		wg                    sync.WaitGroup
		statuses              []kanade.ResourceStatus
		known, active         int64
		total, failed         int64
		agentsErr, resultsErr error
		projection            FleetProjection
		projectionErr         error
	)
	wg.Go(func() {
		var age time.Duration
		statuses, age = srv.sharedProbe(ctx, arrived)
		if srv.cfg.ProbeUsed != nil {
			srv.cfg.ProbeUsed(age)
		}
	})
	wg.Go(func() { known, active, agentsErr = srv.cfg.DB.AgentCounts(ctx, now, srv.cfg.StaleThreshold) })
	wg.Go(func() { total, failed, resultsErr = srv.cfg.DB.ResultCounts(ctx, now.Add(-RecentWindow)) })
	wg.Go(func() { projection, projectionErr = srv.projection(ctx, now) })
	wg.Wait()

	h := FleetHealth{
		ObservedAt:    now,
		JetStream:     FleetJetStream{Total: len(statuses), Missing: []string{}},
		RecentResults: FleetRecentResults{WindowHours: int(RecentWindow / time.Hour)},
		Projection:    projection,
	}
	fail := func(part string, err error) {
		if h.Errors == nil {
			h.Errors = map[string]string{}
		}
		h.Errors[part] = err.Error()
		srv.cfg.Logger.WarnContext(ctx, "fleet health: part failing", slog.String("part", part), slog.Any("error", err))
	}

	var unchecked []string
	for _, st := range statuses {
		switch {
		case st.Exists:
			h.JetStream.Healthy++
		case st.Err != nil:
			h.JetStream.Missing = append(h.JetStream.Missing, st.Name)
			unchecked = append(unchecked, st.Err.Error())
		default:
			h.JetStream.Missing = append(h.JetStream.Missing, st.Name)
		}
	}
	h.JetStream.AllOK = len(h.JetStream.Missing) == 0
	if len(unchecked) > 0 {
		fail(partJetStream, fmt.Errorf("%d of %d resources could not be checked: %s",
			len(unchecked), len(statuses), strings.Join(firstN(unchecked, 3), "; ")))
	}

	if agentsErr != nil {
		fail(partAgents, agentsErr)
	} else {
		stale := max(known-active, 0)
		h.Agents = FleetAgents{Known: &known, Active: &active, Stale: &stale}
	}
	if resultsErr != nil {
		fail(partRecentResults, resultsErr)
	} else {
		h.RecentResults.Total, h.RecentResults.Failed = &total, &failed
	}
	if projectionErr != nil {
		fail(partProjection, projectionErr)
	}

	switch {
	case !h.JetStream.AllOK || agentsErr != nil || resultsErr != nil || !h.Projection.AllOK ||
		srv.staleDegrades(known, *h.Agents.Stale):
		h.Status = fleetDegraded
	case known == 0:
		h.Status = fleetUnknown
	default:
		h.Status = fleetOK
	}
	return h
}

// projection rebuilds each projection's progress from the database (its
// offset and when it moved) and JetStream (the first message past it), and
// judges stalls by kanade.ProjectionProgress.Stalled, the rule the worker
// applies to itself. It fails (with the part's error) only when a stall was
// found; an unreadable database or JetStream leaves the numbers null and is
// reported by the other parts.
func (srv *Server) projection(ctx context.Context, now time.Time) (FleetProjection, error) {
	out := FleetProjection{AllOK: true, StallAfterSeconds: srv.cfg.StallAfter.Seconds(), Consumers: []FleetProjecting{}}
	projections := kanade.Projections()
	offsets, dbErr := srv.cfg.DB.Offsets(ctx)
	var backlogs []kanade.Backlog
	if dbErr == nil && srv.cfg.Prober != nil {
		after := make(map[string]uint64, len(offsets))
		for name, o := range offsets {
			after[name] = o.Seq
		}
		// The Prober promises to honour ctx, but it is an interface.
		answer := make(chan []kanade.Backlog, 1)
		go func() { answer <- srv.cfg.Prober.Backlogs(ctx, projections, after) }()
		select {
		case backlogs = <-answer:
		case <-ctx.Done():
		}
	}
	local := map[string]kanade.ProjectionProgress{}
	if srv.cfg.Progress != nil {
		for _, p := range srv.cfg.Progress() {
			local[p.Name] = p
		}
	}
	var stalls []string
	for i, pr := range projections {
		c := FleetProjecting{Name: pr.Name, Stream: pr.Stream}
		o, haveOffset := offsets[pr.Name]
		p := kanade.ProjectionProgress{Name: pr.Name, AppliedSeq: o.Seq, LastProgress: o.UpdatedAt,
			LastError: o.LastError, LastErrorAt: o.LastErrorAt}
		if l, ok := local[pr.Name]; ok && l.LastErrorAt.After(p.LastErrorAt) {
			p.LastError, p.LastErrorAt = l.LastError, l.LastErrorAt
		}
		if dbErr == nil {
			c.AppliedSeq = &p.AppliedSeq
			if haveOffset && !p.LastProgress.IsZero() {
				c.LastProgressAt = &p.LastProgress
			}
		}
		if p.LastError != "" {
			c.LastError, c.LastErrorAt = &p.LastError, &p.LastErrorAt
		}
		if i < len(backlogs) && backlogs[i].Err == nil {
			b := backlogs[i]
			pending := uint64(0)
			if b.LastSeq > p.AppliedSeq {
				pending = b.LastSeq - p.AppliedSeq
			}
			c.Pending = &pending
			if b.NextSeq != 0 {
				p.OldestUnapplied = b.NextTime
				age := max(now.Sub(b.NextTime).Seconds(), 0)
				c.OldestUnappliedAgeSeconds = &age
			}
			if p.Stalled(now, srv.cfg.StallAfter) {
				c.Stalled = true
				out.AllOK = false
				why := fmt.Sprintf("%s: no progress for %s while messages wait (the oldest for %s, %d pending)",
					pr.Name, since(now, p.LastProgress), now.Sub(b.NextTime).Round(time.Second), pending)
				if p.LastError != "" {
					why += "; last error " + now.Sub(p.LastErrorAt).Round(time.Second).String() + " ago: " + p.LastError
				}
				stalls = append(stalls, why)
			}
		}
		out.Consumers = append(out.Consumers, c)
	}
	if len(stalls) > 0 {
		return out, errors.New(strings.Join(stalls, "; "))
	}
	return out, nil
}

// since says how long ago t was, or "ever" for the zero time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "ever"
	}
	return now.Sub(t).Round(time.Second).String()
}

// staleDegrades is the ratio rule: with the default ratio 1.0 only a total
// blackout degrades, because powered-off laptops are normal.
func (srv *Server) staleDegrades(known, stale int64) bool {
	return known > 0 && float64(stale)/float64(known) >= srv.cfg.StaleDegradedRatio
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// healthCheck renders h in the IETF health-check format: pass for ok, warn
// for unknown, fail for degraded, one check per part.
func (h FleetHealth) healthCheck(srv *Server) HealthCheck {
	out := HealthCheck{
		Status:      map[string]string{fleetOK: "pass", fleetUnknown: "warn", fleetDegraded: "fail"}[h.Status],
		Description: "kanade fleet health",
		ReleaseID:   kanade.Version,
		Checks:      map[string][]HealthCheckEntry{},
	}
	num := func(v *int64) *float64 {
		if v == nil {
			return nil
		}
		f := float64(*v)
		return &f
	}
	var reasons []string
	// componentType values of the draft: the agents are the fleet (system),
	// JetStream is where commands and results live (datastore).
	componentType := map[string]string{"agents:freshness": "system", "jetstream:resources": "datastore",
		"projection:backlog": "component", "executions:failures": "component"}
	add := func(key, unit, status, output string, value *float64) {
		e := HealthCheckEntry{ComponentType: componentType[key], ObservedValue: value, ObservedUnit: unit, Status: status, Time: h.ObservedAt}
		if status != "pass" {
			e.Output = output
			reasons = append(reasons, key+": "+output)
		}
		out.Checks[key] = []HealthCheckEntry{e}
	}

	switch {
	case h.Errors[partAgents] != "":
		add("agents:freshness", "stale agents", "fail", "database read failed: "+h.Errors[partAgents], nil)
	case *h.Agents.Known == 0:
		add("agents:freshness", "stale agents", "warn", "no agent has reported yet", num(h.Agents.Stale))
	case srv.staleDegrades(*h.Agents.Known, *h.Agents.Stale):
		add("agents:freshness", "stale agents", "fail", fmt.Sprintf("%d of %d known agents have not sent a heartbeat for %s (degraded at a stale ratio of %g)",
			*h.Agents.Stale, *h.Agents.Known, srv.cfg.StaleThreshold, srv.cfg.StaleDegradedRatio), num(h.Agents.Stale))
	default:
		add("agents:freshness", "stale agents", "pass", "", num(h.Agents.Stale))
	}

	healthy := float64(h.JetStream.Healthy)
	if h.JetStream.AllOK {
		add("jetstream:resources", "healthy resources", "pass", "", &healthy)
	} else {
		output := fmt.Sprintf("%d of %d resources missing: %s", len(h.JetStream.Missing), h.JetStream.Total, strings.Join(h.JetStream.Missing, ", "))
		if e := h.Errors[partJetStream]; e != "" {
			output += " (" + e + ")"
		}
		add("jetstream:resources", "healthy resources", "fail", output, &healthy)
	}

	waiting := 0.0
	for _, c := range h.Projection.Consumers {
		if c.Pending != nil {
			waiting += float64(*c.Pending)
		}
	}
	if h.Projection.AllOK {
		add("projection:backlog", "messages waiting", "pass", "", &waiting)
	} else {
		add("projection:backlog", "messages waiting", "fail", "stalled: "+h.Errors[partProjection], &waiting)
	}

	if e := h.Errors[partRecentResults]; e != "" {
		add("executions:failures", "failed runs in 24h", "fail", "database read failed: "+e, nil)
	} else {
		// Failed runs are reported, never judged: a failing script is the
		// script's problem, not the backend's health.
		add("executions:failures", "failed runs in 24h", "pass", "", num(h.RecentResults.Failed))
	}
	out.Output = strings.Join(reasons, "; ")
	return out
}
