package projection

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
)

// Performance samples (observe.md §1.4) arrive over core NATS: no stream,
// nothing to acknowledge, lossy by design (a lost sample is a gap in a
// chart). What the projector owes them is to never store one twice, never
// block on a bad one and never drop silently:
//
//   - both subscriptions are in a queue group, so several workers share the
//     samples rather than each writing all of them;
//   - samples are buffered and written about every HeartbeatFlush, or as
//     soon as perfMaxPending wait, in one transaction (host and process
//     together), with the rollups of the rows actually inserted
//     (storage.InsertHostPerf), so a re-published sample, or one a worker
//     retries after a failed flush, changes nothing;
//   - a message over 64 KiB or that does not decode or validate is counted
//     and logged; a slow database makes the buffer grow and, past the
//     client's pending limits, NATS drops messages, which are counted;
//   - a failed flush keeps its samples for the next one, up to
//     perfMaxBuffered; beyond that the window is dropped, counted and logged.

// perfQueue is the queue group of every worker's sample subscriptions.
const perfQueue = "kanade-projector-perf"

// perfMaxPending flushes early once this many messages wait (upstream
// #488: every second or every 1 000 samples).
const perfMaxPending = 1000

// perfMaxBuffered bounds what failed flushes may keep for a retry.
const perfMaxBuffered = 200_000

type perfBuffer struct {
	mu    sync.Mutex
	hosts []kanade.HostPerf
	procs []kanade.ProcessPerf
}

func (b *perfBuffer) size() int { return len(b.hosts) + len(b.procs) }

func (b *perfBuffer) take() ([]kanade.HostPerf, []kanade.ProcessPerf) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, p := b.hosts, b.procs
	b.hosts, b.procs = nil, nil
	return h, p
}

// runPerf subscribes to host_perf.> and process_perf.> and flushes the
// buffer until ctx ends.
func (w *Worker) runPerf(ctx context.Context, c *conn) error {
	buf := &perfBuffer{}
	full := make(chan struct{}, 1)
	handle := func(kind string) nats.MsgHandler {
		return func(msg *nats.Msg) {
			w.m.perfReceived.WithLabelValues(kind).Inc()
			var err error
			var host kanade.HostPerf
			var proc kanade.ProcessPerf
			switch {
			case len(msg.Data) > kanade.MaxPerfPayloadBytes:
				err = kanade.ErrPayloadTooLarge
			case kind == "host":
				err = decode(msg.Data, &host)
			default:
				err = decode(msg.Data, &proc)
			}
			if err != nil {
				w.m.perfDropped.WithLabelValues("invalid").Inc()
				w.log.Warn("projector: dropping a performance sample that does not decode",
					slog.String("subject", kanade.Clip(msg.Subject)), slog.String("err", kanade.Clip(err.Error())))
				return
			}
			buf.mu.Lock()
			if kind == "host" {
				buf.hosts = append(buf.hosts, host)
			} else if len(proc.Processes) > 0 { // an empty tick stores nothing
				buf.procs = append(buf.procs, proc)
			}
			n := buf.size()
			buf.mu.Unlock()
			if n >= perfMaxPending {
				select {
				case full <- struct{}{}:
				default:
				}
			}
		}
	}
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for _, s := range []struct{ subject, kind string }{{kanade.SubjectHostPerf, "host"}, {kanade.SubjectProcessPerf, "process"}} {
		sub, err := c.bus.Conn().QueueSubscribe(s.subject, perfQueue, handle(s.kind))
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s.subject, err)
		}
		subs = append(subs, sub)
		if err := sub.SetPendingLimits(hbPendingMsgs, hbPendingBytes); err != nil {
			return fmt.Errorf("%s pending limits: %w", s.subject, err)
		}
	}
	w.perfReady.Store(true)
	defer w.perfReady.Store(false)
	dropped := make([]int, len(subs))
	checkDrops := func() {
		for i, sub := range subs {
			if d, err := sub.Dropped(); err == nil && d > dropped[i] {
				w.m.perfDropped.WithLabelValues("slow").Add(float64(d - dropped[i]))
				w.log.Error("projector: performance samples dropped by a slow subscription",
					slog.String("subject", sub.Subject), slog.Int("dropped", d-dropped[i]))
				dropped[i] = d
			}
		}
	}
	return w.flushLoop(ctx, subs, full, w.perfFlushReq, func(ctx context.Context) { w.flushPerf(ctx, buf) },
		checkDrops, "performance sample subscription")
}

// flushPerf writes the buffered samples in one transaction.
func (w *Worker) flushPerf(ctx context.Context, buf *perfBuffer) {
	hosts, procs := buf.take()
	if len(hosts)+len(procs) == 0 {
		return
	}
	var nh, np int
	err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
		var err error
		if nh, err = tx.InsertHostPerf(ctx, hosts); err != nil {
			return err
		}
		np, err = tx.InsertProcessPerf(ctx, procs)
		return err
	})
	if err != nil {
		w.m.applyErrors.WithLabelValues("perf").Inc()
		buf.mu.Lock()
		defer buf.mu.Unlock()
		if buf.size()+len(hosts)+len(procs) > perfMaxBuffered {
			w.m.perfDropped.WithLabelValues("write").Add(float64(len(hosts) + len(procs)))
			w.log.Error("projector: performance flush failed; dropping the window", slog.Int("host", len(hosts)),
				slog.Int("process", len(procs)), slog.Any("err", err))
			return
		}
		// Insert-or-ignore makes a retry harmless.
		buf.hosts = append(hosts, buf.hosts...)
		buf.procs = append(procs, buf.procs...)
		w.log.Error("projector: performance flush failed; keeping the samples for the next flush",
			slog.Int("host", len(hosts)), slog.Int("process", len(procs)), slog.Any("err", err))
		return
	}
	w.m.perfStored.WithLabelValues("host").Add(float64(nh))
	w.m.perfStored.WithLabelValues("process").Add(float64(np))
}

// flushPerfNow makes the sample loop flush and waits for it (tests).
func (w *Worker) flushPerfNow() {
	done := make(chan struct{})
	w.perfFlushReq <- done
	<-done
}
