package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sign"
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
// the one path by which a Command reaches the wire: Publish and PublishAll
// refuse commands.* subjects, so no caller can send one around it. With a
// signer (WithSigner) every message carries the four Kanade-Sig* headers
// (control.md §7) over the signing time and its exact body, the time read
// here, when the message goes out: a rollout wave stored for hours is
// signed when it is sent, not when it was decided. Without one no message
// carries any of them (a partial set reads as a forged command to agents).
//
// It returns how many the stream acknowledged, also on error: a fan-out
// that failed before any went out can be taken back, one that failed half
// way cannot.
func (c *Client) Commands(ctx context.Context, out []Outgoing) (int, error) {
	msgs := make([]*nats.Msg, 0, len(out))
	var at time.Time
	if c.signer != nil {
		at = c.clock()
	}
	var last []byte
	var sig sign.Headers
	for i, o := range out {
		if o.MsgID == "" {
			return 0, fmt.Errorf("command for %s: no message id", kanade.Clip(o.Subject))
		}
		h := nats.Header{jetstream.MsgIDHeader: []string{o.MsgID}}
		if c.signer != nil {
			// A fan-out sends one body on many subjects; the signature
			// covers the body and the time only, so it is computed once.
			if i == 0 || !bytes.Equal(o.Data, last) {
				sig, last = c.signer.Sign(at, o.Data), o.Data
			}
			h[sign.HeaderSig] = []string{sig.Sig}
			h[sign.HeaderKid] = []string{sig.Kid}
			h[sign.HeaderAlg] = []string{sig.Alg}
			h[sign.HeaderAt] = []string{sig.At}
		}
		msgs = append(msgs, &nats.Msg{Subject: o.Subject, Data: o.Data, Header: h})
	}
	return c.publishAll(ctx, msgs)
}

// commandsPrefix starts every subject a Command is published on (stream
// EXEC, wire.md §2).
const commandsPrefix = "commands."

func isCommand(subject string) bool { return strings.HasPrefix(subject, commandsPrefix) }

// errCommandSubject: a Command must go out through Commands, which signs it.
func errCommandSubject(subject string) error {
	return fmt.Errorf("publish %s: a command subject; commands go out through Commands, which signs them", kanade.Clip(subject))
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

// Timeouts remembers what the projector needs of each job for a while (its
// timeout, its fleet check hint), so a burst of started events or results
// for one job costs one KV read. It is bounded: when full it is simply
// emptied.
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
	check   kanade.CheckHint
	isCheck bool
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
	e, err := t.lookup(ctx, job)
	return e.timeout, err
}

// Check returns the job's check hint when its results go into
// check_status (observe.md §3.4); ok is false for an unknown or invalid
// job and for one without a fleet check. Only a failure to reach NATS is
// an error.
func (t *Timeouts) Check(ctx context.Context, job string) (kanade.CheckHint, bool, error) {
	e, err := t.lookup(ctx, job)
	return e.check, e.isCheck, err
}

func (t *Timeouts) lookup(ctx context.Context, job string) (timeoutEntry, error) {
	now := t.clock()
	t.mu.Lock()
	if e, ok := t.entries[job]; ok && now.Sub(e.at) < t.ttl && !now.Before(e.at) {
		t.mu.Unlock()
		return e, nil
	}
	t.mu.Unlock()
	e := timeoutEntry{at: now}
	m, err := t.c.Job(ctx, job)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
	case err != nil:
		return timeoutEntry{}, err
	default:
		if e.timeout, err = m.Timeout(); err != nil {
			e.timeout = 0
		}
		e.check, e.isCheck = m.FleetCheck()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) >= t.max {
		clear(t.entries)
	}
	t.entries[job] = e
	return e, nil
}
