package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// specs keeps each job's inventory hint (fleet.md §5.4: "Manifest (KV jobs,
// cacheable, refreshed by watching the bucket)"), so a result costs a map
// lookup, not a KV read.
//
// Two things keep it right. A watch of KV jobs (follow, one of the
// worker's loops) replaces an entry the moment its manifest is put or
// deleted, so a job stored after start is projected from its first result.
// And no entry is trusted for longer than ttl since it was last confirmed
// (by the watch's initial load, a watch event or a read): past that, the
// next result of that job reads the manifest again. A watch that broke or
// stalled unnoticed can therefore serve a superseded spec for at most ttl,
// never forever.
type specs struct {
	c     *bus.Client
	clock kanade.Clock
	ttl   time.Duration
	log   *slog.Logger
	max   int

	mu      sync.Mutex
	entries map[string]specEntry
}

// specEntry is one job's hint (nil: none, or an invalid one) and when it
// was last confirmed.
type specEntry struct {
	hint *kanade.InventoryHint
	rev  uint64
	at   time.Time
}

func newSpecs(c *bus.Client, clock kanade.Clock, ttl time.Duration, log *slog.Logger) *specs {
	return &specs{c: c, clock: clock, ttl: ttl, log: log, max: 4096, entries: map[string]specEntry{}}
}

// spec returns job's inventory hint, nil when the job has none (or is
// unknown, or its hint is invalid: logged where it is parsed). Only a
// failure to reach NATS is an error.
func (s *specs) spec(ctx context.Context, job string) (*kanade.InventoryHint, error) {
	now := s.clock()
	s.mu.Lock()
	e, ok := s.entries[job]
	s.mu.Unlock()
	if ok && now.Sub(e.at) < s.ttl && !now.Before(e.at) {
		return e.hint, nil
	}
	entry, err := s.c.Get(ctx, kanade.BucketJobs, job)
	switch {
	case errors.Is(err, bus.ErrNotFound) && !errors.Is(err, bus.ErrNoBucket):
		s.put(job, specEntry{at: now})
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read manifest %s for its inventory hint: %w", kanade.Clip(job), err)
	}
	e = s.parse(entry, now)
	s.put(job, e)
	return e.hint, nil
}

// parse reads the hint of a KV jobs entry; an invalid manifest or hint is
// logged and means "no hint" (fleet.md §5.2: skipped at projection time).
func (s *specs) parse(e bus.Entry, now time.Time) specEntry {
	out := specEntry{rev: e.Revision, at: now}
	if e.Deleted {
		return out
	}
	m, err := kanade.ParseManifest(e.Key, e.Value)
	if err == nil {
		out.hint, err = m.InventorySpec()
	}
	if err != nil {
		s.log.Warn("projector: a job's manifest or inventory hint is invalid; its results are stored without inventory",
			slog.String("job", kanade.Clip(e.Key)), slog.Uint64("revision", e.Revision), slog.String("err", kanade.Clip(err.Error())))
	}
	return out
}

func (s *specs) put(job string, e specEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A read that raced a newer watch event must not put the older value
	// back; a "not found" (no revision) wins only over an entry that is
	// due for a read anyway.
	if cur, ok := s.entries[job]; ok && cur.rev > e.rev && (e.rev != 0 || e.at.Sub(cur.at) < s.ttl) {
		return
	}
	if len(s.entries) >= s.max {
		clear(s.entries)
	}
	s.entries[job] = e
}

// follow watches KV jobs until ctx ends (nil) or the watch breaks (an
// error, so the worker watches again, reloading every value).
func (s *specs) follow(ctx context.Context) error {
	updates, err := s.c.Watch(ctx, kanade.BucketJobs)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("KV jobs watch closed")
			}
			if e == nil {
				continue // the current values are all in
			}
			s.put(e.Key, s.parse(*e, s.clock()))
		}
	}
}
