package bus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	res, err := os.Get(rctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("%s[%s]: %w", store, kanade.Clip(name), ErrNotFound)
	}
	if err != nil {
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("get %s[%s]: %w", store, kanade.Clip(name), why(rctx, err))
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		cancel()
		return nil, ObjectInfo{}, fmt.Errorf("get %s[%s]: %w", store, kanade.Clip(name), err)
	}
	return objectReader{res, cancel}, objectInfoOf(info), nil
}

type objectReader struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (r objectReader) Close() error {
	err := r.ObjectResult.Close()
	r.cancel()
	return err
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
