package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one KV value.
type Entry struct {
	Key   string
	Value []byte
	// Revision is the bucket sequence of this value, for compare-and-set.
	Revision uint64
	Created  time.Time
	// Deleted says the key was deleted or purged (a watch reports that).
	Deleted bool
}

func entryOf(e jetstream.KeyValueEntry) Entry {
	return Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created(),
		Deleted: e.Operation() != jetstream.KeyValuePut}
}

// bucket opens a KV bucket once per Client.
func (c *Client) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv, ok := c.buckets[name]
	c.mu.Unlock()
	if ok {
		return kv, nil
	}
	kv, err := c.js.KeyValue(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("KV %s: %w (NATS not bootstrapped?)", name, ErrNoBucket)
		}
		return nil, fmt.Errorf("open KV %s: %w", name, err)
	}
	c.mu.Lock()
	c.buckets[name] = kv
	c.mu.Unlock()
	return kv, nil
}

// gone checks, after an operation through a cached handle found no
// stream to answer, whether the bucket was deleted meanwhile: then the
// handle is forgotten and the error is ErrNoBucket, so callers answer "not
// bootstrapped" at once rather than after retrying into a timeout. Other
// errors pass.
func (c *Client) gone(ctx context.Context, bucket string, err error) error {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, nats.ErrStreamNotFound) {
		return err
	}
	c.mu.Lock()
	delete(c.buckets, bucket)
	c.mu.Unlock()
	if _, kerr := c.bucket(ctx, bucket); errors.Is(kerr, ErrNoBucket) {
		return kerr
	}
	return err
}

// Get reads the current value of key in bucket; ErrNotFound when there is
// none, or when key could never be a key.
func (c *Client) Get(ctx context.Context, bucket, key string) (Entry, error) {
	var out Entry
	err := c.ask(ctx, func(ctx context.Context) error {
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return c.gone(ctx, bucket, err)
		}
		out = entryOf(e)
		return nil
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return out, fmt.Errorf("%s[%s]: %w", bucket, kanade.Clip(key), ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("%s[%s]: %w", bucket, kanade.Clip(key), err)
	}
	return out, nil
}

// Entries reads the current value of every key of bucket, sorted by key.
// One ordered read of the bucket's stream is far cheaper than a Get per key
// for the hundreds of keys a bucket holds; an empty bucket is no error.
func (c *Client) Entries(ctx context.Context, bucket string) ([]Entry, error) {
	out, err := c.current(ctx, bucket, func(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
		return kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	})
	if err != nil {
		return nil, fmt.Errorf("list KV %s: %w", bucket, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// current reads the values a watch of bucket delivers before its "that was
// everything" marker: the bucket's current values, read in one ordered
// pass.
func (c *Client) current(ctx context.Context, bucket string,
	watch func(context.Context, jetstream.KeyValue) (jetstream.KeyWatcher, error)) ([]Entry, error) {
	var out []Entry
	err := c.ask(ctx, func(ctx context.Context) error {
		out = out[:0]
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		w, err := watch(ctx, kv)
		if err != nil {
			return c.gone(ctx, bucket, err)
		}
		defer w.Stop()
		latest := map[string]int{} // a key written during the watch may arrive twice
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("watch closed before the current values were read")
				}
				if e == nil {
					return nil
				}
				if i, ok := latest[e.Key()]; ok {
					if out[i].Revision < e.Revision() {
						out[i] = entryOf(e)
					}
					continue
				}
				latest[e.Key()] = len(out)
				out = append(out, entryOf(e))
			}
		}
	})
	return out, err
}

// Put writes value under key, whatever is there.
func (c *Client) Put(ctx context.Context, bucket, key string, value []byte) (uint64, error) {
	var rev uint64
	err := c.once(ctx, func(ctx context.Context) error {
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		rev, err = kv.Put(ctx, key, value)
		return c.gone(ctx, bucket, err)
	})
	if err != nil {
		return 0, fmt.Errorf("put %s[%s]: %w", bucket, kanade.Clip(key), err)
	}
	return rev, nil
}

// Create writes value under key only if there is none (ErrExists): the
// exactly-once primitive the scheduler's claims rest on.
func (c *Client) Create(ctx context.Context, bucket, key string, value []byte) (uint64, error) {
	var rev uint64
	err := c.once(ctx, func(ctx context.Context) error {
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		rev, err = kv.Create(ctx, key, value)
		return c.gone(ctx, bucket, err)
	})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("create %s[%s]: %w", bucket, kanade.Clip(key), ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create %s[%s]: %w", bucket, kanade.Clip(key), err)
	}
	return rev, nil
}

// Update writes value under key only if the key is still at revision rev
// (ErrChanged otherwise): compare-and-set, so a concurrent change is never
// overwritten unseen.
func (c *Client) Update(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	var next uint64
	err := c.once(ctx, func(ctx context.Context) error {
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		next, err = kv.Update(ctx, key, value, rev)
		return c.gone(ctx, bucket, err)
	})
	if isWrongRevision(err) {
		return 0, fmt.Errorf("update %s[%s]: %w", bucket, kanade.Clip(key), ErrChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("update %s[%s]: %w", bucket, kanade.Clip(key), err)
	}
	return next, nil
}

// Delete deletes key only if it is still at revision rev (ErrChanged
// otherwise); rev 0 deletes whatever is there.
func (c *Client) Delete(ctx context.Context, bucket, key string, rev uint64) error {
	err := c.once(ctx, func(ctx context.Context) error {
		kv, err := c.bucket(ctx, bucket)
		if err != nil {
			return err
		}
		if rev == 0 {
			return c.gone(ctx, bucket, kv.Delete(ctx, key))
		}
		return c.gone(ctx, bucket, kv.Delete(ctx, key, jetstream.LastRevision(rev)))
	})
	if isWrongRevision(err) {
		return fmt.Errorf("delete %s[%s]: %w", bucket, kanade.Clip(key), ErrChanged)
	}
	if err != nil {
		return fmt.Errorf("delete %s[%s]: %w", bucket, kanade.Clip(key), err)
	}
	return nil
}

// isWrongRevision recognises JetStream's "wrong last sequence" answer to a
// compare-and-set.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Watch follows bucket: first every current value, then nil (the caller
// has the whole bucket), then every change as it happens, deletes
// included. The channel closes when ctx ends or the watch breaks; the
// caller watches again.
func (c *Client) Watch(ctx context.Context, bucket string) (<-chan *Entry, error) {
	rctx, cancel := c.request(ctx, requestTimeout)
	kv, err := c.bucket(rctx, bucket)
	cancel()
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch KV %s: %w", bucket, err)
	}
	out := make(chan *Entry)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				var v *Entry
				if e != nil {
					x := entryOf(e)
					v = &x
				}
				select {
				case out <- v:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// PutAll writes value under every key of bucket, pipelined: a KV put is a
// publish on $KV.<bucket>.<key>, so a per_pc dispatch's marks for 100k PCs
// cost a round trip per chunk instead of one per key.
func (c *Client) PutAll(ctx context.Context, bucket string, keys []string, value []byte) error {
	values := make([][]byte, len(keys))
	for i := range values {
		values[i] = value
	}
	return c.PutEach(ctx, bucket, keys, values)
}

// PutEach writes values[i] under keys[i] of bucket, pipelined like PutAll
// (a per_pc firing's mark sets: a handful of keys with distinct values).
func (c *Client) PutEach(ctx context.Context, bucket string, keys []string, values [][]byte) error {
	if len(keys) != len(values) {
		return fmt.Errorf("put %d keys of %s with %d values", len(keys), bucket, len(values))
	}
	rctx, cancel := c.request(ctx, requestTimeout)
	_, err := c.bucket(rctx, bucket)
	cancel()
	if err != nil {
		return err
	}
	msgs := make([]*nats.Msg, len(keys))
	for i, k := range keys {
		msgs[i] = &nats.Msg{Subject: "$KV." + bucket + "." + k, Data: values[i]}
	}
	if _, err := c.PublishAll(ctx, msgs); err != nil {
		return fmt.Errorf("put %d keys of %s: %w", len(keys), bucket, err)
	}
	return nil
}

// Matching returns the current values of the keys of bucket that match
// filter, a KV key pattern with wildcards (mark.s1.> ): a filtered read,
// so only those keys cross the wire.
func (c *Client) Matching(ctx context.Context, bucket, filter string) ([]Entry, error) {
	out, err := c.current(ctx, bucket, func(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
		return kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	})
	if err != nil {
		return nil, fmt.Errorf("read KV %s[%s]: %w", bucket, kanade.Clip(filter), err)
	}
	return out, nil
}

// EnsureBucket creates bucket with the given history and TTL if it does
// not exist, and updates it to them if it does (the scheduler's own
// bucket, outside the bootstrap contract).
func (c *Client) EnsureBucket(ctx context.Context, bucket, description string, history uint8, ttl time.Duration) error {
	err := c.ask(ctx, func(ctx context.Context) error {
		kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Description: description,
			History: history, TTL: ttl, Storage: jetstream.FileStorage})
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.buckets[bucket] = kv
		c.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("create KV %s: %w", bucket, err)
	}
	return nil
}

// Modify is a compare-and-swap read-modify-write of key (fleet.md §1.6):
// fn gets the current value (nil and false when the key is absent or
// deleted) and returns the value to store, or changed=false to leave the
// key alone (no revision bump, no agent woken). An absent or deleted key is
// written with Create, a present one with Update at the revision read, so a
// concurrent change is never overwritten unseen: a conflict, or a write
// whose reply was lost, reads again and calls fn on what is there now (fn
// must be a pure function of its input). It gives up after modifyAttempts
// conflicts with ErrChanged. The result is the value as stored (or as found,
// when unchanged).
func (c *Client) Modify(ctx context.Context, bucket, key string,
	fn func(cur []byte, exists bool) (next []byte, changed bool, err error)) (value []byte, changed bool, err error) {
	e, changed, err := c.ModifyEntry(ctx, bucket, key, fn)
	return e.Value, changed, err
}

// ModifyEntry is Modify answering the entry rather than only its value:
// its revision too (the one written, or the one found when nothing
// changed; 0 for an absent key left alone), which a copy of the bucket
// kept elsewhere needs to order its updates.
func (c *Client) ModifyEntry(ctx context.Context, bucket, key string,
	fn func(cur []byte, exists bool) (next []byte, changed bool, err error)) (Entry, bool, error) {
	for attempt := 1; ; attempt++ {
		e, err := c.Get(ctx, bucket, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Entry{}, false, err
		}
		if errors.Is(err, ErrNoBucket) {
			return Entry{}, false, err
		}
		next, changed, err := fn(e.Value, exists)
		if err != nil {
			return Entry{}, false, err
		}
		if !changed {
			if !exists {
				e = Entry{Key: key}
			}
			return e, false, nil
		}
		var rev uint64
		if exists {
			rev, err = c.Update(ctx, bucket, key, next, e.Revision)
		} else {
			rev, err = c.Create(ctx, bucket, key, next)
		}
		if err == nil {
			return Entry{Key: key, Value: next, Revision: rev}, true, nil
		}
		if !errors.Is(err, ErrChanged) && !errors.Is(err, ErrExists) {
			// A transient failure may have written or not: read again
			// rather than fail, within the attempts.
			if errors.Is(err, ErrNoBucket) || ctx.Err() != nil || attempt >= modifyAttempts {
				return Entry{}, false, err
			}
		}
		if attempt >= modifyAttempts {
			return Entry{}, false, fmt.Errorf("modify %s[%s]: %d attempts: %w", bucket, kanade.Clip(key), attempt, ErrChanged)
		}
		// A short growing pause, so writers racing on one key spread out.
		select {
		case <-ctx.Done():
			return Entry{}, false, ctx.Err()
		case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 25*time.Millisecond)):
		}
	}
}

// modifyAttempts bounds Modify's retries (upstream kv_cas.rs: 32).
const modifyAttempts = 32

// KVState is where a bucket stands: a copy of it kept elsewhere (the SQL
// mirror of agent_groups) is current when it has applied every revision up
// to Revision of the bucket created at Created.
type KVState struct {
	// Created identifies the bucket: one deleted and created again numbers
	// its revisions from 1 again, and only its creation time tells.
	Created time.Time
	// Revision is the bucket's last revision (0 when nothing was ever
	// written): every put and delete of any key takes the next one.
	Revision uint64
}

// KVState reads the state of bucket in one request (ErrNoBucket when
// there is none).
func (c *Client) KVState(ctx context.Context, bucket string) (KVState, error) {
	st, err := c.Stream(ctx, "KV_"+bucket)
	if errors.Is(err, ErrNotFound) {
		return KVState{}, fmt.Errorf("KV %s: %w (NATS not bootstrapped?)", bucket, ErrNoBucket)
	}
	if err != nil {
		return KVState{}, fmt.Errorf("KV %s: %w", bucket, err)
	}
	return KVState{Created: st.Created, Revision: st.LastSeq}, nil
}

// KVSnapshot is every key of a bucket as one ordered pass read it.
type KVSnapshot struct {
	// State is the bucket's state read before the pass: every revision up
	// to State.Revision is reflected in Entries (a newer one may be too).
	State KVState
	// Entries holds each key's latest operation, sorted by key; a deleted
	// key whose delete marker is still stored is there with Deleted set.
	Entries []Entry
}

// Snapshot reads bucket whole, deletes included, in one ordered pass,
// after reading its state: what a copy of the bucket needs to catch up
// with it, knowing which revisions it has then seen.
func (c *Client) Snapshot(ctx context.Context, bucket string) (KVSnapshot, error) {
	st, err := c.KVState(ctx, bucket)
	if err != nil {
		return KVSnapshot{}, err
	}
	out, err := c.current(ctx, bucket, func(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyWatcher, error) {
		return kv.WatchAll(ctx)
	})
	if err != nil {
		return KVSnapshot{}, fmt.Errorf("read KV %s: %w", bucket, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return KVSnapshot{State: st, Entries: out}, nil
}
