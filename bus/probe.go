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

// Probe checks every resource of kanade.Resources with one question to
// the server, the names of its streams ($JS.API.STREAM.NAMES; a KV bucket is
// the stream KV_<name>, an object store OBJ_<name>), and returns one status
// per resource, in that order. One question instead of one per resource:
// the server answers JetStream API requests one after another, so 17
// concurrent stream infos took ~3 ms on a busy machine and the names ~0.1 ms,
// and the health rollup that waits on them is wanted in under 2 ms.
//
// It returns by ctx's deadline whatever the server does: an unreachable or
// closed connection makes the question fail fast or time out, and every
// resource is then reported unchecked with the reason (ctx's error when the
// deadline ended it). Give ctx a deadline; without one the question is
// bounded only by the JetStream client's default timeout.
func (p Prober) Probe(ctx context.Context) []kanade.ResourceStatus {
	resources := kanade.Resources(p.Replicas)
	out := make([]kanade.ResourceStatus, len(resources))
	for i, r := range resources {
		out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name}
	}
	unchecked := func(err error) []kanade.ResourceStatus {
		for i := range out {
			out[i].Err = fmt.Errorf("probe %s %s: %w", out[i].Kind, out[i].Name, err)
		}
		return out
	}
	c, err := p.client()
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	// A question in flight when the connection drops ends then, not at the
	// deadline: a monitor learns of the outage at once.
	ctx, cancel := c.request(ctx, time.Hour)
	defer cancel()
	names, err := streamNames(ctx, c.js)
	if err != nil {
		return unchecked(why(ctx, err))
	}
	for i, r := range resources {
		stream, err := resourceStream(r)
		if err != nil {
			out[i].Err = fmt.Errorf("probe %s %s: %w", r.Kind, r.Name, err)
			continue
		}
		out[i].Exists = names[stream]
	}
	return out
}

// streamNames returns the name of every stream of the account, all pages.
func streamNames(ctx context.Context, js jetstream.JetStream) (map[string]bool, error) {
	l := js.StreamNames(ctx)
	names := map[string]bool{}
	for {
		select {
		case n, ok := <-l.Name():
			if !ok {
				if err := l.Err(); err != nil {
					return nil, fmt.Errorf("stream names: %w", err)
				}
				return names, nil
			}
			names[n] = true
		case <-ctx.Done():
			return nil, fmt.Errorf("stream names: %w", ctx.Err())
		}
	}
}

// resourceStream is the stream that holds r.
func resourceStream(r kanade.Resource) (string, error) {
	switch r.Kind {
	case kanade.KindStream:
		return r.Name, nil
	case kanade.KindKeyValue:
		return "KV_" + r.Name, nil
	case kanade.KindObjectStore:
		return "OBJ_" + r.Name, nil
	}
	return "", fmt.Errorf("unknown resource kind %q", r.Kind)
}

func (p Prober) client() (*Client, error) {
	if p.Client == nil {
		return nil, errors.New("no JetStream connection configured")
	}
	return p.Client()
}

// Backlogs asks, for each projection, what its stream holds past the
// offset in after (by name): the first waiting message and the stream's
// last sequence. The questions run concurrently under ctx's deadline, one
// stream info per stream (projections may share one) and then, only for a
// projection something waits for, its first waiting message.
func (p Prober) Backlogs(ctx context.Context, projections []kanade.Projection, after map[string]uint64) []kanade.Backlog {
	out := make([]kanade.Backlog, len(projections))
	c, err := p.client()
	if err != nil {
		for i, pr := range projections {
			out[i] = kanade.Backlog{Name: pr.Name, Err: err}
		}
		return out
	}
	ctx, cancel := c.request(ctx, time.Hour)
	defer cancel()
	byStream := map[string][]int{}
	for i, pr := range projections {
		byStream[pr.Stream] = append(byStream[pr.Stream], i)
	}
	var wg sync.WaitGroup
	for name, idx := range byStream {
		wg.Go(func() {
			st, err := c.js.Stream(ctx, name)
			if err != nil {
				err = fmt.Errorf("stream %s: %w", name, why(ctx, err))
			}
			for _, i := range idx {
				wg.Go(func() { out[i] = backlog(ctx, st, err, projections[i], after[projections[i].Name]) })
			}
		})
	}
	wg.Wait()
	return out
}

// backlog asks once (the caller's deadline is a monitor's, not a loop's)
// for the first message of pr past after in st, the stream's info or why
// it could not be read.
func backlog(ctx context.Context, st jetstream.Stream, err error, pr kanade.Projection, after uint64) kanade.Backlog {
	b := kanade.Backlog{Name: pr.Name, Err: err}
	if err != nil {
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
