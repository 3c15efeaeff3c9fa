package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// manifestCache remembers each job's timeout (KV jobs, execute.timeout) for a
// while, so a burst of started events for one job costs one KV read. It is
// bounded: when full it is simply emptied.
type manifestCache struct {
	c     *conn
	clock kanade.Clock
	ttl   time.Duration
	max   int

	mu      sync.Mutex
	kv      jetstream.KeyValue
	entries map[string]manifestEntry
}

type manifestEntry struct {
	timeout time.Duration
	at      time.Time
}

func newManifestCache(c *conn, clock kanade.Clock, ttl time.Duration, max int) *manifestCache {
	return &manifestCache{c: c, clock: clock, ttl: ttl, max: max, entries: map[string]manifestEntry{}}
}

// timeout returns the job's execute.timeout; 0 when the job is unknown or its
// timeout unreadable (expires_at then stays NULL and the 24 h reap rule
// applies). Only a failure to reach NATS is an error.
func (c *manifestCache) timeout(ctx context.Context, jobID string) (time.Duration, error) {
	now := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[jobID]; ok && now.Sub(e.at) < c.ttl && !now.Before(e.at) {
		return e.timeout, nil
	}
	var t time.Duration
	err := c.c.ask(ctx, func(ctx context.Context) error {
		if c.kv == nil {
			kv, err := c.c.js.KeyValue(ctx, kanade.BucketJobs)
			if err != nil {
				return fmt.Errorf("open KV %s: %w", kanade.BucketJobs, err)
			}
			c.kv = kv
		}
		entry, err := c.kv.Get(ctx, jobID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrInvalidKey):
		case err != nil:
			return fmt.Errorf("read job %s: %w", jobID, err)
		default:
			t = manifestTimeout(entry.Value())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[jobID] = manifestEntry{timeout: t, at: now}
	return t, nil
}

// manifestTimeout reads execute.timeout from Manifest JSON; 0 if absent or bad.
func manifestTimeout(b []byte) time.Duration {
	var m struct {
		Execute struct {
			Timeout string `json:"timeout"`
		} `json:"execute"`
	}
	if json.Unmarshal(b, &m) != nil || m.Execute.Timeout == "" {
		return 0
	}
	d, err := kanade.ParseDuration(m.Execute.Timeout)
	if err != nil {
		return 0
	}
	return d
}
