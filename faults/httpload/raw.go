package httpload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// exchangeResult is how the server dealt with one hand-made request.
type exchangeResult struct {
	status  int           // 0 when no response came
	elapsed time.Duration // from the connection until the response or the close
	hung    bool          // neither a response nor a close within the timeout
	err     error         // why no response came (EOF, reset, timeout)
}

func (r exchangeResult) String() string {
	switch {
	case r.status != 0:
		return fmt.Sprintf("%d after %s", r.status, round(r.elapsed))
	case r.hung:
		return fmt.Sprintf("no answer and still open after %s", round(r.elapsed))
	default:
		return fmt.Sprintf("closed without an answer after %s (%v)", round(r.elapsed), r.err)
	}
}

// exchange sends head and then whatever body writes on a fresh TCP
// connection, while reading the response concurrently: a server refusing a
// large body answers before the body is sent and then closes, and a client
// that only reads after writing everything would see the reset instead of
// the answer. The body writer's errors are ignored for that reason; it is
// stopped by closing the connection once the response (or the close, or
// the timeout) came.
func exchange(ctx context.Context, addr, head string, body func(w io.Writer) error, timeout time.Duration) exchangeResult {
	start := time.Now()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return exchangeResult{err: err}
	}
	stopOnCancel := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopOnCancel()
	conn.SetDeadline(start.Add(timeout))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		if body != nil {
			body(conn)
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	r := exchangeResult{elapsed: time.Since(start)}
	if err == nil {
		r.status = res.StatusCode
	} else {
		r.err = err
		r.hung = errors.Is(err, os.ErrDeadlineExceeded)
	}
	conn.Close()
	<-wrote
	return r
}

// filler writes n bytes of a JSON-looking string in 64 KiB writes.
func filler(n int) func(w io.Writer) error {
	return func(w io.Writer) error {
		chunk := []byte(strings.Repeat("x", 64<<10))
		if _, err := io.WriteString(w, `{"id":"`); err != nil {
			return err
		}
		for left := n - len(`{"id":"`); left > 0; left -= len(chunk) {
			if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
				return err
			}
		}
		return nil
	}
}

// trickle writes one byte per second until a write fails or ctx ends.
func trickle(ctx context.Context) func(w io.Writer) error {
	return func(w io.Writer) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return err
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// round keeps reported durations readable.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d
}
