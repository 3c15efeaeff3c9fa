package bus

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Objects of an object store by name (agent releases, fleet.md §6): list,
// put from a stream, get as a stream, delete. Objects are streamed in
// chunks both ways, so a build of tens of MiB never sits in memory.

// ObjectInfo is what the store knows of one object.
type ObjectInfo struct {
	Name string
	Size uint64
	// Digest is the store's own "SHA-256=<base64url>" (nats.go pads it).
	Digest string
	// Modified is when the object was last put (zero when unknown).
	Modified time.Time
}

func objectInfoOf(i *jetstream.ObjectInfo) ObjectInfo {
	return ObjectInfo{Name: i.Name, Size: i.Size, Digest: i.Digest, Modified: i.ModTime}
}

// objectTransfer bounds one put or get of a whole object: a 64 MiB build
// over a slow link to a NATS cluster takes a while, and the caller's
// context usually ends it sooner.
const objectTransfer = 10 * time.Minute

// objectStore opens store; ErrNoBucket when it does not exist.
func (c *Client) objectStore(ctx context.Context, store string) (jetstream.ObjectStore, error) {
	os, err := c.js.ObjectStore(ctx, store)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("object store %s: %w (NATS not bootstrapped?)", store, ErrNoBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", store, err)
	}
	return os, nil
}

// CheckObjectStore reports whether store can be opened: ErrNoBucket when
// it does not exist, so a caller can refuse before reading an upload.
func (c *Client) CheckObjectStore(ctx context.Context, store string) error {
	return c.ask(ctx, func(ctx context.Context) error {
		_, err := c.objectStore(ctx, store)
		return err
	})
}

// Objects lists the objects of store that are not deleted, in the store's
// order; an empty store is an empty list.
func (c *Client) Objects(ctx context.Context, store string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := c.ask(ctx, func(ctx context.Context) error {
		out = out[:0]
		os, err := c.objectStore(ctx, store)
		if err != nil {
			return err
		}
		infos, err := os.List(ctx)
		if errors.Is(err, jetstream.ErrNoObjectsFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, i := range infos {
			if !i.Deleted {
				out = append(out, objectInfoOf(i))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list object store %s: %w", store, err)
	}
	return out, nil
}

// ObjectInfo describes object name of store: ErrNotFound when there is
// none (or it was deleted), ErrNoBucket when the store does not exist.
func (c *Client) ObjectInfo(ctx context.Context, store, name string) (ObjectInfo, error) {
	var out ObjectInfo
	if !kanade.ValidObjectName(name) {
		return out, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	err := c.ask(ctx, func(ctx context.Context) error {
		os, err := c.objectStore(ctx, store)
		if err != nil {
			return err
		}
		i, err := os.GetInfo(ctx, name)
		if err != nil {
			return err
		}
		out = objectInfoOf(i)
		return nil
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return out, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), err)
	}
	return out, nil
}

// PutObject stores everything r yields as object name of store, replacing
// any object of that name, a chunk at a time: the whole object is never in
// memory. The put is not asked again (r is consumed); it is bounded by
// ctx and by objectTransfer.
func (c *Client) PutObject(ctx context.Context, store, name string, r io.Reader) (ObjectInfo, error) {
	if !kanade.ValidObjectName(name) {
		return ObjectInfo{}, fmt.Errorf("put %s[%s]: %s", store, kanade.Clip(name), "not an object name")
	}
	rctx, cancel := c.request(ctx, objectTransfer)
	defer cancel()
	os, err := c.objectStore(rctx, store)
	if err != nil {
		return ObjectInfo{}, why(rctx, err)
	}
	before, err := os.GetInfo(rctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return ObjectInfo{}, fmt.Errorf("put %s[%s]: %w", store, kanade.Clip(name), why(rctx, err))
	}
	i, err := os.Put(rctx, jetstream.ObjectMeta{Name: name}, r)
	if err != nil {
		err = fmt.Errorf("put %s[%s]: %w", store, kanade.Clip(name), why(rctx, err))
		if rerr := c.repairObject(ctx, os, store, name, before); rerr != nil {
			err = fmt.Errorf("%w; and the object is left without its chunks: %w", err, rerr)
		}
		return ObjectInfo{}, err
	}
	return objectInfoOf(i), nil
}

// repairObject undoes what a failed put can leave behind. nats.go
// publishes the new object's description before it learns that the store
// refused a chunk (a full store, say), then purges the chunks: the name
// then describes an object whose bytes are gone, and the object it
// replaced, whose chunks are still there, is out of sight. When the
// current description's chunks are missing, before (the description read
// before the put) is put back if its chunks are all there, and the name
// is deleted otherwise. A description whose chunks are there is left
// alone: the put failed before it, or another put succeeded since.
func (c *Client) repairObject(ctx context.Context, os jetstream.ObjectStore, store, name string, before *jetstream.ObjectInfo) error {
	ctx, cancel := c.request(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	cur, err := os.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ok, err := c.hasChunks(ctx, store, cur); err != nil || ok {
		return err
	}
	if before != nil && !before.Deleted {
		if ok, err := c.hasChunks(ctx, store, before); err != nil {
			return err
		} else if ok {
			meta := *before
			meta.ModTime = time.Time{} // the store's own time, as nats.go writes it
			data, err := json.Marshal(meta)
			if err != nil {
				return err
			}
			m := nats.NewMsg(fmt.Sprintf("$O.%s.M.%s", store, base64.URLEncoding.EncodeToString([]byte(name))))
			m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
			m.Data = data
			_, err = c.js.PublishMsg(ctx, m)
			return err
		}
	}
	return os.Delete(ctx, name)
}

// hasChunks reports whether the chunks info describes are in store (the
// last one, as a purge removes them all at once); a deleted or empty
// object has none to miss.
func (c *Client) hasChunks(ctx context.Context, store string, info *jetstream.ObjectInfo) (bool, error) {
	if info.Deleted || info.Chunks == 0 {
		return true, nil
	}
	s, err := c.js.Stream(ctx, "OBJ_"+store)
	if err != nil {
		return false, err
	}
	_, err = s.GetLastMsgForSubject(ctx, fmt.Sprintf("$O.%s.C.%s", store, info.NUID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// GetObject opens object name of store for reading, a chunk at a time:
// ErrNotFound when there is none. The caller closes it; it is bounded by
// ctx and by objectTransfer.
//
// Each chunk is fetched by a direct get when the reader needs it, so at
// most one chunk is in memory however slowly the caller reads (nats.go's
// own Get pushes chunks into a subscription as fast as the server sends
// them, which a slow HTTP client would let pile up). The bytes are
// checked against the object's size and digest at the end; a mismatch
// (the object replaced while it was read) is the last Read's error.
func (c *Client) GetObject(ctx context.Context, store, name string) (io.ReadCloser, ObjectInfo, error) {
	if !kanade.ValidObjectName(name) {
		return nil, ObjectInfo{}, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	rctx, cancel := c.request(ctx, objectTransfer)
	os, err := c.objectStore(rctx, store)
	if err != nil {
		cancel()
		return nil, ObjectInfo{}, why(rctx, err)
	}
	info, err := os.GetInfo(rctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	if err != nil {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("get %s[%s]: %w", store, kanade.Clip(name), why(rctx, err))
	}
	if info.Opts != nil && info.Opts.Link != nil {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("get %s[%s]: a link, not an object", store, kanade.Clip(name))
	}
	s, err := c.js.Stream(rctx, "OBJ_"+store)
	if err != nil {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("get %s[%s]: %w", store, kanade.Clip(name), why(rctx, err))
	}
	r := &chunkReader{ctx: rctx, cancel: cancel, s: s, subject: fmt.Sprintf("$O.%s.C.%s", store, info.NUID),
		left: info.Chunks, size: info.Size, digest: info.Digest, h: sha256.New(), name: store + "[" + kanade.Clip(name) + "]"}
	return r, objectInfoOf(info), nil
}

// chunkReader reads an object's chunks one direct get at a time.
type chunkReader struct {
	ctx     context.Context
	cancel  context.CancelFunc
	s       jetstream.Stream
	subject string
	next    uint64 // the stream sequence to look from
	left    uint32 // chunks not fetched yet
	buf     []byte
	read    uint64
	size    uint64
	digest  string
	h       hash.Hash
	name    string
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.left == 0 {
			return 0, r.verify()
		}
		m, err := r.s.GetMsg(r.ctx, r.next, jetstream.WithGetMsgSubject(r.subject))
		if err != nil {
			return 0, fmt.Errorf("get %s: chunk after %d bytes: %w", r.name, r.read, why(r.ctx, err))
		}
		r.next, r.left, r.buf = m.Sequence+1, r.left-1, m.Data
		r.h.Write(m.Data)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.read += uint64(n)
	return n, nil
}

// verify is the end of the object: io.EOF when its bytes are the ones
// described.
func (r *chunkReader) verify() error {
	if r.read != r.size {
		return fmt.Errorf("get %s: read %d bytes of %d", r.name, r.read, r.size)
	}
	if r.digest != "" {
		want, err := hexDigest(r.digest)
		if err != nil {
			return fmt.Errorf("get %s: %w", r.name, err)
		}
		if got := hex.EncodeToString(r.h.Sum(nil)); got != want {
			return fmt.Errorf("get %s: the bytes read do not match the digest (replaced while read?)", r.name)
		}
	}
	return io.EOF
}

func (r *chunkReader) Close() error {
	r.cancel()
	return nil
}

// DeleteObject deletes object name of store: ErrNotFound when there is
// none (a deleted one included), ErrNoBucket when the store does not
// exist.
func (c *Client) DeleteObject(ctx context.Context, store, name string) error {
	if !kanade.ValidObjectName(name) {
		return fmt.Errorf("delete %s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	err := c.once(ctx, func(ctx context.Context) error {
		os, err := c.objectStore(ctx, store)
		if err != nil {
			return err
		}
		// Delete itself marks a deleted object deleted again; only a live
		// one is deleted.
		if _, err := os.GetInfo(ctx, name); err != nil {
			return err
		}
		return os.Delete(ctx, name)
	})
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete %s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete %s[%s]: %w", store, kanade.Clip(name), err)
	}
	return nil
}
