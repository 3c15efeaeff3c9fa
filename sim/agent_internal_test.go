package sim

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
)

// TestOneGateReadPerCommandMessage: however many agents a command reaches,
// the fleet reads its gates once, and not at all when every agent it
// reaches has taken its request_id already.
func TestOneGateReadPerCommandMessage(t *testing.T) {
	a := &agents{f: NewFleet(Config{Agents: 1000, Seed: 1})}
	reads := 0
	read := func() Gate { reads++; return Gate{Revoked: true} }
	c := kanade.Command{ID: "job", Version: "1", RequestID: "r1", ExecID: "e1"}
	now := time.Date(2026, 6, 20, 9, 0, 0, 0, time.UTC)
	if msgs := a.receive(kanade.SubjectCommandsAll, c, read, now); len(msgs) != 1000 || reads != 1 {
		t.Errorf("commands.all to 1000 agents: %d messages, %d reads; want 1000 skipped results, 1 read", len(msgs), reads)
	}
	if msgs := a.receive(kanade.SubjectCommandsGroup+"sim-canary", c, read, now); len(msgs) != 0 || reads != 1 {
		t.Errorf("the same request again: %d messages, %d reads; want none", len(msgs), reads)
	}
}
