package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

type consumerKind int

const (
	kindResults consumerKind = iota
	kindStarted
	kindAudit
	kindAcks
	kindObs
)

// consumerSpec is one projected stream and what its messages become.
type consumerSpec struct {
	kanade.Projection
	kind consumerKind
}

// Consumer names, the keys of the database offsets (kanade.Projections).
const (
	ConsumerResults = kanade.ProjectionResults
	ConsumerStarted = kanade.ProjectionStarted
	ConsumerAudit   = kanade.ProjectionAudit
	// ConsumerNotificationAcks projects users' confirmations of
	// notifications (observe.md §4.5).
	ConsumerNotificationAcks = kanade.ProjectionNotificationAcks
	ConsumerObs              = kanade.ProjectionObs
)

func defaultConsumers() []consumerSpec {
	kinds := map[string]consumerKind{ConsumerResults: kindResults, ConsumerStarted: kindStarted, ConsumerAudit: kindAudit,
		ConsumerNotificationAcks: kindAcks, ConsumerObs: kindObs}
	var out []consumerSpec
	for _, p := range kanade.Projections() {
		out = append(out, consumerSpec{Projection: p, kind: kinds[p.Name]})
	}
	return out
}

// batch is one transaction's worth of messages, decoded and ready to apply.
// Malformed messages count in n and maxSeq (the offset moves past them) but
// leave nothing to apply.
type batch struct {
	n      int
	bytes  int64
	maxSeq uint64
	// results, started and audit hold the decoded messages by kind.
	results []seqd[storage.Result]
	started []seqd[storage.Started]
	audit   []storage.Audit
	// checks are the check states the results carry (observe.md §3.4);
	// acks the notification acknowledgements.
	checks []seqd[storage.CheckState]
	acks   []seqd[storage.NotificationAck]
	obs    []seqd[storage.Obs]
}

// seqd is a decoded payload with the stream sequence of its message.
type seqd[T any] struct {
	seq uint64
	v   T
}

// errCrash marks an abort injected by a test hook.
var errCrash = errors.New("projection: simulated crash")

// errStreamChanged says the stream was created anew under the loop.
var errStreamChanged = errors.New("the stream was deleted and created again; starting over from its new beginning")

// dbTimeout bounds one database step of the pipeline, so a hung database
// fails the loop (and restarts it) instead of stalling it; bus bounds the
// NATS ones.
const dbTimeout = 2 * time.Minute

// idleWait is how long a loop waits for a message before it reports the
// stream idle and waits again.
const idleWait = 5 * time.Second

// linger is how long a batch being assembled waits for one more message
// before it goes to the database: long enough to take what the client has
// buffered, short enough to add no visible latency.
const linger = 2 * time.Millisecond

// maxCoalesce is how many fetched batches one transaction may take when the
// applier fell behind: a commit costs about as much for 1000 rows as for
// 8000, so a backlog drains in fewer, bigger transactions.
const maxCoalesce = 8

// runConsumer projects one stream until ctx ends or something fails. It
// starts an ordered consumer right after the database offset and runs a
// two-stage pipeline: a fetcher that assembles and decodes the next batch
// while an applier commits the current one. Whatever fails, the loop
// returns and the next run starts again from the offset, so a batch that
// was fetched but not committed is simply read again.
func (w *Worker) runConsumer(ctx context.Context, c *conn, spec consumerSpec) (err error) {
	p := w.progress[spec.Name]
	defer func() {
		if err != nil && ctx.Err() == nil {
			w.recordFailure(spec, err)
		}
	}()
	st, err := c.bus.Stream(ctx, spec.Stream)
	if err != nil {
		return err
	}
	created := kanade.FormatTime(st.Created)
	dctx, dcancel := context.WithTimeout(ctx, dbTimeout)
	defer dcancel()
	off, err := w.cfg.DB.Offset(dctx, spec.Name)
	if err != nil {
		return err
	}
	if off, err = w.checkStream(dctx, spec, off, created, st); err != nil {
		return err
	}
	p.resumed(off.Seq, off.UpdatedAt)

	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	r := c.bus.Read(bus.ReadOptions{Stream: spec.Stream, Filter: spec.Filter, After: off.Seq,
		MaxBytes: w.cfg.MaxBytes / 4, InactiveThreshold: w.cfg.InactiveThreshold})
	defer r.Close()

	queue := make(chan *batch, maxCoalesce)
	room := newBudget(w.cfg.MaxBytes / 2)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(queue)
		fetchErr <- w.fetchLoop(fetchCtx, c, spec, r, created, queue, room)
	}()

	var applyErr error
	for b := range queue {
		if applyErr != nil || ctx.Err() != nil {
			// Not applied: read again from the offset at the next start.
			room.release(b.bytes)
			continue
		}
		b = coalesce(b, queue)
		applyErr = w.apply(ctx, spec, created, b)
		room.release(b.bytes)
		if applyErr != nil {
			if !errors.Is(applyErr, errCrash) {
				w.m.applyErrors.WithLabelValues(spec.Name).Inc()
			}
			stopFetch()
		}
	}
	if err := <-fetchErr; err != nil && applyErr == nil {
		return fmt.Errorf("consumer %s: %w", spec.Name, err)
	}
	if applyErr != nil {
		return fmt.Errorf("consumer %s: %w", spec.Name, applyErr)
	}
	return nil
}

// checkStream makes the offset belong to the stream as it is now. A stream
// deleted and created again (its creation time differs from the one stored
// with the offset, or, for an offset stored before creation times were,
// its last sequence is below the offset) starts over at 0.
func (w *Worker) checkStream(ctx context.Context, spec consumerSpec, off storage.Offset, created string, state bus.StreamState) (storage.Offset, error) {
	recreated := off.StreamCreated != "" && off.StreamCreated != created ||
		off.StreamCreated == "" && off.Seq > state.LastSeq
	if !recreated {
		if off.Seq > 0 && off.Seq+1 < state.FirstSeq {
			w.log.Warn("projector: messages left the stream (by its age or size limit) before they were applied",
				slog.String("consumer", spec.Name), slog.Uint64("from_seq", off.Seq+1), slog.Uint64("to_seq", state.FirstSeq-1))
		}
		return off, nil
	}
	w.log.Warn("projector: the stream was created anew; projecting it from its beginning",
		slog.String("consumer", spec.Name), slog.String("stream", spec.Stream), slog.Uint64("old_offset", off.Seq),
		slog.String("old_created", off.StreamCreated), slog.String("created", created))
	err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
		cur, err := tx.Offset(ctx, spec.Name)
		if err != nil {
			return err
		}
		if cur.StreamCreated == created {
			return nil // another worker got here first
		}
		if spec.kind == kindAudit {
			if err := tx.ForgetAuditSeqs(ctx); err != nil {
				return err
			}
		}
		return tx.ResetOffset(ctx, spec.Name, created)
	})
	if err != nil {
		return off, err
	}
	w.m.resets.WithLabelValues(spec.Name).Inc()
	return w.cfg.DB.Offset(ctx, spec.Name)
}

// batchBytes is where the fetcher closes a batch; a single larger message
// makes a batch of its own.
func (w *Worker) batchBytes() int64 { return max(w.cfg.MaxBytes/8, 1) }

// fetchLoop assembles batches until ctx ends: it waits for a first message,
// then takes what follows without waiting longer than linger, up to
// BatchSize messages or batchBytes. Queued batches and the one being
// applied share room, half of MaxBytes.
//
// While idle it checks that the silence is real. The client library finds a
// lost message by the gap it leaves before the next one; messages lost at
// the tail (a connection reset while the last ones were in transit) leave no
// next one, so the stream is asked directly whether anything for this loop
// lies past the last message received. A message seen there at two idle
// checks in a row means the consumer is broken, and it is opened again.
func (w *Worker) fetchLoop(ctx context.Context, c *conn, spec consumerSpec, r *bus.Reader, created string, out chan<- *batch, room *budget) error {
	p := w.progress[spec.Name]
	var suspect uint64 // a message past r.last seen at the previous idle check
	for {
		msg, err := r.Next(ctx, idleWait)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, bus.ErrIdle):
			// A stream created anew with fewer messages than the offset
			// sends nothing: only its identity tells.
			if err := w.checkIdentity(ctx, c, spec, created); err != nil {
				return err
			}
			next, _, err := c.bus.Next(ctx, spec.Stream, spec.Filter, r.Last())
			if err != nil {
				return err
			}
			if next == 0 {
				p.idle()
				suspect = 0
				continue
			}
			if suspect != 0 && suspect <= next {
				w.log.Warn("projector: a message waits in the stream but the consumer delivers nothing; opening it again",
					slog.String("consumer", spec.Name), slog.Uint64("waiting_seq", next), slog.Uint64("last_received", r.Last()))
				r.Reopen()
			}
			suspect = next
			continue
		case err != nil:
			return err
		}
		b := &batch{}
		if err := w.add(ctx, c, spec, b, msg, true); err != nil {
			return err
		}
		for b.n < w.cfg.BatchSize && b.bytes < w.batchBytes() {
			msg, err := r.Next(ctx, linger)
			if errors.Is(err, bus.ErrIdle) {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := w.add(ctx, c, spec, b, msg, false); err != nil {
				return err
			}
		}
		if suspect <= r.Last() {
			suspect = 0
		}
		// When a stream is deleted and created again under a running
		// loop, the client library quietly follows it at the old
		// position; applying its messages under the old stream's offset
		// would skip the new one's beginning. One stream info per batch
		// rules that out.
		if err := w.checkIdentity(ctx, c, spec, created); err != nil {
			return err
		}
		if err := room.acquire(ctx, b.bytes); err != nil {
			return nil
		}
		select {
		case out <- b:
		case <-ctx.Done():
			room.release(b.bytes)
			return nil
		}
	}
}

// add decodes one message into b. A message that cannot be decoded or
// validated is logged, counted and passed over: it must never block the
// good messages behind it. Outputs moved to the object store and manifest
// timeouts are fetched here, outside the transaction; a failure to reach
// them fails the loop (the message is read again).
func (w *Worker) add(ctx context.Context, c *conn, spec consumerSpec, b *batch, msg bus.Message, begin bool) error {
	seq := msg.Seq
	b.n++
	b.maxSeq = max(b.maxSeq, seq)
	b.bytes += int64(len(msg.Data) + len(msg.Subject))
	w.progress[spec.Name].received(seq, msg.Time, msg.Pending, begin)
	switch spec.kind {
	case kindResults:
		r, err := kanade.DecodeExecResult(msg.Data)
		if err == nil {
			err = r.Validate()
		} else {
			err = fmt.Errorf("decode: %w", err)
		}
		if err != nil {
			w.bad(spec, msg.Subject, seq, err)
			return nil
		}
		res := storage.Result{ExecResult: r, RecordedAt: msg.Time.UTC()}
		n, err := w.fetchOutputs(ctx, c, &res)
		if err != nil {
			return err
		}
		b.bytes += n
		if err := w.prepareInventory(ctx, c, &res); err != nil {
			return err
		}
		b.bytes += res.Inventory.Size()
		res.Pack() // here, beside the writer, not in its transaction
		b.results = append(b.results, seqd[storage.Result]{seq, res})
		if res.ManifestID != "" {
			h, ok, err := c.timeouts.Check(ctx, res.ManifestID)
			if err != nil {
				return err
			}
			if ok {
				if o, ok := kanade.EvaluateCheck(h, &res.ExecResult); ok {
					b.checks = append(b.checks, seqd[storage.CheckState]{seq, storage.CheckState{PcID: res.PcID,
						CheckName: h.Name, Status: o.Status, Detail: o.Detail, RecordedAt: res.RecordedAt}})
				} else if !res.Skipped {
					w.log.Info("projector: a check's output is not one JSON object; its state is left as it was",
						slog.String("check", kanade.Clip(h.Name)), slog.String("pc_id", res.PcID), slog.String("result_id", kanade.Clip(res.ResultID)))
				}
			}
		}
	case kindStarted:
		var e kanade.EventStarted
		if err := decode(msg.Data, &e); err != nil {
			w.bad(spec, msg.Subject, seq, err)
			return nil
		}
		s := storage.Started{EventStarted: e, RecordedAt: msg.Time.UTC()}
		if s.ManifestID != "" {
			var err error
			if s.Timeout, err = c.timeouts.Timeout(ctx, s.ManifestID); err != nil {
				return err
			}
		}
		b.started = append(b.started, seqd[storage.Started]{seq, s})
	case kindAudit:
		var a kanade.AuditEvent
		if err := decode(msg.Data, &a); err != nil {
			w.bad(spec, msg.Subject, seq, err)
			return nil
		}
		b.audit = append(b.audit, storage.Audit{AuditEvent: a, StreamSeq: seq})
	case kindAcks:
		var a kanade.NotificationAcked
		if err := decode(msg.Data, &a); err != nil {
			w.bad(spec, msg.Subject, seq, err)
			return nil
		}
		b.acks = append(b.acks, seqd[storage.NotificationAck]{seq, storage.NotificationAck{NotificationAcked: a, RecordedAt: msg.Time.UTC()}})
	case kindObs:
		var e kanade.ObsEvent
		if err := decode(msg.Data, &e); err != nil {
			w.bad(spec, msg.Subject, seq, err)
			return nil
		}
		if msg.Subject != kanade.SubjectObs(e.PcID) {
			// The body's pc_id is the row's (observe.md §2.3); a subject
			// that disagrees is worth knowing about, not a reason to drop.
			w.m.obsMismatch.Inc()
			w.log.Warn("projector: obs event whose pc_id differs from its subject; stored under the body's",
				slog.String("subject", kanade.Clip(msg.Subject)), slog.String("pc_id", kanade.Clip(e.PcID)), slog.Uint64("stream_seq", seq))
		}
		b.obs = append(b.obs, seqd[storage.Obs]{seq, storage.Obs{ObsEvent: e, StreamSeq: seq, RecordedAt: msg.Time.UTC()}})
	}
	return nil
}

// validator is what every wire payload implements.
type validator interface{ Validate() error }

func decode(data []byte, v validator) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return v.Validate()
}

func (w *Worker) bad(spec consumerSpec, subject string, seq uint64, err error) {
	w.m.decodeFailures.WithLabelValues(spec.Stream).Inc()
	w.log.Warn("projector: skipping undecodable message", slog.String("stream", spec.Stream),
		slog.String("subject", kanade.Clip(subject)), slog.Uint64("stream_seq", seq), slog.String("err", kanade.Clip(err.Error())))
}

// fetchOutputs replaces stdout/stderr with the object-store text the agent
// moved there, at most MaxOutputBytes of each, and returns the bytes it
// added. A missing object stores "" (logged, counted); any other error
// fails the batch so it is retried.
func (w *Worker) fetchOutputs(ctx context.Context, c *conn, r *storage.Result) (int64, error) {
	var added int64
	for _, f := range []struct {
		key string
		dst *string
	}{{r.StdoutObject, &r.Stdout}, {r.StderrObject, &r.Stderr}} {
		if f.key == "" {
			continue
		}
		text, size, cut, err := c.bus.Output(ctx, f.key, w.cfg.MaxOutputBytes)
		switch {
		case errors.Is(err, bus.ErrNotFound):
			w.m.missingOutput.Inc()
			w.log.Warn("projector: result output object missing; storing empty text",
				slog.String("result_id", kanade.Clip(r.ResultID)), slog.String("object", kanade.Clip(f.key)))
			*f.dst = ""
		case err != nil:
			return 0, err
		default:
			if cut {
				// The whole text stays in the object store; say where.
				w.m.cutOutput.Inc()
				text += fmt.Sprintf("\n[kanade: output cut at %d of %d bytes; the whole text is object %q in %s]",
					w.cfg.MaxOutputBytes, size, f.key, kanade.ObjectResultOutput)
			}
			*f.dst = text
			added += int64(len(text))
		}
	}
	return added, nil
}

// apply commits one batch: the messages past the offset it reads inside the
// transaction, and the offset moved to the batch's highest sequence. A
// batch that another worker already applied needs no write transaction.
func (w *Worker) apply(ctx context.Context, spec consumerSpec, created string, b *batch) error {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if w.cfg.observe != nil {
		w.cfg.observe(spec.Name, b.n, b.bytes)
	}
	p := w.progress[spec.Name]
	off, err := w.cfg.DB.Offset(tctx, spec.Name)
	if err != nil {
		return err
	}
	if err := sameStream(off, created); err != nil {
		return err
	}
	if b.maxSeq <= off.Seq {
		w.m.behind.WithLabelValues(spec.Name).Add(float64(b.n))
		p.committed(off.Seq, w.cfg.Clock())
		return nil
	}
	var stats storage.ApplyStats
	behind := 0
	err = w.cfg.DB.Update(tctx, func(tx *storage.Tx) error {
		off, err := tx.Offset(tctx, spec.Name)
		if err != nil {
			return err
		}
		if err := sameStream(off, created); err != nil {
			return err
		}
		if b.maxSeq <= off.Seq {
			behind = b.n
			return nil
		}
		switch spec.kind {
		case kindResults:
			if stats, err = tx.ApplyResults(tctx, fresh(b.results, off.Seq)); err == nil {
				err = tx.ApplyChecks(tctx, fresh(b.checks, off.Seq))
			}
		case kindStarted:
			stats, err = tx.ApplyStarted(tctx, fresh(b.started, off.Seq))
		case kindAudit:
			var as []storage.Audit
			seen := map[uint64]bool{}
			for _, a := range b.audit {
				if a.StreamSeq > off.Seq && !seen[a.StreamSeq] {
					seen[a.StreamSeq] = true
					as = append(as, a)
				}
			}
			stats, err = tx.InsertAudit(tctx, as)
		case kindAcks:
			stats.Inserted, err = tx.InsertNotificationAcks(tctx, fresh(b.acks, off.Seq))
		case kindObs:
			stats, err = tx.InsertObsEvents(tctx, fresh(b.obs, off.Seq))
		}
		if err != nil {
			return err
		}
		if w.cfg.inApply != nil {
			if err := w.cfg.inApply(spec.Name); err != nil {
				return err
			}
		}
		return tx.Advance(tctx, spec.Name, b.maxSeq, created)
	})
	if err != nil {
		return fmt.Errorf("apply batch of %d: %w", b.n, err)
	}
	if w.cfg.afterCommit != nil {
		if err := w.cfg.afterCommit(spec.Name); err != nil {
			return err
		}
	}
	p.committed(b.maxSeq, w.cfg.Clock())
	if behind > 0 {
		w.m.behind.WithLabelValues(spec.Name).Add(float64(behind))
		return nil
	}
	w.inventoryOutcome(stats.Inventory, b.maxSeq)
	if stats.Implausible > 0 {
		w.m.implausible.Add(float64(stats.Implausible))
		w.log.Warn("projector: runs stored without a duration: started_at and finished_at too far apart (agent clock?)",
			slog.Int("runs", stats.Implausible), slog.Uint64("up_to_seq", b.maxSeq))
	}
	w.m.batchSize.WithLabelValues(spec.Name).Observe(float64(b.n))
	w.m.batchBytes.WithLabelValues(spec.Name).Observe(float64(b.bytes))
	w.m.applied.WithLabelValues(spec.Name).Add(float64(b.n))
	return nil
}

// checkIdentity fails with errStreamChanged when the stream is no longer
// the one created at created.
func (w *Worker) checkIdentity(ctx context.Context, c *conn, spec consumerSpec, created string) error {
	st, err := c.bus.Stream(ctx, spec.Stream)
	if err != nil {
		return err
	}
	if kanade.FormatTime(st.Created) != created {
		return errStreamChanged
	}
	return nil
}

func sameStream(off storage.Offset, created string) error {
	if off.StreamCreated != "" && off.StreamCreated != created {
		return errStreamChanged
	}
	return nil
}

// recordFailure keeps a loop's failure for readiness, metrics and, best
// effort, the database (for a fleet rollup served by another process).
func (w *Worker) recordFailure(spec consumerSpec, err error) {
	now := w.cfg.Clock()
	w.progress[spec.Name].failed(err, now)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := err.Error()
	if len(msg) > 2000 { // our own wording around clipped wire values: long only by accident
		msg = strings.ToValidUTF8(msg[:2000], "") + "…"
	}
	if dbErr := w.cfg.DB.RecordProjectionError(ctx, spec.Name, msg, now); dbErr != nil {
		w.log.Debug("projector: could not record the failure in the database", slog.String("consumer", spec.Name),
			slog.Any("err", dbErr))
	}
}

// coalesce merges the batches already waiting behind b into it (without
// waiting for more), up to maxCoalesce in all.
func coalesce(b *batch, more <-chan *batch) *batch {
	for i := 1; i < maxCoalesce; i++ {
		select {
		case nb, ok := <-more:
			if !ok {
				return b
			}
			b.n += nb.n
			b.bytes += nb.bytes
			b.maxSeq = max(b.maxSeq, nb.maxSeq)
			b.results = append(b.results, nb.results...)
			b.started = append(b.started, nb.started...)
			b.audit = append(b.audit, nb.audit...)
			b.checks = append(b.checks, nb.checks...)
			b.acks = append(b.acks, nb.acks...)
			b.obs = append(b.obs, nb.obs...)
		default:
			return b
		}
	}
	return b
}

// fresh keeps the payloads above the offset, once per stream sequence.
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

// budget bounds the bytes of the batches between the fetcher and the
// database. A batch larger than the whole budget still goes, alone.
type budget struct {
	mu    sync.Mutex
	used  int64
	max   int64
	freed chan struct{} // closed and replaced on every release
}

func newBudget(max int64) *budget { return &budget{max: max, freed: make(chan struct{})} }

func (b *budget) acquire(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
