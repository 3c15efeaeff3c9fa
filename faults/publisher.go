package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PubMsg is one JetStream publication. ID becomes Nats-Msg-Id, so a retry of
// the same message is de-duplicated by the stream.
type PubMsg struct {
	Subject string
	Data    []byte
	ID      string
}

// Publisher publishes to JetStream asynchronously and records which messages
// JetStream acknowledged: a message counts as published only then. A message
// whose publish fails or times out is published again with the same id.
type Publisher struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	inflight int
	rate     float64 // messages per second; 0 = as fast as acks allow
	retries  atomic.Int64
	lastErr  atomic.Value
}

// PubOptions shape a Publisher.
type PubOptions struct {
	// Inflight bounds unacknowledged messages (default 1000).
	Inflight int
	// Rate paces first attempts (messages/s); 0 means unpaced.
	Rate float64
}

// connectNATS connects with endless reconnects (url may be a comma-separated
// list).
func connectNATS(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.Timeout(3*time.Second), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", name, url, err)
	}
	return nc, nil
}

// NewPublisher publishes over nc.
func NewPublisher(nc *nats.Conn, o PubOptions) (*Publisher, error) {
	if o.Inflight <= 0 {
		o.Inflight = 1000
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(o.Inflight*2),
		jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Publisher{nc: nc, js: js, inflight: o.Inflight, rate: o.Rate}, nil
}

// Acks records which of n messages were acknowledged.
type Acks struct {
	mu sync.Mutex
	ok []bool
	n  int
}

func newAcks(n int) *Acks { return &Acks{ok: make([]bool, n)} }

func (a *Acks) set(i int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok[i] {
		return false
	}
	a.ok[i] = true
	a.n++
	return true
}

// Has reports whether message i was acknowledged.
func (a *Acks) Has(i int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ok[i]
}

// Count is the number of acknowledged messages.
func (a *Acks) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Retries is how many publications failed and were retried so far.
func (p *Publisher) Retries() int64 { return p.retries.Load() }

// LastError is the last publish error seen (for the report), or "".
func (p *Publisher) LastError() string {
	if s, ok := p.lastErr.Load().(string); ok {
		return s
	}
	return ""
}

// Publish publishes gen(0) … gen(n-1) until every one is acknowledged or ctx
// ends. gen must return the same message for the same i (retries call it
// again). The returned Acks are valid even when an error is returned.
func (p *Publisher) Publish(ctx context.Context, n int, gen func(i int) PubMsg) (*Acks, error) {
	acks := newAcks(n)
	if n == 0 {
		return acks, nil
	}
	sem := make(chan struct{}, p.inflight)
	retry := make(chan int, n)
	var done atomic.Int64
	allDone := make(chan struct{})
	var once sync.Once
	finish := func() {
		if done.Add(1) == int64(n) {
			once.Do(func() { close(allDone) })
		}
	}
	fail := func(i int, err error) {
		p.retries.Add(1)
		p.lastErr.Store(err.Error())
		retry <- i
	}
	start := time.Now()
	next := 0
	for {
		var i int
		select {
		case <-allDone:
			return acks, nil
		case <-ctx.Done():
			return acks, fmt.Errorf("publish: %d of %d acknowledged: %w", acks.Count(), n, ctx.Err())
		case i = <-retry:
		default:
			if next >= n {
				select {
				case <-allDone:
					return acks, nil
				case <-ctx.Done():
					return acks, fmt.Errorf("publish: %d of %d acknowledged: %w", acks.Count(), n, ctx.Err())
				case i = <-retry:
				}
				break
			}
			i = next
			next++
			if p.rate > 0 {
				due := start.Add(time.Duration(float64(i) / p.rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					if err := sleep(ctx, d); err != nil {
						continue
					}
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			retry <- i
			continue
		}
		m := gen(i)
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		if m.ID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, m.ID)
		}
		f, err := p.js.PublishMsgAsync(msg)
		if err != nil {
			<-sem
			fail(i, err)
			// Disconnected or the buffer is full: do not spin.
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		go func(i int) {
			defer func() { <-sem }()
			select {
			case <-f.Ok():
				if acks.set(i) {
					finish()
				}
			case err := <-f.Err():
				if err == nil {
					err = errors.New("publish future failed without an error")
				}
				fail(i, err)
			}
		}(i)
	}
}

// mustJSON marshals a wire payload (they always marshal).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}

// Published is the outcome of a publish run in the background.
type Published struct {
	Acks *Acks
	Err  error
}

// Background is Publish on a goroutine of its own, so a scenario can break
// things while messages flow; the channel yields the one outcome.
func (p *Publisher) Background(ctx context.Context, n int, gen func(i int) PubMsg) <-chan Published {
	done := make(chan Published, 1)
	go func() {
		a, err := p.Publish(ctx, n, gen)
		done <- Published{a, err}
	}()
	return done
}
