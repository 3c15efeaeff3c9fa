// Package bus owns the backend's side of NATS JetStream: creating the resources
// of the bootstrap contract (wire.md §2), probing them for fleet health, and
// starting the embedded server used by tests and the one-command default.
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
func Bootstrap(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, r := range kanade.Resources(replicas) {
		var err error
		switch r.Kind {
		case kanade.KindStream:
			_, err = js.CreateOrUpdateStream(ctx, *r.Stream)
		case kanade.KindKeyValue:
			_, err = js.CreateOrUpdateKeyValue(ctx, *r.KeyValue)
		case kanade.KindObjectStore:
			_, err = js.CreateObjectStore(ctx, *r.ObjectStore)
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
