package storage

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// Run-duration summaries (tables duration_segments, duration_runs and
// duration_bins, read by ScanDurations).
//
// GET /api/health/scan_durations must give exact nearest-rank percentiles over
// a window that may hold a million runs, also over a remote libSQL database
// where pulling every row is not an option. So the write path keeps, per
// (hour of finished_at, job) bucket, the bucket's durations sorted, split into
// a few segments: each write transaction appends at most one segment per
// bucket it touched (a blind insert, no read), and a bucket is compacted into
// one segment when it reaches maxSegments or once its job has moved on to the
// next hour, and again by every write that adds a late run to it then.
// Removing an entry (a reaped run that got its real result, a row deleted by
// retention) rewrites its bucket: rare, and a bucket is small.
//
// A segment also keeps its count, min, max and sum, and a histogram of fixed
// bins (binOf: 16 per power of two) with each bin's bytes in durs; each of
// its bins is also a row of duration_bins, keyed (job, bin, hour), written
// and deleted with the segment. A scan over ten million runs thus sums a
// few hundred thousand bin counts, and reads only the rows of the three
// bins per job that hold its percentiles' ranks (scan_durations.go),
// exactly. A segment's blobs (durs, offs) are a row of duration_runs,
// beside its row of duration_segments: a seek into a WITHOUT ROWID table
// reads every row it compares whole (0028_duration_runs.sql).
//
// Invariant: a row of execution_results has exactly one entry (duration_ms,
// finished_at's offset within its hour) in bucket (hour, job_id) iff its
// job_id, finished_at and duration_ms are all set. Every writer of those
// columns calls addDuration/removeDuration accordingly (projection.go,
// reap.go, housekeeping.go); loadRuns' inSummary is the same test.

// maxSegments is how many segments a bucket may have before the next write
// compacts it. More segments mean cheaper appends and a slower scan.
//
// A bucket its job has moved on from (the next hour of the job has runs)
// is closed: it was compacted when the job moved on, and only late results
// reach it (an agent that was offline, a reaped run's real result). Up to
// maxSegments of them would stay for as long as the hour is in a scan's
// window: the bench's late writes at 10M runs added about 100 segment rows
// to the window per run of it (each row 2.6 µs of a scan, and rows of
// duration_bins), and a fleet whose late results reach every hour would
// keep about four segments a bucket instead of one. So every write that
// adds to a closed bucket compacts it (flushDurations): late results are
// few, a batch rewrites each bucket once, and a bucket is one hour of one
// job.
const maxSegments = 8

// durationsFormat versions the segment encoding; part of SchemaHash.
const durationsFormat = "durations-v3"

// bucketKey names one summary bucket.
type bucketKey struct {
	hour int64 // floor(unix seconds / 3600)
	job  string
}

// durEntry is one run in a bucket: its duration and the nanoseconds of its
// finished_at past the start of the bucket's hour (exact, so a window can
// start anywhere inside an hour).
type durEntry struct {
	ms  int64
	off int64
}

func (a durEntry) less(b durEntry) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.off < b.off)
}

// bucketChange is the net change of one bucket within a transaction.
type bucketChange struct {
	adds, removes []durEntry
}

// durationChanges accumulates the duration-summary changes of one write
// transaction. Filled by Tx.addDuration and Tx.removeDuration, written by
// flushDurations just before commit.
type durationChanges struct {
	buckets map[bucketKey]*bucketChange
}

// hourOffset splits t into its bucket hour and the nanoseconds past that
// hour's start, with integer arithmetic only (time.Sub saturates far from
// 1970; floor division keeps times before 1970 in the right hour).
func hourOffset(t time.Time) (hour, off int64) {
	sec := t.Unix()
	hour = sec / 3600
	if sec%3600 < 0 {
		hour--
	}
	return hour, (sec-hour*3600)*int64(time.Second) + int64(t.Nanosecond())
}

// change returns the pending change of the bucket of (jobID, finished) and
// the entry of a run of ms there.
func (tx *Tx) change(jobID string, finished time.Time, ms int64) (*bucketChange, durEntry) {
	hour, off := hourOffset(finished)
	k := bucketKey{hour: hour, job: jobID}
	if tx.durations.buckets == nil {
		tx.durations.buckets = map[bucketKey]*bucketChange{}
	}
	c := tx.durations.buckets[k]
	if c == nil {
		c = &bucketChange{}
		tx.durations.buckets[k] = c
	}
	return c, durEntry{ms: ms, off: off}
}

// takeOne removes one copy of e from es, reporting whether there was one.
func takeOne(es []durEntry, e durEntry) ([]durEntry, bool) {
	for i := range es {
		if es[i] == e {
			es[i] = es[len(es)-1]
			return es[:len(es)-1], true
		}
	}
	return es, false
}

// addDuration records that a finished run of jobID (finished at finished,
// lasting ms) entered the summaries.
func (tx *Tx) addDuration(jobID string, finished time.Time, ms int64) {
	c, e := tx.change(jobID, finished, ms)
	var undone bool
	if c.removes, undone = takeOne(c.removes, e); !undone {
		c.adds = append(c.adds, e)
	}
}

// removeDuration takes one such entry out again (a reaped run that got its
// real result, a deleted row). The entry must be in the summaries (or added
// earlier in this transaction); flushDurations fails otherwise, because a
// summary that drifted from the rows would silently give wrong percentiles.
func (tx *Tx) removeDuration(jobID string, finished time.Time, ms int64) {
	c, e := tx.change(jobID, finished, ms)
	var undone bool
	if c.adds, undone = takeOne(c.adds, e); !undone {
		c.removes = append(c.removes, e)
	}
}

// segMeta is what flushDurations needs to know about a stored bucket.
type segMeta struct {
	count  int64
	maxSeg int64
}

// flushDurations writes the transaction's summary changes with a handful of
// statements whatever the number of buckets (each is a round trip on libSQL):
// one to read the touched buckets' segment counts, one to load the buckets
// that must be rewritten, one delete and one insert.
func (tx *Tx) flushDurations(ctx context.Context) error {
	changes := tx.durations.buckets
	tx.durations.buckets = nil
	var touched []bucketKey
	for k, c := range changes {
		if len(c.adds)+len(c.removes) > 0 {
			touched = append(touched, k)
		}
	}
	if len(touched) == 0 {
		return nil
	}
	sortKeys(touched)
	// The previous hour of every bucket that grows: compacted once its job has
	// moved on, so closed hours are read as one segment each.
	// The next hour too: a bucket its job has moved on from is closed
	// (see maxSegments).
	probe := slices.Clone(touched)
	for _, k := range touched {
		p := bucketKey{hour: k.hour - 1, job: k.job}
		if len(changes[k].adds) > 0 && changes[p] == nil {
			probe = append(probe, p)
		}
		if n := (bucketKey{hour: k.hour + 1, job: k.job}); changes[n] == nil {
			probe = append(probe, n)
		}
	}
	sortKeys(probe)
	probe = slices.Compact(probe)
	meta, err := tx.segmentMeta(ctx, probe)
	if err != nil {
		return err
	}
	var rewrite, appendOnly []bucketKey
	for _, k := range touched {
		c := changes[k]
		next := bucketKey{hour: k.hour + 1, job: k.job}
		closed := meta[next].count > 0 || changes[next] != nil && len(changes[next].adds) > 0
		if len(c.removes) > 0 || meta[k].count >= maxSegments || closed && meta[k].count > 0 {
			rewrite = append(rewrite, k)
		} else {
			appendOnly = append(appendOnly, k)
		}
		p := bucketKey{hour: k.hour - 1, job: k.job}
		if len(c.adds) > 0 && changes[p] == nil && meta[p].count > 1 {
			rewrite = append(rewrite, p)
		}
	}
	sortKeys(rewrite)
	rewrite = slices.Compact(rewrite)

	var out []segmentRow
	keep := map[binKey]bool{} // bins of rewritten buckets whose row of duration_bins stays
	if len(rewrite) > 0 {
		stored, oldBins, oldBytes, err := tx.loadBuckets(ctx, rewrite)
		if err != nil {
			return err
		}
		for _, k := range rewrite {
			es := stored[k]
			if c := changes[k]; c != nil {
				es = append(es, c.adds...)
				for _, r := range c.removes {
					var ok bool
					if es, ok = takeOne(es, r); !ok {
						return fmt.Errorf("duration summary of job %q, hour %d: no entry of %d ms at +%dns to remove", k.job, k.hour, r.ms, r.off)
					}
				}
			}
			if len(es) == 0 {
				continue
			}
			e := encodeSegment(es)
			if m := meta[k]; m.count == 1 && m.maxSeg == 0 {
				// The bucket was one segment, numbered 0 as the new one
				// is: a bin whose bytes did not change keeps its row of
				// duration_bins. A late result or a reaped run changes
				// one bin of a closed hour's fifty, whose rows lie on as
				// many pages of duration_bins.
				n := int64(len(es))
				_ = readBins(e.bins, n, len(e.durs), func(sb segBin) { // just encoded
					bk := binKey{job: k.job, bin: int64(sb.bin), hour: k.hour}
					if old, ok := oldBytes[bk]; ok && old == string(e.durs[sb.start:sb.end]) {
						keep[bk] = true
					}
				})
			}
			out = append(out, segmentRow{key: k, seg: 0, entries: es, enc: &e})
		}
		oldBins = slices.DeleteFunc(oldBins, func(b binKey) bool { return keep[b] })
		if err := tx.deleteBuckets(ctx, rewrite, oldBins); err != nil {
			return err
		}
	}
	for _, k := range appendOnly {
		seg := int64(0)
		if m, ok := meta[k]; ok {
			seg = m.maxSeg + 1
		}
		out = append(out, segmentRow{key: k, seg: seg, entries: changes[k].adds})
	}
	return tx.insertSegments(ctx, out, keep)
}

func sortKeys(ks []bucketKey) {
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].hour != ks[j].hour {
			return ks[i].hour < ks[j].hour
		}
		return ks[i].job < ks[j].job
	})
}

// bucketChunk bounds the (hour, job_id) pairs of one statement.
const bucketChunk = 2000

// bucketValues renders "(VALUES (?,?),…)" and its arguments for keys.
func bucketValues(keys []bucketKey) (string, []any) {
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k.hour, k.job)
	}
	return "(VALUES " + strings.TrimSuffix(strings.Repeat("(?,?),", len(keys)), ",") + ")", args
}

func chunks(keys []bucketKey, fn func([]bucketKey) error) error {
	for len(keys) > 0 {
		n := min(len(keys), bucketChunk)
		if err := fn(keys[:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func (tx *Tx) segmentMeta(ctx context.Context, keys []bucketKey) (map[bucketKey]segMeta, error) {
	out := make(map[bucketKey]segMeta, len(keys))
	err := chunks(keys, func(ks []bucketKey) error {
		in, args := bucketValues(ks)
		rows, err := tx.tx.QueryContext(ctx, `SELECT hour, job_id, COUNT(*), MAX(seg) FROM duration_segments
			WHERE (hour, job_id) IN `+in+` GROUP BY hour, job_id`, args...)
		if err != nil {
			return fmt.Errorf("read duration segment counts: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k bucketKey
			var m segMeta
			if err := rows.Scan(&k.hour, &k.job, &m.count, &m.maxSeg); err != nil {
				return fmt.Errorf("read duration segment counts: %w", err)
			}
			out[k] = m
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read duration segment counts: %w", err)
		}
		return nil
	})
	return out, err
}

// binKey names the rows of one bin of one bucket in duration_bins.
type binKey struct {
	job       string
	bin, hour int64
}

// loadBucketsSQL reads the segments of the buckets of in (a VALUES list of
// (hour, job_id)) with their blobs.
func loadBucketsSQL(in string) string {
	return `SELECT s.hour, s.job_id, s.bins, r.durs, r.offs
		FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg)
		WHERE (s.hour, s.job_id) IN ` + in
}

// loadBuckets returns every entry of the given buckets, segments merged,
// the keys of their bins' rows, and each bin's bytes of durs (for a bucket
// of one segment, that segment's).
func (tx *Tx) loadBuckets(ctx context.Context, keys []bucketKey) (map[bucketKey][]durEntry, []binKey, map[binKey]string, error) {
	out := make(map[bucketKey][]durEntry, len(keys))
	var bins []binKey
	bytesOf := map[binKey]string{} // a bin's bytes of durs (meaningful for a bucket of one segment)
	err := chunks(keys, func(ks []bucketKey) error {
		in, args := bucketValues(ks)
		rows, err := tx.tx.QueryContext(ctx, loadBucketsSQL(in), args...)
		if err != nil {
			return fmt.Errorf("load duration segments: %w", err)
		}
		defer rows.Close()
		var ms, offs []int64
		for rows.Next() {
			var k bucketKey
			var stored, durBlob, offBlob []byte
			if err := rows.Scan(&k.hour, &k.job, &stored, &durBlob, &offBlob); err != nil {
				return fmt.Errorf("load duration segments: %w", err)
			}
			head, binBlob, err := splitBins(stored)
			if err != nil {
				return fmt.Errorf("duration segment of job %q, hour %d: %w", k.job, k.hour, err)
			}
			runs := head.runs
			if ms, err = decodeDurs(ms[:0], binBlob, durBlob, runs); err != nil {
				return fmt.Errorf("duration segment of job %q, hour %d: %w", k.job, k.hour, err)
			}
			_ = readBins(binBlob, runs, len(durBlob), func(sb segBin) { // checked by decodeDurs
				bk := binKey{job: k.job, bin: int64(sb.bin), hour: k.hour}
				bins = append(bins, bk)
				bytesOf[bk] = string(durBlob[sb.start:sb.end])
			})
			if offs, err = decodeOffs(offs[:0], offBlob, runs); err != nil {
				return fmt.Errorf("duration segment of job %q, hour %d: %w", k.job, k.hour, err)
			}
			for i := range ms {
				out[k] = append(out[k], durEntry{ms: ms[i], off: offs[i]})
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("load duration segments: %w", err)
		}
		return nil
	})
	return out, bins, bytesOf, err
}

// deleteBuckets deletes the segments of keys, their blobs and their bins'
// rows.
func (tx *Tx) deleteBuckets(ctx context.Context, keys []bucketKey, bins []binKey) error {
	err := chunks(keys, func(ks []bucketKey) error {
		in, args := bucketValues(ks)
		for _, table := range []string{"duration_segments", "duration_runs"} {
			if _, err := tx.tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE (hour, job_id) IN `+in, args...); err != nil {
				return fmt.Errorf("delete duration segments: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(bins, func(a, b binKey) int {
		return cmp.Or(strings.Compare(a.job, b.job), cmp.Compare(a.bin, b.bin), cmp.Compare(a.hour, b.hour))
	})
	bins = slices.Compact(bins)
	for len(bins) > 0 {
		n := min(len(bins), maxVars/3)
		args := make([]any, 0, 3*n)
		for _, b := range bins[:n] {
			args = append(args, b.job, b.bin, b.hour)
		}
		if _, err := tx.tx.ExecContext(ctx, deleteBinsSQL(n), args...); err != nil {
			return fmt.Errorf("delete duration bins: %w", err)
		}
		bins = bins[n:]
	}
	return nil
}

// deleteBinsSQL deletes the rows of n (job_id, bin, hour) bins.
func deleteBinsSQL(n int) string {
	return `DELETE FROM duration_bins WHERE (job_id, bin, hour) IN (VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?,?,?),", n), ",") + `)`
}

// segmentRow is one segment to insert.
type segmentRow struct {
	key     bucketKey
	seg     int64
	entries []durEntry
	enc     *encodedSegment // entries encoded, or nil
}

// insertSegments inserts segs, their blobs and their bins' rows of
// duration_bins, except the rows of the bins in keep, which are there.
func (tx *Tx) insertSegments(ctx context.Context, segs []segmentRow, keep map[binKey]bool) error {
	const cols, runCols = 8, 5
	per := maxVars / cols
	var bins []any // rows of duration_bins, binCols values each
	for len(segs) > 0 {
		n := min(len(segs), per)
		args := make([]any, 0, n*cols)
		blobs := make([]any, 0, n*runCols)
		for _, s := range segs[:n] {
			var e encodedSegment
			if s.enc != nil {
				e = *s.enc
			} else {
				e = encodeSegment(s.entries)
			}
			runs := int64(len(s.entries))
			args = append(args, s.key.hour, s.key.job, s.seg, runs, e.lo, e.hi, e.total, e.storedBins(runs))
			blobs = append(blobs, s.key.hour, s.key.job, s.seg, e.durs, e.offs)
			_ = readBins(e.bins, runs, len(e.durs), func(sb segBin) { // just encoded
				if !keep[binKey{job: s.key.job, bin: int64(sb.bin), hour: s.key.hour}] {
					bins = append(bins, s.key.job, int64(sb.bin), s.key.hour, s.seg, sb.n, e.durs[sb.start:sb.end])
				}
			})
		}
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO duration_segments (hour, job_id, seg, runs, lo, hi, total, bins)
			VALUES `+placeholders(n, cols), args...); err != nil {
			return fmt.Errorf("insert %d duration segments: %w", n, err)
		}
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO duration_runs (hour, job_id, seg, durs, offs)
			VALUES `+placeholders(n, runCols), blobs...); err != nil {
			return fmt.Errorf("insert %d duration segments' runs: %w", n, err)
		}
		segs = segs[n:]
	}
	const binCols = 6
	for len(bins) > 0 {
		n := min(len(bins)/binCols, maxVars/binCols)
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO duration_bins (job_id, bin, hour, seg, runs, durs)
			VALUES `+placeholders(n, binCols), bins[:n*binCols]...); err != nil {
			return fmt.Errorf("insert %d duration bins: %w", n, err)
		}
		bins = bins[n*binCols:]
	}
	return nil
}

// Histogram bins. binOf maps a duration to its bin, monotonically: the
// values below 16 (and above −17) have a bin each, then every power of two
// is split into 16 bins (a bin is at most 1/16 of its values wide), mirrored
// for negative durations (clock skew). A job's runs spread over a few dozen
// bins per hour, so scan_durations reads O(bins) counts and decodes the
// values of the three bins that hold its percentiles' ranks.
const (
	binsPerOctave = 16
	// binSpan bounds |bin|: binOf(MaxInt64) = 58·16 + 31 = 959.
	binSpan = 960
)

// binOf returns the bin of v, in [−binSpan, binSpan).
func binOf(v int64) int {
	if v < 0 {
		return -1 - binOf(-(v + 1)) // -(v+1) >= 0 even for MinInt64
	}
	u := uint64(v)
	if u < binsPerOctave {
		return int(u)
	}
	shift := bits.Len64(u) - 5 // 16 = 1<<4: keep the top 5 bits
	return shift*binsPerOctave + int(u>>shift)
}

// segBin is one non-empty bin of a segment: its bin, its runs and the byte
// range [start, end) of their durations in the segment's durs.
type segBin struct {
	bin        int
	n          int64
	start, end int
}

// encodedSegment is a segment's row: its aggregates and its three blobs.
type encodedSegment struct {
	lo, hi, total    int64
	bins, durs, offs []byte
}

// encodeSegment sorts es by (duration, offset) and encodes it: per
// non-empty bin, the first duration zigzag-encoded and the rest as uvarint
// deltas (runs of a job are alike, so most take one byte), so any bin
// decodes on its own; the bin directory says where each starts; offsets as
// plain uvarints in the same order.
func encodeSegment(es []durEntry) encodedSegment {
	slices.SortFunc(es, func(a, b durEntry) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	var s encodedSegment
	s.durs = make([]byte, 0, 2*len(es))
	s.offs = make([]byte, 0, 6*len(es))
	if len(es) == 0 {
		return s
	}
	s.lo, s.hi = es[0].ms, es[len(es)-1].ms
	prevBin, binStart, binRuns := 0, 0, int64(0)
	first := true
	closeBin := func(b int) {
		if binRuns == 0 {
			return
		}
		if first {
			s.bins = binary.AppendUvarint(s.bins, zigzag(int64(b)))
			first = false
		} else {
			s.bins = binary.AppendUvarint(s.bins, uint64(b-prevBin))
		}
		s.bins = binary.AppendUvarint(s.bins, uint64(binRuns))
		s.bins = binary.AppendUvarint(s.bins, uint64(len(s.durs)-binStart))
		prevBin = b
	}
	cur := binOf(es[0].ms)
	prev := int64(0)
	for _, e := range es {
		s.total += e.ms
		if b := binOf(e.ms); b != cur || binRuns == 0 {
			closeBin(cur)
			cur, binStart, binRuns = b, len(s.durs), 0
			s.durs = binary.AppendUvarint(s.durs, zigzag(e.ms))
		} else {
			s.durs = binary.AppendUvarint(s.durs, uint64(e.ms-prev))
		}
		binRuns++
		prev = e.ms
		s.offs = binary.AppendUvarint(s.offs, uint64(e.off))
	}
	closeBin(cur)
	return s
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

var errCorruptSegment = errors.New("corrupt duration segment")

// segHeadLen is the length of the head of a stored bins blob: the
// segment's runs, lo, hi and total as big-endian int64s. They are also
// columns (which SQL sums); a scan reads them from the blob, because each
// column of each row is calls into the driver, and the 4,800 rows of the
// later hours at 10M runs took 40% less time read as two columns than six.
const segHeadLen = 32

// segHead is the head of a stored bins blob.
type segHead struct {
	runs, lo, hi, total int64
}

// storedBins is the bins column of a segment of runs entries: the head,
// then the directory.
func (e encodedSegment) storedBins(runs int64) []byte {
	b := make([]byte, 0, segHeadLen+len(e.bins))
	for _, v := range [4]int64{runs, e.lo, e.hi, e.total} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return append(b, e.bins...)
}

// splitBins splits a stored bins blob into its head and its directory.
func splitBins(b []byte) (segHead, []byte, error) {
	if len(b) < segHeadLen {
		return segHead{}, nil, errCorruptSegment
	}
	h := segHead{
		runs:  int64(binary.BigEndian.Uint64(b)),
		lo:    int64(binary.BigEndian.Uint64(b[8:])),
		hi:    int64(binary.BigEndian.Uint64(b[16:])),
		total: int64(binary.BigEndian.Uint64(b[24:])),
	}
	if h.runs <= 0 || h.lo > h.hi {
		return segHead{}, nil, errCorruptSegment
	}
	return h, b[segHeadLen:], nil
}

// readBins calls fn for each bin of a segment's directory, in order,
// checking that the bins hold runs values in a durs of size bytes (size < 0:
// not known, the blob was not read).
func readBins(b []byte, runs int64, size int, fn func(segBin)) error {
	bin, at, seen := 0, 0, int64(0)
	for i := 0; len(b) > 0; i++ {
		d, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return errCorruptSegment
		}
		n, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return errCorruptSegment
		}
		l, k3 := binary.Uvarint(b[k1+k2:])
		if k3 <= 0 || n == 0 || n > uint64(runs-seen) || l < n || l > math.MaxInt32 || size >= 0 && l > uint64(size-at) {
			return errCorruptSegment
		}
		b = b[k1+k2+k3:]
		var ok bool
		if bin, ok = nextBin(i == 0, bin, d); !ok {
			return errCorruptSegment
		}
		fn(segBin{bin: bin, n: int64(n), start: at, end: at + int(l)})
		at += int(l)
		seen += int64(n)
	}
	if seen != runs || size >= 0 && at != size {
		return errCorruptSegment
	}
	return nil
}

// nextBin is the bin of a directory entry: the first one's is its
// zigzag-encoded value, every later one a step up from the last.
func nextBin(first bool, last int, d uint64) (int, bool) {
	if first {
		return int(unzigzag(d)), true
	}
	if d == 0 || d > 2*binSpan {
		return 0, false
	}
	return last + int(d), true
}

// addHist adds a segment's directory to hist (runs per bin, at bin +
// binSpan) with readBins' checks for a durs not read: scan_durations'
// step 1 reads half a million directory entries at 10M runs, most of them
// three one-byte varints, taken here without a call.
func addHist(hist []int64, b []byte, runs int64) error {
	bin, seen := 0, int64(0)
	for i := 0; len(b) > 0; i++ {
		var d, n, l uint64
		if len(b) >= 3 && (b[0]|b[1]|b[2]) < 0x80 {
			// The common entry: a small step, under 128 runs, under 128 bytes.
			d, n, l = uint64(b[0]), uint64(b[1]), uint64(b[2])
			b = b[3:]
		} else {
			var k1, k2, k3 int
			if d, k1 = binary.Uvarint(b); k1 <= 0 {
				return errCorruptSegment
			}
			if n, k2 = binary.Uvarint(b[k1:]); k2 <= 0 {
				return errCorruptSegment
			}
			if l, k3 = binary.Uvarint(b[k1+k2:]); k3 <= 0 {
				return errCorruptSegment
			}
			b = b[k1+k2+k3:]
		}
		if n == 0 || n > uint64(runs-seen) || l < n || l > math.MaxInt32 {
			return errCorruptSegment
		}
		var ok bool
		if bin, ok = nextBin(i == 0, bin, d); !ok || bin < -binSpan || bin >= binSpan {
			return errCorruptSegment
		}
		hist[bin+binSpan] += int64(n)
		seen += int64(n)
	}
	if seen != runs {
		return errCorruptSegment
	}
	return nil
}

// decodeAll appends the durations of one bin's bytes to dst, as many as
// they hold (decodeBin's encoding; at least one).
func decodeAll(dst []int64, b []byte) ([]int64, error) {
	f, k := binary.Uvarint(b)
	if k <= 0 {
		return dst, errCorruptSegment
	}
	b = b[k:]
	v := unzigzag(f)
	dst = append(dst, v)
	for len(b) > 0 {
		var d uint64
		k := 1
		if b[0] < 0x80 {
			d = uint64(b[0])
		} else if d, k = binary.Uvarint(b); k <= 0 {
			return dst, errCorruptSegment
		}
		b = b[k:]
		v += int64(d)
		dst = append(dst, v)
	}
	return dst, nil
}

// decodeBin appends the n durations of one bin's bytes to dst: exactly n,
// which must use every byte.
func decodeBin(dst []int64, b []byte, n int64) ([]int64, error) {
	at := len(dst)
	dst, err := decodeAll(dst, b)
	if err == nil && int64(len(dst)-at) != n {
		err = errCorruptSegment
	}
	return dst, err
}

// decodeDurs appends every duration of a segment to dst, ascending.
func decodeDurs(dst []int64, bins, durs []byte, runs int64) ([]int64, error) {
	var err error
	if rerr := readBins(bins, runs, len(durs), func(sb segBin) {
		if err == nil {
			dst, err = decodeBin(dst, durs[sb.start:sb.end], sb.n)
		}
	}); rerr != nil {
		return dst, rerr
	}
	return dst, err
}

// decodeOffs appends the n offsets of b to dst.
func decodeOffs(dst []int64, b []byte, n int64) ([]int64, error) {
	for i := int64(0); i < n; i++ {
		o, k := binary.Uvarint(b)
		if k <= 0 {
			return dst, errCorruptSegment
		}
		b = b[k:]
		dst = append(dst, int64(o))
	}
	if len(b) != 0 {
		return dst, errCorruptSegment
	}
	return dst, nil
}

// MigrationVersions lists the migrations this build applies, in order (a
// cached benchmark database is upgradable if it applied none other).
func MigrationVersions() []string {
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.TrimSuffix(path.Base(n), ".sql")
	}
	return out
}

// SchemaHash identifies the schema and the summary encoding, so a cached
// database (the scan_durations benchmark's) is rebuilt when either changes.
func SchemaHash() string {
	h := sha256.New()
	h.Write([]byte(durationsFormat))
	_ = fs.WalkDir(migrations, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := migrations.ReadFile(path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}
