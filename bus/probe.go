package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// Prober checks that every resource of the bootstrap contract exists. It
// checks exactly kanade.Resources, the list Bootstrap creates, so health and
// bootstrap cannot drift apart.
type Prober struct {
	JS jetstream.JetStream
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
	type answer struct {
		i   int
		err error
	}
	// Buffered so a check that finishes after Probe returned never blocks.
	answers := make(chan answer, len(resources))
	for i, r := range resources {
		out[i] = kanade.ResourceStatus{Kind: r.Kind, Name: r.Name}
		go func() { answers <- answer{i, p.check(ctx, r)} }()
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
					out[i].Err = fmt.Errorf("probe %s %s: %w", out[i].Kind, out[i].Name, ctx.Err())
				}
			}
			return out
		}
	}
	return out
}

func (p Prober) check(ctx context.Context, r kanade.Resource) error {
	if p.JS == nil {
		return errors.New("no JetStream connection")
	}
	var err error
	switch r.Kind {
	case kanade.KindStream:
		_, err = p.JS.Stream(ctx, r.Name)
	case kanade.KindKeyValue:
		_, err = p.JS.KeyValue(ctx, r.Name)
	case kanade.KindObjectStore:
		_, err = p.JS.ObjectStore(ctx, r.Name)
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
