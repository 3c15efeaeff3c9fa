package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// Prober checks that every resource of the bootstrap contract exists. It
// checks exactly kanade.Resources, the list Bootstrap creates, so health and
// bootstrap cannot drift apart.
type Prober struct {
	// Client gives the connection to probe on; an error (NATS not
	// connected) fails every check at once, naming the reason.
	Client func() (*Client, error)
	// Replicas is the replica count the resources were bootstrapped with.
	// Only the names are checked today; it selects the same list Bootstrap used.
	Replicas int
}

// Probe checks every resource concurrently and returns one status per
// resource of kanade.Resources, in that order.
//
// It returns by ctx's deadline whatever the server does: an unreachable or
// closed connection makes a check fail fast or time out, and a check still
// running when ctx ends is reported missing with ctx's error. Give ctx a
// deadline; without one each check is bounded only by the JetStream
// client's default timeout.
func (p Prober) Probe(ctx context.Context) []kanade.ResourceStatus {
	resources := kanade.Resources(p.Replicas)
	out := make([]kanade.ResourceStatus, len(resources))
	c, err := p.client()
	if err != nil {
		for i, r := range resources {
			out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name, Err: err}
		}
		return out
	}
	// Checks in flight when the connection drops end then, not at the
	// deadline: a monitor learns of the outage at once.
	ctx, cancel := c.request(ctx, time.Hour)
	defer cancel()
	type answer struct {
		i   int
		err error
	}
	// Buffered so a check that finishes after Probe returned never blocks.
	answers := make(chan answer, len(resources))
	for i, r := range resources {
		out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name}
		go func() { answers <- answer{i, why(ctx, check(ctx, c.js, r))} }()
	}
	done := make([]bool, len(resources))
	record := func(a answer) {
		done[a.i] = true
		out[a.i].Exists = a.err == nil
		if a.err != nil && !isNotFound(a.err) {
			out[a.i].Err = a.err
		}
	}
	for pending := len(resources); pending > 0; pending-- {
		select {
		case a := <-answers:
			record(a)
		case <-ctx.Done():
			// Keep the answers that made it in time, then give up on the rest.
			for drained := false; !drained; {
				select {
				case a := <-answers:
					record(a)
				default:
					drained = true
				}
			}
			for i := range out {
				if !done[i] {
					out[i].Err = fmt.Errorf("probe %s %s: %w", out[i].Kind, out[i].Name, why(ctx, ctx.Err()))
				}
			}
			return out
		}
	}
	return out
}

func (p Prober) client() (*Client, error) {
	if p.Client == nil {
		return nil, errors.New("no JetStream connection configured")
	}
	return p.Client()
}

func check(ctx context.Context, js jetstream.JetStream, r kanade.Resource) error {
	var err error
	switch r.Kind {
	case kanade.KindStream:
		_, err = js.Stream(ctx, r.Name)
	case kanade.KindKeyValue:
		_, err = js.KeyValue(ctx, r.Name)
	case kanade.KindObjectStore:
		_, err = js.ObjectStore(ctx, r.Name)
	default:
		err = fmt.Errorf("unknown resource kind %q", r.Kind)
	}
	if err != nil {
		return fmt.Errorf("probe %s %s: %w", r.Kind, r.Name, err)
	}
	return nil
}

// isNotFound reports an answer that the resource does not exist, as opposed
// to a failure to ask.
func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// Backlogs asks, for each projection, what its stream holds past the
// offset in after (by name): the first waiting message and the stream's
// last sequence. The questions run concurrently under ctx's deadline.
func (p Prober) Backlogs(ctx context.Context, projections []kanade.Projection, after map[string]uint64) []kanade.Backlog {
	out := make([]kanade.Backlog, len(projections))
	c, err := p.client()
	if err == nil {
		var cancel context.CancelFunc
		ctx, cancel = c.request(ctx, time.Hour)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, pr := range projections {
		out[i] = kanade.Backlog{Name: pr.Name, Err: err}
		if err != nil {
			continue
		}
		wg.Go(func() { out[i] = c.backlog(ctx, pr, after[pr.Name]) })
	}
	wg.Wait()
	return out
}

// backlog asks once (the caller's deadline is a monitor's, not a loop's).
func (c *Client) backlog(ctx context.Context, pr kanade.Projection, after uint64) kanade.Backlog {
	b := kanade.Backlog{Name: pr.Name}
	st, err := c.js.Stream(ctx, pr.Stream)
	if err != nil {
		b.Err = fmt.Errorf("stream %s: %w", pr.Stream, why(ctx, err))
		return b
	}
	b.LastSeq = st.CachedInfo().State.LastSeq
	if b.LastSeq <= after {
		return b
	}
	m, err := st.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(pr.Filter))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		b.Err = fmt.Errorf("stream %s: first message past %d: %w", pr.Stream, after, err)
	default:
		b.NextSeq, b.NextTime = m.Sequence, m.Time
	}
	return b
}
