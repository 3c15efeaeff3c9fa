package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/schedule"
	"github.com/kanade-fleet/backend/sim"
)

// The worker of both shells: the projector (with its housekeeping), the
// scheduler and, with -demo N, a simulated fleet publishing in the kanade
// wire format so a newcomer sees a living dashboard.
func init() { NewWorker = newFleetWorker }

type fleetWorker struct {
	proj *projection.Worker
	deps WorkerDeps
}

func newFleetWorker(deps WorkerDeps) (Worker, error) {
	p, err := projection.New(projection.Config{
		DB: deps.DB, Clock: deps.Clock, Logger: deps.Logger, Registerer: deps.Registry,
		StallAfter: deps.StallAfter, MaxBytes: deps.MaxBytes,
	})
	if err != nil {
		return nil, err
	}
	return &fleetWorker{proj: p, deps: deps}, nil
}

// Progress is the projector's view of its streams.
func (w *fleetWorker) Progress() []kanade.ProjectionProgress { return w.proj.Progress() }

// Run runs the parts on every NATS connection the shell's Link makes, until
// ctx ends. Each part retries its own failures, and a connection that closes
// for good ends them all until the next one: so Run returns only when ctx
// does (and then nil).
func (w *fleetWorker) Run(ctx context.Context) error {
	w.deps.Logger.Info("worker waiting for NATS")
	return w.deps.Link.Run(ctx, w.runOn)
}

// runOn runs the parts on one connection.
func (w *fleetWorker) runOn(ctx context.Context, c *bus.Client) error {
	// The scheduler holds handles opened on its connection, so each
	// connection gets its own; its metrics carry on in the same series.
	s, err := schedule.New(schedule.Config{
		DB: w.deps.DB, Bus: c, Clock: w.deps.Clock, StaleThreshold: w.deps.StaleThreshold,
		Logger: w.deps.Logger.With(slog.String("loop", "scheduler")), Registerer: w.deps.Registry,
	})
	if err != nil {
		return err
	}
	w.deps.Logger.Info("worker running", slog.String("nats", c.Conn().ConnectedUrlRedacted()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	run := func(i int, fn func(context.Context) error) {
		wg.Go(func() {
			errs[i] = fn(ctx)
			cancel() // one part ending ends the worker
		})
	}
	run(0, func(ctx context.Context) error { return w.proj.RunWith(ctx, c) })
	run(1, s.Run)
	if w.deps.Demo > 0 {
		run(2, func(ctx context.Context) error {
			w.deps.Logger.Info("demo fleet simulator on", slog.Int("agents", w.deps.Demo))
			err := sim.Run(ctx, c, sim.Config{Agents: w.deps.Demo, Schedules: true})
			if err != nil && !errors.Is(err, context.Canceled) {
				w.deps.Logger.Error("demo simulator stopped", slog.Any("err", err))
			}
			<-ctx.Done() // the demo stopping is no reason to stop the worker
			return nil
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
