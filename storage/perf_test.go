package storage_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

func fp(v float64) *float64 { return &v }
func ip(v int64) *int64     { return &v }

// randomSamples makes n host samples of a few PCs over a few hours, every
// metric NULL now and then.
func randomSamples(r *rand.Rand, base time.Time, n int) []kanade.HostPerf {
	out := make([]kanade.HostPerf, n)
	for i := range out {
		h := kanade.HostPerf{PcID: []string{"PC-1", "PC-2", "PC-3"}[r.IntN(3)],
			At: kanade.Timestamp{Time: base.Add(time.Duration(r.Int64N(int64(4 * time.Hour))))}}
		maybe := func() *float64 {
			if r.IntN(5) == 0 {
				return nil
			}
			return fp(r.Float64() * 100)
		}
		maybeI := func() *int64 {
			if r.IntN(5) == 0 {
				return nil
			}
			return ip(r.Int64N(16e9))
		}
		h.CPUPct, h.MemUsedBytes, h.MemTotalBytes, h.SwapUsedBytes = maybe(), maybeI(), maybeI(), maybeI()
		h.DiskReadBytesPerSec, h.NetTxBytesPerSec = maybe(), maybe()
		out[i] = h
	}
	return out
}

func values(h kanade.HostPerf) [9]*float64 {
	f := func(v *int64) *float64 {
		if v == nil {
			return nil
		}
		x := float64(*v)
		return &x
	}
	return [9]*float64{h.CPUPct, f(h.MemUsedBytes), f(h.MemTotalBytes), f(h.SwapUsedBytes), f(h.SwapTotalBytes),
		h.DiskReadBytesPerSec, h.DiskWrittenBytesPerSec, h.NetRxBytesPerSec, h.NetTxBytesPerSec}
}

func floorTo(t time.Time, step int64) int64 {
	u := t.Unix()
	return (u - ((u%step)+step)%step)
}

func close9(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*b))
}

// TestPerfSeriesEqualRawDefinition checks the rollup-backed answers against
// a brute-force reading of the samples, for steps that use the rollups and
// steps that cannot, windows with partial slots at both edges, samples
// inserted out of order, in batches, and every one of them twice.
func TestPerfSeriesEqualRawDefinition(t *testing.T) {
	storagetest.AnswersOnly(t)
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 6, 20, 0, 0, 0, 0, time.UTC)
	samples := randomSamples(r, base, 3000)
	// Insert in shuffled batches, then every sample again (redelivery).
	all := append(append([]kanade.HostPerf{}, samples...), samples...)
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for len(all) > 0 {
		n := min(len(all), 1+r.IntN(700))
		if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.InsertHostPerf(ctx, all[:n]); return err }); err != nil {
			t.Fatal(err)
		}
		all = all[n:]
	}
	uniq := map[string]kanade.HostPerf{}
	for _, s := range samples {
		uniq[s.PcID+kanade.FormatTime(s.At.Time)] = s
	}
	for round := range 40 {
		from := base.Add(time.Duration(r.Int64N(int64(3 * time.Hour)))).Add(time.Duration(r.IntN(1000)) * time.Millisecond)
		to := from.Add(time.Duration(1 + r.Int64N(int64(2*time.Hour))))
		step := []int64{60, 300, 900, 90, 3600, 7}[round%6]
		pc := []string{"PC-1", "PC-2", "PC-3"}[round%3]
		// Brute force.
		type acc struct {
			n [9]int64
			s [9]float64
			x [9]float64
		}
		per, fleet := map[int64]*acc{}, map[int64]*acc{}
		for _, s := range uniq {
			if s.At.Before(from) || !s.At.Before(to) {
				continue
			}
			b := floorTo(s.At.Time, step)
			for _, m := range []struct {
				m  map[int64]*acc
				ok bool
			}{{per, s.PcID == pc}, {fleet, true}} {
				if !m.ok {
					continue
				}
				a := m.m[b]
				if a == nil {
					a = &acc{}
					m.m[b] = a
				}
				for i, v := range values(s) {
					if v != nil {
						if a.n[i] == 0 || *v > a.x[i] {
							a.x[i] = *v
						}
						a.n[i]++
						a.s[i] += *v
					}
				}
			}
		}
		got, err := db.HostSeries(ctx, pc, from, to, step)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(per) {
			t.Fatalf("round %d step %d: %d points, want %d", round, step, len(got), len(per))
		}
		for _, p := range got {
			a := per[p.At.Unix()]
			if a == nil {
				t.Fatalf("round %d: unexpected bucket %v", round, p.At)
			}
			for i, dst := range p.Metrics() {
				var want *float64
				if a.n[i] > 0 {
					want = fp(a.s[i] / float64(a.n[i]))
				}
				if !close9(*dst, want) {
					t.Fatalf("round %d step %d bucket %v metric %s: got %v want %v", round, step, p.At, storage.PerfMetrics[i], deref(*dst), deref(want))
				}
			}
		}
		for _, maxAgg := range []bool{false, true} {
			gotF, err := db.FleetSeries(ctx, "mem_used_bytes", maxAgg, from, to, step)
			if err != nil {
				t.Fatal(err)
			}
			if len(gotF) != len(fleet) {
				t.Fatalf("round %d fleet: %d points, want %d", round, len(gotF), len(fleet))
			}
			for _, p := range gotF {
				a := fleet[p.At.Unix()]
				var want *float64
				if a.n[1] > 0 {
					want = fp(a.s[1] / float64(a.n[1]))
					if maxAgg {
						want = fp(a.x[1])
					}
				}
				if !close9(p.Value, want) {
					t.Fatalf("round %d fleet max=%v bucket %v: got %v want %v", round, maxAgg, p.At, deref(p.Value), deref(want))
				}
			}
		}
		// Top: at > cutoff, no upper bound.
		cutoff := from
		sum, n := map[string]float64{}, map[string]int64{}
		for _, s := range uniq {
			if s.At.After(cutoff) && s.CPUPct != nil {
				sum[s.PcID] += *s.CPUPct
				n[s.PcID]++
			}
		}
		var want []kanade.TopPerfRow
		for pc, c := range n {
			want = append(want, kanade.TopPerfRow{PcID: pc, Value: sum[pc] / float64(c)})
		}
		sort.Slice(want, func(i, j int) bool {
			if want[i].Value != want[j].Value {
				return want[i].Value > want[j].Value
			}
			return want[i].PcID < want[j].PcID
		})
		want = want[:min(2, len(want))]
		top, err := db.TopPCs(ctx, "cpu_pct", cutoff, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(top) != len(want) {
			t.Fatalf("round %d top: %+v, want %+v", round, top, want)
		}
		for i := range top {
			if top[i].PcID != want[i].PcID || !close9(&top[i].Value, &want[i].Value) {
				t.Fatalf("round %d top: %+v, want %+v", round, top, want)
			}
		}
	}
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// TestHostPerfDuplicateKeepsFirst: a re-published sample with other values
// changes neither the raw row nor the rollups.
func TestHostPerfDuplicateKeepsFirst(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	at := time.Date(2026, 6, 20, 1, 0, 0, 0, time.UTC)
	first := kanade.HostPerf{PcID: "PC-1", At: kanade.Timestamp{Time: at}, CPUPct: fp(10)}
	again := kanade.HostPerf{PcID: "PC-1", At: kanade.Timestamp{Time: at}, CPUPct: fp(90)}
	var n1, n2 int
	if err := db.Update(ctx, func(tx *storage.Tx) (err error) {
		n1, err = tx.InsertHostPerf(ctx, []kanade.HostPerf{first, again})
		return
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *storage.Tx) (err error) { n2, err = tx.InsertHostPerf(ctx, []kanade.HostPerf{again}); return }); err != nil {
		t.Fatal(err)
	}
	if n1 != 1 || n2 != 0 {
		t.Fatalf("inserted %d then %d, want 1 then 0", n1, n2)
	}
	for _, step := range []int64{300, 60} { // rollups and raw
		pts, err := db.HostSeries(ctx, "PC-1", at.Add(-time.Hour), at.Add(time.Hour), step)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 1 || pts[0].CPUPct == nil || *pts[0].CPUPct != 10 {
			t.Fatalf("step %d: %+v, want one point with cpu 10", step, pts)
		}
	}
	f, err := db.FleetSeries(ctx, "cpu_pct", true, at.Add(-time.Hour), at.Add(time.Hour), 300)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 1 || *f[0].Value != 10 {
		t.Fatalf("fleet max %+v, want 10", f)
	}
	// An all-NULL sample is a point with every metric null.
	gap := kanade.HostPerf{PcID: "PC-2", At: kanade.Timestamp{Time: at}}
	if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.InsertHostPerf(ctx, []kanade.HostPerf{gap}); return err }); err != nil {
		t.Fatal(err)
	}
	pts, err := db.HostSeries(ctx, "PC-2", at.Add(-time.Hour), at.Add(time.Hour), 300)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].CPUPct != nil || pts[0].MemUsedBytes != nil {
		t.Fatalf("all-NULL sample: %+v, want one point of nulls", pts)
	}
}

func TestHostPerfRetention(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	now := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	var batch []kanade.HostPerf
	for d := range 40 {
		batch = append(batch, kanade.HostPerf{PcID: "PC-1", At: kanade.Timestamp{Time: now.Add(-time.Duration(d) * 24 * time.Hour)}, CPUPct: fp(1)})
	}
	if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.InsertHostPerf(ctx, batch); return err }); err != nil {
		t.Fatal(err)
	}
	for {
		var n int64
		if err := db.Update(ctx, func(tx *storage.Tx) (err error) {
			n, err = tx.DeleteOldHostPerf(ctx, now.Add(-storage.HostPerfRetention), 3)
			return
		}); err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			break
		}
	}
	for _, step := range []int64{300, 60} {
		pts, err := db.HostSeries(ctx, "PC-1", now.Add(-50*24*time.Hour), now.Add(time.Hour), step*100)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != 31 { // days 0..30 (day 30 is exactly at the cutoff and kept)
			t.Fatalf("step %d: %d points after retention, want 31", step, len(pts))
		}
	}
}

// TestTopPCsAtSlotEdges holds /api/perf/top's reading (the rollups of the
// slots after the cutoff, each PC's raw samples between the cutoff and the
// next slot) to a brute-force average of the samples after the cutoff,
// with cutoffs on a slot boundary, a second either side of one, between
// seconds and on a sample's own instant (excluded: the bound is
// exclusive), PCs whose only samples lie in the edge, a metric NULL for
// some PCs' edges, samples inserted out of order and every one twice.
func TestTopPCsAtSlotEdges(t *testing.T) {
	ctx := context.Background()
	db := storagetest.Open(t, nil)
	r := rand.New(rand.NewPCG(15, 3))
	base := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC) // a slot boundary
	var samples []kanade.HostPerf
	seen := map[string]bool{}
	for p := range 12 {
		pc := "PC-" + string(rune('A'+p))
		for range 40 {
			// Within 25 minutes of base, many on or next to slot edges.
			off := time.Duration(r.IntN(5)*300+[]int{0, 1, 299, r.IntN(300)}[r.IntN(4)]) * time.Second
			h := kanade.HostPerf{PcID: pc, At: kanade.Timestamp{Time: base.Add(off + time.Duration(r.IntN(3))*time.Millisecond)}}
			if p%4 != 0 || r.IntN(2) == 0 {
				h.CPUPct = fp(math.Round(r.Float64()*1000) / 10)
			}
			if r.IntN(3) > 0 {
				h.DiskReadBytesPerSec = fp(float64(r.IntN(1 << 20)))
			}
			if seen[pc+kanade.FormatTime(h.At.Time)] {
				continue // one sample per instant: which copy of two differing ones is kept is not the point here
			}
			seen[pc+kanade.FormatTime(h.At.Time)] = true
			samples = append(samples, h)
		}
	}
	// A PC that only sends in the first slot after base, and one sample on
	// base itself.
	samples = append(samples, kanade.HostPerf{PcID: "PC-edge", At: kanade.Timestamp{Time: base.Add(301 * time.Second)}, CPUPct: fp(99)},
		kanade.HostPerf{PcID: "PC-edge", At: kanade.Timestamp{Time: base.Add(302 * time.Second)}, CPUPct: fp(97)})
	all := append(append([]kanade.HostPerf{}, samples...), samples...)
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for len(all) > 0 {
		n := min(len(all), 1+r.IntN(90))
		if err := db.Update(ctx, func(tx *storage.Tx) error { _, err := tx.InsertHostPerf(ctx, all[:n]); return err }); err != nil {
			t.Fatal(err)
		}
		all = all[n:]
	}
	cutoffs := []time.Time{base.Add(-time.Second), base, base.Add(time.Second), base.Add(299 * time.Second),
		base.Add(300 * time.Second), base.Add(301 * time.Second), base.Add(301*time.Second + time.Millisecond),
		base.Add(450*time.Second + 500*time.Millisecond), base.Add(1199 * time.Second), base.Add(2 * time.Hour)}
	for _, s := range samples[:20] {
		cutoffs = append(cutoffs, s.At.Time)
	}
	for _, cutoff := range cutoffs {
		for mi, metric := range []string{"cpu_pct", "disk_read_bytes_per_sec"} {
			sum, n := map[string]float64{}, map[string]int64{}
			for _, s := range samples {
				v := []*float64{s.CPUPct, s.DiskReadBytesPerSec}[mi]
				if s.At.After(cutoff) && v != nil {
					sum[s.PcID] += *v
					n[s.PcID]++
				}
			}
			want := []kanade.TopPerfRow{}
			for pc, c := range n {
				want = append(want, kanade.TopPerfRow{PcID: pc, Value: sum[pc] / float64(c)})
			}
			sort.Slice(want, func(i, j int) bool {
				if want[i].Value != want[j].Value {
					return want[i].Value > want[j].Value
				}
				return want[i].PcID < want[j].PcID
			})
			got, err := db.TopPCs(ctx, metric, cutoff, 50)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("cutoff %v %s: %d rows, want %d\ngot  %+v\nwant %+v", cutoff, metric, len(got), len(want), got, want)
			}
			for i := range got {
				if got[i].PcID != want[i].PcID || !close9(&got[i].Value, &want[i].Value) {
					t.Fatalf("cutoff %v %s row %d: %+v, want %+v", cutoff, metric, i, got[i], want[i])
				}
			}
		}
	}
}

// TestPerfEdgeReadsAreOneIndexRange holds the fleet-wide reads of raw
// samples (top-N's edge and the fleet series' edges) to one range of the
// covering index on at: a plan that looks rows up in the table pays one
// seek per sample of the whole fleet's edge (migration 0018).
func TestPerfEdgeReadsAreOneIndexRange(t *testing.T) {
	db := storagetest.Open(t, nil)
	if db.Remote() {
		t.Skip("query plans are checked on SQLite")
	}
	for _, metric := range []string{"cpu_pct", "net_tx_bytes_per_sec"} {
		plans, err := storage.PerfQueryPlansForTest(context.Background(), db, metric)
		if err != nil {
			t.Fatal(err)
		}
		for name, details := range plans {
			found := false
			for _, d := range details {
				if strings.Contains(d, "host_perf_samples") {
					found = true
					if !strings.Contains(d, "USING COVERING INDEX host_perf_samples_by_at (at>? AND at<?)") {
						t.Errorf("%s %s: raw samples read as %q (plan %q)", metric, name, d, details)
					}
				}
				if strings.HasPrefix(d, "SCAN host_perf") {
					t.Errorf("%s %s: plan scans a table: %q", metric, name, d)
				}
			}
			if !found {
				t.Errorf("%s %s: plan never reads host_perf_samples: %q", metric, name, details)
			}
		}
	}
}
