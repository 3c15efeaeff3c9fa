package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type consumerKind int

const (
	kindResults consumerKind = iota
	kindStarted
	kindAudit
)

// consumerSpec names one durable consumer and what its messages become.
type consumerSpec struct {
	name, stream, filter string
	kind                 consumerKind
}

// Consumer names; the database keys its offsets by these, so they never change.
const (
	ConsumerResults = "kanade-projector-results"
	ConsumerStarted = "kanade-projector-started"
	ConsumerAudit   = "kanade-projector-audit"
)

func defaultConsumers() []consumerSpec {
	return []consumerSpec{
		{name: ConsumerResults, stream: kanade.StreamResults, filter: kanade.SubjectResults, kind: kindResults},
		{name: ConsumerStarted, stream: kanade.StreamEvents, filter: kanade.SubjectEventsStarted, kind: kindStarted},
		{name: ConsumerAudit, stream: kanade.StreamAudit, filter: kanade.SubjectAudit, kind: kindAudit},
	}
}

// batch is one transaction's worth of messages, decoded and ready to apply.
// msgs holds every message (good and bad) so all are acked after commit.
type batch struct {
	msgs    []jetstream.Msg
	maxSeq  uint64
	results []seqd[storage.Result]
	started []seqd[storage.Started]
	audit   []storage.Audit
}

// seqd is a decoded payload with the stream sequence of its message.
type seqd[T any] struct {
	seq uint64
	v   T
}

// errCrash marks an abort injected by a test hook.
var errCrash = errors.New("projection: simulated crash")

// opTimeout bounds one NATS or database operation of the pipeline, so a hung
// dependency fails the loop (and restarts it) instead of stalling forever.
const opTimeout = 2 * time.Minute

// runConsumer syncs the durable consumer with the database offset, then runs
// a two-stage pipeline until ctx ends or a stage fails: a fetcher that pulls
// and decodes the next batch while an applier commits the current one. After
// a failure the loop returns; the unacknowledged messages are replayed by the
// next sync (see sync) so nothing is lost and nothing is applied twice.
func (w *Worker) runConsumer(ctx context.Context, spec consumerSpec) error {
	cons, err := w.sync(ctx, spec)
	if err != nil {
		return err
	}
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	batches := make(chan *batch, maxCoalesce)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(batches)
		fetchErr <- w.fetchLoop(fetchCtx, cons, spec, batches)
	}()
	go w.sampleInfo(fetchCtx, cons, spec.name)

	var applyErr error
	for b := range batches {
		if applyErr != nil {
			continue // drained unacked; the next sync replays them
		}
		b = coalesce(b, batches)
		if err := w.apply(ctx, spec, b); err != nil {
			applyErr = err
			if !errors.Is(err, errCrash) {
				w.m.applyErrors.WithLabelValues(spec.name).Inc()
			}
			stopFetch()
		}
	}
	if err := <-fetchErr; err != nil && applyErr == nil {
		return fmt.Errorf("consumer %s: %w", spec.name, err)
	}
	if applyErr != nil {
		return fmt.Errorf("consumer %s: %w", spec.name, applyErr)
	}
	return nil
}

// fetchLoop pulls batches until ctx ends. It holds every message it pulled
// until the applier has it, so a clean shutdown leaves nothing unacked.
func (w *Worker) fetchLoop(ctx context.Context, cons jetstream.Consumer, spec consumerSpec, out chan<- *batch) error {
	for ctx.Err() == nil {
		msgs, err := w.fetch(ctx, cons)
		if err != nil {
			if ctx.Err() != nil {
				// Stopping: what this fetch held stays unacknowledged and
				// is replayed from the offset at the next start.
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		b, err := w.prepare(pctx, spec, msgs)
		cancel()
		if err != nil {
			return err
		}
		out <- b // the applier always drains, so this never blocks for good
	}
	return nil
}

// fetch returns what is available now (up to BatchSize); when nothing is, it
// waits a few seconds for the first message, then takes whatever followed it.
func (w *Worker) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	n := w.cfg.BatchSize
	mb, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	msgs, err := drain(ctx, mb, nil)
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	mb, err = cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	msgs, err = drain(ctx, mb, nil)
	if err != nil || len(msgs) == 0 || n == 1 {
		return msgs, err
	}
	mb, err = cons.FetchNoWait(n - 1)
	if err != nil {
		return msgs, err
	}
	return drain(ctx, mb, msgs)
}

// errAbandoned says a fetch was given up before the library finished it.
// Messages it would still deliver are held by nobody, so the loop must
// restart (and sync recreates the consumer from the offset) rather than go on
// past them.
var errAbandoned = errors.New("fetch abandoned before it completed")

// drain collects a fetch's messages, but never waits on the library for long:
// a pull the server holds (for example at MaxAckPending) must not hang the
// loop.
func drain(ctx context.Context, mb jetstream.MessageBatch, msgs []jetstream.Msg) ([]jetstream.Msg, error) {
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	ch := mb.Messages()
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				err := mb.Error()
				if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) ||
					errors.Is(err, context.DeadlineExceeded) {
					return msgs, nil
				}
				if errors.Is(err, context.Canceled) {
					return msgs, errAbandoned
				}
				return msgs, fmt.Errorf("fetch: %w", err)
			}
			msgs = append(msgs, m)
		case <-ctx.Done():
			return msgs, errAbandoned
		case <-timer.C:
			return msgs, errAbandoned
		}
	}
}

// prepare decodes a batch. A message that cannot be decoded or validated is
// logged, counted and kept only for its ack: it must never block the good
// messages around it. Outputs moved to the object store and manifest
// timeouts are fetched here, outside the transaction; a transient failure
// fails the batch (it is replayed).
func (w *Worker) prepare(ctx context.Context, spec consumerSpec, msgs []jetstream.Msg) (*batch, error) {
	b := &batch{msgs: msgs}
	for _, msg := range msgs {
		md, err := msg.Metadata()
		if err != nil {
			w.bad(spec, msg, 0, fmt.Errorf("metadata: %w", err))
			continue
		}
		seq := md.Sequence.Stream
		b.maxSeq = max(b.maxSeq, seq)
		if md.NumDelivered > 1 {
			w.m.redeliveries.WithLabelValues(spec.name).Inc()
		}
		switch spec.kind {
		case kindResults:
			var r kanade.ExecResult
			if err := decode(msg.Data(), &r); err != nil {
				w.bad(spec, msg, seq, err)
				continue
			}
			b.results = append(b.results, seqd[storage.Result]{seq, storage.Result{ExecResult: r, RecordedAt: md.Timestamp.UTC()}})
		case kindStarted:
			var e kanade.EventStarted
			if err := decode(msg.Data(), &e); err != nil {
				w.bad(spec, msg, seq, err)
				continue
			}
			b.started = append(b.started, seqd[storage.Started]{seq, storage.Started{EventStarted: e, RecordedAt: md.Timestamp.UTC()}})
		case kindAudit:
			var a kanade.AuditEvent
			if err := decode(msg.Data(), &a); err != nil {
				w.bad(spec, msg, seq, err)
				continue
			}
			b.audit = append(b.audit, storage.Audit{AuditEvent: a, StreamSeq: seq})
		}
	}
	for i := range b.results {
		if err := w.fetchOutputs(ctx, &b.results[i].v); err != nil {
			return nil, err
		}
	}
	for i := range b.started {
		s := &b.started[i].v
		if s.ManifestID == "" {
			continue
		}
		t, err := w.manifests.timeout(ctx, s.ManifestID)
		if err != nil {
			return nil, err
		}
		s.Timeout = t
	}
	return b, nil
}

// validator is what every wire payload implements.
type validator interface{ Validate() error }

func decode(data []byte, v validator) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return v.Validate()
}

func (w *Worker) bad(spec consumerSpec, msg jetstream.Msg, seq uint64, err error) {
	w.m.decodeFailures.WithLabelValues(spec.stream).Inc()
	w.log.Warn("projector: skipping undecodable message", slog.String("stream", spec.stream),
		slog.String("subject", msg.Subject()), slog.Uint64("stream_seq", seq), slog.Any("err", err))
}

// fetchOutputs replaces stdout/stderr with the object-store text the agent
// moved there. A missing object stores "" (logged, counted); any other error
// fails the batch so it is retried.
func (w *Worker) fetchOutputs(ctx context.Context, r *storage.Result) error {
	for _, f := range []struct {
		key string
		dst *string
	}{{r.StdoutObject, &r.Stdout}, {r.StderrObject, &r.Stderr}} {
		if f.key == "" {
			continue
		}
		os, err := w.objectStore(ctx)
		if err != nil {
			return err
		}
		data, err := os.GetBytes(ctx, f.key)
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			w.m.missingOutput.Inc()
			w.log.Warn("projector: result output object missing; storing empty text",
				slog.String("result_id", r.ResultID), slog.String("object", f.key))
			*f.dst = ""
		case err != nil:
			return fmt.Errorf("get output %s: %w", f.key, err)
		default:
			*f.dst = string(data)
		}
	}
	return nil
}

// apply commits one batch and then acks it. Messages at or below the
// consumer's recorded offset were committed before (a crash between commit
// and ack) and are skipped; the offset moves to the batch's highest sequence
// in the same transaction.
func (w *Worker) apply(ctx context.Context, spec consumerSpec, b *batch) error {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	err := w.cfg.DB.Update(tctx, func(tx *storage.Tx) error {
		off, err := tx.ConsumerSeq(tctx, spec.name)
		if err != nil {
			return err
		}
		if b.maxSeq <= off {
			return nil
		}
		switch spec.kind {
		case kindResults:
			rs := fresh(b.results, off)
			if _, err := tx.ApplyResults(tctx, rs); err != nil {
				return err
			}
		case kindStarted:
			ss := fresh(b.started, off)
			if _, err := tx.ApplyStarted(tctx, ss); err != nil {
				return err
			}
		case kindAudit:
			var as []storage.Audit
			seen := map[uint64]bool{}
			for _, a := range b.audit {
				if a.StreamSeq > off && !seen[a.StreamSeq] {
					seen[a.StreamSeq] = true
					as = append(as, a)
				}
			}
			if _, err := tx.InsertAudit(tctx, as); err != nil {
				return err
			}
		}
		if w.cfg.inApply != nil {
			if err := w.cfg.inApply(spec.name); err != nil {
				return err
			}
		}
		return tx.SetConsumerSeq(tctx, spec.name, b.maxSeq)
	})
	if err != nil {
		return fmt.Errorf("apply batch of %d: %w", len(b.msgs), err)
	}
	if w.cfg.afterCommit != nil {
		if err := w.cfg.afterCommit(spec.name); err != nil {
			return err
		}
	}
	for _, msg := range b.msgs {
		// An ack that does not reach the server only causes a redelivery,
		// which the offset check skips.
		_ = msg.Ack()
	}
	w.m.batchSize.WithLabelValues(spec.name).Observe(float64(len(b.msgs)))
	w.m.applied.WithLabelValues(spec.name).Add(float64(len(b.msgs)))
	w.m.lastSeq.WithLabelValues(spec.name).Set(float64(b.maxSeq))
	return nil
}

// maxCoalesce is how many fetched batches one transaction may take when the
// applier fell behind: a commit costs about as much for 1000 rows as for
// 8000, so a backlog drains in fewer, bigger transactions.
const maxCoalesce = 8

// coalesce merges the batches already waiting behind b into it (without
// waiting for more), up to maxCoalesce in all.
func coalesce(b *batch, more <-chan *batch) *batch {
	for i := 1; i < maxCoalesce; i++ {
		select {
		case nb, ok := <-more:
			if !ok {
				return b
			}
			b.msgs = append(b.msgs, nb.msgs...)
			b.maxSeq = max(b.maxSeq, nb.maxSeq)
			b.results = append(b.results, nb.results...)
			b.started = append(b.started, nb.started...)
			b.audit = append(b.audit, nb.audit...)
		default:
			return b
		}
	}
	return b
}

// fresh keeps the payloads above the offset, once per stream sequence (a
// redelivery can land in the same batch as the original).
func fresh[T any](in []seqd[T], off uint64) []T {
	out := make([]T, 0, len(in))
	seen := make(map[uint64]bool, len(in))
	for _, s := range in {
		if s.seq > off && !seen[s.seq] {
			seen[s.seq] = true
			out = append(out, s.v)
		}
	}
	return out
}

// sampleInfo feeds the lag gauges from consumer info.
func (w *Worker) sampleInfo(ctx context.Context, cons jetstream.Consumer, name string) {
	t := time.NewTicker(w.cfg.InfoInterval)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			w.m.pending.WithLabelValues(name).Set(float64(info.NumPending))
			w.m.ackPending.WithLabelValues(name).Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
