package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// NewLogger returns the structured logger every part of a shell writes to.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Deps are the long-lived dependencies a shell opens at start and closes at
// shutdown.
type Deps struct {
	Config Config
	Logger *slog.Logger
	Clock  kanade.Clock
	DB     *storage.DB
	NATS   *NATS

	// opened is closed once the database is migrated and NATS dialed
	// (Begin); openErr is then the error of either. Nil after Open.
	opened  chan struct{}
	openErr error
}

// NATS is the shell's connection to NATS, and the embedded server when the
// shell started one.
type NATS struct {
	// Server is the embedded server, nil with an external NATS.
	Server EmbeddedNATS
	// Link keeps the connection: it exists even while NATS is down. After
	// Begin it is set once dialed is closed; Client and Connected wait
	// for that.
	Link *bus.Link

	// dialed is closed when Begin's dial has returned (nil when the NATS
	// was made by hand); dialErr is then the dial's error.
	dialed  chan struct{}
	dialErr error
}

// EmbeddedNATS is a NATS server running in this process, as much of it as
// app needs: where to connect, and how to stop it. The on-prem shells start
// one with bus/natsd (whose *server.Server fits); app never imports that
// package, so the Lambda shell links no NATS server.
type EmbeddedNATS interface {
	ClientURL() string
	Shutdown()
	WaitForShutdown()
}

// OpenOptions say what Open does beyond connecting.
type OpenOptions struct {
	// Name identifies this process to NATS (shown in connz).
	Name string
	// Bootstrap creates or updates the JetStream resources of wire.md §2
	// whenever the connection is (re)established.
	Bootstrap bool
	// Clock defaults to the wall clock.
	Clock kanade.Clock
	// StartNATS starts the embedded server when no KANADE_NATS_URL is
	// configured (the on-prem shells pass onprem's); Open then owns it and
	// stops it on Close or on a failed open. Without it, an empty URL is an
	// error.
	StartNATS func() (EmbeddedNATS, error)
	// LazyNATS (the Lambda shell) lets Begin's Wait return without the
	// NATS dial: a request that needs NATS waits for it then (NATS.Client,
	// NATS.Connected), one that does not is not held up by it, and a dial
	// that fails is logged and answered as NATS down instead of failing
	// the start.
	LazyNATS bool
}

// Open opens the database and starts keeping a NATS connection (starting
// the embedded server through o.StartNATS when no URL is configured). An
// external NATS that is down does not stop it: the shell starts, reports
// NATS as down, and connects when NATS appears. On error everything opened
// so far is closed.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, o OpenOptions) (*Deps, error) {
	d, err := Begin(ctx, cfg, logger, o)
	if err != nil {
		return nil, err
	}
	if err := d.Wait(); err != nil {
		return nil, err
	}
	return d, nil
}

// Begin is Open without waiting for the network: it returns the database
// handle (storage.New) and a NATS whose connection is still being made,
// with the schema check and the NATS dial in flight. A Lambda cold start
// sets up its routes meanwhile (api.New) instead of after them. Nothing
// may query d.DB before Wait returns nil; d.NATS's Client and Connected
// wait for the dial by themselves. After a failed Wait, d is closed.
func Begin(ctx context.Context, cfg Config, logger *slog.Logger, o OpenOptions) (*Deps, error) {
	if o.Clock == nil {
		o.Clock = kanade.SystemClock
	}
	d := &Deps{Config: cfg, Logger: logger, Clock: o.Clock,
		NATS: &NATS{dialed: make(chan struct{})}, opened: make(chan struct{})}
	// The database and NATS open at the same time: on Lambda each is a
	// connection (often TLS) to another host, and a cold start waits for
	// the slower one instead of both in turn.
	natsErr := make(chan error, 1)
	go func() {
		n, err := connectNATS(ctx, cfg, logger, o)
		if err == nil {
			d.NATS.Server, d.NATS.Link = n.Server, n.Link
		} else if o.LazyNATS {
			logger.Error("NATS: the connection cannot be made; serving without it", slog.Any("err", err))
		}
		d.NATS.dialErr = err
		close(d.NATS.dialed)
		natsErr <- err
	}()
	db, err := storage.New(cfg.DB, storage.Options{AuthToken: cfg.DBAuthToken, Clock: o.Clock})
	if err != nil {
		// What the dial opened meanwhile (an embedded server) goes too.
		nErr := <-natsErr
		d.NATS.Close()
		return nil, errors.Join(err, nErr)
	}
	d.DB = db
	go func() {
		dbErr := db.Migrate(ctx)
		var nErr error
		if !o.LazyNATS {
			nErr = <-natsErr
		}
		switch {
		case dbErr != nil || nErr != nil:
			d.NATS.Close()
			d.openErr = errors.Join(dbErr, nErr, db.Close())
		default:
			logger.Info("database open", slog.String("db", storage.Redact(cfg.DB)), slog.Bool("remote", db.Remote()))
		}
		close(d.opened)
	}()
	return d, nil
}

// Wait waits until Begin's database check and NATS dial (not with
// LazyNATS) are done, and returns their error (everything is closed then).
// After Open it returns nil at once.
func (d *Deps) Wait() error {
	if d.opened == nil {
		return nil
	}
	<-d.opened
	return d.openErr
}

func connectNATS(ctx context.Context, cfg Config, logger *slog.Logger, o OpenOptions) (*NATS, error) {
	n := &NATS{}
	url := cfg.NATSURL
	if url == "" {
		if o.StartNATS == nil {
			return nil, errors.New("nats: no KANADE_NATS_URL configured, and this shell cannot start an embedded server")
		}
		s, err := o.StartNATS()
		if err != nil {
			return nil, err
		}
		n.Server = s
		url = s.ClientURL()
	}
	// Every client the Link makes signs the commands it publishes; the
	// handlers' GET /api/command-signing names the same key.
	lo := bus.LinkOptions{URL: url, Name: o.Name, Token: cfg.NATSToken, Logger: logger,
		Signer: cfg.CommandSigner, Clock: o.Clock}
	if cfg.CommandSigner != nil {
		logger.Info("signing every published command; agents that hold this key report kid:fingerprint in command_keys",
			slog.String("kid", cfg.CommandSigner.Kid()), slog.String("fingerprint", cfg.CommandSigner.Fingerprint()))
	} else {
		logger.Warn("commands are published unsigned: no KANADE_COMMAND_SIGNING_KEY / KANADE_COMMAND_SIGNING_KID " +
			"(the keygen subcommand makes a pair; give agents the public key before the backend signs)")
	}
	if o.Bootstrap {
		lo.Bootstrap = func(ctx context.Context, c *bus.Client) error {
			if err := c.Bootstrap(ctx, cfg.NATSReplicas); err != nil {
				return err
			}
			logger.Info("JetStream resources bootstrapped", slog.Int("replicas", cfg.NATSReplicas),
				slog.Int("resources", len(kanade.Resources(cfg.NATSReplicas))))
			return nil
		}
	}
	link, err := bus.Dial(lo)
	if err != nil {
		n.closeServer()
		return nil, err
	}
	n.Link = link
	if !link.Connected() {
		logger.Warn("NATS is not reachable yet; serving anyway and connecting in the background",
			slog.String("url", bus.RedactURL(url)))
		return n, nil
	}
	// A NATS that answers gets its resources before the shell serves, as a
	// new install expects; one that does not is waited for in the
	// background.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := link.Ready(rctx); err != nil {
		logger.Warn("JetStream not bootstrapped yet; serving anyway and retrying in the background", slog.Any("err", err))
	}
	return n, nil
}

// Connected reports whether the connection is up (for /readyz), once
// Begin's dial has returned.
func (n *NATS) Connected() bool {
	n.waitDial()
	return n.Link != nil && n.Link.Connected()
}

// Client is the current connection's client (bus.Link.Client), once Begin's
// dial has returned: a request that needs NATS in the first moments of a
// cold start waits for the dial rather than being told NATS is down.
func (n *NATS) Client() (*bus.Client, error) {
	n.waitDial()
	if n.Link == nil {
		if n.dialErr != nil {
			return nil, fmt.Errorf("%w: %w", bus.ErrNotConnected, n.dialErr)
		}
		return nil, bus.ErrNotConnected
	}
	return n.Link.Client()
}

func (n *NATS) waitDial() {
	if n.dialed != nil {
		<-n.dialed
	}
}

// Close closes the connection, then stops the embedded server.
func (n *NATS) Close() {
	n.waitDial()
	if n.Link != nil {
		n.Link.Close()
	}
	n.closeServer()
}

func (n *NATS) closeServer() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}

// Close closes NATS (connection, then embedded server), then the database.
func (d *Deps) Close() error {
	if d.NATS != nil {
		d.NATS.Close()
	}
	if err := d.DB.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}
