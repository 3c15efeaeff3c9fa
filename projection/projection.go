// Package projection is the writing half of the read model: it turns what
// agents publish on NATS (results, started events, audit entries, heartbeats)
// into rows of the SQL database (storage.md), and keeps that database tidy
// (reaping, expiry, retention).
//
// Its one promise is exactly-once in effect from at-least-once delivery: every
// batch of a durable consumer is applied in one transaction that also records
// the consumer's stream sequence, and is acknowledged only after that
// transaction commits. It must never acknowledge a message whose effect is not
// committed, never block good messages behind a bad one, and never stop for
// good: a failing loop restarts with backoff.
package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Worker. DB, NC and JS are required.
type Config struct {
	DB    *storage.DB
	NC    *nats.Conn
	JS    jetstream.JetStream
	Clock kanade.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	// BatchSize caps the messages applied in one transaction (default 1000).
	BatchSize int
	// AckWait is how long NATS waits for an ack before redelivering
	// (default 60s; it must exceed the time a batch spends in the pipeline).
	AckWait time.Duration
	// HeartbeatFlush is the heartbeat flush period (default 1s).
	HeartbeatFlush time.Duration
	// HeartbeatMaxPending flushes early once this many PCs wait (default 5000).
	HeartbeatMaxPending int
	// Housekeeping is the period of reaping, expiry and retention (default 5m);
	// negative switches housekeeping off.
	Housekeeping time.Duration
	// HousekeepingBatch bounds the rows one housekeeping transaction touches
	// (default 1000).
	HousekeepingBatch int
	// ManifestTTL is how long a job's timeout is cached (default 1m).
	ManifestTTL time.Duration
	// InfoInterval is how often consumer info is sampled for the lag gauges
	// (default 15s).
	InfoInterval time.Duration
	// MaxBackoff caps the restart backoff of a failed loop (default 30s).
	MaxBackoff time.Duration

	// Test hooks: a non-nil error from one of them aborts the batch as a
	// crash would (no ack, no rollback-and-retry in the same loop).
	afterCommit func(consumer string) error
	inApply     func(consumer string) error
}

func (c *Config) defaults() error {
	if c.DB == nil || c.NC == nil || c.JS == nil {
		return errors.New("projection: DB, NC and JS are required")
	}
	if c.Clock == nil {
		c.Clock = kanade.SystemClock
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	setDefault(&c.BatchSize, 1000)
	setDefault(&c.AckWait, time.Minute)
	setDefault(&c.HeartbeatFlush, time.Second)
	setDefault(&c.HeartbeatMaxPending, 5000)
	setDefault(&c.Housekeeping, 5*time.Minute)
	setDefault(&c.HousekeepingBatch, 1000)
	setDefault(&c.ManifestTTL, time.Minute)
	setDefault(&c.InfoInterval, 15*time.Second)
	setDefault(&c.MaxBackoff, 30*time.Second)
	return nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// Worker runs the projector's loops. Build it with New.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	manifests *manifestCache
	consumers []consumerSpec

	objOnce sync.Mutex
	objects jetstream.ObjectStore

	hbReady  atomic.Bool
	flushReq chan chan struct{}
}

// New checks cfg and registers the metrics. Nothing touches NATS or the
// database until Run.
func New(cfg Config) (*Worker, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, m: m, consumers: defaultConsumers(), flushReq: make(chan chan struct{})}
	w.manifests = newManifestCache(cfg.JS, cfg.Clock, cfg.ManifestTTL, 1024)
	return w, nil
}

// Run runs every loop (three durable consumers, heartbeats, housekeeping)
// until ctx ends, then returns nil. Loops that fail are restarted with
// backoff; Run itself never gives up.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.forever(ctx, name, fn)
		}()
	}
	for _, spec := range w.consumers {
		start(spec.name, func(ctx context.Context) error { return w.runConsumer(ctx, spec) })
	}
	start("heartbeats", w.runHeartbeats)
	if w.cfg.Housekeeping > 0 {
		start("housekeeping", w.runHousekeeping)
	}
	wg.Wait()
	return nil
}

// forever runs fn until ctx ends, restarting it with backoff whenever it
// returns (backoff.Forever), counting and logging each restart.
func (w *Worker) forever(ctx context.Context, name string, fn func(context.Context) error) {
	backoff.Forever(ctx, w.cfg.MaxBackoff, fn, func(err error, wait time.Duration) {
		w.m.restarts.WithLabelValues(name).Inc()
		w.log.Error("projector loop failed; restarting", slog.String("loop", name),
			slog.Any("err", err), slog.Duration("backoff", wait))
	})
}

// objectStore opens the result_output store once it is first needed.
func (w *Worker) objectStore(ctx context.Context) (jetstream.ObjectStore, error) {
	w.objOnce.Lock()
	defer w.objOnce.Unlock()
	if w.objects != nil {
		return w.objects, nil
	}
	os, err := w.cfg.JS.ObjectStore(ctx, kanade.ObjectResultOutput)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", kanade.ObjectResultOutput, err)
	}
	w.objects = os
	return os, nil
}
