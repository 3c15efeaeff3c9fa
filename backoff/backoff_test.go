package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/backoff"
)

func TestForeverRestartsWithGrowingJitteredWaitsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boom := errors.New("boom")
	runs := 0
	var waits []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		backoff.Forever(ctx, 200*time.Millisecond, func(ctx context.Context) error {
			runs++
			if runs == 5 {
				cancel() // the fifth run ends with the context: no restart
				<-ctx.Done()
				return ctx.Err()
			}
			return boom
		}, func(err error, wait time.Duration) {
			if !errors.Is(err, boom) {
				t.Errorf("failed(%v), want boom", err)
			}
			waits = append(waits, wait)
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Forever did not return after its context ended")
	}
	if runs != 5 || len(waits) != 4 {
		t.Fatalf("runs = %d, waits = %v; want 5 runs and 4 waits", runs, waits)
	}
	// Backoff 100, 200, then capped at 200 ms; each wait in [b/2, b].
	for i, b := range []time.Duration{100, 200, 200, 200} {
		b *= time.Millisecond
		if waits[i] < b/2 || waits[i] > b {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, waits[i], b/2, b)
		}
	}
}
