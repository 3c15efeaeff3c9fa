// Package sim is a fleet simulator speaking the kanade wire format: N agents
// that beat, start jobs and report results (with realistic durations,
// failures, skips, late and duplicate deliveries), for tests, the ingest
// benchmark and the HTTP shell's demo mode.
//
// It is deterministic for a seed and takes its time from a Clock, so a test
// gets the same messages every run. It publishes, answers requests and
// reads KV as agents do; it never reads the database.
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/nats-io/nats.go"
)

// Job is a simulated manifest: durations are lognormal around MedianMs.
type Job struct {
	ID       string
	Version  string
	MedianMs float64
	// Sigma is the lognormal shape (0.5 is a moderate spread).
	Sigma   float64
	Timeout time.Duration
	// Check, when set, makes the job a compliance check of that name
	// (observe.md §3.1): its manifest carries the hint, and the agents
	// print one JSON object with a status and a detail.
	Check string
}

// DefaultJobs are a few jobs with different duration profiles.
func DefaultJobs() []Job {
	return []Job{
		{ID: "sim-inventory-hw", Version: "3", MedianMs: 4200, Sigma: 0.4, Timeout: 10 * time.Minute},
		{ID: "sim-patch-scan", Version: "12", MedianMs: 45000, Sigma: 0.7, Timeout: 30 * time.Minute},
		{ID: "sim-disk-cleanup", Version: "1", MedianMs: 12000, Sigma: 0.9, Timeout: time.Hour},
		{ID: "sim-ping", Version: "1", MedianMs: 300, Sigma: 0.3, Timeout: time.Minute},
	}
}

// Config shapes a simulated fleet. Zero values get the defaults noted.
type Config struct {
	// Agents is the fleet size (required for Run).
	Agents int
	// Prefix names the PCs: Prefix + a zero-padded index (default "SIM-").
	Prefix string
	// Jobs defaults to DefaultJobs().
	Jobs []Job
	// HeartbeatInterval is each agent's beat period (default 30s, jittered
	// ±10%), when no agent_config scope of its sets heartbeat_interval.
	HeartbeatInterval time.Duration
	// RunInterval is each agent's mean time between runs (default 10m).
	RunInterval time.Duration
	// FailureRate, SkipRate, LateRate, DuplicateRate are probabilities per
	// run: a non-zero exit, a skipped run (exit 125, skipped: the deadline
	// passed), a result published before its started event, a result
	// published twice. SkipRate and LateRate apply to the agents' own runs
	// only: a command is skipped for a reason (see Gate), and its started
	// event goes out before the run.
	// Defaults 0.05, 0.02, 0.01, 0.01; negative means 0.
	FailureRate, SkipRate, LateRate, DuplicateRate float64
	// Seed makes the fleet deterministic.
	Seed uint64
	// Clock stamps every message and decides when runs end (default wall
	// clock).
	Clock kanade.Clock
	// Step is how often Run looks at the Clock to beat, start and finish
	// runs (default 1s of wall time). Commands and kills are handled as they
	// arrive, whatever the Step.
	Step time.Duration
	// RunDurations fixes how long the agents' runs of a command of job id
	// last, so a test can keep a job running until it kills it. A job
	// absent here runs for a time drawn from its Jobs profile, or about a
	// second when the fleet does not know it.
	RunDurations map[string]time.Duration
	// AgentVersion is the version every agent starts on (default "0.45.3");
	// a rollout moves them (see Run).
	AgentVersion string
	// PerfInterval is each agent's host-sample period (default 60s, the
	// agents' host_perf_interval); negative sends no samples and no obs
	// events.
	PerfInterval time.Duration
	// ObsInterval is each agent's mean time between logon/logoff events
	// (default 30m).
	ObsInterval time.Duration
	// Schedules makes Run create the DemoSchedules (when absent), so the
	// scheduler has something to fire at the simulated agents.
	Schedules bool
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "SIM-"
	}
	if len(c.Jobs) == 0 {
		c.Jobs = DefaultJobs()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.RunInterval == 0 {
		c.RunInterval = 10 * time.Minute
	}
	rate := func(p *float64, d float64) {
		if *p == 0 {
			*p = d
		} else if *p < 0 {
			*p = 0
		}
	}
	rate(&c.FailureRate, 0.05)
	rate(&c.SkipRate, 0.02)
	rate(&c.LateRate, 0.01)
	rate(&c.DuplicateRate, 0.01)
	if c.Step <= 0 {
		c.Step = time.Second
	}
	if c.Clock == nil {
		c.Clock = kanade.SystemClock
	}
	if c.PerfInterval == 0 {
		c.PerfInterval = time.Minute
	}
	if c.ObsInterval <= 0 {
		c.ObsInterval = 30 * time.Minute
	}
	if c.AgentVersion == "" {
		c.AgentVersion = "0.45.3"
	}
}

// Message is one publication: JetStream ones go through js.Publish, the
// others (heartbeats) through core NATS.
type Message struct {
	Subject   string
	Data      []byte
	JetStream bool
}

// Fleet generates messages. It is not safe for concurrent use.
type Fleet struct {
	cfg    Config
	rng    *rand.Rand
	seq    uint64
	groups *memberships
	// updated are the versions of the agents that self-updated.
	updated map[int]string
	inv     *Inventory // made on first use (inventory.go)
	// perf draws the telemetry (telemetry.go) from a source of its own.
	perf *perfGen
}

// NewFleet returns a deterministic generator for cfg, its agents in the
// groups of the Group rule.
func NewFleet(cfg Config) *Fleet {
	cfg.defaults()
	f := &Fleet{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x6b616e616465)), perf: newPerfGen(cfg.Seed, max(cfg.Agents, 0))}
	f.seedGroups()
	return f
}

// Config returns the effective configuration (defaults filled in).
func (f *Fleet) Config() Config { return f.cfg }

// PcID names agent i.
func (f *Fleet) PcID(i int) string { return fmt.Sprintf("%s%06d", f.cfg.Prefix, i) }

// id returns a deterministic UUID-shaped id.
func (f *Fleet) id() string {
	f.seq++
	a, b := f.rng.Uint64(), f.seq
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(a>>32), uint16(a>>16), uint16(a)&0xfff, uint16(b>>48)&0xfff, b&0xffffffffffff)
}

func ptr[T any](v T) *T { return &v }

// Heartbeat is agent i's beat at `at`. Every tenth beat is a ping-reply-like
// beat without logon user, as real fleets mix them.
func (f *Fleet) Heartbeat(i int, at time.Time) kanade.Heartbeat {
	pc := f.PcID(i)
	h := kanade.Heartbeat{
		PcID: pc, At: kanade.Timestamp{Time: at.UTC()}, AgentVersion: f.version(i),
		Hostname: ptr(pc), OsFamily: ptr(osFamily(i)),
		AgentCPUPct: ptr(math.Round(f.rng.Float64()*200) / 100), AgentRSSBytes: ptr(int64(40_000_000 + f.rng.IntN(20_000_000))),
		AgentDiskReadBytes: ptr(int64(f.rng.IntN(1 << 30))), AgentDiskWrittenBytes: ptr(int64(f.rng.IntN(1 << 28))),
	}
	if f.rng.IntN(10) != 0 {
		h.LastLogonUser = ptr(fmt.Sprintf(`CORP\user%d`, i))
		h.LastLogonDisplayName = ptr(fmt.Sprintf("User %d", i))
		h.CommandKeys = &[]string{"k1"}
		h.CommandProtocols = &[]string{"v1", "v2"}
		h.Enforcing = ptr(i%2 == 0)
	}
	return h
}

// osFamily is agent i's OS: three in five run Windows.
func osFamily(i int) string { return []string{"windows", "windows", "windows", "linux", "macos"}[i%5] }

// version is the agent version agent i runs.
func (f *Fleet) version(i int) string {
	if v, ok := f.updated[i]; ok {
		return v
	}
	return f.cfg.AgentVersion
}

// setVersion makes agent i run version v.
func (f *Fleet) setVersion(i int, v string) {
	if f.updated == nil {
		f.updated = map[int]string{}
	}
	f.updated[i] = v
}

// Duration draws a run duration of job (lognormal).
func (f *Fleet) Duration(job Job) time.Duration {
	sigma := job.Sigma
	if sigma <= 0 {
		sigma = 0.5
	}
	ms := job.MedianMs * math.Exp(sigma*f.rng.NormFloat64())
	return time.Duration(ms * float64(time.Millisecond))
}

// RunSpec describes one simulated run.
type RunSpec struct {
	Agent     int
	Job       Job
	ExecID    string // optional
	RequestID string // optional: generated when empty
	StartedAt time.Time
}

// RunOutput is one run's payloads and the order they are published in.
type RunOutput struct {
	Started  kanade.EventStarted
	Result   kanade.ExecResult
	Messages []Message
}

// Run generates agent's run: a started event and its result, with the
// configured chances of failure, skip, late result (result first) and
// duplicate result.
func (f *Fleet) Run(s RunSpec) RunOutput {
	pc := f.PcID(s.Agent)
	if s.RequestID == "" {
		s.RequestID = f.id()
	}
	resultID := f.id()
	started := s.StartedAt.UTC()
	exit := int64(0)
	skipped := false
	stdout, stderr := "ok", ""
	finished := started.Add(f.Duration(s.Job))
	switch p := f.rng.Float64(); {
	case p < f.cfg.SkipRate:
		exit, skipped, stdout = exitSkipDeadline, true, ""
		stderr = "skipped: starting deadline expired"
		finished = started.Add(time.Duration(f.rng.IntN(50)) * time.Millisecond)
	case p < f.cfg.SkipRate+f.cfg.FailureRate:
		exit = []int64{1, 2, 5, 121, 123}[f.rng.IntN(5)]
		stdout, stderr = "", fmt.Sprintf("error: simulated failure %d", exit)
	}
	if s.Job.ID == InventoryJob.ID && exit == 0 && !skipped {
		stdout = f.inventoryStdout(s.Agent, started)
	}
	r := RunOutput{
		Started: kanade.EventStarted{ResultID: resultID, RequestID: s.RequestID, ExecID: s.ExecID, PcID: pc,
			StartedAt: kanade.Timestamp{Time: started}, ManifestID: s.Job.ID, Version: s.Job.Version},
		Result: kanade.ExecResult{ResultID: resultID, RequestID: s.RequestID, ExecID: s.ExecID, PcID: pc,
			ExitCode: &exit, Skipped: skipped, Stdout: stdout, Stderr: stderr,
			StartedAt: kanade.Timestamp{Time: started}, FinishedAt: kanade.Timestamp{Time: finished},
			ManifestID: s.Job.ID},
	}
	ev := Message{Subject: StartedSubject(r.Started), Data: mustJSON(r.Started), JetStream: true}
	res := Message{Subject: "results." + s.RequestID, Data: mustJSON(r.Result), JetStream: true}
	if f.rng.Float64() < f.cfg.LateRate {
		r.Messages = []Message{res, ev}
	} else {
		r.Messages = []Message{ev, res}
	}
	if f.rng.Float64() < f.cfg.DuplicateRate {
		r.Messages = append(r.Messages, res)
	}
	return r
}

// StartedSubject is events.started.{exec_id}.{pc_id}; an ad-hoc run (no
// exec_id) uses "adhoc" as the exec token.
func StartedSubject(e kanade.EventStarted) string {
	exec := e.ExecID
	if exec == "" {
		exec = "adhoc"
	}
	return "events.started." + exec + "." + e.PcID
}

// Audit generates an operator audit event at `at`.
func (f *Fleet) Audit(at time.Time) Message {
	target := f.PcID(f.rng.IntN(max(1, f.cfg.Agents)))
	a := kanade.AuditEvent{Actor: "operator", Action: []string{"exec", "freeze", "kill", "schedule.update"}[f.rng.IntN(4)],
		Target: &target, Payload: json.RawMessage(`{"sim":true}`), OccurredAt: kanade.Timestamp{Time: at.UTC()}}
	subj, err := a.Subject()
	if err != nil {
		subj = "audit.operator.unknown"
	}
	return Message{Subject: subj, Data: mustJSON(a), JetStream: true}
}

// HeartbeatMessage wraps a beat for core NATS.
func HeartbeatMessage(h kanade.Heartbeat) Message {
	return Message{Subject: "heartbeat." + h.PcID, Data: mustJSON(h)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sim: marshal %T: %v", v, err)) // wire types always marshal
	}
	return b
}

// watched is a KV bucket the fleet follows: the changes its watch brings,
// and what the fleet does with one change (apply) and with the whole bucket
// (load), read again when a watch breaks and is made anew.
type watched struct {
	bucket  string
	updates <-chan *bus.Entry
	load    func([]bus.Entry, time.Time)
	apply   func(bus.Entry, time.Time)
}

// start watches the bucket: it returns its current values, and the
// changes after them come on updates.
func (w *watched) start(ctx context.Context, c *bus.Client) ([]bus.Entry, error) {
	ch, err := c.Watch(ctx, w.bucket)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	var out []bus.Entry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-ch:
			if !ok {
				return nil, fmt.Errorf("sim: watch KV %s closed before its values were read", w.bucket)
			}
			if e == nil {
				w.updates = ch
				return out, nil
			}
			out = append(out, *e)
		}
	}
}

// take handles a receive from updates at now: a change is applied; the end
// of the watch makes a new one, whose values are loaded.
func (w *watched) take(ctx context.Context, c *bus.Client, e *bus.Entry, ok bool, now time.Time) error {
	if !ok {
		entries, err := w.start(ctx, c)
		if err != nil {
			return err
		}
		w.load(entries, now)
		return nil
	}
	if e != nil {
		w.apply(*e, now)
	}
	return nil
}

// Publish sends msgs in order: each run of JetStream messages pipelined
// and confirmed before what follows it (a fan-out's answers from a
// thousand agents cost a round trip, not a thousand), core ones just
// published.
func Publish(ctx context.Context, c *bus.Client, msgs ...Message) error {
	for len(msgs) > 0 {
		m := msgs[0]
		if !m.JetStream {
			if err := c.Conn().Publish(m.Subject, m.Data); err != nil {
				return fmt.Errorf("publish %s: %w", m.Subject, err)
			}
			msgs = msgs[1:]
			continue
		}
		var batch []*nats.Msg
		for len(msgs) > 0 && msgs[0].JetStream {
			batch = append(batch, &nats.Msg{Subject: msgs[0].Subject, Data: msgs[0].Data})
			msgs = msgs[1:]
		}
		if _, err := c.PublishAll(ctx, batch); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
	}
	return nil
}

// PutManifests stores a Manifest for every job in KV jobs, so the projector
// finds their timeouts.
func PutManifests(ctx context.Context, c *bus.Client, jobs []Job) error {
	for _, j := range jobs {
		m := map[string]any{"id": j.ID, "version": j.Version, "description": "simulated job",
			"execute": map[string]any{"shell": "sh", "script": "true", "timeout": fmt.Sprintf("%ds", int64(j.Timeout.Seconds()))}}
		if j.Check != "" {
			m["check"] = map[string]any{"name": j.Check}
		}
		if _, err := c.Put(ctx, kanade.BucketJobs, j.ID, mustJSON(m)); err != nil {
			return err
		}
	}
	return nil
}

// Run simulates cfg.Agents agents until ctx ends: beats at once and then
// every HeartbeatInterval (jittered), runs every RunInterval on average
// (started event at start, result when the run finishes), an audit event a
// minute, and answers the commands published on commands.> as real agents do (see
// Fleet.Answer): once per agent and request_id, skipped when
// script_status, script_current or deadline_at say so, else run after the
// command's jitter, and ended at once, as killed, by kill.<exec_id>. A
// group command reaches the agents KV agent_groups lists in the group when
// it arrives: Run seeds the keys missing (see PutGroups) and then follows
// the bucket. The agents follow KV agent_config too: each self-updates to
// its effective target_version within its target_version_jitter, and beats
// at its heartbeat_interval (see configs). They answer the live actions of
// fleet.md §4 (see LiveSubjects), and their users confirm most
// notifications that ask for it (see SubjectNotifications). It
// looks at cfg.Clock every cfg.Step of wall time, and when a command, a
// kill or a live request arrives.
//
// Commands arrive on a core subscription: a simulator started after a
// command was published misses it and, unlike a real agent, never replays
// it from stream EXEC (that would take a JetStream consumer per simulated
// agent, or one ordered consumer filtered to the fleet's subjects,
// delivering the latest command per subject on every start, deduplicated
// by request_id like the live ones).
func Run(ctx context.Context, c *bus.Client, cfg Config) error {
	err := run(ctx, c, cfg)
	if ctx.Err() != nil {
		return nil // a publish cut short by the end of ctx is the normal end
	}
	return err
}

func run(ctx context.Context, c *bus.Client, cfg Config) error {
	if cfg.Agents <= 0 {
		return fmt.Errorf("sim: %d agents", cfg.Agents)
	}
	f := NewFleet(cfg)
	cfg = f.cfg
	if err := PutManifests(ctx, c, cfg.Jobs); err != nil {
		return err
	}
	if err := PutGroups(ctx, c, f); err != nil {
		return err
	}
	if cfg.Schedules {
		if err := PutDemoSchedules(ctx, c); err != nil {
			return err
		}
		if err := PutInventoryDemo(ctx, c); err != nil {
			return err
		}
	}
	// The watches end with run. The groups are read first: the agents'
	// configuration depends on them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var a *agents
	groups := &watched{bucket: kanade.BucketAgentGroups,
		load: func(e []bus.Entry, now time.Time) { a.loadGroups(e, now) }, apply: func(e bus.Entry, now time.Time) { a.applyGroups(e, now) }}
	configs := &watched{bucket: kanade.BucketAgentConfig,
		load: func(e []bus.Entry, now time.Time) { a.loadConfig(e, now) }, apply: func(e bus.Entry, now time.Time) { a.applyConfig(e, now) }}
	entries, err := groups.start(ctx, c)
	if err != nil {
		return err
	}
	f.loadGroups(entries)
	// Commands and kills share one channel, so the agents see them in the
	// order the server delivered them: a kill sent after a command finds
	// its run. Live requests have their own, so a ping is not queued behind
	// a fan-out.
	inbox := make(chan *nats.Msg, 8192)
	live := make(chan *nats.Msg, 1024)
	notes := make(chan *nats.Msg, 1024)
	var notifs notified
	subs := map[string]chan *nats.Msg{"commands.>": inbox, kanade.SubjectKill + ">": inbox, SubjectNotifications: notes}
	for _, subject := range LiveSubjects {
		subs[subject] = live
	}
	for subject, ch := range subs {
		sub, err := c.Conn().ChanSubscribe(subject, ch)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
		defer sub.Unsubscribe()
	}
	if err := c.Conn().Flush(); err != nil {
		return fmt.Errorf("subscribe commands, kills and live actions: flush: %w", err)
	}
	now := cfg.Clock()
	// Every agent beats at once, so the fleet starts as one that has been
	// running: every agent alive, which is what a fan-out counts in its
	// target_count. Then each beats on its own schedule, spread over the
	// interval.
	beats := make([]Message, cfg.Agents)
	for i := range beats {
		beats[i] = HeartbeatMessage(f.Heartbeat(i, now))
	}
	if err := Publish(ctx, c, beats...); err != nil {
		return err
	}
	nextBeat := make([]time.Time, cfg.Agents)
	nextRun := make([]time.Time, cfg.Agents)
	for i := range nextBeat {
		nextBeat[i] = now.Add(time.Duration(f.rng.Int64N(int64(cfg.HeartbeatInterval))))
		nextRun[i] = now.Add(time.Duration(f.rng.ExpFloat64() * float64(cfg.RunInterval)))
	}
	a = newAgents(f, now)
	if entries, err = configs.start(ctx, c); err != nil {
		return err
	}
	a.loadConfig(entries, now)
	var tel *telemetry
	if cfg.PerfInterval > 0 {
		tel = newTelemetry(f, now)
		if err := Publish(ctx, c, tel.started(f, now)...); err != nil {
			return err
		}
	}
	nextAudit := now.Add(time.Minute)
	t := time.NewTicker(cfg.Step)
	defer t.Stop()
	// step beats, starts the agents' own runs and ends the runs whose time
	// has come.
	step := func(now time.Time) error {
		if err := Publish(ctx, c, a.step(now)...); err != nil {
			return err
		}
		if tel != nil {
			if err := Publish(ctx, c, tel.step(a, now)...); err != nil {
				return err
			}
		}
		for i := range nextBeat {
			if !now.Before(nextBeat[i]) {
				if err := Publish(ctx, c, HeartbeatMessage(f.Heartbeat(i, now))); err != nil {
					return err
				}
				jitter := 0.9 + 0.2*f.rng.Float64()
				nextBeat[i] = now.Add(time.Duration(jitter * float64(a.beatInterval(i))))
			}
			if !now.Before(nextRun[i]) {
				run := f.Run(RunSpec{Agent: i, Job: cfg.Jobs[f.rng.IntN(len(cfg.Jobs))], StartedAt: now})
				if err := Publish(ctx, c, a.own(i, run)...); err != nil {
					return err
				}
				nextRun[i] = now.Add(time.Duration((0.5 + f.rng.ExpFloat64()) * float64(cfg.RunInterval)))
			}
		}
		if err := Publish(ctx, c, notifs.dueAcks(now)...); err != nil {
			return err
		}
		if !now.Before(nextAudit) {
			if err := Publish(ctx, c, f.Audit(now)); err != nil {
				return err
			}
			nextAudit = now.Add(time.Minute)
		}
		return nil
	}
	// catchUp takes the KV changes the fleet has received already, so a
	// command that arrives after one finds it applied.
	catchUp := func() error {
		for {
			var err error
			select {
			case e, ok := <-groups.updates:
				err = groups.take(ctx, c, e, ok, cfg.Clock())
			case e, ok := <-configs.updates:
				err = configs.take(ctx, c, e, ok, cfg.Clock())
			default:
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	// handle answers one command or kill. What is due by now goes first,
	// so what the agents publish follows their clock.
	handle := func(m *nats.Msg, now time.Time) error {
		if err := catchUp(); err != nil {
			return err
		}
		if err := Publish(ctx, c, a.step(now)...); err != nil {
			return err
		}
		if strings.HasPrefix(m.Subject, kanade.SubjectKill) {
			return Publish(ctx, c, a.kill(killedExec(m.Subject), now)...)
		}
		cmd := decodeCommand(m.Data)
		if cmd == nil {
			return nil
		}
		read := func() Gate { return readGate(ctx, c, *cmd) }
		return Publish(ctx, c, a.receive(m.Subject, *cmd, read, now)...)
	}
	// answer replies to a live request for one of the fleet's agents, as
	// of now: the KV changes received and the runs and self-updates due by
	// now come first.
	answer := func(m *nats.Msg, now time.Time) error {
		if err := catchUp(); err != nil {
			return err
		}
		if err := Publish(ctx, c, a.step(now)...); err != nil {
			return err
		}
		reply, ok := a.live(m.Subject, m.Data, now, int(c.Conn().MaxPayload()))
		if !ok || m.Reply == "" {
			return nil
		}
		if err := c.Conn().Publish(m.Reply, reply); err != nil {
			return fmt.Errorf("answer %s: %w", m.Subject, err)
		}
		return nil
	}
	if err := step(now); err != nil {
		return err
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case m := <-inbox:
			err = handle(m, cfg.Clock())
		case m := <-live:
			err = answer(m, cfg.Clock())
		case m := <-notes:
			if err = catchUp(); err == nil {
				f.notify(&notifs, m.Subject, m.Data, cfg.Clock())
			}
		case e, ok := <-groups.updates:
			err = groups.take(ctx, c, e, ok, cfg.Clock())
		case e, ok := <-configs.updates:
			err = configs.take(ctx, c, e, ok, cfg.Clock())
		case <-t.C:
			err = step(cfg.Clock())
		}
		if err != nil {
			return err
		}
	}
}
