package bus

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The control plane's NATS side (control.md): kill signals, script status,
// the synchronous wait of POST /api/run, and script object digests.

// ErrNoBucket: the KV bucket or object store does not exist (NATS not
// bootstrapped, or an optional store nobody created). It is an ErrNotFound
// too, so a caller that does not care which is missing needs one check.
var ErrNoBucket = fmt.Errorf("%w: no such bucket or store", ErrNotFound)

// Kill publishes the empty kill.<exec_id> message (core NATS: only agents
// connected now can act on it) and flushes, so a 204 means the server has it.
// Without a connection it fails at once with ErrNotConnected.
func (c *Client) Kill(ctx context.Context, execID string) error {
	if !kanade.ValidToken(execID) {
		return fmt.Errorf("kill %s: exec_id is not a subject token", kanade.Clip(execID))
	}
	subject := kanade.SubjectKill + execID
	// Core NATS would buffer the message while reconnecting and report
	// success; a kill nobody receives must be an error the caller sees.
	if !c.nc.IsConnected() {
		return fmt.Errorf("publish %s: %w", subject, ErrNotConnected)
	}
	if err := c.nc.Publish(subject, nil); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("publish %s: flush: %w", subject, err)
	}
	return nil
}

// flush waits until the server has everything sent so far, within
// requestTimeout at most (the library insists on a deadline).
func (c *Client) flush(ctx context.Context) error {
	ctx, cancel := c.request(ctx, requestTimeout)
	defer cancel()
	return c.nc.FlushWithContext(ctx)
}

// Script status values of KV script_status (control.md §4.1): raw bytes,
// no quotes.
const (
	ScriptActive  = "ACTIVE"
	ScriptRevoked = "REVOKED"
)

// SetScriptStatus writes ScriptActive or ScriptRevoked under the command
// id (the manifest id) agents look up before running a command.
func (c *Client) SetScriptStatus(ctx context.Context, cmdID, status string) error {
	if status != ScriptActive && status != ScriptRevoked {
		return fmt.Errorf("script status %q: want %s or %s", status, ScriptActive, ScriptRevoked)
	}
	_, err := c.Put(ctx, kanade.BucketScriptStatus, cmdID, []byte(status))
	return err
}

// ScriptStatuses reads every key of KV script_status: command id → value
// as stored. An empty bucket is an empty map; a missing one is ErrNoBucket.
func (c *Client) ScriptStatuses(ctx context.Context) (map[string]string, error) {
	entries, err := c.Entries(ctx, kanade.BucketScriptStatus)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		out[e.Key] = string(e.Value)
	}
	return out, nil
}

// Awaiting is a subscription opened before a request is published, so its
// answer cannot be missed (POST /api/run waits on results.<request_id>).
type Awaiting struct {
	sub *nats.Subscription
}

// Await subscribes to subject (core NATS) and flushes, so the server has
// the interest before the caller publishes what will be answered.
func (c *Client) Await(ctx context.Context, subject string) (*Awaiting, error) {
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", kanade.Clip(subject), err)
	}
	if err := c.flush(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: flush: %w", kanade.Clip(subject), err)
	}
	return &Awaiting{sub: sub}, nil
}

// Next waits for the next message until ctx ends (its error then).
func (a *Awaiting) Next(ctx context.Context) ([]byte, error) {
	m, err := a.sub.NextMsgWithContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("wait on %s: %w", a.sub.Subject, err)
	}
	return m.Data, nil
}

// Close ends the subscription.
func (a *Awaiting) Close() { _ = a.sub.Unsubscribe() }

// ScriptDigest is the SHA-256 of object name in the object store
// "scripts", in lower-case hex as Command.script_object_sha256 carries it
// (control.md §1.2 step 4). ErrNoBucket when the store does not exist,
// ErrNotFound when the object does not.
func (c *Client) ScriptDigest(ctx context.Context, name string) (string, error) {
	var digest string
	err := c.ask(ctx, func(ctx context.Context) error {
		store, err := c.js.ObjectStore(ctx, kanade.ObjectScripts)
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return ErrNoBucket
		}
		if err != nil {
			return err
		}
		info, err := store.GetInfo(ctx, name)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		digest, err = hexDigest(info.Digest)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("script object %s: %w", kanade.Clip(name), err)
	}
	return digest, nil
}

// hexDigest turns the object store's "SHA-256=<base64url>" (padding
// optional) into lower-case hex.
func hexDigest(d string) (string, error) {
	b64, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("digest %q: not SHA-256", kanade.Clip(d))
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("digest %q: not a base64url SHA-256", kanade.Clip(d))
	}
	return hex.EncodeToString(raw), nil
}

// CommandMessages encodes cmd once for every subject, each message with
// its own Nats-Msg-Id from msgID (unique per execution, subject and wave, so
// a retried publish is stored once and nothing else is ever dropped).
func CommandMessages(cmd kanade.Command, subjects []string, msgID func(subject string) string) ([]Outgoing, error) {
	if cmd.RequestID == "" {
		return nil, fmt.Errorf("command %s: no request_id", kanade.Clip(cmd.ID))
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", kanade.Clip(cmd.ID), err)
	}
	out := make([]Outgoing, len(subjects))
	for i, s := range subjects {
		out[i] = Outgoing{Subject: s, Data: data, MsgID: msgID(s)}
	}
	return out, nil
}
