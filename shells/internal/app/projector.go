package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/schedule"
	"github.com/kanade-fleet/backend/sim"
)

// The worker of both shells: the projector (with its housekeeping), the
// scheduler and, with -demo N, a simulated fleet publishing in the kanade
// wire format so a newcomer sees a living dashboard.
func init() { NewWorker = newFleetWorker }

type fleetWorker struct {
	proj  *projection.Worker
	sched *schedule.Scheduler
	deps  WorkerDeps
}

func newFleetWorker(deps WorkerDeps) (Worker, error) {
	p, err := projection.New(projection.Config{
		DB: deps.DB, NC: deps.NC, JS: deps.JS, Clock: deps.Clock,
		Logger: deps.Logger, Registerer: deps.Registry,
	})
	if err != nil {
		return nil, err
	}
	s, err := schedule.New(schedule.Config{
		DB: deps.DB, JS: deps.JS, Clock: deps.Clock, StaleThreshold: deps.StaleThreshold,
		Logger: deps.Logger.With(slog.String("loop", "scheduler")), Registerer: deps.Registry,
	})
	if err != nil {
		return nil, err
	}
	return &fleetWorker{proj: p, sched: s, deps: deps}, nil
}

// Run runs the parts until ctx ends. Each part retries its own failures
// forever, so Run returns only when ctx does (and then nil).
func (w *fleetWorker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	run := func(i int, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx)
			cancel() // one part ending ends the worker
		}()
	}
	run(0, w.proj.Run)
	run(1, w.sched.Run)
	if w.deps.Demo > 0 {
		run(2, func(ctx context.Context) error {
			w.deps.Logger.Info("demo fleet simulator on", slog.Int("agents", w.deps.Demo))
			err := sim.Run(ctx, w.deps.NC, w.deps.JS, sim.Config{Agents: w.deps.Demo, Schedules: true})
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
