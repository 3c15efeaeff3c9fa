package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A per_pc firing sends one body to up to 100k commands.pc.* subjects.
// Commands acknowledges every message, and the acknowledgements (a reply
// subject, a future and a reply per message) cost more than the stream's
// storing them: at 100k PCs they are most of the time. CommandChunk sends
// the same messages, headers included, as core publishes that stream EXEC
// captures (wire.md §1: "core publish captured by stream EXEC", as
// upstream does), and proves them stored with one acknowledgement per
// chunk instead of one per message.

// ErrUnconfirmed: a chunk went out but its storing could not be proven (the
// acknowledgement was lost, or the connection dropped). Nothing may be sent
// again before VerifyChunk has checked the stream; see CommandChunk.
var ErrUnconfirmed = errors.New("commands not confirmed stored")

// ExecSeq returns the last sequence of stream EXEC: the floor a first
// CommandChunk measures its messages from.
func (c *Client) ExecSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := c.ask(ctx, func(ctx context.Context) error {
		s, err := c.js.Stream(ctx, kanade.StreamExec)
		if err != nil {
			return err
		}
		seq = s.CachedInfo().State.LastSeq
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", kanade.StreamExec, err)
	}
	return seq, nil
}

// CommandChunk publishes data on every subject, each with the Nats-Msg-Id
// msgID(subject) unless msgID is nil and, with a signer, the Kanade-Sig*
// headers (computed once: the body is the same), all but the last as core
// publishes and the last through JetStream with an acknowledgement. The stream handles one
// connection's messages in order, so that acknowledgement means every
// message before it was handled too; its sequence, less floor (the stream's
// last sequence before the chunk), equals len(subjects) exactly when each
// of them was stored once and nothing else was stored in between. Then the
// returned sequence is the next chunk's floor.
//
// Otherwise (another publisher wrote to EXEC meanwhile, or a retried
// message was a duplicate) VerifyChunk completes the chunk before it
// returns. When the acknowledgement does not come at all (the connection
// dropped) some messages may still sit in the client's reconnect buffer:
// CommandChunk returns ErrUnconfirmed and the caller must let them settle
// before VerifyChunk looks (a message still in flight would be sent twice).
func (c *Client) CommandChunk(ctx context.Context, data []byte, subjects []string, msgID func(string) string, floor uint64) (uint64, error) {
	if len(subjects) == 0 {
		return floor, nil
	}
	h := c.commandHeader(data)
	id := []string{""}
	if msgID != nil {
		h[jetstream.MsgIDHeader] = id
	}
	setID := func(s string) {
		if msgID != nil {
			id[0] = msgID(s)
		}
	}
	last := len(subjects) - 1
	for _, s := range subjects[:last] {
		// PublishMsg encodes the header before it returns, so one map
		// serves every message.
		setID(s)
		if err := c.nc.PublishMsg(&nats.Msg{Subject: s, Data: data, Header: h}); err != nil {
			return floor, fmt.Errorf("publish %s: %w: %w", kanade.Clip(s), ErrUnconfirmed, err)
		}
	}
	setID(subjects[last])
	rctx, cancel := c.request(ctx, requestTimeout)
	ack, err := c.js.PublishMsg(rctx, &nats.Msg{Subject: subjects[last], Data: data, Header: h})
	cancel()
	if err != nil {
		return floor, fmt.Errorf("publish %s: %w: %w", kanade.Clip(subjects[last]), ErrUnconfirmed, err)
	}
	if ack.Stream == kanade.StreamExec && !ack.Duplicate && ack.Sequence-floor == uint64(len(subjects)) {
		return ack.Sequence, nil
	}
	next, err := c.VerifyChunk(ctx, data, subjects, msgID, floor)
	return max(next, ack.Sequence), err
}

// VerifyChunk completes a chunk that CommandChunk could not prove stored,
// or that a worker which died left half sent: for each subject it reads
// the stream's last message and publishes (with an acknowledgement) only
// where there is none stored after floor, the stream's last sequence
// before the chunk began. A message there after floor is the chunk's own or
// a later command to the PC, which a republish would overwrite. The stream
// is what live subscribers saw (the server stores and delivers a message
// together; the exception is a stream whose ingest queue overflowed, which
// drops a core publish it delivered: that one goes to subscribers twice,
// and agents drop the repeat by request_id). It returns the highest
// sequence it saw or stored.
func (c *Client) VerifyChunk(ctx context.Context, data []byte, subjects []string, msgID func(string) string, floor uint64) (uint64, error) {
	var st jetstream.Stream
	if err := c.ask(ctx, func(ctx context.Context) (err error) {
		st, err = c.js.Stream(ctx, kanade.StreamExec)
		return err
	}); err != nil {
		return floor, fmt.Errorf("stream %s: %w", kanade.StreamExec, err)
	}
	top := floor
	var missing []string
	for _, s := range subjects {
		var m *jetstream.RawStreamMsg
		err := c.ask(ctx, func(ctx context.Context) (err error) {
			m, err = st.GetLastMsgForSubject(ctx, s)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				m, err = nil, nil
			}
			return err
		})
		switch {
		case err != nil:
			return top, fmt.Errorf("verify %s: %w", kanade.Clip(s), err)
		case m == nil:
			missing = append(missing, s)
		case m.Sequence > floor:
			top = max(top, m.Sequence)
		default:
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return top, nil
	}
	h := c.commandHeader(data)
	msgs := make([]*nats.Msg, len(missing))
	for i, s := range missing {
		mh := make(nats.Header, len(h)+1)
		for k, v := range h {
			mh[k] = v
		}
		if msgID != nil {
			mh[jetstream.MsgIDHeader] = []string{msgID(s)}
		}
		msgs[i] = &nats.Msg{Subject: s, Data: data, Header: mh}
	}
	if _, err := c.publishAll(ctx, msgs); err != nil {
		return top, err
	}
	after, err := c.ExecSeq(ctx)
	if err != nil {
		return top, err
	}
	return max(top, after), nil
}

// commandHeader is the header every command with body data carries but
// the message id: the signature when there is a signer, signed now.
func (c *Client) commandHeader(data []byte) nats.Header {
	h := nats.Header{}
	if c.signer != nil {
		sig := c.signer.Sign(c.clock(), data)
		h[sign.HeaderSig] = []string{sig.Sig}
		h[sign.HeaderKid] = []string{sig.Kid}
		h[sign.HeaderAlg] = []string{sig.Alg}
		h[sign.HeaderAt] = []string{sig.At}
	}
	return h
}
