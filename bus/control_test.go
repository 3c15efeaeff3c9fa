package bus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestKillReachesSubscribersAndRefusesBadTokens(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	sub, err := s.NC.SubscribeSync("kill.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, "exec-1"); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "kill.exec-1" || len(m.Data) != 0 {
		t.Errorf("got %s %q, want an empty kill.exec-1", m.Subject, m.Data)
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", ">"} {
		if err := c.Kill(ctx, bad); err == nil {
			t.Errorf("Kill(%q) published", bad)
		}
	}
}

func TestScriptStatusIsRawBytes(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	if got, err := c.ScriptStatuses(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v; want an empty map", got, err)
	}
	if err := c.SetScriptStatus(ctx, "inv-hw", bus.ScriptRevoked); err != nil {
		t.Fatal(err)
	}
	if err := c.SetScriptStatus(ctx, "cleanup", bus.ScriptActive); err != nil {
		t.Fatal(err)
	}
	if err := c.SetScriptStatus(ctx, "x", "revoked"); err == nil {
		t.Error("a value agents do not know was written")
	}
	e, err := c.Get(ctx, kanade.BucketScriptStatus, "inv-hw")
	if err != nil || string(e.Value) != "REVOKED" {
		t.Errorf("stored %q, %v; want the raw bytes REVOKED", e.Value, err)
	}
	got, err := c.ScriptStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"inv-hw": "REVOKED", "cleanup": "ACTIVE"}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestScriptStatusesOfAMissingBucket(t *testing.T) {
	s := bustest.Start(t)
	if _, err := s.Bus.ScriptStatuses(t.Context()); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("ScriptStatuses without the bucket = %v, want ErrNotFound", err)
	}
}

func TestAwaitSeesAnAnswerPublishedRightAfter(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	a, err := c.Await(ctx, "results.req-1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Published through JetStream, as agents do: the core subscription
	// sees it too.
	if err := c.Publish(ctx, "results.req-1", []byte(`{"pc_id":"A"}`), ""); err != nil {
		t.Fatal(err)
	}
	got, err := a.Next(ctx)
	if err != nil || string(got) != `{"pc_id":"A"}` {
		t.Errorf("Next = %s, %v", got, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := a.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing more = %v, want the deadline", err)
	}
}

func TestScriptDigestIsHexSHA256(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	// A NATS bootstrapped by an older backend has no scripts store.
	if err := s.JS.DeleteObjectStore(ctx, kanade.ObjectScripts); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScriptDigest(ctx, "inv/1.0"); !errors.Is(err, bus.ErrNoBucket) {
		t.Fatalf("without the store: %v, want ErrNoBucket", err)
	}
	store, err := s.JS.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: kanade.ObjectScripts})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("Get-ComputerInfo | ConvertTo-Json\n")
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: "inv/1.0"}, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	got, err := c.ScriptDigest(ctx, "inv/1.0")
	if err != nil || got != hex.EncodeToString(sum[:]) {
		t.Errorf("digest = %q, %v; want %x", got, err, sum)
	}
	_, err = c.ScriptDigest(ctx, "inv/2.0")
	if !errors.Is(err, bus.ErrNotFound) || errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("a missing object: %v, want ErrNotFound and not ErrNoBucket", err)
	}
}

// A write through a handle cached before its bucket was deleted reports the
// missing bucket, not NATS's "no response from stream".
func TestWriteToABucketDeletedMeanwhileIsErrNoBucket(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	ctx := t.Context()
	if err := s.Bus.SetScriptStatus(ctx, "job", bus.ScriptRevoked); err != nil {
		t.Fatal(err)
	}
	if err := s.JS.DeleteKeyValue(ctx, kanade.BucketScriptStatus); err != nil {
		t.Fatal(err)
	}
	if err := s.Bus.SetScriptStatus(ctx, "job", bus.ScriptActive); !errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("put after the bucket was deleted: %v, want ErrNoBucket", err)
	}
	if _, err := s.Bus.Create(ctx, kanade.BucketScriptStatus, "k", []byte("v")); !errors.Is(err, bus.ErrNoBucket) {
		t.Errorf("create after the bucket was deleted: %v, want ErrNoBucket", err)
	}
	// Made again (a bootstrap), the bucket is used again.
	if err := s.Bus.Bootstrap(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Bus.SetScriptStatus(ctx, "job", bus.ScriptActive); err != nil {
		t.Errorf("put after a new bootstrap: %v", err)
	}
}
