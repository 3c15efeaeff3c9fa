package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/natsd"
	"github.com/kanade-fleet/backend/storage"
)

// perPCFleet is a fleet of n alive PCs at t0 with a per_pc "once" schedule
// of job inv: its first reconcile fires at all of them.
func perPCFleet(t *testing.T, n int, t0 time.Time) (*fleet, []string) {
	t.Helper()
	f := newFleet(t)
	ctx := context.Background()
	f.put(kanade.BucketJobs, "inv", job)
	f.put(kanade.BucketSchedules, "each", `{"id":"each","when":{"per_pc":"once"},"job_id":"inv","target":{"all":true}}`)
	pcs := make([]string, n)
	hs := make([]kanade.Heartbeat, n)
	for i := range pcs {
		pcs[i] = fmt.Sprintf("PC-%03d", i)
		hs[i] = kanade.Heartbeat{PcID: pcs[i], At: kanade.Timestamp{Time: t0.Add(-time.Second)}, AgentVersion: "1"}
	}
	if err := f.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, hs) }); err != nil {
		t.Fatal(err)
	}
	return f, pcs
}

// smallChunks makes w send chunks of 7 PCs, so a firing to 50 PCs has
// several and a failure can land inside one.
func smallChunks(ws ...*Scheduler) {
	for _, w := range ws {
		w.chunk = 7
	}
}

// onceEach checks that the subscriber saw every PC's command exactly once
// (received() sorts; a repeat shows as a neighbour) and that EXEC stores
// one message per PC, all of one execution, none replaced.
func (f *fleet) onceEach(got []string, pcs []string) {
	f.t.Helper()
	want := subjectsOf(pcs)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		dup, missing := 0, 0
		seen := map[string]int{}
		for _, s := range got {
			seen[s]++
		}
		for _, s := range want {
			switch seen[s] {
			case 0:
				missing++
			case 1:
			default:
				dup += seen[s] - 1
			}
		}
		f.t.Errorf("subscriber saw %d commands for %d PCs: %d missing, %d repeated", len(got), len(pcs), missing, dup)
	}
	ctx := context.Background()
	st, err := f.nats.JS.Stream(ctx, kanade.StreamExec)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	// A second copy of a PC's command would replace the first (one
	// message per subject) and leave a deleted sequence behind.
	if info.State.Msgs != uint64(len(pcs)) || info.State.NumDeleted != 0 {
		f.t.Errorf("EXEC holds %d messages (%d deleted), want %d and none deleted", info.State.Msgs, info.State.NumDeleted, len(pcs))
	}
	execs := map[string]bool{}
	for _, pc := range pcs {
		m, err := st.GetLastMsgForSubject(ctx, kanade.SubjectCommandsPC+pc)
		if err != nil {
			f.t.Fatalf("%s: %v", pc, err)
		}
		var c kanade.Command
		if err := json.Unmarshal(m.Data, &c); err != nil {
			f.t.Fatalf("%s: %v", pc, err)
		}
		execs[c.ExecID] = true
	}
	if len(execs) != 1 {
		f.t.Errorf("EXEC holds commands of %d executions, want 1", len(execs))
	}
	if n := f.count(`SELECT COUNT(*) FROM executions`); n != 1 {
		f.t.Errorf("%d executions, want 1", n)
	}
}

// execAudits counts the exec audit events.
func (f *fleet) execAudits() int {
	n := 0
	for _, s := range f.audits() {
		if strings.HasPrefix(s, "audit.scheduler.exec.") {
			n++
		}
	}
	return n
}

var errKilled = errors.New("worker killed")

func TestAPerPCFiringRacedByTwoWorkersGoesOnce(t *testing.T) {
	t0 := utc(10, 12, 0, 0)
	f, pcs := perPCFleet(t, 50, t0)
	ws := []*Scheduler{f.worker(), f.worker()}
	smallChunks(ws...)
	f.tickAll(t0, ws...)
	f.onceEach(f.received(), pcs)
	// The next minutes fire nothing: the mark sets hold every PC.
	f.tickAll(t0.Add(time.Minute), ws...)
	f.tickAll(t0.Add(2*time.Minute), ws...)
	if got := f.received(); len(got) != 0 {
		t.Errorf("later minutes sent %d commands", len(got))
	}
	if n := f.execAudits(); n != 1 {
		t.Errorf("%d exec audit events, want 1", n)
	}
}

// A worker dies while it sends a per_pc firing: inside a chunk, after a
// chunk went out but before its cursor moved, or before the first chunk.
// Two workers started later race to finish it: the rest goes out, and no
// PC gets its command twice, neither at a subscriber nor in the stream.
func TestAPerPCFiringAWorkerDiedInIsFinishedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		// sent is how many of the dying chunk's PCs go out before the
		// worker dies (-1: all, and then it dies before moving the cursor).
		sent int
		at   int // the chunk it dies in
	}{
		{"inside a chunk", 3, 2},
		{"after a chunk, before the cursor moved", -1, 3},
		{"before the first chunk", 0, 0},
		{"inside the last full chunk", 1, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := utc(10, 12, 0, 0)
			f, pcs := perPCFleet(t, 50, t0)
			w := f.worker()
			smallChunks(w)
			chunk := 0
			real := w.publish
			w.publish = func(ctx context.Context, data []byte, subjects []string, msgID func(string) string, floor uint64) (uint64, error) {
				defer func() { chunk++ }()
				if chunk < tc.at {
					return real(ctx, data, subjects, msgID, floor)
				}
				if tc.sent < 0 {
					if _, err := real(ctx, data, subjects, msgID, floor); err != nil {
						return 0, err
					}
				} else if tc.sent > 0 {
					if _, err := real(ctx, data, subjects[:tc.sent], msgID, floor); err != nil {
						return 0, err
					}
				}
				return 0, errKilled
			}
			if err := w.tick(context.Background(), t0); !errors.Is(err, errKilled) {
				t.Fatalf("tick: %v, want the worker killed", err)
			}
			got := f.received()
			if len(got) >= len(pcs) {
				t.Fatalf("%d commands went out before the worker died", len(got))
			}
			// Within resumeAfter nobody takes the firing over.
			late := []*Scheduler{f.worker(), f.worker()}
			f.tickAll(t0.Add(20*time.Second), late...)
			if n := len(f.received()); n != 0 {
				t.Errorf("%d commands sent while the firing's worker may still be alive", n)
			}
			f.tickAll(t0.Add(time.Minute), late...)
			f.onceEach(append(got, f.received()...), pcs)
			if n := f.execAudits(); n != 1 {
				t.Errorf("%d exec audit events, want 1", n)
			}
			// Finished: nothing more at later minutes.
			f.tickAll(t0.Add(2*time.Minute), late...)
			if n := len(f.received()); n != 0 {
				t.Errorf("%d commands after the firing finished", n)
			}
		})
	}
}

// NATS restarts while a per_pc firing is being sent: the chunk whose
// acknowledgement was lost is checked against the stream once the firing
// is taken over, and every PC ends with its command once.
func TestAPerPCFiringSurvivesANATSRestart(t *testing.T) {
	t0 := utc(10, 12, 0, 0)
	f, pcs := perPCFleet(t, 50, t0)
	w := f.worker()
	smallChunks(w)
	chunk := 0
	real := w.publish
	restarted := false
	w.publish = func(ctx context.Context, data []byte, subjects []string, msgID func(string) string, floor uint64) (uint64, error) {
		defer func() { chunk++ }()
		if chunk == 3 {
			// Half the chunk reaches the old server; the rest is
			// published while the client reconnects (into its reconnect
			// buffer) and acknowledged by the new server.
			seq, err := real(ctx, data, subjects[:3], msgID, floor)
			if err != nil {
				return seq, err
			}
			restartNATS(t, f)
			restarted = true
			return real(ctx, data, subjects[3:], msgID, seq)
		}
		return real(ctx, data, subjects, msgID, floor)
	}
	err := w.tick(context.Background(), t0)
	if !restarted {
		t.Fatalf("the firing ended before the restart: %v", err)
	}
	t.Logf("the firing's tick: %v", err)
	waitFor(t, f.nats.NC.IsConnected, "the reconnect")
	// Whether the chunk was confirmed or left to be taken over, a minute
	// later every PC has its command once.
	f.tickAll(t0.Add(time.Minute), f.worker())
	f.onceEach(f.received(), pcs)
}

// restartNATS stops the fleet's server and starts one on the same address
// and store, as a NATS restart does; the clients reconnect by themselves.
func restartNATS(t *testing.T, f *fleet) {
	t.Helper()
	addr, dir := f.nats.Addr().String(), filepath.Dir(f.nats.StoreDir())
	f.nats.Shutdown()
	f.nats.WaitForShutdown()
	s, err := natsd.Start(natsd.Options{Listen: addr, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	f.nats.Server = s
}
