package storage

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The read side of the run-duration summaries: GET /api/health/scan_durations
// (durations.go keeps the duration_segments table it reads).

// Nearest-rank quantiles of api.md as exact fractions num/den, so that
// ceil(q·n) is computed in integers; see rank.
var quantiles = [3]struct{ num, den int64 }{{1, 2}, {19, 20}, {99, 100}}

// rank is the nearest-rank index of quantile num/den among n sorted values:
// ceil(num·n/den) − 1, clamped to [0, n−1]. Equal to the float formula of
// kanade-backend 0.43.56 (TestRankMatchesFloatFormula) without relying on how
// 0.95·n happens to round.
func rank(num, den int64, n int) int {
	r := int((num*int64(n)+den-1)/den) - 1
	return min(max(r, 0), n-1)
}

// ScanDurations summarizes, per job, the finished runs with finished_at >=
// since (api.md § scan_durations): exact count, min, nearest-rank p50/p95/p99,
// max, mean, and the smallest result_id among the slowest runs. All in one
// read snapshot, it never reads the window's rows:
//
//  1. the first hour's segments are read with their durations and offsets
//     (the window starts inside that hour, so its runs are filtered), then
//     the later hours' count, min, max, sum and bin directory (on libSQL
//     summed by the server, per job);
//  2. the per-job histograms, summed, give the bin that holds each
//     percentile's rank and the rank's place inside it;
//  3. only those bins are read, from duration_bins: one index range per job
//     and bin over the window's hours after the first (a few hundred values
//     at 1M runs, thousands at 10M), one row per job and bin;
//  4. the slowest runs are looked up with one query per 1000 jobs.
//
// On SQLite, steps 1 and 3 take what an earlier call read of each bucket
// (an hour of one job) from what the DB keeps, for every bucket whose rows
// have not changed since, and read the rest (scan_cache.go); a DB that
// keeps nothing (and the tests that compare with it) reads every bucket as
// described.
//
// Sorted by p95 descending, then job_id; an empty window gives an empty,
// non-nil slice.
func (db *DB) ScanDurations(ctx context.Context, since time.Time) ([]kanade.ScanDuration, error) {
	return db.scanDurations(ctx, since, db.remote)
}

// queryer is a read snapshot: a transaction or a connection inside one.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readSnapshot runs fn in one read transaction, so that the segments and the
// slowest-run lookup (and, on libSQL, every page of segments) see the same
// commit. SQLite's pool begins transactions IMMEDIATE (db.go), which would
// queue behind the writer, so there a connection gets a plain BEGIN.
func (db *DB) readSnapshot(ctx context.Context, fn func(q queryer) error) error {
	if db.remote {
		tx, err := db.read.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin read: %w", err)
		}
		defer tx.Rollback()
		return fn(tx)
	}
	conn, err := db.read.Conn(ctx)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	err = fn(conn)
	if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
		// Never hand a connection still inside a transaction back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return errors.Join(err, fmt.Errorf("end read: %w", rerr))
	}
	return err
}

// segmentsSQL is step 1 on SQLite after the first hour (firstHourSQL): the
// later hours' segments, their counts and directories from the bins blob
// alone (each column of each row is calls into the driver; see segHeadLen).
const segmentsSQL = `SELECT job_id, bins FROM duration_segments WHERE hour > ?`

// binsChunk bounds the (job_id, bin) pairs of one statement of step 3 (and
// so, on libSQL, the size of one response).
const binsChunk = 500

// scanDurations is ScanDurations; aggregate says to sum the segments and
// histograms after the first hour in SQL (step 1 on libSQL, where a row
// sent costs far more than a row read: 200 rows instead of thousands).
func (db *DB) scanDurations(ctx context.Context, since time.Time, aggregate bool) ([]kanade.ScanDuration, error) {
	h0, off0 := hourOffset(since)
	var sc *scanScratch
	select {
	case sc = <-db.scans:
	default:
		sc = &scanScratch{} // none kept, or as many calls as kept running
	}
	w := durWindow{h0: h0, off0: off0, jobs: map[string]*jobAcc{}, sc: sc, first: sc.first[:0]}
	defer func() {
		sc.first = w.first // grown by the first hour's runs
		select {
		case db.scans <- sc.reset():
		default:
		}
	}()
	var out []kanade.ScanDuration
	err := db.readSnapshot(ctx, func(q queryer) error {
		var later map[*jobAcc][]*cachedBucket // each job's later buckets, kept or read (scan_cache.go)
		var err error
		switch {
		case aggregate || !sqliteLinked: // (a build without SQLite opens libSQL only, and leaves the rest out)
			err = w.readAggregates(ctx, q)
		case db.scanCache != nil:
			later, err = w.readCached(ctx, q, db.scanCache)
		default:
			err = w.readSegments(ctx, q)
		}
		if err != nil {
			return fmt.Errorf("scan durations: %w", err)
		}
		pairs, err := w.plan()
		if err != nil {
			return fmt.Errorf("scan durations: %w", err)
		}
		if sqliteLinked && later != nil {
			err = w.readBinsCached(ctx, q, pairs, later, db.scanCache)
		} else {
			err = w.readBins(ctx, q, pairs, !db.remote)
		}
		if err != nil {
			return fmt.Errorf("scan durations: %w", err)
		}
		out = make([]kanade.ScanDuration, 0, len(w.jobs))
		for _, j := range w.jobs {
			if j.n > 0 {
				sd, err := j.summarize()
				if err != nil {
					return fmt.Errorf("scan durations: %w", err)
				}
				out = append(out, sd)
			}
		}
		return slowestRuns(ctx, q, since, out)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b kanade.ScanDuration) int {
		if a.P95Ms != b.P95Ms {
			if a.P95Ms > b.P95Ms {
				return -1
			}
			return 1
		}
		return strings.Compare(a.JobID, b.JobID)
	})
	return out, nil
}

// durWindow gathers a scan's segments and jobs.
type durWindow struct {
	h0, off0 int64
	jobs     map[string]*jobAcc
	first    []int64 // the first hour's runs in the window, job by job, bin by bin
	sc       *scanScratch
}

// scanScratch is the memory of a scan that the next one reuses: at 10M
// runs a call needs 8 MB of it (the jobs' histograms, the first hour's
// kept runs, the wanted bins' values), and allocating it afresh at every
// call (zeroed, page-faulted in again after the runtime returned it to
// the kernel, and collected) was a tenth of the call's CPU. Each part is a
// slab carved in order; a carved piece is never handed out twice within a
// call, and reset forgets them for the next.
type scanScratch struct {
	hist  []int64 // 2·binSpan per job
	first []int64
	vals  []int64
}

// scratchKeep bounds the slab a scratch keeps between calls (in int64s):
// a window of unusually many jobs or runs allocates what it needs, but
// does not keep it. scanScratches is how many scratches a DB keeps (about
// 8 MB each at 10M runs): as many calls at once reuse theirs.
const (
	scratchKeep   = 4 << 20
	scanScratches = 2
)

// reset forgets every piece carved from sc and drops a slab grown past
// scratchKeep.
func (sc *scanScratch) reset() *scanScratch {
	for _, s := range []*[]int64{&sc.hist, &sc.first, &sc.vals} {
		if cap(*s) > scratchKeep {
			*s = nil
		}
		*s = (*s)[:0]
	}
	return sc
}

// carve returns n int64s of *slab, length 0 and capacity n, growing the
// slab (into a new array: pieces carved before keep theirs) when it has
// no room; appending past the capacity reallocates, never overwrites the
// next piece.
func carve(slab *[]int64, n int) []int64 {
	s := *slab
	if cap(s)-len(s) < n {
		s = make([]int64, 0, max(2*cap(s), n, 1024))
	}
	*slab = s[:len(s)+n]
	return s[len(s) : len(s) : len(s)+n]
}

// jobAcc is one job's runs in the window.
type jobAcc struct {
	name          string
	n             int64
	lo, hi, total int64
	hist          []int64     // runs per bin, at bin + binSpan
	firstBins     []firstSpan // where each bin's runs lie in durWindow.first
	want          []wanted
}

// firstSpan is durWindow.first[start:end], the kept runs of one bin of one
// of the first hour's segments.
type firstSpan struct {
	bin        int32
	start, end int32
}

// wanted is a bin holding a percentile's rank: below runs of the job lie in
// lower bins; vals gathers the bin's durations.
type wanted struct {
	bin   int
	below int64
	vals  []int64
}

// binPair is one wanted bin of one job.
type binPair struct {
	job *jobAcc
	bin int
}

func (w *durWindow) job(name string) *jobAcc {
	j := w.jobs[name]
	if j == nil {
		if w.sc == nil {
			w.sc = &scanScratch{}
		}
		h := carve(&w.sc.hist, 2*binSpan)[:2*binSpan]
		clear(h) // a piece of an earlier call's histograms
		j = &jobAcc{name: name, hist: h}
		w.jobs[name] = j
	}
	return j
}

// count adds a segment's aggregates to j.
func (j *jobAcc) count(n, lo, hi, total int64) {
	if j.n == 0 {
		j.lo, j.hi = lo, hi
	} else {
		j.lo, j.hi = min(j.lo, lo), max(j.hi, hi)
	}
	j.n += n
	j.total += total
}

// readSegments is step 1 on SQLite: every segment row of the window, the
// first hour's (readFirstHour) then the later hours' aggregates and bin
// directories.
func (w *durWindow) readSegments(ctx context.Context, q queryer) error {
	if err := w.readFirstHour(ctx, q); err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, segmentsSQL, w.h0)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var job, bins sql.RawBytes
		if err := rows.Scan(&job, &bins); err != nil {
			return err
		}
		j := w.jobs[string(job)] // no copy: a map index by a converted []byte
		if j == nil {
			j = w.job(string(job))
		}
		h, dir, err := splitBins(bins)
		if err == nil {
			err = j.addLater(h.runs, h.lo, h.hi, h.total, dir)
		}
		if err != nil {
			return fmt.Errorf("job %q, after hour %d: %w", job, w.h0, err)
		}
	}
	return rows.Err()
}

// readFirstHour reads the segments of the hour the window starts in, with
// their durations and offsets.
func (w *durWindow) readFirstHour(ctx context.Context, q queryer) error {
	rows, err := q.QueryContext(ctx, firstHourSQL, w.h0)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var job string
		var bins, durs, offs sql.RawBytes
		if err := rows.Scan(&job, &bins, &durs, &offs); err != nil {
			return err
		}
		h, dir, err := splitBins(bins)
		if err == nil {
			err = w.add(w.h0, job, h.runs, h.lo, h.hi, h.total, dir, durs, offs)
		}
		if err != nil {
			return fmt.Errorf("job %q, hour %d: %w", job, w.h0, err)
		}
	}
	return rows.Err()
}

// Step 1 on libSQL: the first hour's segments, then the later hours' per-job
// aggregates and histograms, summed by the server.
const (
	firstHourSQL = `SELECT s.job_id, s.bins, r.durs, r.offs
		FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg) WHERE s.hour = ?`
	laterSQL = `SELECT job_id, SUM(runs), MIN(lo), MAX(hi), SUM(total) FROM duration_segments WHERE hour > ? GROUP BY job_id`
	histSQL  = `SELECT job_id, group_concat(bin || ':' || n) FROM
		(SELECT job_id, bin, SUM(runs) AS n FROM duration_bins WHERE hour > ? GROUP BY job_id, bin) GROUP BY job_id`
)

// readAggregates is step 1 on libSQL.
func (w *durWindow) readAggregates(ctx context.Context, q queryer) error {
	if err := w.readFirstHour(ctx, q); err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, laterSQL, w.h0)
	if err != nil {
		return err
	}
	for rows.Next() {
		var runs, lo, hi, total int64
		var job string
		if err := rows.Scan(&job, &runs, &lo, &hi, &total); err != nil {
			rows.Close()
			return err
		}
		w.job(job).count(runs, lo, hi, total)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if rows, err = q.QueryContext(ctx, histSQL, w.h0); err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var job, hist string
		if err := rows.Scan(&job, &hist); err != nil {
			return err
		}
		j := w.job(job)
		for _, e := range strings.Split(hist, ",") {
			b, n, ok := strings.Cut(e, ":")
			bin, err1 := strconv.Atoi(b)
			runs, err2 := strconv.ParseInt(n, 10, 64)
			if !ok || err1 != nil || err2 != nil || bin < -binSpan || bin >= binSpan || runs <= 0 {
				return fmt.Errorf("job %q: histogram entry %q: %w", job, e, errCorruptSegment)
			}
			j.hist[bin+binSpan] += runs
		}
	}
	return rows.Err()
}

// add takes one segment row of step 1.
func (w *durWindow) add(hour int64, name string, runs, lo, hi, total int64, bins, durs, offs []byte) error {
	j := w.job(name)
	if hour != w.h0 {
		return j.addLater(runs, lo, hi, total, bins)
	}
	// The window starts inside this hour: keep the runs that finished at or
	// after since. Bin by bin from the segment's directory, so each kept
	// run's bin comes with it (plan matches the first hour's runs to the
	// wanted bins by it, 1.2M binOf calls at 10M runs otherwise); each
	// duration and its offset are decoded side by side, straight from the
	// blobs (the hour holds a twenty-fourth of a day's window: 400k runs
	// at 10M).
	if runs <= 0 || runs > int64(len(durs)) || runs > int64(len(offs)) || len(w.first)+int(runs) > math.MaxInt32 {
		return errCorruptSegment // every run takes a byte of each blob
	}
	if err := readBins(bins, runs, len(durs), func(segBin) {}); err != nil {
		return err // the directory checked once, so the loop below need not
	}
	// Each run is written at pos and kept by moving pos past it, without a
	// branch: whether a run of the hour is in the window is a coin toss the
	// CPU cannot predict, and most of the loop's time went to mispredicts.
	first := slices.Grow(w.first, int(runs))
	buf, pos := first[:cap(first)], len(first)
	rest, dir, at := offs, bins, 0
	off0 := w.off0
	bin := 0
	for i := 0; len(dir) > 0; i++ {
		d, k1 := binary.Uvarint(dir)
		n, k2 := binary.Uvarint(dir[k1:])
		l, k3 := binary.Uvarint(dir[k1+k2:])
		dir = dir[k1+k2+k3:]
		bin, _ = nextBin(i == 0, bin, d)
		if bin < -binSpan || bin >= binSpan {
			return errCorruptSegment
		}
		b := durs[at : at+int(l)]
		at += int(l)
		start := pos
		var v, sum int64
		for k := range int(n) {
			var u uint64
			if len(b) > 0 && b[0] < 0x80 {
				u, b = uint64(b[0]), b[1:]
			} else {
				var m int
				if u, m = binary.Uvarint(b); m <= 0 {
					return errCorruptSegment
				}
				b = b[m:]
			}
			if k == 0 {
				v = unzigzag(u)
			} else {
				v += int64(u) // ascending
			}
			var o uint64
			var m int
			if len(rest) >= 8 {
				o, m = uvarintWord(binary.LittleEndian.Uint64(rest))
			}
			if m == 0 || m > 8 {
				if o, m = binary.Uvarint(rest); m <= 0 {
					return errCorruptSegment
				}
			}
			rest = rest[m:]
			keep := int(uint64(off0-1-int64(o)) >> 63) // 1 if o >= off0 (both below 2⁶²)
			buf[pos] = v
			pos += keep
			sum += v & -int64(keep)
		}
		if len(b) != 0 {
			return errCorruptSegment
		}
		if kept := pos - start; kept > 0 {
			j.count(int64(kept), buf[start], buf[pos-1], sum)
			j.hist[bin+binSpan] += int64(kept)
			j.firstBins = append(j.firstBins, firstSpan{bin: int32(bin), start: int32(start), end: int32(pos)})
		}
	}
	w.first = buf[:pos]
	if len(rest) != 0 {
		return errCorruptSegment
	}
	return nil
}

// uvarintWord decodes a uvarint from the first bytes of x (8 bytes of a
// blob, little-endian) without a loop, as binary.Uvarint would, and
// returns its length; a length over 8 means the uvarint is longer than x
// and v is meaningless. A first-hour offset (nanoseconds within an hour,
// 42 bits) takes 6 bytes, and scan_durations decodes one per run of the
// hour (400k at 10M runs).
func uvarintWord(x uint64) (v uint64, n int) {
	n = bits.TrailingZeros64(^x&0x8080808080808080)/8 + 1 // 9 if no byte ends it
	x &= 1<<(8*uint(n)) - 1                               // a shift by 64 or more is 0: all ones
	return x&0x7f | x>>1&(0x7f<<7) | x>>2&(0x7f<<14) | x>>3&(0x7f<<21) |
		x>>4&(0x7f<<28) | x>>5&(0x7f<<35) | x>>6&(0x7f<<42) | x>>7&(0x7f<<49), n
}

// addLater adds a segment of an hour after the first to j: its aggregates
// and its histogram.
func (j *jobAcc) addLater(runs, lo, hi, total int64, bins []byte) error {
	if runs <= 0 || addHist(j.hist, bins, runs) != nil {
		return errCorruptSegment
	}
	j.count(runs, lo, hi, total)
	return nil
}

// plan is step 2: each job's wanted bins, with the first hour's runs in
// them.
func (w *durWindow) plan() ([]binPair, error) {
	var pairs []binPair
	for _, j := range w.jobs {
		if j.n == 0 {
			continue
		}
		below := int64(0)
		b := 0
		for _, q := range quantiles {
			r := int64(rank(q.num, q.den, int(j.n)))
			for below+j.hist[b] <= r {
				below += j.hist[b]
				b++
				if b == len(j.hist) {
					return nil, fmt.Errorf("job %q: histogram holds fewer than %d runs", j.name, j.n)
				}
			}
			if k := len(j.want); k == 0 || j.want[k-1].bin != b-binSpan {
				// vals is sized once for the bin's runs (thousands at 10M
				// runs); summarize checks the count, so a corrupt one
				// can only cost the bound here.
				j.want = append(j.want, wanted{bin: b - binSpan, below: below, vals: carve(&w.sc.vals, int(min(j.hist[b], 1<<20)))})
				pairs = append(pairs, binPair{job: j, bin: b - binSpan})
			}
		}
		for _, f := range j.firstBins {
			if wb := j.wantedBin(int(f.bin)); wb != nil {
				wb.vals = append(wb.vals, w.first[f.start:f.end]...)
			}
		}
	}
	return pairs, nil
}

// wantedBin returns j's wanted bin b, or nil.
func (j *jobAcc) wantedBin(b int) *wanted {
	for i := range j.want {
		if j.want[i].bin == b {
			return &j.want[i]
		}
	}
	return nil
}

// binsSQL is step 3: per (job_id, bin) pair, one row of its index in the
// statement and its rows after hour ?1 (one index range) joined as
// hex(durs), comma-separated, or NULL when it has none: 600 rows at
// 1M runs instead of 14,000. Over libSQL each row sent costs far more than
// its bytes (the bins step of a 1M-run call: 106 ms a row per bin row and
// hour, 50 ms joined); on SQLite each row is calls into the driver (CPU per
// call 34.8 ms, 29.5-31.9 ms joined). A correlated subquery per pair rather
// than a join grouped by pair: SQLite sorted the joined rows, hex and all,
// in a temporary B-tree for the GROUP BY (a third of the step at 10M runs).
// Each row's runs are not sent: its durs decode to the end (decodeAll), and
// summarize checks each wanted bin's count against the histogram. The
// pairs are one JSON argument, [[job_id, bin], …], and each row names its
// pair by its index there: the statement's text is the same whatever the
// pairs, where a VALUES list of 1,500 parameters took SQLite 1 ms to parse
// at every call.
const binsSQL = `SELECT v.key, (SELECT group_concat(hex(b.durs)) FROM duration_bins AS b
		WHERE b.job_id = v.value->>0 AND b.bin = v.value->>1 AND b.hour > ?1)
	FROM json_each(?2) AS v`

// binsRawSQL is binsSQL on SQLite: each row's durs as they are, after its
// length in hex and a colon, so the joined column is half as long and
// neither SQLite nor Go converts it to hex and back (a tenth of the bins
// step at 10M runs). SQLite's || and group_concat copy a blob's bytes by
// length, NULs and all; the result would not survive libSQL's JSON, which
// is why binsSQL stays hex.
const binsRawSQL = `SELECT v.key, (SELECT CAST(group_concat(printf('%x:', length(b.durs)) || b.durs, '') AS BLOB)
		FROM duration_bins AS b WHERE b.job_id = v.value->>0 AND b.bin = v.value->>1 AND b.hour > ?1)
	FROM json_each(?2) AS v`

// pairsJSON is the JSON array of [name, n] for each of len pairs, for a
// json_each argument.
func pairsJSON(n int, pair func(i int) (string, int64)) string {
	b := make([]byte, 0, 24*n)
	b = append(b, '[')
	for i := range n {
		name, v := pair(i)
		// A string always marshals; job IDs are valid UTF-8 (decoded from
		// JSON), so none is changed on the way.
		q, _ := json.Marshal(name)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = append(b, q...)
		b = append(b, ',')
		b = strconv.AppendInt(b, v, 10)
		b = append(b, ']')
	}
	return string(append(b, ']'))
}

// readBins is step 3: the wanted bins' durations after the first hour,
// joined in hex (binsSQL) or raw (binsRawSQL).
func (w *durWindow) readBins(ctx context.Context, q queryer, pairs []binPair, raw bool) error {
	query, decode := binsSQL, decodeJoined
	if raw {
		query, decode = binsRawSQL, decodeRaw
	}
	for start := 0; start < len(pairs); start += binsChunk {
		chunk := pairs[start:min(start+binsChunk, len(pairs))]
		arg := pairsJSON(len(chunk), func(i int) (string, int64) { return chunk[i].job.name, int64(chunk[i].bin) })
		rows, err := q.QueryContext(ctx, query, w.h0, arg)
		if err != nil {
			return err
		}
		for rows.Next() {
			var i int
			var joined sql.RawBytes
			if err := rows.Scan(&i, &joined); err != nil {
				rows.Close()
				return err
			}
			if joined == nil {
				continue // the bin's runs are all in the first hour
			}
			if i < 0 || i >= len(chunk) {
				rows.Close()
				return fmt.Errorf("bins of pair %d read, %d asked for", i, len(chunk))
			}
			p := chunk[i]
			wb := p.job.wantedBin(p.bin)
			if wb == nil {
				rows.Close()
				return fmt.Errorf("job %q: bin %d read, not asked for", p.job.name, p.bin)
			}
			if wb.vals, err = decode(wb.vals, joined); err != nil {
				rows.Close()
				return fmt.Errorf("job %q, bin %d: %w", p.job.name, p.bin, err)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

// decodeJoined appends the durations of a binsSQL row's rows to dst.
func decodeJoined(dst []int64, joined []byte) ([]int64, error) {
	var buf []byte
	for h := range bytes.SplitSeq(joined, []byte(",")) {
		var err error
		if buf, err = hex.AppendDecode(buf[:0], h); err != nil {
			return dst, errCorruptSegment
		}
		if dst, err = decodeAll(dst, buf); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// decodeRaw appends the durations of a binsRawSQL row's rows to dst.
func decodeRaw(dst []int64, joined []byte) ([]int64, error) {
	for len(joined) > 0 {
		hexLen, rest, ok := bytes.Cut(joined, []byte(":"))
		n, err := strconv.ParseUint(string(hexLen), 16, 31) // no allocation: the conversion is the argument
		if !ok || err != nil || n > uint64(len(rest)) {
			return dst, errCorruptSegment
		}
		if dst, err = decodeAll(dst, rest[:n]); err != nil {
			return dst, err
		}
		joined = rest[n:]
	}
	return dst, nil
}

// summarize is step 4 for one job: the ranks from the wanted bins.
func (j *jobAcc) summarize() (kanade.ScanDuration, error) {
	var p [3]int64
	k := 0
	for i := range j.want {
		wb := &j.want[i]
		if int64(len(wb.vals)) != j.hist[wb.bin+binSpan] {
			return kanade.ScanDuration{}, fmt.Errorf("job %q: bin %d holds %d runs, its histogram says %d",
				j.name, wb.bin, len(wb.vals), j.hist[wb.bin+binSpan])
		}
		// The ranks asked of this bin are found by selection, in
		// ascending order, each in the part above the last: at 10M runs a
		// bin holds thousands of durations, and sorting them all was a
		// sixth of the call.
		lo := 0
		for ; k < len(quantiles); k++ {
			r := int64(rank(quantiles[k].num, quantiles[k].den, int(j.n))) - wb.below
			if r >= int64(len(wb.vals)) {
				break
			}
			p[k] = nth(wb.vals[lo:], int(r)-lo)
			lo = int(r)
		}
	}
	return kanade.ScanDuration{JobID: j.name, Count: j.n, MinMs: j.lo, P50Ms: p[0], P95Ms: p[1],
		P99Ms: p[2], MaxMs: j.hi, MeanMs: j.total / j.n}, nil
}

// slowestChunk bounds the (job_id, duration_ms) pairs of one statement.
const slowestChunk = 1000

// slowestRunsSQL finds, per job, the smallest result_id among the window's
// runs with the job's maximum duration (NULL if none). The covering index
// (job_id, duration_ms, finished_at, result_id) makes it one index range per
// job that holds exactly those runs, never touching the table: one
// correlated subquery per (job_id, duration_ms) pair, because SQLite 3.45
// (sqld's) plans "(job_id, duration_ms) IN (VALUES …)" on job_id alone and
// walked every run of every job (585 ms of a 1M-run call over sqld). It
// needs no started_at test: the rows with job_id, finished_at and
// duration_ms are exactly the summarized ones (durations.go), and the write
// path sets duration_ms only when started_at is known. The pairs are one
// JSON argument (see binsSQL), each row naming its pair by its index.
const slowestRunsSQL = `SELECT v.key, (SELECT MIN(result_id) FROM execution_results
		WHERE execution_results.job_id = v.value->>0 AND duration_ms = v.value->>1 AND finished_at >= ?1)
	FROM json_each(?2) AS v`

// slowestRuns fills MaxResultID of every summary.
func slowestRuns(ctx context.Context, q queryer, since time.Time, sums []kanade.ScanDuration) error {
	for start := 0; start < len(sums); start += slowestChunk {
		chunk := sums[start:min(start+slowestChunk, len(sums))]
		arg := pairsJSON(len(chunk), func(i int) (string, int64) { return chunk[i].JobID, chunk[i].MaxMs })
		rows, err := q.QueryContext(ctx, slowestRunsSQL, kanade.FormatTime(since), arg)
		if err != nil {
			return fmt.Errorf("scan durations: slowest runs: %w", err)
		}
		for rows.Next() {
			var i int
			var id *string
			if err := rows.Scan(&i, &id); err != nil {
				rows.Close()
				return fmt.Errorf("scan durations: slowest runs: %w", err)
			}
			if i < 0 || i >= len(chunk) {
				rows.Close()
				return fmt.Errorf("scan durations: slowest run of pair %d read, %d asked for", i, len(chunk))
			}
			chunk[i].MaxResultID = id
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("scan durations: slowest runs: %w", err)
		}
	}
	return nil
}

// nth reorders vs so that vs[k] is the value a sort would put there, every
// value before it no greater and every one after it no smaller, and
// returns it: quickselect on the median of three, which sorts what is
// left after 2·log2(len) rounds so that no order of the input makes it
// quadratic.
func nth(vs []int64, k int) int64 {
	lo, hi := 0, len(vs) // the part that holds position k
	for budget := 2 * bits.Len(uint(len(vs))); hi-lo > 16; budget-- {
		if budget == 0 {
			slices.Sort(vs[lo:hi])
			return vs[k]
		}
		// Median of three as the pivot, then a three-way partition:
		// [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot.
		a, b, c := vs[lo], vs[lo+(hi-lo)/2], vs[hi-1]
		pivot := max(min(a, b), min(max(a, b), c))
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch v := vs[i]; {
			case v < pivot:
				vs[lt], vs[i] = vs[i], vs[lt]
				lt++
				i++
			case v > pivot:
				gt--
				vs[gt], vs[i] = vs[i], vs[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return pivot
		}
	}
	slices.Sort(vs[lo:hi])
	return vs[k]
}
