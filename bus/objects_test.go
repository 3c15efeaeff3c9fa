package bus_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestObjects(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const st = kanade.ObjectAgentReleases
	if objs, err := c.Objects(ctx, st); err != nil || len(objs) != 0 {
		t.Fatalf("an empty store lists %v, %v; want nothing and no error", objs, err)
	}
	// Several chunks (nats.go cuts 128 KiB ones), streamed from a reader.
	data := make([]byte, 300<<10+7)
	rand.NewChaCha8([32]byte{2}).Read(data)
	info, err := c.PutObject(ctx, st, "1.0.0", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if info.Name != "1.0.0" || info.Size != uint64(len(data)) || info.Digest != "SHA-256="+base64.URLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("put answered %+v", info)
	}
	if _, err := c.PutObject(ctx, st, "2.0.0", bytes.NewReader([]byte("two"))); err != nil {
		t.Fatal(err)
	}

	// Another connection's library sees what was put.
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	other, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	os, err := other.ObjectStore(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.GetBytes(ctx, "1.0.0")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; want the %d put", len(got), err, len(data))
	}

	r, gi, err := c.GetObject(ctx, st, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	if cerr := r.Close(); err != nil || cerr != nil || !bytes.Equal(got, data) || gi.Size != info.Size {
		t.Fatalf("GetObject read %d bytes (%+v), %v, %v", len(got), gi, err, cerr)
	}
	if _, _, err := c.GetObject(ctx, st, "9.9.9"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("GetObject of a missing object = %v, want ErrNotFound", err)
	}

	if err := c.DeleteObject(ctx, st, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteObject(ctx, st, "2.0.0"); !errors.Is(err, bus.ErrNotFound) || errors.Is(err, bus.ErrNoBucket) {
		t.Fatalf("deleting a deleted object = %v, want ErrNotFound", err)
	}
	if err := c.DeleteObject(ctx, st, "never"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("deleting a missing object = %v, want ErrNotFound", err)
	}
	if _, err := c.ObjectInfo(ctx, st, "2.0.0"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("ObjectInfo of a deleted object = %v, want ErrNotFound", err)
	}
	if i, err := c.ObjectInfo(ctx, st, "1.0.0"); err != nil || i.Digest != info.Digest || i.Modified.IsZero() {
		t.Fatalf("ObjectInfo = %+v, %v", i, err)
	}
	// The deleted object is still in the store as a marker; the list
	// hides it.
	all, err := os.List(ctx, jetstream.ListObjectsShowDeleted())
	if err != nil || len(all) != 2 {
		t.Fatalf("the store holds %d entries, %v; want the live one and the deleted one", len(all), err)
	}
	objs, err := c.Objects(ctx, st)
	if err != nil || len(objs) != 1 || objs[0].Name != "1.0.0" || objs[0].Digest != info.Digest || objs[0].Modified.IsZero() {
		t.Fatalf("list = %+v, %v; want 1.0.0 only", objs, err)
	}

	// Putting a name again replaces the object.
	if _, err := c.PutObject(ctx, st, "1.0.0", bytes.NewReader([]byte("small"))); err != nil {
		t.Fatal(err)
	}
	if got, err := os.GetBytes(ctx, "1.0.0"); err != nil || string(got) != "small" {
		t.Fatalf("after a second put: %q, %v", got, err)
	}
}

func TestObjectsWithoutTheStore(t *testing.T) {
	s := bustest.Start(t) // not bootstrapped: no store
	c, ctx := s.Bus, t.Context()
	const st = kanade.ObjectAgentReleases
	for name, err := range map[string]error{
		"check":  c.CheckObjectStore(ctx, st),
		"list":   func() error { _, err := c.Objects(ctx, st); return err }(),
		"info":   func() error { _, err := c.ObjectInfo(ctx, st, "1"); return err }(),
		"put":    func() error { _, err := c.PutObject(ctx, st, "1", bytes.NewReader([]byte("x"))); return err }(),
		"get":    func() error { _, _, err := c.GetObject(ctx, st, "1"); return err }(),
		"delete": c.DeleteObject(ctx, st, "1"),
	} {
		if !errors.Is(err, bus.ErrNoBucket) {
			t.Errorf("%s without the store = %v, want ErrNoBucket", name, err)
		}
	}
}

// A put the store refuses (it is full) leaves the name as it was: absent,
// or the object it held, readable as before.
func TestPutObjectRefusedLeavesTheNameAsItWas(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	c, ctx := s.Bus, t.Context()
	const st = kanade.ObjectAgentReleases
	if _, err := s.JS.UpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: st, MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	os, err := s.JS.ObjectStore(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("the build that was there")
	if _, err := c.PutObject(ctx, st, "kept", bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 100<<10) // one chunk, over the store's size
	for i := range 5 {           // the refusal races the description's publish; try it a few times
		if _, err := c.PutObject(ctx, st, "kept", bytes.NewReader(big)); err == nil {
			t.Fatal("a put into a full store succeeded")
		}
		got, err := os.GetBytes(ctx, "kept")
		if err != nil || !bytes.Equal(got, old) {
			t.Fatalf("try %d: after a refused put over it the object reads %q, %v; want it as it was", i, got, err)
		}
		if _, err := c.PutObject(ctx, st, "new", bytes.NewReader(big)); err == nil {
			t.Fatal("a put into a full store succeeded")
		}
		if _, err := c.ObjectInfo(ctx, st, "new"); !errors.Is(err, bus.ErrNotFound) {
			t.Fatalf("try %d: a refused put of a new name left it described: %v", i, err)
		}
		objs, err := c.Objects(ctx, st)
		if err != nil || len(objs) != 1 || objs[0].Name != "kept" {
			t.Fatalf("try %d: the store lists %+v, %v; want kept only", i, objs, err)
		}
	}
}
