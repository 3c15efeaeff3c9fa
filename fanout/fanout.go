// Package fanout sends a job to the fleet: the one path by which a job's
// commands go out, shared by an operator's POST /api/exec (control.md §1)
// and the scheduler's firings (scheduler.md "A firing"). It resolves who a
// target means, pins script_current, records the execution, publishes the
// commands (or stores the later rollout waves), and writes the audit event,
// in the order the contract fixes.
//
// It decides nothing about when or whether to fire: the scheduler and the
// handlers do, and hand it a finished request. It keeps no state between
// calls (everything lives in the database and JetStream), so a Lambda
// handler and any number of workers can use it at once.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// Config is what a Fanout works with. DB and Bus are required.
type Config struct {
	DB  *storage.DB
	Bus *bus.Client
	// StaleThreshold: a PC is alive when its last heartbeat is within it
	// (default kanade.DefaultStaleThreshold).
	StaleThreshold time.Duration
	Clock          kanade.Clock
	Logger         *slog.Logger
	// Invalid is told every stored id that cannot go into a subject and was
	// left out (default: logged).
	Invalid func(kind, source, id string)
}

// Fanout fans jobs out; see the package doc.
type Fanout struct {
	cfg Config
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Fanout, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("fanout: Config.DB and Config.Bus are required")
	}
	if cfg.StaleThreshold <= 0 {
		cfg.StaleThreshold = kanade.DefaultStaleThreshold
	}
	if cfg.Clock == nil {
		cfg.Clock = kanade.SystemClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Invalid == nil {
		log := cfg.Logger
		cfg.Invalid = func(kind, source, id string) {
			log.Warn("fanout: skipping an id that cannot go into a subject", slog.String("kind", kind),
				slog.String("source", source), slog.String("id", kanade.Clip(id)), slog.Int("bytes", len(id)))
		}
	}
	return &Fanout{cfg: cfg}, nil
}

// Fleet is what a target expands against at one instant: the alive PCs and
// KV agent_groups (pc id → its groups), invalid ids left out.
type Fleet struct {
	Alive  []string
	Groups map[string][]string
}

// ReadFleet reads the PCs alive at now and, when withGroups, the group
// memberships. The agents table and KV agent_groups may hold ids written
// before the identifier rules existed; one of them in a subject or a KV key
// would cost the connection ("maximum control line exceeded") or publish
// on a wrong subject, so they are reported to Config.Invalid and dropped.
func (f *Fanout) ReadFleet(ctx context.Context, now time.Time, withGroups bool) (*Fleet, error) {
	alive, err := f.cfg.DB.AlivePCs(ctx, now.Add(-f.cfg.StaleThreshold))
	if err != nil {
		return nil, err
	}
	fl := &Fleet{Alive: f.skipInvalid("pc_id", "agents", alive, kanade.ValidPCID)}
	if !withGroups {
		return fl, nil
	}
	entries, err := f.cfg.Bus.Entries(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return nil, err
	}
	fl.Groups = make(map[string][]string, len(entries))
	for _, e := range entries {
		var v struct {
			Groups []string `json:"groups"`
		}
		if json.Unmarshal(e.Value, &v) == nil {
			fl.Groups[e.Key] = f.skipInvalid("group", kanade.BucketAgentGroups, v.Groups, kanade.ValidToken)
		}
	}
	return fl, nil
}

func (f *Fanout) skipInvalid(kind, source string, ids []string, valid func(string) bool) []string {
	return slices.DeleteFunc(ids, func(id string) bool {
		if valid(id) {
			return false
		}
		f.cfg.Invalid(kind, source, id)
		return true
	})
}

// ExpectedPCs is who a target means right now: the listed pcs always (a PC
// named explicitly is expected even while it is offline, so it is caught up
// when it returns), every alive PC if all, and the alive PCs that belong to
// one of the listed groups. The result is sorted and without duplicates.
func ExpectedPCs(t kanade.Target, fl *Fleet) []string {
	out := slices.Clone(t.PCs)
	for _, pc := range fl.Alive {
		if t.All || slices.ContainsFunc(fl.Groups[pc], func(g string) bool { return slices.Contains(t.Groups, g) }) {
			out = append(out, pc)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TargetCount is the number of PCs a fan-out to t expects to answer
// (control.md §1.3): ExpectedPCs counted, at least 1 so an execution never
// completes with no answer. A fan-out to all alone is counted in SQL without
// listing the fleet.
func (f *Fanout) TargetCount(ctx context.Context, t kanade.Target, now time.Time) (int64, error) {
	if t.All && len(t.Groups) == 0 && len(t.PCs) == 0 {
		n, err := f.cfg.DB.CountAlive(ctx, now.Add(-f.cfg.StaleThreshold))
		return max(n, 1), err
	}
	if !t.All && len(t.Groups) == 0 {
		return max(int64(len(uniq(t.PCs))), 1), nil
	}
	fl, err := f.ReadFleet(ctx, now, len(t.Groups) > 0 && !t.All)
	if err != nil {
		return 0, err
	}
	return max(int64(len(ExpectedPCs(t, fl))), 1), nil
}

func uniq(s []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(s)))
}

// Exec is one fan-out, decided and validated by the caller.
type Exec struct {
	Manifest *kanade.Manifest
	// Subjects are the commands.* subjects of a plain fan-out, in order;
	// repeats are dropped. Ignored when Rollout has waves.
	Subjects []string
	// Rollout sends one command per wave on commands.group.<wave.group>,
	// each its delay after At: a wave already due goes out now, a later one
	// is stored and sent by the worker's scheduler (SendDueWaves), so the
	// delay survives a restart.
	Rollout *kanade.Rollout
	// At is the instant the waves count from (the request, or the firing).
	At time.Time
	// Options are the per-dispatch parts of the command; ExecID and
	// RequestID are filled in by Send.
	Options kanade.CommandOptions
	// Deadline, when set, gives each wave's deadline_at from the instant it
	// goes out (the scheduler's starting_deadline); it overrides
	// Options.DeadlineAt.
	Deadline func(waveAt time.Time) *time.Time
	// TargetCount is the PCs expected to answer (see TargetCount).
	TargetCount int64
	// Actor is the audit actor and executions.initiated_by: "operator" or
	// "scheduler".
	Actor string
	// Audit holds payload keys beyond the standard ones (sub, source,
	// schedule_id, fire_at); they win over the standard ones.
	Audit map[string]any
	// InTx, when set, runs in the transaction that records the execution
	// (the scheduler marks its calendar progress there).
	InTx func(ctx context.Context, tx *storage.Tx) error
}

// Outcome is what Send did.
type Outcome struct {
	ExecID    string
	RequestID string
	// Subjects lists every subject of the execution, delayed waves
	// included, in order.
	Subjects []string
	// Published is how many commands went out now; Later how many waves
	// wait for their delay.
	Published, Later int
}

// ErrPublish marks a failure to put the commands on the wire (the HTTP
// answer is 502). When nothing went out the execution is taken back;
// otherwise it stays, since agents will answer what they got.
var ErrPublish = errors.New("publish failed")

// auditSubjects caps the subjects an audit event lists: a per_pc dispatch
// may name 100k of them, and the event must stay far below NATS's message
// size limit. subjects_total gives the full count.
const auditSubjects = 1000

// Send performs e (control.md §1.5 order, with the executions row written
// first so a fast answer always finds it): pin script_current, record the
// execution and its later waves, publish, audit. One exec_id and one
// request_id serve every subject (agents drop a command whose request_id
// they already ran, so a PC reached twice runs once); each message has its
// own Nats-Msg-Id, so a retried publish is stored once.
func (f *Fanout) Send(ctx context.Context, e Exec) (Outcome, error) {
	p, err := f.Begin(ctx, e)
	if err != nil {
		return Outcome{}, err
	}
	o := p.Outcome
	out := p.out
	if out == nil {
		if out, err = bus.CommandMessages(p.Command, o.Subjects, func(s string) string { return o.ExecID + ":" + s }); err != nil {
			return Outcome{}, errors.Join(err, f.Abandon(ctx, o.ExecID))
		}
	}
	o.Published, err = f.cfg.Bus.Commands(ctx, out)
	if err != nil {
		if o.Published == 0 {
			// Nothing went out: take the execution back.
			err = errors.Join(err, f.Abandon(ctx, o.ExecID))
		}
		return o, fmt.Errorf("%w: %d of %d commands went out: %w", ErrPublish, o.Published, len(out), err)
	}
	f.audit(ctx, e, o, p.at)
	return o, nil
}

// Begun is a fan-out recorded but not yet published (Begin).
type Begun struct {
	Outcome
	// Command is the command of a plain fan-out, the same on every
	// subject; MsgID(subject) is each message's Nats-Msg-Id.
	Command kanade.Command
	// Data is Command's JSON, as published.
	Data []byte
	// out holds the due waves of a rollout, which Send publishes.
	out []bus.Outgoing
	at  time.Time
}

// MsgID is the Nats-Msg-Id of the plain fan-out's message on subject.
func (b Begun) MsgID(subject string) string { return b.ExecID + ":" + subject }

// Begin does what Send does before publishing (control.md §1.5): pin
// script_current, read the script digest, build the command(s), record the
// execution and its later waves. A caller that publishes a plain fan-out
// its own way (the scheduler's per_pc firing, in resumable chunks) then
// publishes Data on Subjects with MsgID, and calls Audit with the same e
// when they are out, or Abandon when none went out.
func (f *Fanout) Begin(ctx context.Context, e Exec) (Begun, error) {
	m := e.Manifest
	at := f.cfg.Clock()
	// A failed pin is logged, not fatal (control.md §1.6): the agents'
	// version check then compares with the previous version, which only
	// makes them skip, never run something unintended.
	if err := f.cfg.Bus.SetScriptCurrent(ctx, m.ID, m.Version); err != nil {
		f.cfg.Logger.Warn("fanout: script_current not pinned", slog.String("job", kanade.Clip(m.ID)), slog.Any("err", err))
	}
	// A script object goes out with its digest, so agents refuse a body
	// that changed after the dispatch was decided. The HTTP route reads it
	// first (its errors are the caller's 404 / 503); the scheduler leaves
	// it to here.
	if name := m.Execute.ScriptObject; name != "" && e.Options.ScriptObjectSHA256 == "" {
		digest, err := f.cfg.Bus.ScriptDigest(ctx, name)
		if err != nil {
			return Begun{}, fmt.Errorf("script object %s of job %s: %w", kanade.Clip(name), kanade.Clip(m.ID), err)
		}
		e.Options.ScriptObjectSHA256 = digest
	}
	b := Begun{Outcome: Outcome{ExecID: kanade.NewUUID(), RequestID: kanade.NewUUID()}, at: at}
	o := &b.Outcome
	command := func(at time.Time) (kanade.Command, error) {
		opts := e.Options
		opts.ExecID, opts.RequestID = o.ExecID, o.RequestID
		if e.Deadline != nil {
			opts.DeadlineAt = e.Deadline(at)
		}
		return m.Command(opts)
	}
	var later []storage.Wave
	if e.Rollout != nil && len(e.Rollout.Waves) > 0 {
		b.out = []bus.Outgoing{}
		for i, w := range e.Rollout.Waves {
			subject := kanade.SubjectCommandsGroup + w.Group
			due := e.At.Add(w.DelayDuration())
			c, err := command(due)
			if err != nil {
				return Begun{}, err
			}
			o.Subjects = append(o.Subjects, subject)
			if !due.After(at) {
				msgs, err := bus.CommandMessages(c, []string{subject}, func(s string) string { return waveMsgID(o.ExecID, i, s) })
				if err != nil {
					return Begun{}, err
				}
				b.out = append(b.out, msgs...)
				continue
			}
			data, err := json.Marshal(c)
			if err != nil {
				return Begun{}, err
			}
			later = append(later, storage.Wave{ExecID: o.ExecID, Wave: i, Subject: subject, DueAt: due, Command: data})
		}
	} else {
		o.Subjects = dedupe(e.Subjects)
		c, err := command(e.At)
		if err != nil {
			return Begun{}, err
		}
		if c.RequestID == "" {
			return Begun{}, fmt.Errorf("command %s: no request_id", kanade.Clip(c.ID))
		}
		b.Command = c
		if b.Data, err = json.Marshal(c); err != nil {
			return Begun{}, fmt.Errorf("command %s: %w", kanade.Clip(c.ID), err)
		}
	}
	o.Later = len(later)
	count := e.TargetCount
	err := f.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: o.ExecID, JobID: m.ID, Version: m.Version,
			InitiatedBy: e.Actor, InitiatedAt: at, TargetCount: &count}); err != nil {
			return err
		}
		if err := tx.AddWaves(ctx, later); err != nil {
			return err
		}
		if e.InTx != nil {
			return e.InTx(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return Begun{}, fmt.Errorf("record execution: %w", err)
	}
	return b, nil
}

// Abandon takes back an execution Begin recorded and nothing was published
// for. A failure here leaves a pending row that housekeeping expires.
func (f *Fanout) Abandon(ctx context.Context, execID string) error {
	dctx := context.WithoutCancel(ctx)
	return f.cfg.DB.Update(dctx, func(tx *storage.Tx) error { return tx.DeleteExecution(dctx, execID) })
}

// AuditPayload is the payload of the audit event of a fan-out (Audit).
func AuditPayload(e Exec, o Outcome) map[string]any {
	payload := map[string]any{"exec_id": o.ExecID, "version": e.Manifest.Version, "target_count": e.TargetCount,
		"subjects": o.Subjects[:min(len(o.Subjects), auditSubjects)], "subjects_total": len(o.Subjects),
		"wave_mode": e.Rollout != nil && len(e.Rollout.Waves) > 0}
	for k, v := range e.Audit {
		payload[k] = v
	}
	return payload
}

// audit publishes audit.<actor>.exec.<job> (control.md §1.8), best effort:
// the commands are out, and a lost audit event must not turn that into an
// error the caller would retry.
func (f *Fanout) audit(ctx context.Context, e Exec, o Outcome, now time.Time) {
	if err := Audit(ctx, f.cfg.Bus, e.Actor, "exec", e.Manifest.ID, AuditPayload(e, o), now); err != nil {
		f.cfg.Logger.Warn("fanout: audit event lost", slog.String("exec_id", o.ExecID), slog.Any("err", err))
	}
}

// Audit publishes one audit event on audit.<actor>.<action>.<target>.
func Audit(ctx context.Context, b *bus.Client, actor, action, target string, payload any, now time.Time) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	ev := kanade.AuditEvent{Actor: actor, Action: action, Payload: data, OccurredAt: kanade.Timestamp{Time: now}}
	if target != "" {
		ev.Target = &target
	}
	return b.Audit(ctx, ev)
}

// waveMsgID is the Nats-Msg-Id of wave i of an execution (two waves may
// name the same group).
func waveMsgID(execID string, i int, subject string) string {
	return execID + ":w" + strconv.Itoa(i) + ":" + subject
}

// dedupe keeps the first of each subject, in order.
func dedupe(subjects []string) []string {
	seen := make(map[string]bool, len(subjects))
	out := make([]string, 0, len(subjects))
	for _, s := range subjects {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// SendDueWaves publishes stored rollout waves whose delay has passed, and
// reports how many it sent. A wave is marked sent in the database before it
// is published: two workers never both send it, and a worker dying in
// between loses it (the execution then shows fewer answers).
func (f *Fanout) SendDueWaves(ctx context.Context, now time.Time) (int, error) {
	waves, err := f.cfg.DB.DueWaves(ctx, now, 100)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, w := range waves {
		var won bool
		err := f.cfg.DB.Update(ctx, func(tx *storage.Tx) (err error) {
			won, err = tx.MarkWaveSent(ctx, w.ExecID, w.Wave, now)
			return err
		})
		if err != nil {
			return sent, err
		}
		if !won {
			continue
		}
		out := []bus.Outgoing{{Subject: w.Subject, Data: w.Command, MsgID: waveMsgID(w.ExecID, w.Wave, w.Subject)}}
		if _, err := f.cfg.Bus.Commands(ctx, out); err != nil {
			return sent, fmt.Errorf("wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
		sent++
	}
	return sent, nil
}
