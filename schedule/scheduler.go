package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Scheduler. DB and JS are required.
type Config struct {
	DB    *storage.DB
	JS    jetstream.JetStream
	Clock kanade.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// StaleThreshold: a PC is alive when its last heartbeat is within it
	// (default 2m, the fleet rollup's rule).
	StaleThreshold time.Duration
	// Tick is how often calendar firings and due rollout waves are checked
	// (default 1s).
	Tick time.Duration
	// OnTime is how late a calendar firing may be noticed and still count as
	// on time (default 1m). Older firings were missed while no worker ran.
	OnTime time.Duration
	// MaxBackoff caps the restart backoff of the schedules watch (default 30s).
	MaxBackoff time.Duration
}

// tickTimeout bounds one tick, so a hung NATS or database fails it (the next
// tick retries) instead of stalling the scheduler.
const tickTimeout = 30 * time.Second

// Scheduler fires the schedules of KV "schedules" (scheduler.md). Any number
// of Schedulers may run against the same NATS and database: every firing,
// every per-minute reconcile and every missed-firing record is claimed by
// creating a key in KV "scheduler_dispatch", which JetStream lets exactly one
// of them do. A claimed firing whose worker dies before publishing is lost
// rather than sent twice: a fleet command run twice is the worse failure.
type Scheduler struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu        sync.Mutex
	schedules map[string]*kanade.Schedule
	loaded    bool                 // the watch delivered the initial values
	checked   map[string]time.Time // calendar firings handled up to here
	minute    time.Time            // the last minute reconciled
	changed   map[string]bool      // registered since the last tick: reconcile now, not next minute

	kvOnce   sync.Mutex
	dispatch jetstream.KeyValue
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Scheduler, error) {
	if cfg.DB == nil || cfg.JS == nil {
		return nil, errors.New("schedule: DB and JS are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = kanade.SystemClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StaleThreshold <= 0 {
		cfg.StaleThreshold = kanade.DefaultStaleThreshold
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.OnTime <= 0 {
		cfg.OnTime = time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg, log: cfg.Logger, m: m, schedules: map[string]*kanade.Schedule{}, checked: map[string]time.Time{}, changed: map[string]bool{}}, nil
}

// Run follows the schedules and fires them until ctx ends; it returns nil
// then. It never gives up: a failed watch is re-established with backoff and
// a failed tick is logged and retried at the next one.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		backoff.Forever(ctx, s.cfg.MaxBackoff, s.watch, func(err error, wait time.Duration) {
			s.m.errors.WithLabelValues("watch").Inc()
			s.log.Error("scheduler: schedules watch ended; re-establishing", slog.Any("err", err), slog.Duration("backoff", wait))
		})
	}()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		}
		// A tick is finished even when shutdown begins during it: a firing
		// stopped halfway would have its commands out but no executions row.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tickTimeout)
		err := s.tick(tctx, s.cfg.Clock())
		cancel()
		if err != nil {
			s.log.Error("scheduler: tick failed", slog.Any("err", err))
		}
	}
}

// Loaded reports whether the initial schedules have been read (readiness).
func (s *Scheduler) Loaded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded
}

// watch loads KV "schedules" and follows every change until the watch ends.
// Each (re-)established watch rebuilds the registrations from the current
// values; a value that does not parse keeps the previous registration of its
// key (only a valid change or a delete replaces it).
func (s *Scheduler) watch(ctx context.Context) error {
	kv, err := s.cfg.JS.KeyValue(ctx, kanade.BucketSchedules)
	if err != nil {
		return fmt.Errorf("open KV %s: %w", kanade.BucketSchedules, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch KV %s: %w", kanade.BucketSchedules, err)
	}
	defer w.Stop()
	fresh := map[string]*kanade.Schedule{} // the initial values, swapped in at once
	initial := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errors.New("schedules watch closed")
		}
		s.mu.Lock()
		if e == nil { // every current value delivered
			s.schedules, s.loaded, initial = fresh, true, false
			s.m.schedules.Set(float64(len(fresh)))
			s.mu.Unlock()
			s.log.Info("scheduler: schedules loaded", slog.Int("schedules", len(fresh)))
			continue
		}
		target := s.schedules
		if initial {
			target = fresh
		}
		s.apply(target, e)
		if !initial {
			s.m.schedules.Set(float64(len(target)))
		}
		s.mu.Unlock()
	}
}

// apply registers one KV change in m. s.mu is held.
func (s *Scheduler) apply(m map[string]*kanade.Schedule, e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(m, key)
		return
	}
	sc, err := kanade.ParseSchedule(key, e.Value())
	if err != nil {
		s.m.invalid.Inc()
		s.log.Warn("scheduler: skipping a schedule that does not parse; its previous version stays registered",
			slog.String("key", kanade.Clip(key)), slog.Uint64("revision", e.Revision()), slog.Any("err", err))
		if prev, ok := s.schedules[key]; ok {
			m[key] = prev
		}
		return
	}
	m[key] = sc
	s.changed[key] = true
	s.log.Info("scheduler: schedule registered", slog.String("schedule", kanade.Clip(key)), slog.String("job", kanade.Clip(sc.JobID)),
		slog.String("kind", string(sc.Kind())), slog.Bool("enabled", sc.Enabled), slog.Uint64("revision", e.Revision()))
}

// tick handles everything due at now: calendar firings, once a minute the
// per_pc / per_target reconcile, and rollout waves whose delay ended.
func (s *Scheduler) tick(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	if !s.loaded {
		s.mu.Unlock()
		return nil
	}
	list := make([]*kanade.Schedule, 0, len(s.schedules))
	for _, sc := range s.schedules {
		list = append(list, sc)
	}
	minute := now.Truncate(time.Minute)
	newMinute := minute.After(s.minute)
	if newMinute {
		s.minute = minute
	}
	changed := s.changed
	s.changed = map[string]bool{}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })

	var errs []error
	fl := &fleetView{s: s, now: now}
	for _, sc := range list {
		if !sc.Backend() {
			continue
		}
		var err error
		switch sc.Kind() {
		case kanade.KindCalendar:
			err = s.calendar(ctx, sc, now)
		case kanade.KindPerPC, kanade.KindPerTarget:
			// Every minute, and at once for a schedule just put (its
			// minute's claim still makes the reconcile happen once).
			if newMinute || changed[sc.ID] {
				err = s.reconcile(ctx, sc, minute, now, fl)
			}
		}
		if err != nil {
			s.m.errors.WithLabelValues(string(sc.Kind())).Inc()
			errs = append(errs, fmt.Errorf("schedule %s: %w", sc.ID, err))
		}
	}
	if err := s.sendDueWaves(ctx, now); err != nil {
		s.m.errors.WithLabelValues("wave").Inc()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// calendar fires the schedule's calendar instants in (checked, now]. The
// first time this process sees a schedule, checked comes from the database
// (what any worker handled); a schedule no worker ever saw starts at now, so
// nothing before its creation fires. Instants noticed more than OnTime late
// were missed while no worker ran: the newest runs late once when within
// starting_deadline, the others are recorded as missed.
func (s *Scheduler) calendar(ctx context.Context, sc *kanade.Schedule, now time.Time) error {
	s.mu.Lock()
	from, ok := s.checked[sc.ID]
	s.mu.Unlock()
	if !ok {
		t, seen, err := s.cfg.DB.ScheduleCheckedUntil(ctx, sc.ID)
		if err != nil {
			return err
		}
		from = t
		if !seen {
			from = now
			if err := s.cfg.DB.Update(ctx, func(tx *storage.Tx) error { return tx.SetScheduleChecked(ctx, sc.ID, now) }); err != nil {
				return err
			}
		}
	}
	if !now.After(from) {
		return nil
	}
	runLate, missed := CatchUp(sc, from, now)
	last := time.Time{}
	for _, at := range missed {
		var err error
		if now.Sub(at) <= s.cfg.OnTime {
			err = s.fireCalendar(ctx, sc, at, now, "calendar") // noticed in time: not missed
		} else {
			err = s.missed(ctx, sc, at, now)
		}
		if err != nil {
			return err
		}
		last = at
	}
	if runLate != nil {
		kind := "late"
		if now.Sub(*runLate) <= s.cfg.OnTime {
			kind = "calendar"
		}
		if err := s.fireCalendar(ctx, sc, *runLate, now, kind); err != nil {
			return err
		}
		last = *runLate
	}
	s.mu.Lock()
	s.checked[sc.ID] = now
	s.mu.Unlock()
	if !last.IsZero() {
		// Record progress even when this worker lost every claim, so a
		// restart does not report firings another worker performed.
		return s.cfg.DB.Update(ctx, func(tx *storage.Tx) error { return tx.SetScheduleChecked(ctx, sc.ID, last) })
	}
	return nil
}

// fireCalendar claims one calendar instant and dispatches it.
func (s *Scheduler) fireCalendar(ctx context.Context, sc *kanade.Schedule, at, now time.Time, kind string) error {
	won, err := s.claim(ctx, FireKey(sc.ID, at))
	if err != nil || !won {
		return err
	}
	m, err := s.manifest(ctx, sc.JobID)
	if err != nil {
		return err
	}
	target := sc.Target
	var count *int64
	if !target.All && len(target.Groups) == 0 {
		n := int64(len(uniq(target.PCs)))
		count = &n
	}
	return s.dispatchJob(ctx, sc, m, at, now, dispatchPlan{subjects: target.Subjects(), rollout: sc.Rollout, targetCount: count, kind: kind})
}

// missed records a calendar firing nobody performed, once across workers.
func (s *Scheduler) missed(ctx context.Context, sc *kanade.Schedule, at, now time.Time) error {
	won, err := s.claim(ctx, "missed."+escapeKey(sc.ID)+"."+at.UTC().Format("20060102T150405Z"))
	if err != nil || !won {
		return err
	}
	s.m.missed.Inc()
	s.log.Warn("scheduler: firing missed while no worker ran", slog.String("schedule", kanade.Clip(sc.ID)),
		slog.String("job", kanade.Clip(sc.JobID)), slog.Time("fire_at", at), slog.Duration("late", now.Sub(at)))
	return s.audit(ctx, "schedule_missed", sc.JobID, map[string]any{
		"schedule_id": sc.ID, "job_id": sc.JobID, "fire_at": kanade.FormatTime(at)}, now)
}

// reconcile runs one minute's per_pc / per_target decision, claimed so that
// one worker makes it.
func (s *Scheduler) reconcile(ctx context.Context, sc *kanade.Schedule, minute, now time.Time, fl *fleetView) error {
	if !sc.ActiveAt(now) {
		return nil
	}
	won, err := s.claim(ctx, ReconcileKey(sc.ID, minute))
	if err != nil || !won {
		return err
	}
	m, err := s.manifest(ctx, sc.JobID)
	if err != nil {
		return err
	}
	timeout, err := m.Timeout()
	if err != nil {
		return fmt.Errorf("job %s: %w", sc.JobID, err)
	}
	alive, groups, err := fl.get(ctx)
	if err != nil {
		return err
	}
	completions, err := s.cfg.DB.Completions(ctx, sc.JobID)
	if err != nil {
		return err
	}
	marks, err := s.marks(ctx, sc.ID)
	if err != nil {
		return err
	}
	jitter := sc.JitterDuration()
	if sc.Jitter == "" && m.Execute.Jitter != "" {
		jitter, _ = kanade.ParseDuration(m.Execute.Jitter)
	}
	d := Reconcile(sc, ReconcileInput{Now: now, Expected: ExpectedPCs(sc.Target, alive, groups),
		Completions: completions, Marks: marks, Window: DispatchWindow(jitter, timeout)})
	if !d.Fire {
		return nil
	}
	n := int64(len(d.PCs))
	plan := dispatchPlan{targetCount: &n, kind: string(sc.Kind())}
	if sc.Kind() == kanade.KindPerPC {
		for _, pc := range d.PCs {
			plan.subjects = append(plan.subjects, kanade.SubjectCommandsPC+pc)
			plan.marks = append(plan.marks, MarkKey(sc.ID, pc))
		}
	} else {
		plan.subjects, plan.rollout = sc.Target.Subjects(), sc.Rollout
		plan.marks = []string{MarkKey(sc.ID, TargetMark)}
	}
	return s.dispatchJob(ctx, sc, m, now, now, plan)
}

// auditSubjects caps the subjects an audit event lists.
const auditSubjects = 1000

// fleetView reads the alive PCs and the group memberships once per tick,
// when the first reconcile of the tick needs them, and shares them with the
// tick's other reconciles.
type fleetView struct {
	s      *Scheduler
	now    time.Time
	loaded bool
	alive  []string
	groups map[string][]string
}

func (f *fleetView) get(ctx context.Context) ([]string, map[string][]string, error) {
	if f.loaded {
		return f.alive, f.groups, nil
	}
	alive, err := f.s.cfg.DB.AlivePCs(ctx, f.now.Add(-f.s.cfg.StaleThreshold))
	if err != nil {
		return nil, nil, err
	}
	alive = f.s.skipInvalid("pc_id", "agents", alive, kanade.ValidPCID)
	groups, err := f.s.pcGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	f.alive, f.groups, f.loaded = alive, groups, true
	return alive, groups, nil
}

// dispatchPlan is what one firing publishes.
type dispatchPlan struct {
	subjects    []string
	rollout     *kanade.Rollout
	targetCount *int64
	marks       []string // written before anything is published
	kind        string   // metric label
}

// dispatchJob performs one firing (scheduler.md "A firing"): marks, then
// script_current, then the commands (or the first waves, the later ones
// stored for sendDueWaves), then the executions row, then the audit event.
func (s *Scheduler) dispatchJob(ctx context.Context, sc *kanade.Schedule, m *kanade.Manifest, at, now time.Time, p dispatchPlan) error {
	if len(p.marks) > 0 {
		// A KV put is a publish on $KV.<bucket>.<key>; pipelining them costs
		// one round trip per chunk instead of one per PC.
		if _, err := s.dispatchKV(ctx); err != nil {
			return err
		}
		msgs := make([]*nats.Msg, len(p.marks))
		for i, k := range p.marks {
			msgs[i] = &nats.Msg{Subject: "$KV." + kanade.BucketDispatch + "." + k, Data: []byte(kanade.FormatTime(now))}
		}
		if err := s.publishAll(ctx, msgs); err != nil {
			return fmt.Errorf("put marks: %w", err)
		}
	}
	scripts, err := s.cfg.JS.KeyValue(ctx, kanade.BucketScriptCurrent)
	if err != nil {
		return fmt.Errorf("open KV %s: %w", kanade.BucketScriptCurrent, err)
	}
	if _, err := scripts.Put(ctx, m.ID, []byte(m.Version)); err != nil {
		return fmt.Errorf("put %s[%s]: %w", kanade.BucketScriptCurrent, m.ID, err)
	}
	execID := kanade.NewUUID()
	command := func(waveAt time.Time) ([]byte, string, error) {
		o := kanade.CommandOptions{ExecID: execID, RequestID: kanade.NewUUID()}
		if sc.Jitter != "" {
			j := sc.JitterDuration()
			o.Jitter = &j
		}
		if sc.Deadline() > 0 {
			d := waveAt.Add(sc.Deadline())
			o.DeadlineAt = &d
		}
		c, err := m.Command(o)
		if err != nil {
			return nil, "", err
		}
		b, err := json.Marshal(c)
		return b, o.RequestID, err
	}
	var subjects []string
	var later []storage.Wave
	var now1 []*nats.Msg
	add := func(subject string) error {
		b, requestID, err := command(at)
		if err != nil {
			return err
		}
		now1 = append(now1, commandMsg(subject, b, requestID))
		subjects = append(subjects, subject)
		return nil
	}
	if p.rollout != nil && len(p.rollout.Waves) > 0 {
		for i, w := range p.rollout.Waves {
			subject := kanade.SubjectCommandsGroup + w.Group
			due := at.Add(w.DelayDuration())
			if !due.After(now) {
				if err := add(subject); err != nil {
					return err
				}
				continue
			}
			b, _, err := command(due)
			if err != nil {
				return err
			}
			later = append(later, storage.Wave{ExecID: execID, Wave: i, Subject: subject, DueAt: due, Command: b})
			subjects = append(subjects, subject)
		}
	} else {
		for _, subject := range p.subjects {
			if err := add(subject); err != nil {
				return err
			}
		}
	}
	if err := s.publishAll(ctx, now1); err != nil {
		return err
	}
	err = s.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: execID, JobID: m.ID, Version: m.Version,
			InitiatedBy: "scheduler", InitiatedAt: now, TargetCount: p.targetCount}); err != nil {
			return err
		}
		if err := tx.AddWaves(ctx, later); err != nil {
			return err
		}
		if sc.Kind() == kanade.KindCalendar {
			return tx.SetScheduleChecked(ctx, sc.ID, at)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.m.firings.WithLabelValues(p.kind).Inc()
	s.log.Info("scheduler: fired", slog.String("schedule", kanade.Clip(sc.ID)), slog.String("job", kanade.Clip(m.ID)),
		slog.String("version", kanade.Clip(m.Version)), slog.String("exec_id", execID), slog.Time("fire_at", at),
		slog.Int("subjects", len(subjects)), slog.Int("waves_later", len(later)))
	// A per_pc dispatch may name 100k subjects: the event keeps the first
	// auditSubjects of them and the total, so it stays far below NATS's
	// message size limit.
	listed := subjects[:min(len(subjects), auditSubjects)]
	payload := map[string]any{"schedule_id": sc.ID, "exec_id": execID, "version": m.Version,
		"target_count": p.targetCount, "subjects": listed, "subjects_total": len(subjects),
		"fire_at": kanade.FormatTime(at)}
	return s.audit(ctx, "exec", m.ID, payload, now)
}

// commandMsg is one command for JetStream (so the EXEC stream keeps it for
// agents that reconnect), with its request_id as the message id, so a
// retried publish is stored once.
func commandMsg(subject string, data []byte, requestID string) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{requestID}}}
}

// publishChunk bounds the publishes in flight (the client stalls past 4000).
const publishChunk = 1000

// publishAll publishes msgs through JetStream pipelined, a chunk at a time,
// and returns once every one is acknowledged: a dispatch to 100k PCs costs
// a round trip per chunk, not per PC.
func (s *Scheduler) publishAll(ctx context.Context, msgs []*nats.Msg) error {
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), publishChunk)]
		msgs = msgs[len(chunk):]
		futures := make([]jetstream.PubAckFuture, 0, len(chunk))
		for _, m := range chunk {
			f, err := s.cfg.JS.PublishMsgAsync(m)
			if err != nil {
				return fmt.Errorf("publish %s: %w", m.Subject, err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// sendDueWaves publishes rollout waves whose delay has passed. A wave is
// marked sent in the database before it is published: two workers never
// both send it, and a worker dying in between loses it (logged by nobody;
// the execution shows fewer answers).
func (s *Scheduler) sendDueWaves(ctx context.Context, now time.Time) error {
	waves, err := s.cfg.DB.DueWaves(ctx, now, 100)
	if err != nil {
		return err
	}
	for _, w := range waves {
		var won bool
		err := s.cfg.DB.Update(ctx, func(tx *storage.Tx) (err error) {
			won, err = tx.MarkWaveSent(ctx, w.ExecID, w.Wave, now)
			return err
		})
		if err != nil {
			return err
		}
		if !won {
			continue
		}
		var c kanade.Command
		if err := json.Unmarshal(w.Command, &c); err != nil {
			return fmt.Errorf("wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
		if _, err := s.cfg.JS.PublishMsg(ctx, commandMsg(w.Subject, w.Command, c.RequestID)); err != nil {
			return fmt.Errorf("publish wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
		s.m.waves.Inc()
	}
	return nil
}

// audit publishes an audit event on audit.scheduler.{action}.{job}.
func (s *Scheduler) audit(ctx context.Context, action, jobID string, payload any, now time.Time) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	subject := "audit.scheduler." + action
	var target *string
	if jobID != "" {
		target = &jobID
		if kanade.ValidToken(jobID) {
			subject += "." + jobID
		}
	}
	ev, err := json.Marshal(kanade.AuditEvent{Actor: "scheduler", Action: action, Target: target, Payload: b,
		OccurredAt: kanade.Timestamp{Time: now}})
	if err != nil {
		return err
	}
	if _, err := s.cfg.JS.Publish(ctx, subject, ev); err != nil {
		return fmt.Errorf("publish audit %s: %w", subject, err)
	}
	return nil
}

// claim creates key in KV scheduler_dispatch; true means this worker owns
// what the key names.
func (s *Scheduler) claim(ctx context.Context, key string) (bool, error) {
	kv, err := s.dispatchKV(ctx)
	if err != nil {
		return false, err
	}
	_, err = kv.Create(ctx, key, []byte(kanade.FormatTime(s.cfg.Clock())))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("claim %s: %w", key, err)
	}
	return true, nil
}

// dispatchKV opens (creating when needed) KV scheduler_dispatch: history 1,
// entries kept an hour, longer than any dispatch window.
func (s *Scheduler) dispatchKV(ctx context.Context) (jetstream.KeyValue, error) {
	s.kvOnce.Lock()
	defer s.kvOnce.Unlock()
	if s.dispatch != nil {
		return s.dispatch, nil
	}
	kv, err := s.cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kanade.BucketDispatch,
		Description: "kanade scheduler: exactly-once claims and dispatch marks", History: 1, TTL: time.Hour,
		Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("open KV %s: %w", kanade.BucketDispatch, err)
	}
	s.dispatch = kv
	return kv, nil
}

// manifest reads the job at fire time, so edits apply at the next firing.
func (s *Scheduler) manifest(ctx context.Context, jobID string) (*kanade.Manifest, error) {
	kv, err := s.cfg.JS.KeyValue(ctx, kanade.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("open KV %s: %w", kanade.BucketJobs, err)
	}
	e, err := kv.Get(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", jobID, err)
	}
	var m kanade.Manifest
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, fmt.Errorf("job %s: %w", jobID, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("job %s: %w", jobID, err)
	}
	return &m, nil
}

// pcGroups reads KV agent_groups (pc_id → {"groups":[…]}).
func (s *Scheduler) pcGroups(ctx context.Context) (map[string][]string, error) {
	kv, err := s.cfg.JS.KeyValue(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return nil, fmt.Errorf("open KV %s: %w", kanade.BucketAgentGroups, err)
	}
	out := map[string][]string{}
	err = readAll(ctx, kv, nil, func(e jetstream.KeyValueEntry) {
		var v struct {
			Groups []string `json:"groups"`
		}
		if json.Unmarshal(e.Value(), &v) == nil {
			out[e.Key()] = s.skipInvalid("group", kanade.BucketAgentGroups, v.Groups, kanade.ValidToken)
		}
	})
	return out, err
}

// skipInvalid removes from ids (in place) those valid refuses, logging and
// counting each. The agents table and KV agent_groups may hold ids written
// before the identifier rules existed, and one of them in a subject or a
// dispatch-mark key would cost this worker its NATS connection ("maximum
// control line exceeded") or publish on a wrong subject.
func (s *Scheduler) skipInvalid(kind, source string, ids []string, valid func(string) bool) []string {
	return slices.DeleteFunc(ids, func(id string) bool {
		if valid(id) {
			return false
		}
		s.m.invalidIDs.Inc()
		s.log.Warn("scheduler: skipping an id that cannot go into a subject", slog.String("kind", kind),
			slog.String("source", source), slog.String("id", kanade.Clip(id)), slog.Int("bytes", len(id)))
		return true
	})
}

// marks reads a schedule's dispatch marks (key → dispatch time) by PC, or
// under TargetMark.
func (s *Scheduler) marks(ctx context.Context, scheduleID string) (map[string]time.Time, error) {
	kv, err := s.dispatchKV(ctx)
	if err != nil {
		return nil, err
	}
	prefix := MarkPrefix(scheduleID)
	byKey := map[string]string{MarkKey(scheduleID, TargetMark): TargetMark}
	out := map[string]time.Time{}
	err = readAll(ctx, kv, []string{prefix + ">"}, func(e jetstream.KeyValueEntry) {
		t, err := kanade.ParseTime(string(e.Value()))
		if err != nil {
			return
		}
		if who, ok := byKey[e.Key()]; ok {
			out[who] = t
			return
		}
		if pc, ok := unescapeKey(strings.TrimPrefix(e.Key(), prefix+"pc.")); ok {
			out[pc] = t
		}
	})
	return out, err
}

// readAll visits the current (non-deleted) values of a bucket, or of the
// keys matching filters.
func readAll(ctx context.Context, kv jetstream.KeyValue, filters []string, fn func(jetstream.KeyValueEntry)) error {
	var w jetstream.KeyWatcher
	var err error
	if filters == nil {
		w, err = kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	} else {
		w, err = kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	}
	if err != nil {
		return fmt.Errorf("read KV %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("read KV %s: watch closed", kv.Bucket())
			}
			if e == nil {
				return nil
			}
			fn(e)
		}
	}
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// unescapeKey inverts escapeKey.
func unescapeKey(s string) (string, bool) {
	if s == "=" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		var v byte
		for _, c := range []byte{s[i+1], s[i+2]} {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			default:
				return "", false
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), true
}
