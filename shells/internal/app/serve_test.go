package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// workerFunc adapts a function to Worker.
type workerFunc func(ctx context.Context) error

func (f workerFunc) Run(ctx context.Context) error { return f(ctx) }

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestAFailingWorkerStopsTheShellWithItsError(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	err := Run(context.Background(), RunParams{
		Logger:    quiet(),
		Listeners: []Listener{{Name: "http", Server: NewHTTPServer(http.NotFoundHandler(), quiet()), Listener: ln}},
		Worker:    workerFunc(func(context.Context) error { return errors.New("projector: boom") }),
	})
	if err == nil || !strings.Contains(err.Error(), "projector: boom") {
		t.Fatalf("Run = %v, want the worker's error", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("server still accepts connections after Run returned")
	}
}

func TestShutdownDrainsRequestsBeforeStoppingTheWorker(t *testing.T) {
	ln := listen(t)
	base := "http://" + ln.Addr().String()
	entered, release := make(chan struct{}), make(chan struct{})
	workerStopped := make(chan struct{})
	var stoppedBeforeResponse bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		select {
		case <-workerStopped:
			stoppedBeforeResponse = true
		default:
		}
		io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunParams{
			Logger:    quiet(),
			Listeners: []Listener{{Name: "http", Server: NewHTTPServer(h, quiet()), Listener: ln}},
			Worker: workerFunc(func(ctx context.Context) error {
				<-ctx.Done()
				close(workerStopped)
				return ctx.Err()
			}),
		})
	}()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-entered
	cancel()
	// Wait until shutdown has begun (the listener is closed), then let the
	// in-flight request finish.
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request got %q, want done", body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if stoppedBeforeResponse {
		t.Error("the worker was stopped while an HTTP request was still in flight")
	}
	select {
	case <-workerStopped:
	default:
		t.Error("Run returned without stopping the worker")
	}
}

func TestShutdownIsBoundedByItsDeadline(t *testing.T) {
	ln := listen(t)
	entered := make(chan struct{})
	stuck := make(chan struct{})
	defer close(stuck)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-stuck
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunParams{
			Logger:          quiet(),
			Listeners:       []Listener{{Name: "http", Server: NewHTTPServer(h, quiet()), Listener: ln}},
			Worker:          workerFunc(func(context.Context) error { <-stuck; return nil }),
			ShutdownTimeout: 200 * time.Millisecond,
		})
	}()
	go http.Get("http://" + ln.Addr().String() + "/")
	<-entered
	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "graceful shutdown") || !strings.Contains(err.Error(), "worker did not stop") {
			t.Errorf("Run = %v, want errors for the stuck request and the stuck worker", err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("shutdown took %v with a 200ms deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return with a stuck request and a stuck worker")
	}
}
