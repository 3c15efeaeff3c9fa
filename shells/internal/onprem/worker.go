package onprem

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/groupmirror"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/schedule"
	"github.com/kanade-fleet/backend/shells/internal/app"
	"github.com/kanade-fleet/backend/sim"
	"github.com/prometheus/client_golang/prometheus"
)

// Worker is the writing side of the backend (projector, scheduler, demo
// simulator): it runs until ctx is cancelled and returns nil then, or returns
// an error when it cannot go on, which stops the whole shell. It waits for
// NATS by itself and starts over on a new connection when one closes.
//
// It is an interface, not the concrete type, so that "no worker" is a nil
// the shell can hand to app.Run as is.
type Worker interface {
	Run(ctx context.Context) error
	// Progress is the projector's view of each projected stream, for
	// readiness and the fleet rollup.
	Progress() []kanade.ProjectionProgress
}

// NewWorker builds the worker both on-prem shells run beside their servers
// on d's database, NATS link, clock and metrics registry: the projector
// (with its housekeeping), the scheduler, the SQL mirror of the group
// memberships (groupmirror) and, with KANADE_DEMO=N, a
// simulated fleet publishing in the kanade wire format so a newcomer sees a
// living dashboard (KANADE_DEMO_RUNS fixes how long its runs of given jobs
// last). It returns nil when enabled is false (KANADE_WORKER=off).
func NewWorker(d *app.Deps, reg prometheus.Registerer, enabled bool) (Worker, error) {
	if d.Config.Demo > 0 && !enabled {
		d.Logger.Info("KANADE_DEMO needs the worker; ignored with KANADE_WORKER=off",
			slog.Int("agents", d.Config.Demo))
	}
	if !enabled {
		d.Logger.Info("worker off (KANADE_WORKER=off): no projection or scheduling in this process")
		return nil, nil
	}
	logger := d.Logger.With(slog.String("part", "worker"))
	p, err := projection.New(projection.Config{
		DB: d.DB, Clock: d.Clock, Logger: logger, Registerer: reg,
		StallAfter: d.Config.ProjectionStall, MaxBytes: d.Config.ProjectorMaxBytes,
		StaleThreshold: d.Config.StaleThreshold, AgentPruneDays: d.Config.AgentPruneDays,
	})
	if err != nil {
		return nil, err
	}
	return &fleetWorker{proj: p, deps: d, reg: reg, logger: logger}, nil
}

type fleetWorker struct {
	proj   *projection.Worker
	deps   *app.Deps
	reg    prometheus.Registerer
	logger *slog.Logger
}

// Progress is the projector's view of its streams.
func (w *fleetWorker) Progress() []kanade.ProjectionProgress { return w.proj.Progress() }

// Run runs the parts on every NATS connection the shell's Link makes, until
// ctx ends. Each part retries its own failures, and a connection that closes
// for good ends them all until the next one: so Run returns only when ctx
// does (and then nil).
func (w *fleetWorker) Run(ctx context.Context) error {
	w.logger.Info("worker waiting for NATS")
	return w.deps.NATS.Link.Run(ctx, w.runOn)
}

// runOn runs the parts on one connection.
func (w *fleetWorker) runOn(ctx context.Context, c *bus.Client) error {
	// The scheduler holds handles opened on its connection, so each
	// connection gets its own; its metrics carry on in the same series.
	s, err := schedule.New(schedule.Config{
		DB: w.deps.DB, Bus: c, Clock: w.deps.Clock, StaleThreshold: w.deps.Config.StaleThreshold,
		Logger: w.logger.With(slog.String("loop", "scheduler")), Registerer: w.reg,
	})
	if err != nil {
		return err
	}
	w.logger.Info("worker running", slog.String("nats", c.Conn().ConnectedUrlRedacted()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	run := func(i int, fn func(context.Context) error) {
		wg.Go(func() {
			errs[i] = fn(ctx)
			cancel() // one part ending ends the worker
		})
	}
	run(0, func(ctx context.Context) error { return w.proj.RunWith(ctx, c) })
	run(1, s.Run)
	run(3, func(ctx context.Context) error {
		return groupmirror.Run(ctx, c, groupmirror.Config{DB: w.deps.DB, Logger: w.logger.With(slog.String("loop", "groups mirror"))})
	})
	if demo := w.deps.Config.Demo; demo > 0 {
		run(2, func(ctx context.Context) error {
			w.logger.Info("demo fleet simulator on", slog.Int("agents", demo), slog.Any("run_durations", w.deps.Config.DemoRuns))
			err := sim.Run(ctx, c, sim.Config{Agents: demo, Schedules: true, RunDurations: w.deps.Config.DemoRuns})
			if err != nil && !errors.Is(err, context.Canceled) {
				w.logger.Error("demo simulator stopped", slog.Any("err", err))
			}
			<-ctx.Done() // the demo stopping is no reason to stop the worker
			return nil
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
