package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/sim"
)

// The worker of both shells: the projector (with its housekeeping) and, with
// -demo N, a simulated fleet publishing in the kanade wire format so a
// newcomer sees a living dashboard. The scheduler joins here when it lands.
func init() { NewWorker = newProjectionWorker }

type projectionWorker struct {
	proj *projection.Worker
	deps WorkerDeps
}

func newProjectionWorker(deps WorkerDeps) (Worker, error) {
	p, err := projection.New(projection.Config{
		DB: deps.DB, NC: deps.NC, JS: deps.JS, Clock: deps.Clock,
		Logger: deps.Logger, Registerer: deps.Registry,
	})
	if err != nil {
		return nil, err
	}
	return &projectionWorker{proj: p, deps: deps}, nil
}

func (w *projectionWorker) Run(ctx context.Context) error {
	if w.deps.Demo <= 0 {
		return w.proj.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	simErr := make(chan error, 1)
	go func() {
		w.deps.Logger.Info("demo fleet simulator on", slog.Int("agents", w.deps.Demo))
		err := sim.Run(ctx, w.deps.NC, w.deps.JS, sim.Config{Agents: w.deps.Demo})
		if err != nil && !errors.Is(err, context.Canceled) {
			w.deps.Logger.Error("demo simulator stopped", slog.Any("err", err))
		}
		simErr <- nil
	}()
	err := w.proj.Run(ctx)
	cancel()
	<-simErr
	return err
}
