package bus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestModifyEntryAnswersTheRevisionWrittenOrFound(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b = kanade.BucketAgentGroups
	e, changed, err := c.ModifyEntry(ctx, b, "PC-1", add("canary"))
	if err != nil || !changed {
		t.Fatalf("add = %v, %v", changed, err)
	}
	stored, err := c.Get(ctx, b, "PC-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision == 0 || e.Revision != stored.Revision || string(e.Value) != string(stored.Value) {
		t.Errorf("ModifyEntry = rev %d %s; stored rev %d %s", e.Revision, e.Value, stored.Revision, stored.Value)
	}
	again, changed, err := c.ModifyEntry(ctx, b, "PC-1", add("canary"))
	if err != nil || changed || again.Revision != stored.Revision {
		t.Errorf("unchanged = rev %d, %v, %v; want the revision found (%d)", again.Revision, changed, err, stored.Revision)
	}
	none, changed, err := c.ModifyEntry(ctx, b, "PC-2", func([]byte, bool) ([]byte, bool, error) { return nil, false, nil })
	if err != nil || changed || none.Revision != 0 || none.Key != "PC-2" || none.Value != nil {
		t.Errorf("absent and left alone = %+v, %v, %v", none, changed, err)
	}
}

func TestKVStateFollowsRevisionsAndTellsARecreatedBucket(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b = kanade.BucketAgentGroups
	st0, err := c.KVState(ctx, b)
	if err != nil || st0.Revision != 0 || st0.Created.IsZero() {
		t.Fatalf("fresh bucket = %+v, %v", st0, err)
	}
	rev, err := c.Put(ctx, b, "PC-1", []byte(`{"groups":["a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, b, "PC-1", 0); err != nil {
		t.Fatal(err)
	}
	st1, err := c.KVState(ctx, b)
	if err != nil || st1.Revision != rev+1 || !st1.Created.Equal(st0.Created) {
		t.Errorf("after a put (rev %d) and a delete = %+v, %v; want revision %d, same creation", rev, st1, err, rev+1)
	}
	if err := s.JS.DeleteKeyValue(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVState(ctx, b); !errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("deleted bucket = %v, want ErrNoBucket", err)
	}
	if _, err := s.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b}); err != nil {
		t.Fatal(err)
	}
	st2, err := c.KVState(ctx, b)
	if err != nil || st2.Revision != 0 || st2.Created.Equal(st0.Created) {
		t.Errorf("recreated bucket = %+v, %v; want revision 0 and another creation time than %v", st2, err, st0.Created)
	}
}

func TestSnapshotHoldsDeleteMarkersAndTheRevisionItCovers(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b = kanade.BucketAgentGroups
	empty, err := c.Snapshot(ctx, b)
	if err != nil || len(empty.Entries) != 0 || empty.State.Revision != 0 {
		t.Fatalf("empty bucket = %+v, %v", empty, err)
	}
	for _, k := range []string{"PC-2", "PC-1", "PC-3"} {
		if _, err := c.Put(ctx, b, k, []byte(`{"groups":["`+k+`"]}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, b, "PC-3", 0); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Key      string
		Value    string
		Revision uint64
		Deleted  bool
	}
	var got []row
	for _, e := range snap.Entries {
		got = append(got, row{e.Key, string(e.Value), e.Revision, e.Deleted})
	}
	want := []row{{"PC-1", `{"groups":["PC-1"]}`, 2, false}, {"PC-2", `{"groups":["PC-2"]}`, 1, false}, {"PC-3", "", 4, true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if snap.State.Revision != 4 {
		t.Errorf("snapshot covers revision %d, want 4", snap.State.Revision)
	}
	if _, err := c.Snapshot(ctx, "no_such_bucket"); !errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("missing bucket = %v, want ErrNoBucket", err)
	}
}

// A bucket deleted after the client opened it is ErrNoBucket for every
// operation, promptly: the client's cached handle must not turn it into a
// timeout (the API answers 503 naming the bucket, not 500 after seconds).
func TestDeletedBucketIsErrNoBucketEvenWhenOpenedBefore(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const b = kanade.BucketAgentGroups
	rev, err := c.Put(ctx, b, "PC-1", []byte(`{"groups":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Entries(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.JS.DeleteKeyValue(ctx, b); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"Get":      func() error { _, err := c.Get(ctx, b, "PC-1"); return err },
		"Update":   func() error { _, err := c.Update(ctx, b, "PC-1", []byte(`{}`), rev); return err },
		"Delete":   func() error { return c.Delete(ctx, b, "PC-1", 0) },
		"Entries":  func() error { _, err := c.Entries(ctx, b); return err },
		"Matching": func() error { _, err := c.Matching(ctx, b, "PC-1"); return err },
		"Snapshot": func() error { _, err := c.Snapshot(ctx, b); return err },
		"Modify": func() error {
			_, _, err := c.Modify(ctx, b, "PC-1", func([]byte, bool) ([]byte, bool, error) { return []byte(`{}`), true, nil })
			return err
		},
	} {
		start := time.Now()
		err := op()
		if !errors.Is(err, bus.ErrNoBucket) {
			t.Errorf("%s on a deleted bucket = %v, want ErrNoBucket", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v to say so", name, d)
		}
	}
}
