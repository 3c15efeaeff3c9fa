// Package projection is the writing half of the read model: it turns what
// agents publish on NATS (results, started events, audit entries, heartbeats)
// into rows of the SQL database (storage.md), and keeps that database tidy
// (reaping, expiry, retention).
//
// # The promise: exactly once in effect
//
// JetStream delivers at least once and, once anything is redelivered, not in
// order. A high-water mark of acknowledged sequences cannot tell "applied"
// from "delivered to somebody, not yet applied" under those rules, and two
// workers moving one mark past each other's messages lose them. So the
// projector does not rely on acknowledgements at all:
//
//   - Each stream is read through an ordered consumer: an ephemeral,
//     unacknowledged consumer that hands messages over strictly in stream
//     order. The client library detects a gap (a lost message, a missed
//     heartbeat, a reconnect) and recreates the consumer right after the last
//     message it handed over, so what a loop sees is always a contiguous run
//     of the stream.
//   - The database keeps each stream's offset (storage.Offset), written in the
//     same transaction as the rows of the batch it covers, and a loop starts
//     its consumer right after that offset. Every message up to the offset is
//     applied; nothing past it is. A crash, a failed batch or a lost
//     connection restarts the loop from the offset, so nothing is skipped and
//     nothing committed is applied twice.
//   - Offsets only move forward (storage.Tx.Advance) and a batch applies only
//     its messages past the offset it reads inside its transaction. Several
//     workers may therefore read the same stream: whichever commits first
//     applies a message, the others find it behind the offset. That makes a
//     second worker a hot standby rather than a hazard.
//   - Every rule of storage.md is also idempotent by the message's own key
//     (result_id, the v5 id of a legacy result, the started event's
//     result_id, the audit entry's stream sequence), so even a replay that
//     the offset did not stop changes nothing twice.
//
// What it tolerates: redelivery, reordering and loss in transit (the
// ordered consumer restarts), crashes anywhere (the offset commits with the
// rows), any number of workers on one database, NATS or the database going
// away (loops restart with backoff and resume from the offset), a stream
// deleted and created again (detected by its creation time; the offset
// restarts at 0). What it cannot recover: messages the stream itself dropped
// by its limits before anyone applied them.
//
// It must never block good messages behind a bad one (a message that cannot
// be decoded is counted, logged and passed over), never hold more message
// bytes in memory than Config.MaxBytes allows, and never stop for good: a
// failing loop restarts with backoff.
package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultHousekeepingTxTime is the time a housekeeping transaction aims at
// unless Config says otherwise. The projector's next batch may wait for one
// whole transaction, so this is most of what retention adds to a result's
// wait: at 10M runs, retention beside 100 results/s gave a p99 wait of 380
// ms at 100ms and 289 ms at 50ms, and still deleted 290 rows/s (a day's
// expiry at a million runs a day is 12/s).
const DefaultHousekeepingTxTime = 50 * time.Millisecond

// DefaultHousekeepingRest is how long housekeeping rests after each of its
// transactions, as a multiple of the time that transaction took, unless
// Config says otherwise: 1, so it writes at most half the time.
//
// A retention delete costs the disk more after its commit than during it:
// the checkpointer copies every page it dirtied (a run's row and its
// fourteen index entries, scattered over a 10M-run file) back into the
// database and syncs it. Back to back, the deletes kept the disk saturated
// for the whole of a 1M-run sweep, and any sync on the projector's own
// path (the WAL header's, the first commit after the checkpointer starts
// the WAL over) queued behind that writeback: 2.4 s for one fsync of the
// WAL was sampled in the kernel during bench/scale's retention run, whose
// longest wait ranged from 0.4 to 2.7 s over seven runs. Retention needs
// little throughput (a day's expiry at a million runs a day is 12 rows/s,
// and it still deletes hundreds a second at half time).
const DefaultHousekeepingRest = 1.0

// Config configures a Worker. DB is required; Bus is the connection Run
// uses (RunWith takes its own).
type Config struct {
	DB    *storage.DB
	Bus   *bus.Client
	Clock kanade.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	// BatchSize caps the messages of one fetched batch (default 1000).
	BatchSize int
	// MaxBytes bounds the message bytes one stream's loop holds in memory:
	// buffered by the client, being decoded, queued and being applied
	// (default 64 MiB). The client's fetch buffer never goes below twice the
	// server's max_payload, so one message of any allowed size always fits.
	MaxBytes int64
	// MaxOutputBytes caps the text taken from one result_output object
	// (default 16 MiB); longer output is cut with a note naming the object.
	MaxOutputBytes int64
	// StallAfter: a stream whose offset has not moved for this long while a
	// message has waited at least as long is stalled (default
	// kanade.DefaultStallAfter).
	StallAfter time.Duration
	// InactiveThreshold is how long the server keeps an idle ordered
	// consumer (default 5m, the library's); tests shorten it.
	InactiveThreshold time.Duration
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
	// HousekeepingTxTime is the time one housekeeping transaction aims at,
	// as Clock measures it: a longer one halves the rows of the next
	// (default DefaultHousekeepingTxTime; see Worker.repeat). A Clock that
	// stands still keeps every transaction at HousekeepingBatch rows.
	HousekeepingTxTime time.Duration
	// HousekeepingRest is how long housekeeping waits after a transaction
	// before its next one, as a multiple of the time that transaction took
	// by Clock (default DefaultHousekeepingRest; negative: no rest).
	HousekeepingRest float64
	// StaleThreshold: an agent whose last heartbeat is older is stale, and
	// the watchdog reports it offline (default kanade.DefaultStaleThreshold).
	StaleThreshold time.Duration
	// WatchSince: the watchdog judges only agents whose last heartbeat is
	// at or after it (default: the Clock's now when New runs, the worker's
	// start).
	WatchSince time.Time
	// AgentPruneDays: housekeeping deletes agents whose last heartbeat is
	// older than this many days; 0 is off (the default), above
	// kanade.MaxAgentPruneDays is that. The field agent_prune_days of KV
	// server_settings, where set, wins over it.
	AgentPruneDays int
	// ManifestTTL is how long a job's timeout is cached, and the longest
	// a job's inventory hint is trusted without a watch event or a read
	// confirming it (default 1m).
	ManifestTTL time.Duration
	// MaxBackoff caps the restart backoff of a failed loop (default
	// backoff.DefaultMax).
	MaxBackoff time.Duration

	// Test hooks: a non-nil error from one of them aborts the batch as a
	// crash would (the loop restarts from the database offset).
	afterCommit func(consumer string) error
	inApply     func(consumer string) error
	// observe sees every batch about to be applied.
	observe func(consumer string, messages int, bytes int64)
	// inFlush runs inside every heartbeat flush, before its write.
	inFlush func()
	// inHousekeep runs inside every housekeeping transaction, with the
	// step's action and the rows it may touch.
	inHousekeep func(action string, limit int)
	// warmed sees what each warm read before a delete_results transaction
	// found (storage.DB.WarmOldResults), with the transaction's limit.
	warmed func(limit int, found map[string]int)
	// maxPacedRows replaces the constant of that name (a backlog's
	// threshold; see HousekeepOver).
	maxPacedRows int
	// rest replaces housekeeping's real wait between two transactions
	// (backoff.Sleep, by default).
	rest func(ctx context.Context, d time.Duration) error
}

func (c *Config) defaults() error {
	if c.DB == nil {
		return errors.New("projection: DB is required")
	}
	if c.Clock == nil {
		c.Clock = kanade.SystemClock
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	setDefault(&c.BatchSize, 1000)
	setDefault(&c.MaxBytes, 64<<20)
	setDefault(&c.MaxOutputBytes, 16<<20)
	setDefault(&c.StallAfter, kanade.DefaultStallAfter)
	setDefault(&c.HeartbeatFlush, time.Second)
	setDefault(&c.HeartbeatMaxPending, 5000)
	setDefault(&c.Housekeeping, 5*time.Minute)
	setDefault(&c.HousekeepingBatch, 1000)
	setDefault(&c.HousekeepingTxTime, DefaultHousekeepingTxTime)
	if c.HousekeepingRest == 0 {
		c.HousekeepingRest = DefaultHousekeepingRest
	}
	setDefault(&c.maxPacedRows, maxPacedRows)
	if c.rest == nil {
		c.rest = backoff.Sleep
	}
	setDefault(&c.StaleThreshold, kanade.DefaultStaleThreshold)
	if c.WatchSince.IsZero() {
		c.WatchSince = c.Clock()
	}
	if c.AgentPruneDays < 0 {
		return errors.New("projection: AgentPruneDays must not be negative")
	}
	c.AgentPruneDays = min(c.AgentPruneDays, kanade.MaxAgentPruneDays)
	setDefault(&c.ManifestTTL, time.Minute)
	setDefault(&c.MaxBackoff, backoff.DefaultMax)
	return nil
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// Worker runs the projector's loops. Build it with New; its metrics and the
// progress it reports outlive any one NATS connection, so a shell that
// replaces a closed connection runs the same Worker again (RunWith).
type Worker struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	consumers []consumerSpec
	progress  map[string]*progress

	hbReady      atomic.Bool
	perfReady    atomic.Bool
	flushReq     chan chan struct{}
	perfFlushReq chan chan struct{}
}

// New checks cfg and registers the metrics. Nothing touches NATS or the
// database until Run.
func New(cfg Config) (*Worker, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, consumers: defaultConsumers(), progress: map[string]*progress{},
		flushReq: make(chan chan struct{}), perfFlushReq: make(chan chan struct{})}
	for _, c := range w.consumers {
		w.progress[c.Name] = &progress{name: c.Name}
	}
	m, err := newMetrics(cfg.Registerer, w)
	if err != nil {
		return nil, err
	}
	w.m = m
	return w, nil
}

// Run runs every loop on cfg.Bus until ctx ends (see RunWith).
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.Bus == nil {
		return errors.New("projection: Run needs Config.Bus (or use RunWith)")
	}
	return w.RunWith(ctx, w.cfg.Bus)
}

// RunWith runs every loop (one per stream, heartbeats, housekeeping) on the
// given connection until ctx ends, then returns nil. Loops that fail are
// restarted with backoff; RunWith itself never gives up. A shell whose
// connection closed for good cancels ctx and calls RunWith again with the
// new one.
func (w *Worker) RunWith(ctx context.Context, c *bus.Client) error {
	conn := newConn(c, w.cfg, w.log)
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Go(func() { w.forever(ctx, name, fn) })
	}
	for _, spec := range w.consumers {
		start(spec.Name, func(ctx context.Context) error { return w.runConsumer(ctx, conn, spec) })
	}
	start("heartbeats", func(ctx context.Context) error { return w.runHeartbeats(ctx, conn) })
	start("inventory_specs", conn.specs.follow)
	start("perf", func(ctx context.Context) error { return w.runPerf(ctx, conn) })
	if w.cfg.Housekeeping > 0 {
		start("housekeeping", func(ctx context.Context) error { return w.runHousekeeping(ctx, c) })
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

// Progress reports every stream's progress as this worker sees it, for the
// worker's readiness and the fleet rollup of a shell that runs it.
func (w *Worker) Progress() []kanade.ProjectionProgress {
	out := make([]kanade.ProjectionProgress, 0, len(w.consumers))
	for _, c := range w.consumers {
		out = append(out, w.progress[c.Name].snapshot())
	}
	return out
}

// StallAfter is the configured stall threshold (for readiness).
func (w *Worker) StallAfter() time.Duration { return w.cfg.StallAfter }
