package bus_test

import (
	"fmt"
	"testing"

	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishEach tells, message by message, which the stream took: here a
// stream that refuses new messages past three, and a subject no stream
// captures.
func TestPublishEachReportsEveryMessagesOutcome(t *testing.T) {
	s := bustest.Start(t)
	ctx := t.Context()
	if _, err := s.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"},
		MaxMsgs: 3, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for i := range 5 {
		msgs = append(msgs, &nats.Msg{Subject: fmt.Sprintf("small.%d", i), Data: []byte("x")})
	}
	msgs = append(msgs, &nats.Msg{Subject: "nowhere.1"}, &nats.Msg{Subject: "commands.all"})
	errs := s.Bus.PublishEach(ctx, msgs[:6])
	var got []bool
	for _, err := range errs {
		got = append(got, err == nil)
	}
	if fmt.Sprint(got) != "[true true true false false false]" {
		t.Errorf("acknowledged %v; errors %v", got, errs)
	}
	for i, err := range s.Bus.PublishEach(ctx, msgs) {
		if err == nil {
			t.Errorf("message %d published along with a command subject", i)
		}
	}
}
