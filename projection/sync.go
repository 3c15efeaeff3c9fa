package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go/jetstream"
)

// sync makes the durable consumer agree with the database before a loop
// starts. The database offset is the truth (it commits with the rows); the
// consumer is recreated to start right after it when
//
//   - the database is behind what the consumer acknowledged (a wiped or
//     restored database: the stream replays into it),
//   - messages past the offset were delivered but never acknowledged (a crash
//     or a failed batch: waiting for their redelivery after AckWait would let
//     newer messages move the offset past them, and they would be skipped), or
//   - the offset is past the end of the stream (the stream was recreated: the
//     offset restarts at 0).
//
// In the normal case (offset == ack floor, nothing pending) the consumer is
// only created-or-updated in place, keeping its position.
func (w *Worker) sync(ctx context.Context, spec consumerSpec) (jetstream.Consumer, error) {
	stream, err := w.cfg.JS.Stream(ctx, spec.stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", spec.stream, err)
	}
	off, err := w.cfg.DB.ConsumerSeq(ctx, spec.name)
	if err != nil {
		return nil, err
	}
	if last := stream.CachedInfo().State.LastSeq; off > last {
		w.log.Warn("projector: recorded offset is past the end of the stream (stream recreated?); replaying it all",
			slog.String("consumer", spec.name), slog.Uint64("offset", off), slog.Uint64("last_seq", last))
		if err := w.cfg.DB.Update(ctx, func(tx *storage.Tx) error { return tx.SetConsumerSeq(ctx, spec.name, 0) }); err != nil {
			return nil, err
		}
		off = 0
		if err := w.deleteConsumer(ctx, stream, spec.name); err != nil {
			return nil, err
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.name,
		Description:   "kanade projector: " + spec.filter + " into SQL",
		FilterSubject: spec.filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: (maxCoalesce + 3) * w.cfg.BatchSize, // queue + one being fetched + one applying + slack
		MaxWaiting:    16,
	}
	cons, err := stream.Consumer(ctx, spec.name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return w.createAt(ctx, stream, cfg, off)
	case err != nil:
		return nil, fmt.Errorf("consumer %s: %w", spec.name, err)
	}
	info := cons.CachedInfo()
	reason := ""
	if info.NumAckPending > 0 && info.Delivered.Stream > off {
		reason = "unacknowledged messages past the offset"
	} else if info.AckFloor.Stream > off {
		// Is there a message for this consumer in (off, ack floor]? The
		// floor of a filtered consumer can pass messages it never saw.
		m, err := stream.GetMsg(ctx, off+1, jetstream.WithGetMsgSubject(spec.filter))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, fmt.Errorf("consumer %s: look up seq after %d: %w", spec.name, off, err)
		case m.Sequence <= info.AckFloor.Stream:
			reason = "database behind the acknowledged messages (wiped or restored database)"
		}
	}
	if reason != "" {
		w.log.Info("projector: recreating consumer from the database offset", slog.String("consumer", spec.name),
			slog.String("reason", reason), slog.Uint64("offset", off),
			slog.Uint64("ack_floor", info.AckFloor.Stream), slog.Uint64("delivered", info.Delivered.Stream))
		if err := w.deleteConsumer(ctx, stream, spec.name); err != nil {
			return nil, err
		}
		return w.createAt(ctx, stream, cfg, off)
	}
	// Keep the position; reconcile everything else.
	cfg.DeliverPolicy = info.Config.DeliverPolicy
	cfg.OptStartSeq = info.Config.OptStartSeq
	cfg.OptStartTime = info.Config.OptStartTime
	c, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("update consumer %s: %w", spec.name, err)
	}
	return c, nil
}

func (w *Worker) createAt(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig, off uint64) (jetstream.Consumer, error) {
	if off == 0 {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = off + 1
	}
	c, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s at %d: %w", cfg.Durable, off+1, err)
	}
	w.m.recreated.WithLabelValues(cfg.Durable).Inc()
	return c, nil
}

func (w *Worker) deleteConsumer(ctx context.Context, stream jetstream.Stream, name string) error {
	err := stream.DeleteConsumer(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete consumer %s: %w", name, err)
	}
	return nil
}
