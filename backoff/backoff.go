// Package backoff restarts a long-running loop that failed, with jittered
// exponential backoff, until its context ends. The projector's consumers and
// the scheduler's KV watch must never stop for good, and they share this one
// rule for how soon to try again.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Initial is the first wait after a failure.
const Initial = 100 * time.Millisecond

// DefaultMax is the longest wait every loop uses unless configured: long
// enough that a dead dependency is not hammered, short enough that a
// recovered one is noticed within half a minute.
const DefaultMax = 30 * time.Second

// Forever runs fn until ctx ends, restarting it whenever it returns. Each
// restart waits a random time in [backoff/2, backoff], where backoff doubles
// per consecutive failure up to max; a run that lasted over a minute resets it,
// so an occasional failure costs one short pause. failed is told each error
// and the wait before the restart (for its log line and metric).
func Forever(ctx context.Context, max time.Duration, fn func(context.Context) error, failed func(err error, wait time.Duration)) {
	b := Initial
	for {
		began := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			b = Initial
		}
		wait := b/2 + rand.N(b/2+1)
		failed(err, wait)
		if Sleep(ctx, wait) != nil {
			return
		}
		b = min(b*2, max)
	}
}

// Sleep waits d, or until ctx ends (its error): the wait between two tries,
// and between two of housekeeping's transactions.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
