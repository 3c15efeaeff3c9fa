package bus_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go"
)

// add is a membership edit as the groups routes make it.
func add(g string) func([]byte, bool) ([]byte, bool, error) {
	return func(cur []byte, _ bool) ([]byte, bool, error) {
		gs, err := kanade.DecodeAgentGroups(cur)
		if err != nil || slices.Contains(gs, g) {
			return nil, false, err
		}
		return kanade.EncodeAgentGroups(append(gs, g)), true, nil
	}
}

func TestModifyLosesNoConcurrentChange(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	ctx := t.Context()
	// Writers on connections of their own, as separate processes would be.
	var clients []*bus.Client
	for range 4 {
		nc, err := nats.Connect(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		c, err := bus.NewClient(nc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clients = append(clients, c)
	}
	const b, key, n = kanade.BucketAgentGroups, "PC-1", 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, changed, err := clients[i%len(clients)].Modify(ctx, b, key, add(fmt.Sprintf("g%02d", i)))
			if err == nil && !changed {
				err = fmt.Errorf("adding g%02d changed nothing", i)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	e, err := s.Bus.Get(ctx, b, key)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("g%02d", i))
	}
	got, _ := kanade.DecodeAgentGroups(e.Value)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups after %d concurrent adds (-want +got):\n%s", n, diff)
	}
}

func TestModifyUnchangedWritesNothingAndDeleteMarkersAreAbsent(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b, key = kanade.BucketAgentGroups, "PC-2"
	v, changed, err := c.Modify(ctx, b, key, add("canary"))
	if err != nil || !changed || string(v) != `{"groups":["canary"]}` {
		t.Fatalf("first add = %s, %v, %v", v, changed, err)
	}
	before, _ := c.Get(ctx, b, key)
	v, changed, err = c.Modify(ctx, b, key, add("canary"))
	if err != nil || changed || string(v) != `{"groups":["canary"]}` {
		t.Fatalf("second add = %s, %v, %v; want the value, unchanged", v, changed, err)
	}
	if after, _ := c.Get(ctx, b, key); after.Revision != before.Revision {
		t.Errorf("an unchanged Modify bumped the revision %d → %d", before.Revision, after.Revision)
	}
	// A delete marker reads as absent and is written over with Create.
	if err := c.Delete(ctx, b, key, 0); err != nil {
		t.Fatal(err)
	}
	var sawExists bool
	v, changed, err = c.Modify(ctx, b, key, func(cur []byte, exists bool) ([]byte, bool, error) {
		sawExists = exists
		return add("wave1")(cur, exists)
	})
	if err != nil || !changed || sawExists || string(v) != `{"groups":["wave1"]}` {
		t.Fatalf("add over a delete marker = %s, %v, %v (exists %v)", v, changed, err, sawExists)
	}
	boom := errors.New("refused")
	if _, _, err := c.Modify(ctx, b, key, func([]byte, bool) ([]byte, bool, error) { return nil, false, boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error = %v", err)
	}
	if _, _, err := c.Modify(ctx, "no_such_bucket", key, add("x")); !errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("missing bucket = %v, want ErrNoBucket", err)
	}
}
