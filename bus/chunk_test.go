package bus_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// seen collects what a subscriber on its own connection receives on
// commands.>, by subject.
func seen(t *testing.T, s *bustest.Server) func() map[string][]string {
	t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe("commands.>", ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() map[string][]string {
		// A round trip on the publishing connection and on ours: every
		// message published before is in ch.
		if err := s.NC.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for {
			select {
			case m := <-ch:
				out[m.Subject] = append(out[m.Subject], string(m.Data))
			case <-time.After(50 * time.Millisecond):
				return out
			}
		}
	}
}

func TestCommandChunkAndVerifyChunkSendEachSubjectOnce(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	ctx := context.Background()
	got := seen(t, s)
	var subjects []string
	for i := range 13 {
		subjects = append(subjects, fmt.Sprintf("commands.pc.PC-%d", i))
	}
	data := []byte(`{"id":"inv","request_id":"r1"}`)
	id := func(s string) string { return "e1:" + s }

	floor, err := s.Bus.ExecSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rest := subjects[10:]
	subjects = subjects[:10]
	seq, err := s.Bus.CommandChunk(ctx, data, subjects[:4], id, floor)
	if err != nil || seq != floor+4 {
		t.Fatalf("CommandChunk = %d, %v; want %d", seq, err, floor+4)
	}
	// A later command to PC-8 (another execution) after the chunk began.
	if _, err := s.Bus.Commands(ctx, []bus.Outgoing{{Subject: subjects[8], Data: []byte(`{"id":"other"}`), MsgID: "e2:" + subjects[8]}}); err != nil {
		t.Fatal(err)
	}
	// The worker died after 4 of its 10: the rest goes out, PC-8's newer
	// command stays.
	if _, err := s.Bus.VerifyChunk(ctx, data, subjects, id, floor); err != nil {
		t.Fatal(err)
	}
	// A chunk whose floor is not the stream's (another publisher wrote in
	// between) is checked, not sent twice.
	if _, err := s.Bus.CommandChunk(ctx, data, rest, id, floor); err != nil {
		t.Fatal(err)
	}
	subjects = append(subjects, rest...)
	want := map[string][]string{}
	for i, sub := range subjects {
		want[sub] = []string{string(data)}
		if i == 8 {
			want[sub] = []string{`{"id":"other"}`}
		}
	}
	if diff := cmp.Diff(want, got()); diff != "" {
		t.Errorf("subscriber (-want +got):\n%s", diff)
	}
	st, err := s.JS.Stream(ctx, kanade.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sub := range subjects {
		m, err := st.GetLastMsgForSubject(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	sort.Strings(ids)
	wantIDs := []string{}
	for i, sub := range subjects {
		if i == 8 {
			wantIDs = append(wantIDs, "e2:"+sub)
		} else {
			wantIDs = append(wantIDs, id(sub))
		}
	}
	sort.Strings(wantIDs)
	if diff := cmp.Diff(wantIDs, ids); diff != "" {
		t.Errorf("EXEC (-want +got):\n%s", diff)
	}
}
