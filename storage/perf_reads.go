package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The read side of the performance samples (observe.md §1.6–§1.11). Each
// series takes the 5-minute (per PC) or 1-minute (fleet) rollups for every
// slot that lies whole inside [from, to) when the step is a multiple of the
// slot, and the raw rows for the partial slots at the edges; any other step
// reads raw rows. Either way the answer is the raw definition: per bucket,
// the AVG (or MAX) of the non-NULL values. Buckets are aligned to the Unix
// epoch: bucket = ⌊unix(at) / step⌋ × step.

// sums accumulates, per bucket, the count, sum and max of each metric.
type sums map[int64]*rollup

func (s sums) get(b int64) *rollup {
	r := s[b]
	if r == nil {
		r = &rollup{}
		s[b] = r
	}
	return r
}

// merge folds (n, sum, max) of metric i into bucket b.
func (s sums) merge(b int64, i int, n int64, sum float64, mx *float64) {
	if n == 0 {
		// A bucket with samples but no value of this metric still exists.
		s.get(b)
		return
	}
	a := &s.get(b)[i]
	if mx != nil && (a.n == 0 || *mx > a.x) {
		a.x = *mx
	}
	a.n += n
	a.s += sum
}

// window splits [from, to) into the slots of width g lying whole inside it
// ([lo, hi), as Unix seconds; lo >= hi when there are none) and the raw
// edges around them.
func window(from, to time.Time, g int64) (lo, hi int64) {
	fs := from.Unix()
	if from.Nanosecond() > 0 {
		fs++
	}
	return ceilDiv(fs, g) * g, floorDiv(to.Unix(), g) * g
}

// bucketExpr is ⌊col / step⌋ × step in SQL for a bound step, right for
// negative values too (SQLite's integer division truncates toward zero).
func bucketExpr(col string) string {
	return "(" + col + " - (((" + col + " % ?) + ?) % ?))"
}

func unixText(sec int64) string { return kanade.FormatTime(time.Unix(sec, 0)) }

// HostSeries is the per-PC series of §1.6: one point per bucket holding at
// least one sample, ascending. Only counts and sums are read (the route
// serves averages), through statements prepared once.
func (db *DB) HostSeries(ctx context.Context, pcID string, from, to time.Time, step int64) ([]kanade.PerfPoint, error) {
	acc := sums{}
	addRaw := func(lo, hi string) error {
		rows, err := db.cached(ctx, hostRawQuery, step, step, step, pcID, lo, hi)
		if err != nil {
			return fmt.Errorf("host series: %w", err)
		}
		return scanSums(rows, acc)
	}
	lo, hi := window(from, to, PCSlot)
	if step%PCSlot != 0 || lo >= hi {
		if err := addRaw(kanade.FormatTime(from), kanade.FormatTime(to)); err != nil {
			return nil, err
		}
	} else {
		// One statement (one round trip to a libSQL server): a row per
		// whole slot and a row per raw sample of the two partial edges,
		// keyed by slot or at_unix and folded into buckets here, with no
		// GROUP BY over 18 columns in SQL.
		rows, err := db.cached(ctx, hostSlotQuery, pcID, lo, hi,
			pcID, kanade.FormatTime(from), unixText(lo), pcID, unixText(hi), kanade.FormatTime(to))
		if err != nil {
			return nil, fmt.Errorf("host series: %w", err)
		}
		if err := scanSlots(rows, acc, step); err != nil {
			return nil, err
		}
	}
	out := make([]kanade.PerfPoint, 0, len(acc))
	for _, b := range sortedBuckets(acc) {
		p := kanade.PerfPoint{At: kanade.Timestamp{Time: time.Unix(b, 0).UTC()}}
		r := acc[b]
		for i, dst := range p.Metrics() {
			if r[i].n > 0 {
				v := r[i].s / float64(r[i].n)
				*dst = &v
			}
		}
		out = append(out, p)
	}
	return out, nil
}

var hostRawQuery, hostSlotQuery = func() (string, string) {
	var raw, slot, one []string
	for _, m := range PerfMetrics {
		raw = append(raw, "COUNT("+m+")", "TOTAL("+m+")")
		slot = append(slot, m+"_n", m+"_s")
		one = append(one, m+" IS NOT NULL", "COALESCE("+m+", 0.0)")
	}
	edge := `SELECT at_unix, ` + strings.Join(one, ", ") + ` FROM host_perf_samples WHERE pc_id = ? AND at >= ? AND at < ?`
	return `SELECT ` + bucketExpr("at_unix") + ` AS b, ` + strings.Join(raw, ", ") + `
			FROM host_perf_samples WHERE pc_id = ? AND at >= ? AND at < ? GROUP BY b`,
		`SELECT slot, ` + strings.Join(slot, ", ") + ` FROM host_perf_5m WHERE pc_id = ? AND slot >= ? AND slot < ?
		UNION ALL ` + edge + ` UNION ALL ` + edge
}()

// scanSums reads rows of (bucket, then count and sum per metric) into acc.
func scanSums(rows *sql.Rows, acc sums) error {
	return scanCounts(rows, func(b int64) int64 { return b }, acc)
}

// scanSlots reads rows of (slot or at_unix, then count and sum per metric)
// into the buckets of step (a multiple of the slot). A rollup row exists
// only for a slot that had a sample, and a raw row is a sample, so even an
// all-NULL one marks its bucket.
func scanSlots(rows *sql.Rows, acc sums, step int64) error {
	return scanCounts(rows, func(slot int64) int64 { return floorDiv(slot, step) * step }, acc)
}

func scanCounts(rows *sql.Rows, bucket func(int64) int64, acc sums) error {
	defer rows.Close()
	var key int64
	var ns [9]int64
	var ss [9]float64
	dst := []any{&key}
	for i := range 9 {
		dst = append(dst, &ns[i], &ss[i])
	}
	for rows.Next() {
		if err := rows.Scan(dst...); err != nil {
			return fmt.Errorf("scan series: %w", err)
		}
		b := bucket(key)
		for i := range 9 {
			acc.merge(b, i, ns[i], ss[i], nil)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan series: %w", err)
	}
	return nil
}

func sortedBuckets[V any](m map[int64]V) []int64 {
	out := make([]int64, 0, len(m))
	for b := range m {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// MaxRawFleetWindow bounds the window of a fleet series whose step is not a
// multiple of FleetSlot: such a series reads raw rows of every PC, so its
// window is kept to what a request may scan (6 h at 1 000 PCs is 360 000
// rows).
const MaxRawFleetWindow = 6 * time.Hour

// FleetSeries is §1.7: per bucket the AVG or MAX (max true) of metric over
// every sample of every PC. metric must be one of PerfMetrics.
func (db *DB) FleetSeries(ctx context.Context, metric string, maxAgg bool, from, to time.Time, step int64) ([]kanade.FleetPoint, error) {
	i := metricIndex(metric)
	if i < 0 {
		return nil, fmt.Errorf("fleet series: unknown metric %q", metric)
	}
	acc := map[int64]*agg{}
	read := func(q string, args ...any) error {
		rows, err := db.read.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("fleet series: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var b int64
			var n sql.NullInt64
			var s float64
			var x sql.NullFloat64
			if err := rows.Scan(&b, &n, &s, &x); err != nil {
				return fmt.Errorf("fleet series: %w", err)
			}
			a := acc[b]
			if a == nil {
				a = &agg{}
				acc[b] = a
			}
			if n.Int64 > 0 {
				if x.Valid && (a.n == 0 || x.Float64 > a.x) {
					a.x = x.Float64
				}
				a.n += n.Int64
				a.s += s
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("fleet series: %w", err)
		}
		return nil
	}
	raw := func(lo, hi string) error {
		return read(fleetRawSQL(metric), step, step, step, lo, hi)
	}
	lo, hi := window(from, to, FleetSlot)
	if step%FleetSlot != 0 || lo >= hi {
		if err := raw(kanade.FormatTime(from), kanade.FormatTime(to)); err != nil {
			return nil, err
		}
	} else {
		err := read(`SELECT `+bucketExpr("slot")+` AS b, SUM(`+metric+`_n), TOTAL(`+metric+`_s), MAX(`+metric+`_x)
			FROM host_perf_fleet_1m WHERE slot >= ? AND slot < ? GROUP BY b`, step, step, step, lo, hi)
		if err != nil {
			return nil, err
		}
		if err := raw(kanade.FormatTime(from), unixText(lo)); err != nil {
			return nil, err
		}
		if err := raw(unixText(hi), kanade.FormatTime(to)); err != nil {
			return nil, err
		}
	}
	out := make([]kanade.FleetPoint, 0, len(acc))
	for _, b := range sortedBuckets(acc) {
		p := kanade.FleetPoint{At: kanade.Timestamp{Time: time.Unix(b, 0).UTC()}}
		if a := acc[b]; a.n > 0 {
			v := a.s / float64(a.n)
			if maxAgg {
				v = a.x
			}
			p.Value = &v
		}
		out = append(out, p)
	}
	return out, nil
}

// TopPCs is §1.8: per PC the AVG of metric over samples with at > cutoff
// (no upper bound), PCs without a value left out, highest first (ties by
// pc_id), at most limit. The slots that begin after cutoff come from the
// per-PC rollups, the rest of the window (cutoff to the next slot) from raw
// rows.
//
// The raw edge (cutoff to the first whole slot, at most one slot of the
// whole fleet) is one range of the covering index on at (migration 0018):
// every sample in it is in the slot holding cutoff, so no PC outside that
// slot's rollup can appear, and the range needs no join. Before that index,
// the edge cost one seek per PC (or one table lookup per row) and was two
// thirds of the route's time at 1 000 PCs.
func (db *DB) TopPCs(ctx context.Context, metric string, cutoff time.Time, limit int) ([]kanade.TopPerfRow, error) {
	if metricIndex(metric) < 0 {
		return nil, fmt.Errorf("top: unknown metric %q", metric)
	}
	// The first slot whose every instant is after cutoff, and the one
	// holding cutoff.
	first := ceilDiv(cutoff.Unix()+1, PCSlot) * PCSlot
	rows, err := db.read.QueryContext(ctx, topPCsSQL(metric), first, kanade.FormatTime(cutoff), unixText(first), limit)
	if err != nil {
		return nil, fmt.Errorf("top: %w", err)
	}
	defer rows.Close()
	out := []kanade.TopPerfRow{}
	for rows.Next() {
		var r kanade.TopPerfRow
		if err := rows.Scan(&r.PcID, &r.Hostname, &r.Value); err != nil {
			return nil, fmt.Errorf("top: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("top: %w", err)
	}
	return out, nil
}

// fleetRawSQL is FleetSeries' read of raw samples (the edges of a window
// the fleet rollup does not cover, or all of it for a step the rollup cannot
// serve): arguments step three times, from, to. It is one range of the
// covering index on at (migration 0018).
func fleetRawSQL(metric string) string {
	return `SELECT ` + bucketExpr("at_unix") + ` AS b, COUNT(` + metric + `), TOTAL(` + metric + `), MAX(` + metric + `)
			FROM host_perf_samples WHERE at >= ? AND at < ? GROUP BY b`
}

// topPCsSQL is TopPCs' statement for metric (one of the rollup's columns):
// arguments first whole slot, cutoff, the first slot's instant, limit.
func topPCsSQL(metric string) string {
	return `WITH v (pc_id, n, s) AS (
			SELECT pc_id, ` + metric + `_n, ` + metric + `_s FROM host_perf_5m WHERE slot >= ?
			UNION ALL
			SELECT pc_id, 1, ` + metric + ` FROM host_perf_samples
			WHERE at > ? AND at < ? AND ` + metric + ` IS NOT NULL),
		t (pc_id, value) AS (SELECT pc_id, TOTAL(s) / SUM(n) FROM v GROUP BY pc_id HAVING SUM(n) > 0
			ORDER BY 2 DESC, 1 LIMIT ?)
		SELECT t.pc_id, a.hostname, t.value FROM t LEFT JOIN agents a ON a.pc_id = t.pc_id ORDER BY t.value DESC, t.pc_id`
}

// ActiveInvestigations is §1.9: PCs with a process sample after cutoff,
// newest first (ties by pc_id).
func (db *DB) ActiveInvestigations(ctx context.Context, cutoff time.Time) ([]kanade.InvestigationRow, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT l.pc_id, a.hostname, l.latest_at FROM process_perf_latest l
		LEFT JOIN agents a ON a.pc_id = l.pc_id WHERE l.latest_at > ? ORDER BY l.latest_at DESC, l.pc_id`,
		kanade.FormatTime(cutoff))
	if err != nil {
		return nil, fmt.Errorf("active investigations: %w", err)
	}
	defer rows.Close()
	out := []kanade.InvestigationRow{}
	for rows.Next() {
		var r kanade.InvestigationRow
		var at string
		if err := rows.Scan(&r.PcID, &r.Hostname, &at); err != nil {
			return nil, fmt.Errorf("active investigations: %w", err)
		}
		t, err := kanade.ParseTime(at)
		if err != nil {
			return nil, fmt.Errorf("active investigations: %w", err)
		}
		r.LatestAt = kanade.Timestamp{Time: t}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("active investigations: %w", err)
	}
	return out, nil
}

// LatestProcesses is §1.10: the newest tick stored for the PC, ordered by
// cpu_pct descending (ties by pid); nil latest when there is none.
func (db *DB) LatestProcesses(ctx context.Context, pcID string) (*time.Time, []kanade.ProcessRow, error) {
	var at sql.NullString
	if err := db.read.QueryRowContext(ctx, `SELECT MAX(at) FROM process_perf_samples WHERE pc_id = ?`, pcID).Scan(&at); err != nil {
		return nil, nil, fmt.Errorf("latest processes: %w", err)
	}
	out := []kanade.ProcessRow{}
	if !at.Valid {
		return nil, out, nil
	}
	t, err := kanade.ParseTime(at.String)
	if err != nil {
		return nil, nil, fmt.Errorf("latest processes: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT pid, name, cpu_pct, rss_bytes, disk_read_bytes_per_sec, disk_written_bytes_per_sec
		FROM process_perf_samples WHERE pc_id = ? AND at = ? ORDER BY cpu_pct DESC, pid`, pcID, at.String)
	if err != nil {
		return nil, nil, fmt.Errorf("latest processes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r kanade.ProcessRow
		if err := rows.Scan(&r.PID, &r.Name, &r.CPUPct, &r.RSSBytes, &r.DiskReadBytesPerSec, &r.DiskWrittenBytesPerSec); err != nil {
			return nil, nil, fmt.Errorf("latest processes: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("latest processes: %w", err)
	}
	return &t, out, nil
}

// ProcessMetrics are the columns the process timeline may chart.
var ProcessMetrics = []string{"cpu_pct", "rss_bytes", "disk_read_bytes_per_sec", "disk_written_bytes_per_sec"}

// OtherLabel is the timeline's label of every process outside the top names.
const OtherLabel = "other"

// ProcessTimeline is §1.11: the window's top names by AVG(metric), then per
// bucket the AVG per name, every other process under OtherLabel. metric
// must be one of ProcessMetrics.
func (db *DB) ProcessTimeline(ctx context.Context, pcID, metric string, from, to time.Time, step int64, top int) ([]string, []kanade.TimelinePoint, error) {
	ok := false
	for _, m := range ProcessMetrics {
		ok = ok || m == metric
	}
	if !ok {
		return nil, nil, fmt.Errorf("process timeline: unknown metric %q", metric)
	}
	lo, hi := kanade.FormatTime(from), kanade.FormatTime(to)
	rows, err := db.read.QueryContext(ctx, `SELECT name FROM process_perf_samples
		WHERE pc_id = ? AND at >= ? AND at < ? AND `+metric+` IS NOT NULL
		GROUP BY name ORDER BY AVG(`+metric+`) DESC, name LIMIT ?`, pcID, lo, hi, top)
	if err != nil {
		return nil, nil, fmt.Errorf("process timeline: %w", err)
	}
	names := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("process timeline: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("process timeline: %w", err)
	}
	points := []kanade.TimelinePoint{}
	if len(names) == 0 {
		return names, points, nil
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(names)), ",")
	rows, err = db.read.QueryContext(ctx, `SELECT b, label, AVG(v) FROM (
			SELECT `+bucketExpr("at_unix")+` AS b, CASE WHEN name IN (`+in+`) THEN name ELSE ? END AS label, `+metric+` AS v
			FROM process_perf_samples WHERE pc_id = ? AND at >= ? AND at < ?)
		GROUP BY b, label HAVING AVG(v) IS NOT NULL ORDER BY b`, reorder(names, step, pcID, lo, hi)...)
	if err != nil {
		return nil, nil, fmt.Errorf("process timeline: %w", err)
	}
	defer rows.Close()
	isTop := map[string]bool{}
	for _, n := range names {
		isTop[n] = true
	}
	other := false
	for rows.Next() {
		var b int64
		var label string
		var v float64
		if err := rows.Scan(&b, &label, &v); err != nil {
			return nil, nil, fmt.Errorf("process timeline: %w", err)
		}
		if len(points) == 0 || points[len(points)-1].At.Unix() != b {
			points = append(points, kanade.TimelinePoint{At: kanade.Timestamp{Time: time.Unix(b, 0).UTC()}, Values: map[string]float64{}})
		}
		points[len(points)-1].Values[label] = v
		if !isTop[label] {
			other = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("process timeline: %w", err)
	}
	if other {
		names = append(names, OtherLabel)
	}
	return names, points, nil
}

// reorder lays out the timeline query's arguments in the order of its
// placeholders: the step of the bucket expression, the top names, the
// other label, then the filter.
func reorder(names []string, step int64, pcID, lo, hi string) []any {
	args := []any{step, step, step}
	for _, n := range names {
		args = append(args, n)
	}
	return append(args, OtherLabel, pcID, lo, hi)
}
