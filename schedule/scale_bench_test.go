package schedule

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// BenchmarkPerPCDispatch measures one per_pc reconcile that dispatches to
// every PC of a fleet (the first minute of a new per_pc schedule): the
// reads, one mark and one command per PC, the executions row.
func BenchmarkPerPCDispatch(b *testing.B) {
	for _, pcs := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("pcs=%d", pcs), func(b *testing.B) {
			f := newFleet(b)
			ctx := context.Background()
			f.put(kanade.BucketJobs, "inv", job)
			f.put(kanade.BucketSchedules, "each", `{"id":"each","when":{"per_pc":"once"},"job_id":"inv","target":{"all":true}}`)
			now := utc(10, 12, 0, 0)
			var hs []kanade.Heartbeat
			for i := range pcs {
				hs = append(hs, kanade.Heartbeat{PcID: fmt.Sprintf("PC-%06d", i), At: kanade.Timestamp{Time: now.Add(-time.Second)}, AgentVersion: "1"})
			}
			if err := f.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, hs) }); err != nil {
				b.Fatal(err)
			}
			w := f.worker()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Each iteration is a fresh minute past the dispatch window.
				at := now.Add(time.Duration(i) * time.Hour)
				if err := f.db.Update(ctx, func(tx *storage.Tx) error {
					for j := range hs {
						hs[j].At = kanade.Timestamp{Time: at.Add(-time.Second)}
					}
					return tx.UpsertHeartbeats(ctx, hs)
				}); err != nil {
					b.Fatal(err)
				}
				if err := w.tick(ctx, at); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/dispatch")
		})
	}
}
