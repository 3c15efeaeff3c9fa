package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		t.Fatalf("echo: got %q, want %q", line, msg)
	}
	return nil
}

func TestProxyForwardsAndResetCutsEveryConnectionWithRST(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(t, c, "hello"); err != nil {
			t.Fatalf("before reset: %v", err)
		}
		conns = append(conns, c)
	}
	if got := p.Open(); got != 3 {
		t.Fatalf("open connections: got %d, want 3", got)
	}
	if got := p.ResetAll(); got != 3 {
		t.Fatalf("ResetAll cut %d connections, want 3", got)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if err == nil {
			t.Fatalf("conn %d: read succeeded after reset", i)
		}
		// An RST, not an orderly FIN (which would read as io.EOF).
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("conn %d: got %v, want connection reset", i, err)
		}
	}
	if got := p.Open(); got != 0 {
		t.Fatalf("open connections after reset: got %d, want 0", got)
	}
	// The proxy keeps accepting: a client reconnects and talks again.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(t, c, "again"); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}

func TestProxyCloseStopsAccepting(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr()
	p.Close()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded after Close")
	}
}
