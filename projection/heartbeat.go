package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
)

// Pending limits of the heartbeat subscription: generous, because a slow
// flush must be absorbed in memory (100k agents at 10x their normal rate is
// ~33k messages/s; one second of that is well under the limit).
const (
	hbPendingMsgs  = 1 << 20
	hbPendingBytes = 1 << 30
)

// beatBuffer keeps the merged newest beat of each PC until the next flush.
type beatBuffer struct {
	mu    sync.Mutex
	beats map[string]kanade.Heartbeat
}

func (b *beatBuffer) add(h kanade.Heartbeat) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.beats[h.PcID]; ok {
		h = mergeBeats(old, h)
	}
	b.beats[h.PcID] = h
	return len(b.beats)
}

func (b *beatBuffer) take() map[string]kanade.Heartbeat {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.beats
	b.beats = make(map[string]kanade.Heartbeat, len(out))
	return out
}

// putBack returns beats of a failed flush, merged with anything newer.
func (b *beatBuffer) putBack(beats map[string]kanade.Heartbeat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, h := range beats {
		if cur, ok := b.beats[id]; ok {
			h = mergeBeats(h, cur)
		}
		b.beats[id] = h
	}
}

// mergeBeats folds two beats of one PC into the one the database would end up
// with had both been upserted in order of `at` (storage.UpsertHeartbeats): the
// newer beat's values, the older's hostname and os_family (first non-NULL
// wins), and the older's logon user, command keys and protocols and enforcing
// where the newer (a ping reply) does not carry them. It is symmetric, so the
// order in which NATS delivers two beats does not matter.
func mergeBeats(a, b kanade.Heartbeat) kanade.Heartbeat {
	newer, older := b, a
	if a.At.After(b.At.Time) {
		newer, older = a, b
	}
	out := newer
	if older.Hostname != nil {
		out.Hostname = older.Hostname
	}
	if older.OsFamily != nil {
		out.OsFamily = older.OsFamily
	}
	if out.LastLogonUser == nil {
		out.LastLogonUser = older.LastLogonUser
	}
	if out.LastLogonDisplayName == nil {
		out.LastLogonDisplayName = older.LastLogonDisplayName
	}
	if out.CommandKeys == nil {
		out.CommandKeys = older.CommandKeys
	}
	if out.CommandProtocols == nil {
		out.CommandProtocols = older.CommandProtocols
	}
	if out.Enforcing == nil {
		out.Enforcing = older.Enforcing
	}
	return out
}

// runHeartbeats subscribes to heartbeat.> and flushes the merged beats every
// HeartbeatFlush, or sooner when HeartbeatMaxPending PCs are waiting. A
// failed flush keeps the beats for the next one; the subscription stays up,
// because while it is down beats are lost.
func (w *Worker) runHeartbeats(ctx context.Context, c *conn) error {
	buf := &beatBuffer{beats: map[string]kanade.Heartbeat{}}
	full := make(chan struct{}, 1)
	// A queue group: several workers share the beats instead of each writing
	// all of them (storage keeps the newest per PC whichever flushes last).
	sub, err := c.bus.Conn().QueueSubscribe(kanade.SubjectHeartbeats, heartbeatQueue, func(msg *nats.Msg) {
		defer w.m.hbReceived.Inc() // after the beat is buffered (tests wait on it)
		var h kanade.Heartbeat
		err := json.Unmarshal(msg.Data, &h)
		if err == nil {
			err = h.Validate()
		}
		if err != nil {
			w.m.decodeFailures.WithLabelValues("heartbeat").Inc()
			w.log.Warn("projector: skipping undecodable heartbeat", slog.String("subject", kanade.Clip(msg.Subject)),
				slog.String("err", kanade.Clip(err.Error())))
			return
		}
		if now := w.cfg.Clock(); h.At.Sub(now) > maxClockAhead {
			// A beat from the future would keep a dead PC fresh until
			// then, and outrank every real beat after it.
			w.m.hbClamped.Inc()
			h.At = kanade.Timestamp{Time: now}
		}
		if buf.add(h) >= w.cfg.HeartbeatMaxPending {
			select {
			case full <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", kanade.SubjectHeartbeats, err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(hbPendingMsgs, hbPendingBytes); err != nil {
		return fmt.Errorf("heartbeat pending limits: %w", err)
	}
	w.hbReady.Store(true)
	defer w.hbReady.Store(false)
	var dropped int
	checkDrops := func() {
		if d, err := sub.Dropped(); err == nil && d > dropped {
			w.m.hbDropped.Add(float64(d - dropped))
			w.log.Error("projector: heartbeats dropped by a slow subscription", slog.Int("dropped", d-dropped))
			dropped = d
		}
	}
	return w.flushLoop(ctx, []*nats.Subscription{sub}, full, w.flushReq, func(ctx context.Context) { w.flushBeats(ctx, buf) },
		checkDrops, "heartbeat subscription")
}

// maxClockAhead is how far ahead of this worker's clock a beat's `at` may be
// and still be believed; beyond it the beat counts as sent now. It is far
// above the drift of a synchronised clock.
const maxClockAhead = 10 * time.Minute

// heartbeatQueue is the queue group of every worker's heartbeat
// subscription.
const heartbeatQueue = "kanade-projector"

func (w *Worker) flushBeats(ctx context.Context, buf *beatBuffer) {
	beats := buf.take()
	if len(beats) == 0 {
		return
	}
	list := make([]kanade.Heartbeat, 0, len(beats))
	for _, h := range beats {
		list = append(list, h)
	}
	began := time.Now()
	if w.cfg.inFlush != nil {
		w.cfg.inFlush()
	}
	err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, list) })
	if err != nil {
		buf.putBack(beats)
		w.m.applyErrors.WithLabelValues("heartbeats").Inc()
		w.log.Error("projector: heartbeat flush failed; keeping the beats for the next flush",
			slog.Int("agents", len(list)), slog.Any("err", err))
		return
	}
	w.m.hbFlushSeconds.Observe(time.Since(began).Seconds())
	w.m.hbFlushed.Add(float64(len(list)))
}

// heartbeatsReady reports whether the heartbeat subscription is up (tests).
func (w *Worker) heartbeatsReady() bool { return w.hbReady.Load() }

// flushNow makes the heartbeat loop flush and waits for it (tests).
func (w *Worker) flushNow() {
	done := make(chan struct{})
	w.flushReq <- done
	<-done
}

// flushLoop writes what the subscriptions subs buffer, through flush, every
// HeartbeatFlush, when full signals a full buffer, and when a test asks on
// req; checkDrops counts what a slow subscription dropped after each flush.
// On shutdown it unsubscribes first, so what NATS already delivered is
// taken in and written. A subscription closed for good under its
// connection ends the loop with an error (what is buffered is written
// first), so the worker restarts it on a new connection.
func (w *Worker) flushLoop(ctx context.Context, subs []*nats.Subscription, full <-chan struct{}, req <-chan chan struct{},
	flush func(context.Context), checkDrops func(), what string) error {
	t := time.NewTicker(w.cfg.HeartbeatFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			flush(fctx)
			cancel()
			checkDrops()
			return nil
		case <-t.C:
		case <-full:
		case done := <-req:
			flush(ctx)
			close(done)
			continue
		}
		// A flush begun finishes even when shutdown starts meanwhile, as a
		// batch does (apply): cut short, it would fail with an error in the
		// log, only for the shutdown flush to write the same rows again.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		flush(fctx)
		cancel()
		checkDrops()
		for _, s := range subs {
			if !s.IsValid() {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
				flush(fctx)
				cancel()
				return fmt.Errorf("%s %s closed with its connection", what, s.Subject)
			}
		}
	}
}
