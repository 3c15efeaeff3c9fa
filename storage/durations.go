package storage

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"
)

// Run-duration summaries (table duration_segments, read by ScanDurations).
//
// GET /api/health/scan_durations must give exact nearest-rank percentiles over
// a window that may hold a million runs, also over a remote libSQL database
// where pulling every row is not an option. So the write path keeps, per
// (hour of finished_at, job) bucket, the bucket's durations sorted, split into
// a few segments: each write transaction appends at most one segment per
// bucket it touched (a blind insert, no read), and a bucket is compacted into
// one segment when it reaches maxSegments or once its job has moved on to the
// next hour. Removing an entry (a reaped run that got its real result, a row
// deleted by retention) rewrites its bucket: rare, and a bucket is small.
//
// Invariant: a row of execution_results has exactly one entry (duration_ms,
// finished_at's offset within its hour) in bucket (hour, job_id) iff its
// job_id, finished_at and duration_ms are all set. Every writer of those
// columns calls addDuration/removeDuration accordingly (projection.go,
// reap.go, housekeeping.go); loadRuns' inSummary is the same test.

// maxSegments is how many segments a bucket may have before the next write
// compacts it. More segments mean cheaper appends and a slower scan.
const maxSegments = 8

// durationsFormat versions the segment encoding; part of SchemaHash.
const durationsFormat = "durations-v1"

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
	probe := slices.Clone(touched)
	for _, k := range touched {
		p := bucketKey{hour: k.hour - 1, job: k.job}
		if len(changes[k].adds) > 0 && changes[p] == nil {
			probe = append(probe, p)
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
		if len(c.removes) > 0 || meta[k].count >= maxSegments {
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
	if len(rewrite) > 0 {
		stored, err := tx.loadBuckets(ctx, rewrite)
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
			if len(es) > 0 {
				out = append(out, segmentRow{key: k, seg: 0, entries: es})
			}
		}
		if err := tx.deleteBuckets(ctx, rewrite); err != nil {
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
	return tx.insertSegments(ctx, out)
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

// loadBuckets returns every entry of the given buckets, segments merged.
func (tx *Tx) loadBuckets(ctx context.Context, keys []bucketKey) (map[bucketKey][]durEntry, error) {
	out := make(map[bucketKey][]durEntry, len(keys))
	err := chunks(keys, func(ks []bucketKey) error {
		in, args := bucketValues(ks)
		rows, err := tx.tx.QueryContext(ctx, `SELECT hour, job_id, runs, durs, offs FROM duration_segments
			WHERE (hour, job_id) IN `+in, args...)
		if err != nil {
			return fmt.Errorf("load duration segments: %w", err)
		}
		defer rows.Close()
		var ms, offs []int64
		for rows.Next() {
			var k bucketKey
			var runs int64
			var durBlob, offBlob []byte
			if err := rows.Scan(&k.hour, &k.job, &runs, &durBlob, &offBlob); err != nil {
				return fmt.Errorf("load duration segments: %w", err)
			}
			if ms, err = decodeDurs(ms[:0], durBlob, runs); err != nil {
				return fmt.Errorf("duration segment of job %q, hour %d: %w", k.job, k.hour, err)
			}
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
	return out, err
}

func (tx *Tx) deleteBuckets(ctx context.Context, keys []bucketKey) error {
	return chunks(keys, func(ks []bucketKey) error {
		in, args := bucketValues(ks)
		if _, err := tx.tx.ExecContext(ctx, `DELETE FROM duration_segments WHERE (hour, job_id) IN `+in, args...); err != nil {
			return fmt.Errorf("delete duration segments: %w", err)
		}
		return nil
	})
}

// segmentRow is one segment to insert.
type segmentRow struct {
	key     bucketKey
	seg     int64
	entries []durEntry
}

func (tx *Tx) insertSegments(ctx context.Context, segs []segmentRow) error {
	const cols = 6
	per := maxVars / cols
	for len(segs) > 0 {
		n := min(len(segs), per)
		args := make([]any, 0, n*cols)
		for _, s := range segs[:n] {
			durs, offs := encodeSegment(s.entries)
			args = append(args, s.key.hour, s.key.job, s.seg, int64(len(s.entries)), durs, offs)
		}
		if _, err := tx.tx.ExecContext(ctx, `INSERT INTO duration_segments (hour, job_id, seg, runs, durs, offs)
			VALUES `+placeholders(n, cols), args...); err != nil {
			return fmt.Errorf("insert %d duration segments: %w", n, err)
		}
		segs = segs[n:]
	}
	return nil
}

// encodeSegment sorts es by (duration, offset) and encodes it: durations as
// uvarint deltas (runs of a job are alike, so most take one or two bytes),
// offsets as plain uvarints in the same order.
func encodeSegment(es []durEntry) (durs, offs []byte) {
	slices.SortFunc(es, func(a, b durEntry) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	durs = make([]byte, 0, 2*len(es))
	offs = make([]byte, 0, 6*len(es))
	prev := int64(0)
	for _, e := range es {
		durs = binary.AppendUvarint(durs, uint64(e.ms-prev))
		prev = e.ms
		offs = binary.AppendUvarint(offs, uint64(e.off))
	}
	return durs, offs
}

var errCorruptSegment = errors.New("corrupt duration segment")

// decodeDurs appends the n durations of b to dst.
func decodeDurs(dst []int64, b []byte, n int64) ([]int64, error) {
	v := int64(0)
	for i := int64(0); i < n; i++ {
		d, k := binary.Uvarint(b)
		if k <= 0 {
			return dst, errCorruptSegment
		}
		b = b[k:]
		v += int64(d)
		dst = append(dst, v)
	}
	if len(b) != 0 {
		return dst, errCorruptSegment
	}
	return dst, nil
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
