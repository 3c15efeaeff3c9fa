package fanout_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/fanout"
	"github.com/kanade-fleet/backend/internal/testkit"
	"github.com/kanade-fleet/backend/sign"
)

// A fan-out on a signing client signs every command it sends: the plain
// subjects and the due wave at the dispatch, a delayed wave when it is
// finally sent (its signing time is the send, not the decision), each
// verifiable from the spec alone.
func TestEveryCommandOfAFanOutIsSignedWhenSent(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	secret, pub := testkit.TestKey(5)
	sg, err := sign.New(secret, "backend-1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fanout.New(fanout.Config{DB: e.db, Bus: e.nats.Signing(t, sg, e.clock), Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	commands := e.watch(t, "commands.>", nil)
	if _, err := f.Send(ctx, fanout.Exec{Manifest: manifest(t), At: e.clock(), TargetCount: 2, Actor: "operator",
		Subjects: []string{"commands.group.canary", "commands.pc.PC-1"}}); err != nil {
		t.Fatal(err)
	}
	ro := &kanade.Rollout{Strategy: kanade.StrategyWave, Waves: []kanade.Wave{{Group: "canary", Delay: "0s"}, {Group: "wave1", Delay: "10m"}}}
	if err := ro.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Send(ctx, fanout.Exec{Manifest: manifest(t), At: e.clock(), Rollout: ro, TargetCount: 1, Actor: "operator"}); err != nil {
		t.Fatal(err)
	}
	commands.wait(t, 3)
	// The stored wave goes out eleven minutes later, from another worker.
	sent := t0.Add(11 * time.Minute)
	e.set(sent)
	if n, err := f.SendDueWaves(ctx, sent); err != nil || n != 1 {
		t.Fatalf("SendDueWaves = %d, %v", n, err)
	}
	var got []string
	msgs := commands.wait(t, 4)
	for _, m := range msgs {
		at, err := testkit.VerifyCommand(m.Header, m.Data, "backend-1", pub)
		if err != nil {
			t.Errorf("%s: %v", m.Subject, err)
		}
		got = append(got, m.Subject+" at +"+time.UnixMilli(at).Sub(t0).String())
	}
	want := []string{"commands.group.canary at +0s", "commands.pc.PC-1 at +0s", "commands.group.canary at +0s",
		"commands.group.wave1 at +11m0s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signed (-want +got):\n%s", diff)
	}
	// The signature covers the exact bytes: one changed byte fails.
	later := msgs[3]
	if _, err := testkit.VerifyCommand(later.Header, bytes.Replace(later.Data, []byte("uname"), []byte("unamf"), 1), "backend-1", pub); err == nil {
		t.Error("a changed wave verified")
	}
}
