package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds a graceful shutdown; what is still running then is
// closed hard.
const ShutdownTimeout = 10 * time.Second

// NewHTTPServer wraps h with the timeouts every listener of the backend uses,
// so a slow or idle client cannot hold a connection forever.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Listener is one HTTP server and the socket it serves.
type Listener struct {
	Name     string
	Server   *http.Server
	Listener net.Listener
}

// Runner is what Run runs beside the servers (a Worker).
type Runner interface {
	Run(ctx context.Context) error
}

// RunParams is what Run runs and then shuts down.
type RunParams struct {
	Logger    *slog.Logger
	Listeners []Listener
	// Worker may be nil.
	Worker Runner
	// Deps are closed last (NATS connection, embedded NATS, database).
	Deps *Deps
	// ShutdownTimeout defaults to ShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Run serves until ctx is cancelled (the signal) or a server or the worker
// fails, then shuts down in dependency order: HTTP servers (in-flight
// requests finish), the worker, then Deps. The whole shutdown shares one
// deadline; past it, servers are closed hard and Run stops waiting.
//
// It returns nil after a clean shutdown on cancellation, and otherwise the
// failure that stopped it joined with any shutdown error.
func Run(ctx context.Context, p RunParams) error {
	if p.ShutdownTimeout <= 0 {
		p.ShutdownTimeout = ShutdownTimeout
	}
	log := p.Logger
	failed := make(chan error, len(p.Listeners)+1)
	for _, l := range p.Listeners {
		go func() {
			log.Info("serving", slog.String("server", l.Name), slog.String("addr", l.Listener.Addr().String()))
			if err := l.Server.Serve(l.Listener); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("%s server: %w", l.Name, err)
			}
		}()
	}
	// The worker gets its own context: it must keep running while the HTTP
	// servers drain, and stop only after them.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	var workerDone chan error // nil, never ready, without a worker
	if p.Worker != nil {
		workerDone = make(chan error, 1)
		go func() { workerDone <- p.Worker.Run(workerCtx) }()
	}

	var cause error
	select {
	case <-ctx.Done():
		log.Info("shutting down", slog.String("reason", context.Cause(ctx).Error()))
	case cause = <-failed:
		log.Error("shutting down after a failure", slog.Any("err", cause))
	case err := <-workerDone:
		cause = fmt.Errorf("worker stopped: %w", err)
		if err == nil {
			cause = errors.New("worker stopped before shutdown")
		}
		log.Error("shutting down after a failure", slog.Any("err", cause))
		workerDone = nil
	}

	deadline, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, l := range p.Listeners {
		if err := l.Server.Shutdown(deadline); err != nil {
			errs = append(errs, fmt.Errorf("%s server: graceful shutdown: %w", l.Name, err))
			l.Server.Close()
		}
		// Shutdown closes only the listeners Serve has started on; a failure
		// right at start can come before a Serve goroutine ran, and its
		// listener would keep accepting into the backlog. (Closing twice is
		// harmless: the second close only returns an error.)
		l.Listener.Close()
	}
	stopWorker()
	if workerDone != nil {
		select {
		case err := <-workerDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("worker: %w", err))
			}
		case <-deadline.Done():
			errs = append(errs, fmt.Errorf("worker did not stop within %v", p.ShutdownTimeout))
		}
	}
	if p.Deps != nil {
		if err := p.Deps.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		log.Error("shutdown incomplete", slog.Any("err", errors.Join(errs...)))
	} else {
		log.Info("stopped")
	}
	return errors.Join(append([]error{cause}, errs...)...)
}
