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
}

// NATS is the shell's connection to NATS, and the embedded server when the
// shell started one.
type NATS struct {
	// Server is the embedded server, nil with an external NATS.
	Server EmbeddedNATS
	// Link keeps the connection: it exists even while NATS is down.
	Link *bus.Link
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
}

// Open opens the database and starts keeping a NATS connection (starting
// the embedded server through o.StartNATS when no URL is configured). An
// external NATS that is down does not stop it: the shell starts, reports
// NATS as down, and connects when NATS appears. On error everything opened
// so far is closed.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, o OpenOptions) (*Deps, error) {
	if o.Clock == nil {
		o.Clock = kanade.SystemClock
	}
	// The process-level collectors belong to the shell (one per process);
	// handlers and the worker add their own metrics to the same registry.
	d := &Deps{Config: cfg, Logger: logger, Clock: o.Clock}
	// The database and NATS open at the same time: on Lambda each is a
	// connection (often TLS) to another host, and a cold start waits for
	// the slower one instead of both in turn.
	type opened struct {
		nats *NATS
		err  error
	}
	natsDone := make(chan opened, 1)
	go func() {
		n, err := connectNATS(ctx, cfg, logger, o)
		natsDone <- opened{n, err}
	}()
	db, dbErr := storage.Open(ctx, cfg.DB, storage.Options{AuthToken: cfg.DBAuthToken, Clock: o.Clock})
	n := <-natsDone
	switch {
	case dbErr != nil && n.err == nil:
		n.nats.Close()
		return nil, dbErr
	case dbErr != nil:
		return nil, errors.Join(dbErr, n.err)
	case n.err != nil:
		return nil, errors.Join(n.err, db.Close())
	}
	logger.Info("database open", slog.String("db", storage.Redact(cfg.DB)), slog.Bool("remote", db.Remote()))
	d.DB, d.NATS = db, n.nats
	return d, nil
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

// Connected reports whether the connection is up (for /readyz).
func (n *NATS) Connected() bool { return n.Link != nil && n.Link.Connected() }

// Close closes the connection, then stops the embedded server.
func (n *NATS) Close() {
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
