package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/backoff"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats.go"
)

// LinkOptions configure a Link.
type LinkOptions struct {
	// URL is one NATS URL or a comma-separated list (the servers of a
	// cluster).
	URL string
	// Name identifies the process to NATS (connz).
	Name string
	// Token authenticates to NATS; empty for none.
	Token string
	// Bootstrap runs after every connect and reconnect until it succeeds,
	// so a NATS that comes up empty (first start, a wiped store) gets the
	// resources back. Nil (the Lambda shell) runs nothing.
	Bootstrap func(ctx context.Context, c *Client) error
	Logger    *slog.Logger
	// ReconnectWait is the pause between reconnect attempts (default 1s).
	ReconnectWait time.Duration
	// MaxBackoff caps the pause before a new connection replaces a closed
	// one, and between failed bootstraps (default backoff.DefaultMax).
	MaxBackoff time.Duration
	// Signer, when set, signs every Command published through the Link's
	// clients (see WithSigner), whichever connection they are on; Clock
	// stamps the signing time (default the wall clock).
	Signer *sign.Signer
	Clock  kanade.Clock
}

// Link is the process's connection to NATS, kept for as long as the
// process runs. It exists so that nothing else has to care whether NATS is
// there:
//
//   - Dial never fails because NATS is down: the shells start, serve their
//     probes and reads, and report NATS as down, which is what a monitor
//     polling them needs to learn.
//   - The client library reconnects a connection that broke, but a
//     connection the server refused for good (a protocol error such as
//     "maximum control line exceeded", repeated authorization failures)
//     stays CLOSED forever. The Link replaces a closed connection with a new
//     one, with backoff.
//   - Client returns an error at once while NATS is not connected, so
//     handlers answer 503 instead of waiting out a request that cannot be
//     sent.
//   - Run runs a piece of work (the worker) once per connection, started
//     when the connection is up and bootstrapped and cancelled when it
//     closes for good.
type Link struct {
	o   LinkOptions
	log *slog.Logger

	mu      sync.Mutex
	cur     *session
	changed chan struct{} // closed and replaced when cur is replaced
	lastErr error
	closing bool

	stop context.CancelFunc
	done chan struct{}
}

// session is one *nats.Conn, its Client, and what is known about it.
type session struct {
	nc *nats.Conn
	c  *Client
	// ready is closed once the connection is up and, with a Bootstrap,
	// bootstrapped.
	ready     chan struct{}
	readyOnce sync.Once
	// closed is closed when the connection reaches CLOSED.
	closed chan struct{}
	// kick asks the bootstrapper to run (after a reconnect).
	kick chan struct{}
}

// ErrNotConnected is returned while the Link has no usable connection.
var ErrNotConnected = errors.New("NATS is not connected")

// Dial starts keeping a connection to o.URL and returns at once, whether
// or not NATS answers yet. It fails only for options that can never work.
func Dial(o LinkOptions) (*Link, error) {
	if strings.TrimSpace(o.URL) == "" {
		return nil, errors.New("nats: no URL")
	}
	for _, u := range strings.Split(o.URL, ",") {
		if _, err := url.Parse(strings.TrimSpace(u)); err != nil {
			return nil, fmt.Errorf("nats: URL %q: %w", RedactURL(u), err)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = backoff.DefaultMax
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Link{o: o, log: o.Logger, stop: stop, done: make(chan struct{}), changed: make(chan struct{})}
	s, err := l.connect()
	if err != nil {
		stop()
		return nil, err
	}
	l.cur = s
	go l.keep(ctx, s)
	return l, nil
}

// connect makes a new connection that keeps retrying on its own until it
// connects, and starts bootstrapping it.
func (l *Link) connect() (*session, error) {
	s := &session{ready: make(chan struct{}), closed: make(chan struct{}), kick: make(chan struct{}, 1)}
	var closeOnce sync.Once
	opts := []nats.Option{
		nats.Name(l.o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(l.o.ReconnectWait),
		nats.ConnectHandler(func(c *nats.Conn) {
			l.log.Info("NATS connected", slog.String("url", c.ConnectedUrlRedacted()))
			l.setErr(nil)
			s.poke()
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			l.log.Info("NATS reconnected", slog.String("url", c.ConnectedUrlRedacted()))
			l.setErr(nil)
			s.poke()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close
				l.setErr(err)
				l.log.Warn("NATS disconnected; reconnecting", slog.Any("err", err))
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			l.setErr(err)
			l.log.Debug("NATS reconnect attempt failed", slog.Any("err", err))
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			if err := c.LastError(); err != nil {
				l.setErr(err)
			}
			closeOnce.Do(func() { close(s.closed) })
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.Any("err", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			l.log.Error("NATS async error", attrs...)
		}),
	}
	if l.o.Token != "" {
		opts = append(opts, nats.Token(l.o.Token))
	}
	nc, err := nats.Connect(l.o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", RedactURL(l.o.URL), err)
	}
	c, err := NewClient(nc, WithSigner(l.o.Signer, l.o.Clock))
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.nc, s.c = nc, c
	if nc.IsConnected() {
		s.poke()
	}
	return s, nil
}

// poke asks the session's bootstrapper to run.
func (s *session) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (l *Link) setErr(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// keep bootstraps each connection and replaces it when it closes, until
// Close.
func (l *Link) keep(ctx context.Context, s *session) {
	defer close(l.done)
	wait := backoff.Initial
	for {
		sctx, cancel := context.WithCancel(ctx)
		bootstrapped := make(chan struct{})
		go func() {
			defer close(bootstrapped)
			l.bootstrap(sctx, s)
		}()
		select {
		case <-ctx.Done():
			cancel()
			<-bootstrapped
			s.c.Close()
			return
		case <-s.closed:
		}
		cancel()
		<-bootstrapped
		s.c.Close()
		l.mu.Lock()
		closing := l.closing
		l.mu.Unlock()
		if closing {
			return
		}
		l.log.Error("NATS connection closed for good; opening a new one",
			slog.Any("err", l.Err()), slog.Duration("after", wait))
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, l.o.MaxBackoff)
			next, err := l.connect()
			if err != nil {
				l.setErr(err)
				l.log.Error("NATS: new connection failed", slog.Any("err", err))
				continue
			}
			l.mu.Lock()
			l.cur = next
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
			s = next
			break
		}
	}
}

// bootstrap runs Bootstrap whenever the session connects or reconnects,
// until it succeeds each time, and marks the session ready after the
// first success.
func (l *Link) bootstrap(ctx context.Context, s *session) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if l.o.Bootstrap == nil {
			s.readyOnce.Do(func() { close(s.ready) })
			continue
		}
		for wait := backoff.Initial; ; wait = min(2*wait, l.o.MaxBackoff) {
			// The request ends when the connection drops under it.
			bctx, cancel := s.c.request(ctx, 30*time.Second)
			err := l.o.Bootstrap(bctx, s.c)
			dropped := bctx.Err() != nil && !errors.Is(bctx.Err(), context.DeadlineExceeded)
			cancel()
			if err != nil && dropped && ctx.Err() == nil {
				// The connection dropped under it; the reconnect kicks it
				// again.
				l.log.Debug("NATS: bootstrap cut short by a disconnect", slog.Any("err", err))
				break
			}
			if err == nil {
				l.log.Debug("NATS: JetStream resources bootstrapped")
				s.readyOnce.Do(func() { close(s.ready) })
				break
			}
			l.log.Error("NATS: bootstrap failed; retrying", slog.Any("err", err), slog.Duration("backoff", wait))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// Ready waits until the current connection is up and bootstrapped, or ctx
// ends.
func (l *Link) Ready(ctx context.Context) error {
	l.mu.Lock()
	s := l.cur
	l.mu.Unlock()
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the current connection is up.
func (l *Link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur != nil && l.cur.nc.IsConnected()
}

// Err is the last connection error, nil while connected.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Client returns the current connection's Client, or an error wrapping
// ErrNotConnected (with the last connection error) when there is no usable
// connection.
func (l *Link) Client() (*Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil || !l.cur.nc.IsConnected() {
		if l.lastErr != nil {
			return nil, fmt.Errorf("%w (%s: %v)", ErrNotConnected, RedactURL(l.o.URL), l.lastErr)
		}
		return nil, fmt.Errorf("%w (%s)", ErrNotConnected, RedactURL(l.o.URL))
	}
	return l.cur.c, nil
}

// Conn returns the current connection (connected or not), for tests and
// for logging where it points.
func (l *Link) Conn() *nats.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.nc
}

// Run runs fn on every connection the Link makes, one at a time, until
// ctx ends; it returns nil then. fn starts when its connection is up and
// bootstrapped, and its ctx is cancelled when that connection closes for
// good (a connection that only reconnects keeps it). If fn returns early
// with an error while its connection lives, it runs again after a backoff.
func (l *Link) Run(ctx context.Context, fn func(ctx context.Context, c *Client) error) error {
	wait := backoff.Initial
	for ctx.Err() == nil {
		l.mu.Lock()
		s, changed := l.cur, l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-s.closed:
			select { // wait for its replacement
			case <-ctx.Done():
				return nil
			case <-changed:
			}
			continue
		case <-s.ready:
			select { // a closed connection may be ready too: select picks at random
			case <-s.closed:
				continue
			default:
			}
		}
		began := time.Now()
		err := runOn(ctx, s, fn)
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-s.closed:
			wait = backoff.Initial
			continue
		default:
		}
		if time.Since(began) > time.Minute {
			wait = backoff.Initial
		}
		if err == nil {
			err = errors.New("returned before its connection closed")
		}
		l.log.Error("work on NATS stopped; restarting", slog.Any("err", err), slog.Duration("backoff", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, l.o.MaxBackoff)
	}
	return nil
}

// runOn runs fn with a context that ends with ctx or with s's connection.
func runOn(ctx context.Context, s *session, fn func(ctx context.Context, c *Client) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-sctx.Done():
		}
	}()
	return fn(sctx, s.c)
}

// Close closes the connection and stops replacing it.
func (l *Link) Close() {
	l.mu.Lock()
	l.closing = true
	s := l.cur
	l.mu.Unlock()
	s.nc.Close()
	l.stop()
	<-l.done
}

// RedactURL hides credentials in a NATS URL (or a comma-separated list).
func RedactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		u.User = url.User("REDACTED")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// Static turns a fixed Client into the provider the handlers and the
// prober take (tests, tools).
func Static(c *Client) func() (*Client, error) {
	return func() (*Client, error) { return c, nil }
}
