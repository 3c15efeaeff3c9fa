package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/fanout"
	"github.com/kanade-fleet/backend/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Scheduler. DB and Bus are required; the rest have
// defaults.
type Config struct {
	DB  *storage.DB
	Bus *bus.Client

	// StaleThreshold: a PC is alive when its last heartbeat is within it
	// (default 2m, the fleet rollup's rule).
	StaleThreshold time.Duration
	// Tick is how often calendar firings and due rollout waves are checked
	// (default 1s).
	Tick time.Duration
	// OnTime is how late a calendar firing may be noticed and still count as
	// on time (default 1m). Older firings were missed while no worker ran.
	OnTime time.Duration

	// Clock is the time every rule above is measured by (the wall clock
	// unless a test sets one).
	Clock kanade.Clock
	// Local is the zone of a fleet freeze whose tz is "local" (default
	// time.Local, the host's zone, as upstream).
	Local *time.Location
	// Logger defaults to slog.Default(); Registerer receives the metrics
	// (nil keeps them unregistered).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// MaxBackoff caps the restart backoff of the schedules watch (default
	// backoff.DefaultMax).
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
	fan *fanout.Fanout

	mu        sync.Mutex
	schedules map[string]*kanade.Schedule
	loaded    bool                 // the watch delivered the initial values
	checked   map[string]time.Time // calendar firings handled up to here
	minute    time.Time            // the last minute reconciled
	changed   map[string]bool      // registered since the last tick: reconcile now, not next minute
	freeze    freezeState

	bucketOnce sync.Mutex
	bucketOK   bool

	// chunk and publish are chunkSize and bus.Client.CommandChunk but in
	// tests (small chunks, a worker that dies half way).
	chunk   int
	publish chunkPublisher
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Scheduler, error) {
	if cfg.DB == nil || cfg.Bus == nil {
		return nil, errors.New("schedule: DB and Bus are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = kanade.SystemClock
	}
	if cfg.Local == nil {
		cfg.Local = time.Local
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
		cfg.MaxBackoff = backoff.DefaultMax
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger, m: m, schedules: map[string]*kanade.Schedule{}, checked: map[string]time.Time{}, changed: map[string]bool{},
		chunk: chunkSize, publish: cfg.Bus.CommandChunk}
	s.fan, err = fanout.New(fanout.Config{DB: cfg.DB, Bus: cfg.Bus, StaleThreshold: cfg.StaleThreshold, Clock: cfg.Clock,
		Logger: cfg.Logger, Invalid: s.invalid})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Run follows the schedules and fires them until ctx ends; it returns nil
// then. It never gives up: a failed watch is re-established with backoff and
// a failed tick is logged and retried at the next one.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for name, watch := range map[string]func(context.Context) error{"schedules": s.watch, "freeze": s.watchFreeze} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff.Forever(ctx, s.cfg.MaxBackoff, watch, func(err error, wait time.Duration) {
				s.m.errors.WithLabelValues("watch").Inc()
				s.log.Error("scheduler: "+name+" watch ended; re-establishing", slog.Any("err", err), slog.Duration("backoff", wait))
			})
		}()
	}
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

// Loaded reports whether the initial schedules and the freeze state have
// been read (readiness): nothing fires before.
func (s *Scheduler) Loaded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded && s.freeze.loaded
}

// watch loads KV "schedules" and follows every change until the watch ends.
// Each (re-)established watch rebuilds the registrations from the current
// values; a value that does not parse keeps the previous registration of its
// key (only a valid change or a delete replaces it).
func (s *Scheduler) watch(ctx context.Context) error {
	fresh := map[string]*kanade.Schedule{} // the initial values, swapped in at once
	initial := true
	return s.follow(ctx, kanade.BucketSchedules, func(e *bus.Entry) {
		s.mu.Lock()
		if e == nil { // every current value delivered
			s.schedules, s.loaded, initial = fresh, true, false
			s.m.schedules.Set(float64(len(fresh)))
			s.mu.Unlock()
			s.log.Info("scheduler: schedules loaded", slog.Int("schedules", len(fresh)))
			return
		}
		target := s.schedules
		if initial {
			target = fresh
		}
		s.apply(target, *e)
		if !initial {
			s.m.schedules.Set(float64(len(target)))
		}
		s.mu.Unlock()
	})
}

// follow watches bucket and hands fn every update (nil once the current
// values are all delivered) until ctx ends, which returns nil, or the watch
// breaks, which returns an error so the caller re-establishes it.
func (s *Scheduler) follow(ctx context.Context, bucket string, fn func(*bus.Entry)) error {
	updates, err := s.cfg.Bus.Watch(ctx, bucket)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s watch closed", bucket)
			}
			fn(e)
		}
	}
}

// apply registers one KV change in m. s.mu is held.
func (s *Scheduler) apply(m map[string]*kanade.Schedule, e bus.Entry) {
	key := e.Key
	if e.Deleted {
		delete(m, key)
		return
	}
	sc, err := kanade.ParseSchedule(key, e.Value)
	if err != nil {
		s.m.invalid.Inc()
		s.log.Warn("scheduler: skipping a schedule that does not parse; its previous version stays registered",
			slog.String("key", kanade.Clip(key)), slog.Uint64("revision", e.Revision), slog.Any("err", err))
		if prev, ok := s.schedules[key]; ok {
			m[key] = prev
		}
		return
	}
	m[key] = sc
	s.changed[key] = true
	s.log.Info("scheduler: schedule registered", slog.String("schedule", kanade.Clip(key)), slog.String("job", kanade.Clip(sc.JobID)),
		slog.String("kind", string(sc.Kind())), slog.Bool("enabled", sc.Enabled), slog.Uint64("revision", e.Revision))
}

// tick handles everything due at now: calendar firings, once a minute the
// per_pc / per_target reconcile, and rollout waves whose delay ended.
func (s *Scheduler) tick(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	if !s.loaded || !s.freeze.loaded {
		s.mu.Unlock()
		return nil
	}
	frozen, reason := s.freeze.active(now, s.cfg.Local)
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
	skipped := 0
	for _, sc := range list {
		if !sc.Backend() {
			continue
		}
		var err error
		switch sc.Kind() {
		case kanade.KindCalendar:
			err = s.calendar(ctx, sc, now, frozen, reason)
		case kanade.KindPerPC, kanade.KindPerTarget:
			// Every minute, and at once for a schedule just put (its
			// minute's claim still makes the reconcile happen once).
			if !(newMinute || changed[sc.ID]) {
				break
			}
			if frozen {
				skipped++
				break
			}
			err = s.reconcile(ctx, sc, minute, now, fl)
		}
		if err != nil {
			s.m.errors.WithLabelValues(string(sc.Kind())).Inc()
			errs = append(errs, fmt.Errorf("schedule %s: %w", sc.ID, err))
		}
	}
	if skipped > 0 {
		s.m.frozen.Add(float64(skipped))
		s.log.Warn("scheduler: per_pc / per_target reconciles skipped: the fleet is frozen",
			slog.Int("schedules", skipped), slog.String("reason", kanade.Clip(reason)))
	}
	if newMinute {
		// Firings a worker left half sent: once a minute is soon enough
		// (they wait resumeAfter first) and keeps the per-tick cost nil.
		if err := s.resume(ctx, now); err != nil {
			s.m.errors.WithLabelValues("resume").Inc()
			errs = append(errs, err)
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
// While the fleet is frozen the instants are skipped instead (skipFrozen).
func (s *Scheduler) calendar(ctx context.Context, sc *kanade.Schedule, now time.Time, frozen bool, reason string) error {
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
	if frozen {
		return s.skipFrozen(ctx, sc, from, now, reason)
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

// setChecked records that sc's calendar instants up to t were handled, here
// and in the database (for every worker and the next start).
func (s *Scheduler) setChecked(ctx context.Context, id string, t time.Time) error {
	s.mu.Lock()
	s.checked[id] = t
	s.mu.Unlock()
	return s.cfg.DB.Update(ctx, func(tx *storage.Tx) error { return tx.SetScheduleChecked(ctx, id, t) })
}

// fireCalendar claims one calendar instant and dispatches it.
func (s *Scheduler) fireCalendar(ctx context.Context, sc *kanade.Schedule, at, now time.Time, kind string) error {
	won, err := s.claim(ctx, FireKey(sc.ID, at))
	if err != nil || !won {
		return err
	}
	m, err := s.cfg.Bus.Job(ctx, sc.JobID)
	if err != nil {
		return err
	}
	target := sc.Target
	if sc.Rollout != nil && len(sc.Rollout.Waves) > 0 {
		// Waves go to their groups (control.md §1.3): those are expected.
		target = kanade.Target{}
		for _, w := range sc.Rollout.Waves {
			target.Groups = append(target.Groups, w.Group)
		}
	}
	count, err := s.fan.TargetCount(ctx, target, now)
	if err != nil {
		return err
	}
	return s.dispatchJob(ctx, sc, m, at, now, dispatchPlan{subjects: sc.Target.Subjects(), rollout: sc.Rollout, targetCount: count, kind: kind})
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
func (s *Scheduler) reconcile(ctx context.Context, sc *kanade.Schedule, minute, now time.Time, view *fleetView) error {
	if !sc.ActiveAt(now) {
		return nil
	}
	won, err := s.claim(ctx, ReconcileKey(sc.ID, minute))
	if err != nil || !won {
		return err
	}
	m, err := s.cfg.Bus.Job(ctx, sc.JobID)
	if err != nil {
		return err
	}
	timeout, err := m.Timeout()
	if err != nil {
		return fmt.Errorf("job %s: %w", sc.JobID, err)
	}
	fl, err := view.get(ctx)
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
	d := Reconcile(sc, ReconcileInput{Now: now, Expected: fanout.ExpectedPCs(sc.Target, fl),
		Completions: completions, Marks: marks, Window: DispatchWindow(jitter, timeout)})
	if !d.Fire {
		return nil
	}
	plan := dispatchPlan{targetCount: int64(len(d.PCs)), kind: string(sc.Kind())}
	if sc.Kind() == kanade.KindPerPC {
		plan.perPC = d.PCs
	} else {
		plan.subjects, plan.rollout = sc.Target.Subjects(), sc.Rollout
		plan.marks = []string{MarkKey(sc.ID, TargetMark)}
	}
	return s.dispatchJob(ctx, sc, m, now, now, plan)
}

// fleetView reads the alive PCs and the group memberships once per tick,
// when the first reconcile of the tick needs them, and shares them with the
// tick's other reconciles.
type fleetView struct {
	s     *Scheduler
	now   time.Time
	fleet *fanout.Fleet
}

func (v *fleetView) get(ctx context.Context) (*fanout.Fleet, error) {
	if v.fleet != nil {
		return v.fleet, nil
	}
	fl, err := v.s.fan.ReadFleet(ctx, v.now, true)
	if err != nil {
		return nil, err
	}
	v.fleet = fl
	return fl, nil
}

// invalid logs and counts a stored id that cannot go into a subject (the
// agents table and KV agent_groups may hold ids written before the
// identifier rules existed); fanout leaves it out.
func (s *Scheduler) invalid(kind, source, id string) {
	s.m.invalidIDs.Inc()
	s.log.Warn("scheduler: skipping an id that cannot go into a subject", slog.String("kind", kind),
		slog.String("source", source), slog.String("id", kanade.Clip(id)), slog.Int("bytes", len(id)))
}
