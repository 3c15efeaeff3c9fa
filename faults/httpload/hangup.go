package httpload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// hangupPath answers a few hundred KiB (500 agents), more than the socket
// buffers between a tiny client window and the server hold, so the server is
// still writing when the client resets the connection.
const hangupPath = "/api/agents?limit=500"

// checkHangups sends requests whose clients reset the connection (RST) right
// after the response's first bytes, with a tiny receive window. The server's
// next write fails mid-body; huma then sets a second status (499) for its
// log, which used to reach net/http through the metrics recorder as a
// "superfluous response.WriteHeader call" per request. The server log scan
// that follows the checks is what judges that; this check only requires the
// server to stay ready.
func checkHangups(ctx context.Context, addr, base, token string, n int) Check {
	c := Check{Name: "clients resetting mid-response"}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: smallReceiveBuffer}
	reset := 0
	for range n {
		if err := hangup(ctx, dialer, addr, token); err != nil {
			c.Details = append(c.Details, err.Error())
			continue
		}
		reset++
	}
	// Let the server notice the resets before asking whether it is ready.
	time.Sleep(200 * time.Millisecond)
	res, err := (&http.Client{Timeout: abuseTimeout}).Get(base + "/readyz")
	ready := "no answer"
	if err != nil {
		c.Details = append(c.Details, fmt.Sprintf("readyz after the resets: %v", err))
	} else {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ready = fmt.Sprint(res.StatusCode)
	}
	c.Pass = len(c.Details) == 0 && ready == "200"
	c.Measured = fmt.Sprintf("%d of %d GET %s reset after the first response bytes; /readyz then %s (the server log check below judges the rest)",
		reset, n, hangupPath, ready)
	return c
}

func hangup(ctx context.Context, dialer *net.Dialer, addr, token string) error {
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(abuseTimeout))
	if _, err := io.WriteString(conn, "GET "+hangupPath+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+"\r\n\r\n"); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	if _, err := bufio.NewReader(conn).Peek(1); err != nil {
		return fmt.Errorf("read first response byte: %w", err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // close with RST, as a client that crashed
	}
	return nil
}
