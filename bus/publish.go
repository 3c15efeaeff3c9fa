package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Audit publishes ev on its subject (audit.{actor}.{action}[.{target}]),
// where the AUDIT stream keeps it.
func (c *Client) Audit(ctx context.Context, ev kanade.AuditEvent) error {
	subject, err := ev.Subject()
	if err != nil {
		return err
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit %s: %w", subject, err)
	}
	return c.Publish(ctx, subject, body, "")
}

// Outgoing is one command message (see CommandMessages).
type Outgoing struct {
	// Subject is commands.all, commands.group.<g> or commands.pc.<pc_id>.
	Subject string
	// Data is the Command's JSON.
	Data []byte
	// MsgID is the Nats-Msg-Id: the EXEC stream stores a retried publish
	// with the same id once.
	MsgID string
}

// Commands publishes command messages through JetStream (so the EXEC
// stream keeps the last one per subject for agents that reconnect). It is
// the one path by which a Command reaches the wire. It returns how many the
// stream acknowledged, also on error: a fan-out that failed before any went
// out can be taken back, one that failed half way cannot.
func (c *Client) Commands(ctx context.Context, out []Outgoing) (int, error) {
	msgs := make([]*nats.Msg, 0, len(out))
	for _, o := range out {
		if o.MsgID == "" {
			return 0, fmt.Errorf("command for %s: no message id", kanade.Clip(o.Subject))
		}
		msgs = append(msgs, &nats.Msg{Subject: o.Subject, Data: o.Data,
			Header: nats.Header{jetstream.MsgIDHeader: []string{o.MsgID}}})
	}
	return c.PublishAll(ctx, msgs)
}

// SetScriptCurrent records version as the current version of job, which
// agents compare with the command they receive (KV script_current).
func (c *Client) SetScriptCurrent(ctx context.Context, job, version string) error {
	_, err := c.Put(ctx, kanade.BucketScriptCurrent, job, []byte(version))
	return err
}

// ErrInvalid: a stored value does not decode or validate.
var ErrInvalid = errors.New("invalid")

// Job reads the manifest of job from KV jobs, as the scheduler needs it at
// fire time (no cache: an edit applies at the next firing). ErrNotFound
// when there is none, ErrInvalid (with the reason) when it does not decode
// or validate.
func (c *Client) Job(ctx context.Context, job string) (*kanade.Manifest, error) {
	e, err := c.Get(ctx, kanade.BucketJobs, job)
	if err != nil {
		return nil, err
	}
	m, err := kanade.ParseManifest(job, e.Value)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w: %w", kanade.Clip(job), ErrInvalid, err)
	}
	return m, nil
}

// Timeouts remembers each job's timeout for a while, so a burst of started
// events for one job costs one KV read. It is bounded: when full it is
// simply emptied.
type Timeouts struct {
	c     *Client
	clock kanade.Clock
	ttl   time.Duration
	max   int

	mu      sync.Mutex
	entries map[string]timeoutEntry
}

type timeoutEntry struct {
	timeout time.Duration
	at      time.Time
}

// NewTimeouts caches job timeouts read through c for ttl.
func NewTimeouts(c *Client, clock kanade.Clock, ttl time.Duration) *Timeouts {
	return &Timeouts{c: c, clock: clock, ttl: ttl, max: 1024, entries: map[string]timeoutEntry{}}
}

// Timeout returns the job's execute.timeout; 0 when the job is unknown or
// its manifest does not validate (then nothing can say how long its runs
// may take). Only a failure to reach NATS is an error.
func (t *Timeouts) Timeout(ctx context.Context, job string) (time.Duration, error) {
	now := t.clock()
	t.mu.Lock()
	if e, ok := t.entries[job]; ok && now.Sub(e.at) < t.ttl && !now.Before(e.at) {
		t.mu.Unlock()
		return e.timeout, nil
	}
	t.mu.Unlock()
	var d time.Duration
	m, err := t.c.Job(ctx, job)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
	case err != nil:
		return 0, err
	default:
		if d, err = m.Timeout(); err != nil {
			d = 0
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) >= t.max {
		clear(t.entries)
	}
	t.entries[job] = timeoutEntry{timeout: d, at: now}
	return d, nil
}
