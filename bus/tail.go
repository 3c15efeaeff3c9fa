package bus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// tailWait is how long Tail waits for a message it knows is in the stream
// before it calls the read broken.
const tailWait = 10 * time.Second

// Tail hands each of the last n messages of stream (those matching filter
// among them), oldest first, to fn, through a throw-away ordered consumer
// that acknowledges nothing. An empty stream costs no consumer.
// ErrNotFound when the stream does not exist. It reads what was in the
// stream when it started; messages stored meanwhile may or may not be
// included.
func (c *Client) Tail(ctx context.Context, stream, filter string, n uint64, fn func(Message)) error {
	st, err := c.Stream(ctx, stream)
	if err != nil {
		return err
	}
	if st.LastSeq == 0 || st.LastSeq < st.FirstSeq {
		return nil
	}
	after := uint64(0)
	if st.LastSeq > n {
		after = st.LastSeq - n
	}
	r := c.Read(ReadOptions{Stream: stream, Filter: filter, After: after, InactiveThreshold: time.Minute})
	defer r.Close()
	for r.Last() < st.LastSeq {
		m, err := r.Next(ctx, tailWait)
		if errors.Is(err, ErrIdle) {
			// Nothing more for the filter (the rest was deleted, or
			// matches another subject).
			return nil
		}
		if err != nil {
			return fmt.Errorf("tail %s: %w", stream, err)
		}
		if m.Seq > st.LastSeq {
			return nil
		}
		fn(m)
		if m.Pending == 0 {
			return nil
		}
	}
	return nil
}
