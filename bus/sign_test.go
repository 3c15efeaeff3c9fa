package bus_test

import (
	"crypto/ed25519"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
	"github.com/nats-io/nats.go"
)

// capture collects every message on commands.> as agents receive them.
func capture(t *testing.T, s *bustest.Server) func(n int) []*nats.Msg {
	t.Helper()
	var mu sync.Mutex
	var msgs []*nats.Msg
	sub, err := s.NC.Subscribe("commands.>", func(m *nats.Msg) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return func(n int) []*nats.Msg {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := slices.Clone(msgs)
			mu.Unlock()
			if len(got) >= n || time.Now().After(deadline) {
				if len(got) != n {
					t.Fatalf("%d command messages, want %d", len(got), n)
				}
				return got
			}
		}
	}
}

func signer(t *testing.T, seed byte, kid string) (*sign.Signer, ed25519.PublicKey) {
	t.Helper()
	secret, pub := testkit.TestKey(seed)
	s, err := sign.New(secret, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s, pub
}

func TestCommandsAreSignedWhenTheyGoOut(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	got := capture(t, s)
	sg, pub := signer(t, 1, "backend-1")
	at := time.Date(2026, 7, 28, 1, 2, 3, 4_000_000, time.UTC)
	c := s.Signing(t, sg, func() time.Time { return at })
	a, b := []byte(`{"id":"a"}`), []byte(`{"id":"b"}`)
	out := []bus.Outgoing{{Subject: "commands.pc.A", Data: a, MsgID: "1"}, {Subject: "commands.pc.B", Data: a, MsgID: "2"},
		{Subject: "commands.group.g", Data: b, MsgID: "3"}, {Subject: "commands.all", Data: a, MsgID: "4"}}
	if n, err := c.Commands(t.Context(), out); err != nil || n != 4 {
		t.Fatalf("Commands = %d, %v", n, err)
	}
	for _, m := range got(4) {
		ms, err := testkit.VerifyCommand(m.Header, m.Data, "backend-1", pub)
		if err != nil || ms != at.UnixMilli() {
			t.Errorf("%s: signed at %d, %v; want %d", m.Subject, ms, err, at.UnixMilli())
		}
		// The message id still travels, so a retried publish is stored once.
		if m.Header.Get("Nats-Msg-Id") == "" {
			t.Errorf("%s: no Nats-Msg-Id", m.Subject)
		}
	}
}

func TestUnsignedCommandsCarryNoSignatureHeader(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	got := capture(t, s)
	if _, err := s.Bus.Commands(t.Context(), []bus.Outgoing{{Subject: "commands.pc.A", Data: []byte(`{}`), MsgID: "1"}}); err != nil {
		t.Fatal(err)
	}
	// A nil signer is no signer.
	c := s.Signing(t, nil, nil)
	if _, err := c.Commands(t.Context(), []bus.Outgoing{{Subject: "commands.pc.B", Data: []byte(`{}`), MsgID: "2"}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range got(2) {
		if h := testkit.SigHeaders(m.Header); len(h) != 0 {
			t.Errorf("%s carries %v", m.Subject, h)
		}
	}
}

// Commands is the one way onto commands.*: the plain publishers refuse
// those subjects, so no caller can publish a command its signer never saw.
func TestOnlyCommandsPublishesOnCommandSubjects(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	got := capture(t, s)
	ctx := t.Context()
	if err := s.Bus.Publish(ctx, kanade.SubjectCommandsPC+"A", []byte(`{}`), "x"); err == nil {
		t.Error("Publish put a command on the wire")
	}
	msgs := []*nats.Msg{{Subject: "results.q", Data: []byte(`{}`)}, {Subject: kanade.SubjectCommandsAll, Data: []byte(`{}`)}}
	if n, err := s.Bus.PublishAll(ctx, msgs); err == nil || n != 0 {
		t.Errorf("PublishAll = %d, %v; want nothing sent and an error", n, err)
	}
	if _, err := s.Bus.Commands(ctx, []bus.Outgoing{{Subject: "commands.pc.A", Data: []byte(`{}`), MsgID: "1"}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"commands.pc.A"}, subjects(got(1))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	st, err := s.Bus.Stream(ctx, kanade.StreamResults)
	if err != nil || st.LastSeq != 0 {
		t.Errorf("RESULTS holds %d messages (%v): PublishAll sent part of a refused batch", st.LastSeq, err)
	}
}

func subjects(msgs []*nats.Msg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}

// The shells sign through the Link: every client it makes carries the
// signer and the clock.
func TestALinksClientsSign(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	got := capture(t, s)
	sg, pub := signer(t, 4, "link-key")
	at := time.UnixMilli(1_800_000_000_123)
	l, err := bus.Dial(bus.LinkOptions{URL: s.URL, Signer: sg, Clock: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commands(t.Context(), []bus.Outgoing{{Subject: "commands.pc.A", Data: []byte(`{"id":"x"}`), MsgID: "1"}}); err != nil {
		t.Fatal(err)
	}
	m := got(1)[0]
	if ms, err := testkit.VerifyCommand(m.Header, m.Data, "link-key", pub); err != nil || ms != at.UnixMilli() {
		t.Errorf("signed at %d, %v", ms, err)
	}
}
