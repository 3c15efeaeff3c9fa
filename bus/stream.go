package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamState is what a reader of a stream needs to know about it.
type StreamState struct {
	// Created identifies the stream: one deleted and created again numbers
	// its messages from 1 again, and only its creation time tells.
	Created           time.Time
	FirstSeq, LastSeq uint64
}

// Stream returns the state of stream name (ErrNotFound if there is none).
func (c *Client) Stream(ctx context.Context, name string) (StreamState, error) {
	var st StreamState
	err := c.ask(ctx, func(ctx context.Context) error {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		st = StreamState{Created: info.Created, FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq}
		return nil
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, fmt.Errorf("stream %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", name, err)
	}
	return st, nil
}

// Next returns the sequence and stream time of the first message of stream
// matching filter past sequence after; zero when there is none.
func (c *Client) Next(ctx context.Context, stream, filter string, after uint64) (uint64, time.Time, error) {
	var seq uint64
	var at time.Time
	err := c.ask(ctx, func(ctx context.Context) error {
		s, err := c.js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		if s.CachedInfo().State.LastSeq <= after {
			seq, at = 0, time.Time{}
			return nil
		}
		m, err := s.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(filter))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			seq, at = 0, time.Time{}
			return nil
		case err != nil:
			return err
		}
		seq, at = m.Sequence, m.Time
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("stream %s: first message past %d: %w", stream, after, err)
	}
	return seq, at, nil
}

// Message is one message read from a stream.
type Message struct {
	Subject string
	Data    []byte
	// Seq and Time are its stream sequence and stream timestamp.
	Seq  uint64
	Time time.Time
	// Pending is how many messages the server still had for the reader
	// after this one.
	Pending uint64
}

// ReadOptions say what a Reader reads.
type ReadOptions struct {
	Stream, Filter string
	// After is the sequence to start after (0: the beginning).
	After uint64
	// MaxBytes bounds the bytes the client buffers ahead of Next. It never
	// goes below twice the server's max_payload: a pull asks for what is
	// left of the buffer, and a message larger than a pull's byte limit
	// would never be delivered.
	MaxBytes int64
	// InactiveThreshold is how long the server keeps an idle consumer
	// (default 5m, the library's).
	InactiveThreshold time.Duration
}

// ErrIdle says no message came within the wait.
var ErrIdle = errors.New("no message within the wait")

// Reader hands over a stream's messages strictly in order, after a given
// sequence, and never skips one. It reads through an ordered consumer (no
// acknowledgements; the client library finds a gap and resumes after the
// last message handed over) and opens a new one right after the last
// message it handed over whenever the old one cannot go on: the connection
// dropped (a pull parked on it may be gone, and the messages in transit
// with it), the library gave up recreating it, or the caller found it stuck.
// The projector builds its exactly-once offset on this promise.
type Reader struct {
	c    *Client
	o    ReadOptions
	last uint64 // stream sequence of the last message handed over

	it       jetstream.MessagesContext
	unwatch  func() bool
	failures int
	failedAt time.Time
}

// Read starts a Reader; nothing is asked of the server before Next.
func (c *Client) Read(o ReadOptions) *Reader { return &Reader{c: c, o: o, last: o.After} }

// Last is the sequence of the last message handed over (After at first).
func (r *Reader) Last() uint64 { return r.last }

// Pull requests of the reader: each lives pullExpiry and the server sends a
// heartbeat every pullHeartbeat while it has nothing, so a lost pull is
// noticed within 2*pullHeartbeat (well inside one Next of a few seconds).
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second
)

func (r *Reader) pullBytes() int64 {
	payload := r.c.MaxPayload()
	if payload <= 0 {
		payload = 8 << 20
	}
	return max(r.o.MaxBytes, 2*payload+1<<20)
}

// open starts an ordered consumer after r.last.
func (r *Reader) open(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{r.o.Filter},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: r.o.InactiveThreshold,
		// The library recreates a lost consumer by itself a few times (a
		// missed heartbeat, a gap); past that the error comes back here.
		MaxResetAttempts: 5,
	}
	if r.last > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = r.last + 1
	}
	rctx, cancel := r.c.request(ctx, requestTimeout)
	defer cancel()
	cons, err := r.c.js.OrderedConsumer(rctx, r.o.Stream, cfg)
	if err != nil {
		return fmt.Errorf("ordered consumer on %s after %d: %w", r.o.Stream, r.last, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(int(r.pullBytes())),
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("read %s after %d: %w", r.o.Stream, r.last, err)
	}
	r.it = it
	// Stop unblocks a Next busy inside the library recreating the consumer
	// (while NATS is away), which neither ctx nor a drop can reach.
	r.unwatch = context.AfterFunc(ctx, it.Stop)
	return nil
}

// Reopen drops the current consumer; the next Next opens a new one after
// Last.
func (r *Reader) Reopen() {
	if r.it != nil {
		r.unwatch()
		r.it.Stop()
		r.it = nil
	}
}

// Close stops reading.
func (r *Reader) Close() { r.Reopen() }

// Next returns the next message, ErrIdle when none came within wait, or an
// error when no consumer could be opened for longer than askFor.
func (r *Reader) Next(ctx context.Context, wait time.Duration) (Message, error) {
	for {
		if r.it == nil {
			if err := r.open(ctx); err != nil {
				if ctx.Err() != nil {
					return Message{}, ctx.Err()
				}
				if err := r.failed(ctx, err); err != nil {
					return Message{}, err
				}
				continue
			}
		}
		// The wait ends early when the connection drops.
		wctx, cancel := r.c.request(ctx, wait)
		msg, err := r.it.Next(jetstream.NextContext(wctx))
		dropped := err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil
		cancel()
		switch {
		case err == nil:
			md, err := msg.Metadata()
			if err != nil {
				return Message{}, fmt.Errorf("message metadata: %w", err)
			}
			r.last = md.Sequence.Stream
			r.failures = 0
			return Message{Subject: msg.Subject(), Data: msg.Data(), Seq: md.Sequence.Stream,
				Time: md.Timestamp, Pending: md.NumPending}, nil
		case ctx.Err() != nil:
			return Message{}, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			return Message{}, ErrIdle
		case dropped:
			r.Reopen()
		default:
			r.Reopen()
			if err := r.failed(ctx, fmt.Errorf("next message after %d: %w", r.last, err)); err != nil {
				return Message{}, err
			}
		}
	}
}

// failed waits before the next attempt to open a consumer, and gives up
// with err once attempts have failed for longer than askFor.
func (r *Reader) failed(ctx context.Context, err error) error {
	now := time.Now()
	if r.failures == 0 {
		r.failedAt = now
	}
	r.failures++
	if now.Sub(r.failedAt) > askFor {
		return err
	}
	wait := min(time.Duration(r.failures)*50*time.Millisecond, 2*time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// outputTimeout bounds reading one output object.
const outputTimeout = time.Minute

// Output reads object key of result_output (where agents put output too
// long to inline), at most limit bytes of it. It returns the text, the
// object's whole size and whether the text was cut; ErrNotFound when the
// object is not there.
func (c *Client) Output(ctx context.Context, key string, limit int64) (text string, size int64, cut bool, err error) {
	err = c.ask(ctx, func(ctx context.Context) error {
		c.mu.Lock()
		os := c.objects
		c.mu.Unlock()
		if os == nil {
			var err error
			if os, err = c.js.ObjectStore(ctx, kanade.ObjectResultOutput); err != nil {
				return fmt.Errorf("open object store %s: %w", kanade.ObjectResultOutput, err)
			}
			c.mu.Lock()
			c.objects = os
			c.mu.Unlock()
		}
		octx, cancel := context.WithTimeout(ctx, outputTimeout)
		defer cancel()
		obj, err := os.Get(octx, key)
		if err != nil {
			return err
		}
		defer obj.Close()
		data, err := io.ReadAll(io.LimitReader(obj, limit+1))
		if err != nil {
			return err
		}
		size = int64(len(data))
		if info, err := obj.Info(); err == nil && info != nil {
			size = int64(info.Size)
		}
		cut = int64(len(data)) > limit
		if cut {
			data = data[:limit]
		}
		text = string(data)
		return nil
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", 0, false, fmt.Errorf("output %s: %w", kanade.Clip(key), ErrNotFound)
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("output %s: %w", kanade.Clip(key), err)
	}
	return text, size, cut, nil
}

// Publish puts data on subject through JetStream and waits for the
// stream's acknowledgement. A non-empty msgID lets the stream drop a
// retried copy. A commands.* subject is refused: see Commands.
func (c *Client) Publish(ctx context.Context, subject string, data []byte, msgID string) error {
	if isCommand(subject) {
		return errCommandSubject(subject)
	}
	m := &nats.Msg{Subject: subject, Data: data}
	if msgID != "" {
		m.Header = nats.Header{jetstream.MsgIDHeader: []string{msgID}}
	}
	return c.once(ctx, func(ctx context.Context) error {
		if _, err := c.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish %s: %w", kanade.Clip(subject), err)
		}
		return nil
	})
}

// publishChunk bounds the publishes in flight (the client stalls past 4000).
const publishChunk = 1000

// PublishAll publishes msgs through JetStream pipelined, a chunk at a time,
// and returns once every one is acknowledged: a dispatch to 100k PCs costs
// a round trip per chunk, not per message. It returns how many were
// acknowledged; on error it stops after the chunk that failed (whose other
// messages it still waits for, so the count is exact). A commands.* subject
// is refused before anything is sent: see Commands.
func (c *Client) PublishAll(ctx context.Context, msgs []*nats.Msg) (int, error) {
	for _, m := range msgs {
		if isCommand(m.Subject) {
			return 0, errCommandSubject(m.Subject)
		}
	}
	return c.publishAll(ctx, msgs)
}

func (c *Client) publishAll(ctx context.Context, msgs []*nats.Msg) (int, error) {
	acked := 0
	for len(msgs) > 0 {
		chunk := msgs[:min(len(msgs), publishChunk)]
		msgs = msgs[len(chunk):]
		futures := make([]jetstream.PubAckFuture, 0, len(chunk))
		var first error
		for _, m := range chunk {
			f, err := c.js.PublishMsgAsync(m)
			if err != nil {
				first = fmt.Errorf("publish %s: %w", kanade.Clip(m.Subject), err)
				break
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
				acked++
			case err := <-f.Err():
				if first == nil {
					first = fmt.Errorf("publish %s: %w", kanade.Clip(f.Msg().Subject), err)
				}
			case <-ctx.Done():
				return acked, ctx.Err()
			}
		}
		if first != nil {
			return acked, first
		}
	}
	return acked, nil
}

// PublishEach publishes msgs through JetStream pipelined, a chunk at a
// time like PublishAll, but goes on past failures and returns one error per
// message (nil: the stream acknowledged it), so a caller publishing for
// many owners learns exactly whose messages were lost. A message not
// answered before ctx ends gets ctx's error. A commands.* subject is
// refused before anything is sent: see Commands.
func (c *Client) PublishEach(ctx context.Context, msgs []*nats.Msg) []error {
	errs := make([]error, len(msgs))
	for _, m := range msgs {
		if isCommand(m.Subject) {
			for i := range errs {
				errs[i] = errCommandSubject(m.Subject)
			}
			return errs
		}
	}
	for start := 0; start < len(msgs); start += publishChunk {
		chunk := msgs[start:min(len(msgs), start+publishChunk)]
		futures := make([]jetstream.PubAckFuture, len(chunk))
		for i, m := range chunk {
			f, err := c.js.PublishMsgAsync(m)
			if err != nil {
				errs[start+i] = fmt.Errorf("publish %s: %w", kanade.Clip(m.Subject), err)
				continue
			}
			futures[i] = f
		}
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				errs[start+i] = fmt.Errorf("publish %s: %w", kanade.Clip(chunk[i].Subject), err)
			case <-ctx.Done():
				errs[start+i] = ctx.Err()
			}
		}
	}
	return errs
}
