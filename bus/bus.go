// Package bus is the backend's one JetStream adapter: everything the other
// parts do with NATS goes through it. It keeps the process's connection
// (Link), creates the resources of the bootstrap contract (wire.md §2) and
// probes them for fleet health, reads streams in order (Reader), reads and
// compare-and-sets KV buckets, reads job manifests, and publishes commands
// and audit events (Client). Only this package imports the NATS client
// library's jetstream package, so the library's sharp edges (a reply lost
// with a connection, a key that cannot exist, an empty bucket) are handled
// here once.
//
// It knows nothing about SQL or HTTP.
package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// Bootstrap creates or updates every resource of kanade.Resources(replicas).
// Streams and KV buckets are created-or-updated so configuration drift is
// reconciled; an object store that already exists is left as it is.
func (c *Client) Bootstrap(ctx context.Context, replicas int) error {
	for _, r := range kanade.Resources(replicas) {
		var err error
		switch r.Kind {
		case kanade.KindStream:
			_, err = c.js.CreateOrUpdateStream(ctx, streamConfig(r))
		case kanade.KindKeyValue:
			_, err = c.js.CreateOrUpdateKeyValue(ctx, kvConfig(r))
		case kanade.KindObjectStore:
			_, err = c.js.CreateObjectStore(ctx, objectConfig(r))
			if errors.Is(err, jetstream.ErrBucketExists) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("bootstrap %s %s: %w", r.Kind, r.Name, err)
		}
	}
	return nil
}

// streamConfig is the JetStream configuration of a stream of the contract:
// file storage, discard old.
func streamConfig(r kanade.Resource) jetstream.StreamConfig {
	perSubject := r.MaxMsgsPerSubject
	if perSubject == 0 {
		perSubject = -1
	}
	return jetstream.StreamConfig{Name: r.Name, Subjects: r.Subjects, MaxAge: r.MaxAge, MaxBytes: r.MaxBytes,
		Storage: jetstream.FileStorage, Replicas: r.Replicas, Discard: jetstream.DiscardOld,
		MaxMsgs: -1, MaxMsgsPerSubject: perSubject}
}

func kvConfig(r kanade.Resource) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: r.Name, History: r.History, TTL: r.TTL,
		Storage: jetstream.FileStorage, Replicas: r.Replicas}
}

func objectConfig(r kanade.Resource) jetstream.ObjectStoreConfig {
	maxBytes := r.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.ObjectStoreConfig{Bucket: r.Name, TTL: r.MaxAge, MaxBytes: maxBytes,
		Storage: jetstream.FileStorage, Replicas: r.Replicas}
}
