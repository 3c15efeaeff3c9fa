// Package groupmirror keeps the SQL mirror of KV agent_groups
// (storage/groups.go) in step with the bucket, so GET /api/groups reads a
// hundred thousand memberships from a few rows instead of the KV. The KV
// is the source of truth; this package only copies it, and never writes
// to NATS.
//
// What it relies on and what it tolerates:
//   - A KV watch delivers every key's latest operation (deletes included),
//     then every later change in bucket order. Each watch therefore starts
//     with a snapshot sync (storage.SyncGroups), which catches up whatever
//     happened while no watch ran (a worker that was down, keys written or
//     deleted meanwhile, a connection that closed), and then applies the
//     changes in order (storage.ApplyGroups).
//   - Every write to the mirror is ordered by the KV revision it copies, so
//     any number of workers, and the API's own write-through, may write it
//     at once: an older revision never replaces a newer one.
//   - A bucket deleted and created again numbers its revisions from 1; the
//     watch notices it at its next check (Config.Check) and starts over,
//     and until then the API sees that the mirror follows another bucket
//     and does not trust it.
//   - A value that does not decode counts as no groups and is logged
//     (fleet.md §1.7: skipped, not fatal).
//
// Each group's member list is rebuilt once a burst of changes has settled
// (storage.RefreshGroupLists), so a script assigning thousands of PCs one
// by one costs a rebuild per pause, not one per PC; reads stay correct
// in between, only slower.
package groupmirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// Config configures Run. DB is required.
type Config struct {
	DB     *storage.DB
	Logger *slog.Logger
	// Check is how often a watch asks whether its bucket is still the one
	// it follows, and prunes group_minutes (default 1m).
	Check time.Duration
	// Settle: the member lists are rebuilt once no change has come for
	// this long (default 200ms), and at least every MaxStale while changes
	// keep coming (default 2s).
	Settle, MaxStale time.Duration
	// MaxBatch bounds the changes applied in one transaction (default 1000).
	MaxBatch int
	// MaxBackoff caps the wait before a failed watch starts over (default
	// backoff.DefaultMax).
	MaxBackoff time.Duration
}

func (c *Config) defaults() error {
	if c.DB == nil {
		return errors.New("groupmirror: Config.DB is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Check <= 0 {
		c.Check = time.Minute
	}
	if c.Settle <= 0 {
		c.Settle = 200 * time.Millisecond
	}
	if c.MaxStale <= 0 {
		c.MaxStale = 2 * time.Second
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = backoff.DefaultMax
	}
	return nil
}

// errMoved ends a watch whose bucket was deleted and created again.
var errMoved = errors.New("agent_groups was deleted and created again")

// Run follows KV agent_groups on c into the mirror until ctx ends, and
// then returns nil. A watch that fails (NATS, the database, the bucket
// recreated) is logged and started over with backoff, beginning with a
// new snapshot; Run itself never gives up.
func Run(ctx context.Context, c *bus.Client, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	backoff.Forever(ctx, cfg.MaxBackoff, func(ctx context.Context) error { return follow(ctx, c, cfg) },
		func(err error, wait time.Duration) {
			cfg.Logger.Error("groups mirror: watch failed; starting over", slog.Any("err", err), slog.Duration("backoff", wait))
		})
	return nil
}

// follow is one watch: the snapshot sync, then the changes until the
// watch fails or ctx ends.
func follow(ctx context.Context, c *bus.Client, cfg Config) error {
	const bucket = kanade.BucketAgentGroups
	st, err := c.KVState(ctx, bucket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := c.Watch(ctx, bucket)
	if err != nil {
		return err
	}
	// The watch's first part: every key's latest operation, then nil. It
	// began after st was read, so it covers st.Revision and every
	// revision it delivers.
	var keys []storage.Membership
	through := st.Revision
	for {
		e, err := next(ctx, updates)
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		keys = append(keys, membership(ctx, cfg.Logger, e))
		through = max(through, e.Revision)
	}
	if err := cfg.DB.SyncGroups(ctx, st.Created, through, keys); err != nil {
		return err
	}
	cfg.Logger.Info("groups mirror synced", slog.Int("keys", len(keys)), slog.Uint64("revision", through))

	check := time.NewTicker(cfg.Check)
	defer check.Stop()
	refresh := time.NewTimer(cfg.Settle)
	refresh.Stop()
	var staleSince time.Time // zero: the lists are fresh
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-updates:
			if !ok {
				return errors.New("groups mirror: the watch ended")
			}
			batch := drain(ctx, cfg, updates, e)
			if err := cfg.DB.ApplyGroups(ctx, st.Created, batch); err != nil {
				return err
			}
			if staleSince.IsZero() {
				staleSince = time.Now()
			}
			refresh.Reset(max(0, min(cfg.Settle, time.Until(staleSince.Add(cfg.MaxStale)))))
		case <-refresh.C:
			if _, err := cfg.DB.RefreshGroupLists(ctx); err != nil {
				return err
			}
			staleSince = time.Time{}
		case <-check.C:
			now, err := c.KVState(ctx, bucket)
			if err != nil {
				return err
			}
			if !now.Created.Equal(st.Created) {
				return errMoved
			}
			if _, err := cfg.DB.PruneGroupMinutes(ctx); err != nil {
				return err
			}
		}
	}
}

// next is the watch's next update: nil marks the end of its first part.
func next(ctx context.Context, updates <-chan *bus.Entry) (*bus.Entry, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case e, ok := <-updates:
		if !ok {
			return nil, errors.New("groups mirror: the watch ended before the current values were read")
		}
		return e, nil
	}
}

// linger is how long drain waits for one more change: the watch hands
// changes over one at a time, so without a moment's wait a burst would be
// applied one transaction per change (on a remote database, several round
// trips each).
const linger = 2 * time.Millisecond

// drain is first and the changes that follow it without a pause longer
// than linger, up to MaxBatch, as memberships in watch order.
func drain(ctx context.Context, cfg Config, updates <-chan *bus.Entry, first *bus.Entry) []storage.Membership {
	var out []storage.Membership
	add := func(e *bus.Entry) {
		if e != nil { // a second end-of-snapshot marker never comes; be lenient
			out = append(out, membership(ctx, cfg.Logger, e))
		}
	}
	add(first)
	wait := time.NewTimer(linger)
	defer wait.Stop()
	for len(out) < cfg.MaxBatch {
		select {
		case e, ok := <-updates:
			if !ok {
				return out // the closed channel is seen again by the caller
			}
			add(e)
			wait.Reset(linger)
		case <-wait.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// membership is the mirror's row of one KV operation: a delete, or a value
// that does not decode, is no groups.
func membership(ctx context.Context, log *slog.Logger, e *bus.Entry) storage.Membership {
	m := storage.Membership{PCID: e.Key, Revision: e.Revision}
	if e.Deleted {
		return m
	}
	gs, err := kanade.DecodeAgentGroups(e.Value)
	if err != nil {
		log.WarnContext(ctx, "groups mirror: membership value does not decode; counted as no groups",
			slog.String("pc_id", kanade.Clip(e.Key)), slog.Uint64("revision", e.Revision),
			slog.String("err", kanade.Clip(fmt.Sprint(err))))
		return m
	}
	m.Groups = gs
	return m
}
