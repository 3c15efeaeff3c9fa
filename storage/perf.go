package storage

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Performance samples (observe.md §1): the write path of the host and
// process samples, with the rollups of §1.5 kept in the same transaction.
//
// Exactly once in effect: the samples arrive over core NATS and may be
// re-published, so every insert is insert-or-ignore on the sample's own key
// (pc_id and instant; plus pid for processes) and the rollups grow only by
// the rows the insert RETURNed, that is the rows actually inserted. A
// duplicate, in the same batch or years later, adds nothing; the order in
// which samples arrive does not matter because every rollup is a sum, a
// count or a maximum.

// PerfMetrics are the host metrics the routes serve and the rollups keep, in
// column order. The only identifiers spliced into SQL come from this list.
var PerfMetrics = []string{
	"cpu_pct", "mem_used_bytes", "mem_total_bytes", "swap_used_bytes", "swap_total_bytes",
	"disk_read_bytes_per_sec", "disk_written_bytes_per_sec", "net_rx_bytes_per_sec", "net_tx_bytes_per_sec",
}

// Slot widths of the rollups: per PC and for the whole fleet, in seconds.
const (
	PCSlot    = 300
	FleetSlot = 60
)

// Retention of the samples (§1.5).
const (
	HostPerfRetention    = 30 * 24 * time.Hour
	ProcessPerfRetention = 7 * 24 * time.Hour
)

// metricIndex maps a column name of PerfMetrics to its position.
func metricIndex(m string) int {
	for i, c := range PerfMetrics {
		if c == m {
			return i
		}
	}
	return -1
}

// agg is the rollup of one metric: how many non-NULL values, their sum and
// their maximum (valid when n > 0).
type agg struct {
	n int64
	s float64
	x float64
}

func (a *agg) add(v *float64) {
	if v == nil {
		return
	}
	if a.n == 0 || *v > a.x {
		a.x = *v
	}
	a.n++
	a.s += *v
}

type rollup [9]agg

func (r *rollup) add(vals [9]*float64) {
	for i, v := range vals {
		r[i].add(v)
	}
}

// floorDiv is ⌊a / b⌋ for b > 0, also for negative a (years before 1970).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

func f64(v *int64) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

func hostValues(h *kanade.HostPerf) [9]*float64 {
	return [9]*float64{h.CPUPct, f64(h.MemUsedBytes), f64(h.MemTotalBytes), f64(h.SwapUsedBytes), f64(h.SwapTotalBytes),
		h.DiskReadBytesPerSec, h.DiskWrittenBytesPerSec, h.NetRxBytesPerSec, h.NetTxBytesPerSec}
}

// finite drops NaN and infinities (JSON cannot carry them, but a float
// rollup must never be poisoned by one).
func finite(v *float64) any {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	return *v
}

const hostCols = 13

type pcSlot struct {
	pc   string
	slot int64
}

// InsertHostPerf stores a batch of host samples (§1.4) and returns how many
// were new. A sample whose (pc_id, at) is already stored, or repeated in the
// batch, is ignored and adds nothing to the rollups.
func (tx *Tx) InsertHostPerf(ctx context.Context, batch []kanade.HostPerf) (int, error) {
	byKey := make(map[string]*kanade.HostPerf, len(batch))
	var rows []*kanade.HostPerf
	for i := range batch {
		h := &batch[i]
		k := h.PcID + "\x00" + kanade.FormatTime(h.At.Time)
		if _, dup := byKey[k]; dup {
			continue
		}
		byKey[k] = h
		rows = append(rows, h)
	}
	pcs := map[pcSlot]*rollup{}
	fleet := map[int64]*rollup{}
	inserted := 0
	per := maxVars / hostCols
	for len(rows) > 0 {
		n := min(len(rows), per)
		chunk := rows[:n]
		rows = rows[n:]
		args := make([]any, 0, n*hostCols)
		for _, h := range chunk {
			args = append(args, h.PcID, kanade.FormatTime(h.At.Time), h.At.Unix(), finite(h.CPUPct), h.CPUCount,
				h.MemUsedBytes, h.MemTotalBytes, h.SwapUsedBytes, h.SwapTotalBytes, finite(h.DiskReadBytesPerSec),
				finite(h.DiskWrittenBytesPerSec), finite(h.NetRxBytesPerSec), finite(h.NetTxBytesPerSec))
		}
		res, err := tx.tx.QueryContext(ctx, `INSERT INTO host_perf_samples
			(pc_id, at, at_unix, cpu_pct, cpu_count, mem_used_bytes, mem_total_bytes, swap_used_bytes, swap_total_bytes,
			 disk_read_bytes_per_sec, disk_written_bytes_per_sec, net_rx_bytes_per_sec, net_tx_bytes_per_sec)
			VALUES `+placeholders(n, hostCols)+` ON CONFLICT DO NOTHING RETURNING pc_id, at`, args...)
		if err != nil {
			return inserted, fmt.Errorf("insert %d host samples: %w", n, err)
		}
		for res.Next() {
			var pc, at string
			if err := res.Scan(&pc, &at); err != nil {
				res.Close()
				return inserted, fmt.Errorf("insert host samples: %w", err)
			}
			h := byKey[pc+"\x00"+at]
			if h == nil {
				res.Close()
				return inserted, fmt.Errorf("insert host samples: returned row %q %q not in the batch", pc, at)
			}
			inserted++
			vals := hostValues(h)
			for i, v := range vals {
				if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
					vals[i] = nil
				}
			}
			u := h.At.Unix()
			k := pcSlot{h.PcID, floorDiv(u, PCSlot) * PCSlot}
			if pcs[k] == nil {
				pcs[k] = &rollup{}
			}
			pcs[k].add(vals)
			fs := floorDiv(u, FleetSlot) * FleetSlot
			if fleet[fs] == nil {
				fleet[fs] = &rollup{}
			}
			fleet[fs].add(vals)
		}
		if err := res.Close(); err != nil {
			return inserted, fmt.Errorf("insert host samples: %w", err)
		}
	}
	if err := tx.addPCRollups(ctx, pcs); err != nil {
		return inserted, err
	}
	return inserted, tx.addFleetRollups(ctx, fleet)
}

// rollupSet is the ON CONFLICT clause adding excluded's aggregates to the
// stored ones (a NULL maximum means "no value yet").
var rollupSet = func() string {
	var b strings.Builder
	for i, m := range PerfMetrics {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%[1]s_n = %[1]s_n + excluded.%[1]s_n, %[1]s_s = %[1]s_s + excluded.%[1]s_s, "+
			"%[1]s_x = CASE WHEN %[1]s_x IS NULL THEN excluded.%[1]s_x WHEN excluded.%[1]s_x IS NULL THEN %[1]s_x "+
			"ELSE max(%[1]s_x, excluded.%[1]s_x) END", m)
	}
	return b.String()
}()

var rollupColumns = func() string {
	var parts []string
	for _, m := range PerfMetrics {
		parts = append(parts, m+"_n", m+"_s", m+"_x")
	}
	return strings.Join(parts, ", ")
}()

func rollupArgs(args []any, r *rollup) []any {
	for i := range r {
		var x any
		if r[i].n > 0 {
			x = r[i].x
		}
		args = append(args, r[i].n, r[i].s, x)
	}
	return args
}

func (tx *Tx) addPCRollups(ctx context.Context, m map[pcSlot]*rollup) error {
	const cols = 2 + 27
	keys := make([]pcSlot, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	per := maxVars / cols
	for len(keys) > 0 {
		n := min(len(keys), per)
		args := make([]any, 0, n*cols)
		for _, k := range keys[:n] {
			args = rollupArgs(append(args, k.pc, k.slot), m[k])
		}
		keys = keys[n:]
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO host_perf_5m (pc_id, slot, `+rollupColumns+`)
			VALUES `+placeholders(n, cols)+` ON CONFLICT (slot, pc_id) DO UPDATE SET `+rollupSet, args...); err != nil {
			return fmt.Errorf("add %d host rollups: %w", n, err)
		}
	}
	return nil
}

func (tx *Tx) addFleetRollups(ctx context.Context, m map[int64]*rollup) error {
	const cols = 1 + 27
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	per := maxVars / cols
	for len(keys) > 0 {
		n := min(len(keys), per)
		args := make([]any, 0, n*cols)
		for _, k := range keys[:n] {
			args = rollupArgs(append(args, k), m[k])
		}
		keys = keys[n:]
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO host_perf_fleet_1m (slot, `+rollupColumns+`)
			VALUES `+placeholders(n, cols)+` ON CONFLICT (slot) DO UPDATE SET `+rollupSet, args...); err != nil {
			return fmt.Errorf("add %d fleet rollups: %w", n, err)
		}
	}
	return nil
}

const processCols = 9

// InsertProcessPerf stores process ticks (§1.4): one multi-row insert per
// batch, insert-or-ignore on (pc_id, at, pid), so a re-published tick and a
// pid repeated inside one tick keep the first copy. Entries must have passed
// kanade.ProcessPerf.Validate. It returns the rows inserted.
func (tx *Tx) InsertProcessPerf(ctx context.Context, ticks []kanade.ProcessPerf) (int, error) {
	type row struct {
		t *kanade.ProcessPerf
		p *kanade.ProcessSample
	}
	var rows []row
	latest := map[string]time.Time{}
	for i := range ticks {
		t := &ticks[i]
		for j := range t.Processes {
			rows = append(rows, row{t, &t.Processes[j]})
		}
		if len(t.Processes) > 0 && t.At.After(latest[t.PcID]) {
			latest[t.PcID] = t.At.Time
		}
	}
	inserted := 0
	per := maxVars / processCols
	for len(rows) > 0 {
		n := min(len(rows), per)
		args := make([]any, 0, n*processCols)
		for _, r := range rows[:n] {
			args = append(args, r.t.PcID, kanade.FormatTime(r.t.At.Time), r.t.At.Unix(), *r.p.PID, *r.p.Name,
				finiteOr0(r.p.CPUPct), *r.p.RSSBytes, finite(r.p.DiskReadBytesPerSec), finite(r.p.DiskWrittenBytesPerSec))
		}
		rows = rows[n:]
		res, err := tx.tx.ExecContext(ctx, `INSERT INTO process_perf_samples
			(pc_id, at, at_unix, pid, name, cpu_pct, rss_bytes, disk_read_bytes_per_sec, disk_written_bytes_per_sec)
			VALUES `+placeholders(n, processCols)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return inserted, fmt.Errorf("insert %d process samples: %w", n, err)
		}
		c, _ := res.RowsAffected()
		inserted += int(c)
	}
	for pc, at := range latest {
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO process_perf_latest (pc_id, latest_at) VALUES (?, ?)
			ON CONFLICT (pc_id) DO UPDATE SET latest_at = max(latest_at, excluded.latest_at)`,
			pc, kanade.FormatTime(at)); err != nil {
			return inserted, fmt.Errorf("record latest process sample of %s: %w", pc, err)
		}
	}
	return inserted, nil
}

func finiteOr0(v *float64) any {
	if f := finite(v); f != nil {
		return f
	}
	return 0.0
}

// DeleteOldHostPerf deletes at most limit host samples older than cutoff,
// and the rollup slots that end at or before it (a slot straddling the
// cutoff is kept until it ends). It returns the raw rows deleted.
func (tx *Tx) DeleteOldHostPerf(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM host_perf_samples WHERE (pc_id, at) IN
		(SELECT pc_id, at FROM host_perf_samples WHERE at < ? ORDER BY at LIMIT ?)`, kanade.FormatTime(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("delete old host samples: %w", err)
	}
	n, _ := res.RowsAffected()
	cu := cutoff.Unix()
	res, err = tx.tx.ExecContext(ctx, `DELETE FROM host_perf_5m WHERE (slot, pc_id) IN
		(SELECT slot, pc_id FROM host_perf_5m WHERE slot <= ? ORDER BY slot LIMIT ?)`, cu-PCSlot, limit)
	if err != nil {
		return n, fmt.Errorf("delete old host rollups: %w", err)
	}
	r, _ := res.RowsAffected()
	res, err = tx.tx.ExecContext(ctx, `DELETE FROM host_perf_fleet_1m WHERE slot IN
		(SELECT slot FROM host_perf_fleet_1m WHERE slot <= ? ORDER BY slot LIMIT ?)`, cu-FleetSlot, limit)
	if err != nil {
		return n, fmt.Errorf("delete old fleet rollups: %w", err)
	}
	f, _ := res.RowsAffected()
	// The caller repeats while a call reports a full batch: the largest of
	// the three says whether any table may hold more.
	return max(n, r, f), nil
}

// DeleteOldProcessPerf deletes at most limit process samples older than
// cutoff, and the latest-tick rows of PCs with nothing newer.
func (tx *Tx) DeleteOldProcessPerf(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	c := kanade.FormatTime(cutoff)
	res, err := tx.tx.ExecContext(ctx, `DELETE FROM process_perf_samples WHERE (pc_id, at, pid) IN
		(SELECT pc_id, at, pid FROM process_perf_samples WHERE at < ? ORDER BY at LIMIT ?)`, c, limit)
	if err != nil {
		return 0, fmt.Errorf("delete old process samples: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.tx.ExecContext(ctx, `DELETE FROM process_perf_latest WHERE pc_id IN
		(SELECT pc_id FROM process_perf_latest WHERE latest_at < ? ORDER BY latest_at LIMIT ?)`, c, limit); err != nil {
		return n, fmt.Errorf("delete old latest process ticks: %w", err)
	}
	return n, nil
}
