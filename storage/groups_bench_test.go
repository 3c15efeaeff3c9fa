//go:build unix

package storage_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkHeartbeatsWithGroups measures what the group_minutes triggers
// add to the projection's heartbeat flush: one op upserts a beat of every
// one of 20k agents, each beat in a new minute (the case the triggers act
// on; a beat in the same minute skips them), with the agents in no group
// (the baseline) and in 1–2 of 10 groups each. It reports the process's
// CPU time per op besides the wall time, and the ratio of CPU times: on a
// shared machine the wall time measures the neighbours as much as the
// triggers.
func BenchmarkHeartbeatsWithGroups(b *testing.B) {
	const agents = 20_000
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	beats := func(at time.Time) []kanade.Heartbeat {
		out := make([]kanade.Heartbeat, agents)
		for i := range out {
			out[i] = kanade.Heartbeat{PcID: fmt.Sprintf("PC-%06d", i), At: kanade.Timestamp{Time: at}, AgentVersion: "1"}
		}
		return out
	}
	var cpuPerOp [2]time.Duration
	for i, grouped := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-groups", true: "grouped"}[grouped], func(b *testing.B) {
			ctx := b.Context()
			db := storagetest.Open(b, nil)
			if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, beats(base)) }); err != nil {
				b.Fatal(err)
			}
			if grouped {
				if err := db.SyncGroups(ctx, base, agents, benchMemberships(agents)); err != nil {
					b.Fatal(err)
				}
			}
			minute := 0
			cpu0 := cpuTime(b)
			for b.Loop() {
				minute++
				batch := beats(base.Add(time.Duration(minute) * time.Minute))
				if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, batch) }); err != nil {
					b.Fatal(err)
				}
			}
			cpuPerOp[i] = (cpuTime(b) - cpu0) / time.Duration(max(minute, 1))
			b.ReportMetric(float64(cpuPerOp[i].Nanoseconds()), "cpu-ns/op")
			if grouped && cpuPerOp[0] > 0 {
				b.ReportMetric(float64(cpuPerOp[1])/float64(cpuPerOp[0]), "cpu-x-no-groups")
			}
		})
	}
}

// benchMemberships puts PC i in group i%10 and every other PC in a second
// group too: 1.5 memberships per PC over 10 groups.
func benchMemberships(n int) []storage.Membership {
	out := make([]storage.Membership, n)
	for i := range out {
		gs := []string{fmt.Sprintf("group-%02d", i%10)}
		if i%2 == 0 {
			gs = append(gs, fmt.Sprintf("group-%02d", (i/2+3)%10))
		}
		out[i] = storage.Membership{PCID: fmt.Sprintf("PC-%06d", i), Groups: kanade.NormalizeGroups(gs), Revision: uint64(i + 1)}
	}
	return out
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
