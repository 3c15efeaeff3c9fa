package storage

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
)

// What scan_durations keeps of the buckets it read, for the next call.
//
// A 10M-run window is 24 hours of 200 jobs, 5,000 buckets (an hour of one
// job), and between two calls a running fleet changes few of them: the
// current hour's, and those a late result or a reaped run reached. Every
// call read all of them again: the first hour's 400k runs decoded and
// filtered, the later hours' segments, the wanted bins' 14,000 rows. Now a
// call reads each bucket's change mark from duration_buckets
// (0029_duration_buckets.sql), in the same snapshot as everything else it
// reads, and reads again only the buckets whose mark moved since it kept
// them; the rest comes from here. A kept bucket is used only at the mark it
// was read at, which the triggers move with every change of its rows, so
// the answer is the one the rows give: this is a cache of the database,
// not state of the process, and any process, with it or without it,
// answers the same.
//
// The marks (0029_duration_buckets.sql). Every write of the summaries
// inserts or deletes rows of duration_segments: a bucket is rewritten by
// deleting its segments and inserting new ones, and its rows of
// duration_bins and duration_runs change only with them (durations.go). So
// triggers on duration_segments see every change, whoever writes it: the
// projector, the reaper, retention, a rebuild. A mark is drawn from one
// counter, duration_changes, never from the bucket's own row: a bucket
// emptied (its row deleted) and filled again gets a mark no bucket ever
// had, so nothing kept of it before can match. The counter starts from the
// clock (microseconds), so that a database migrated again (its tables
// dropped and made anew) does not count through the marks of before either;
// and Migrate forgets what a DB kept.
//
// On SQLite only: over libSQL the later hours are summed by the server
// (readAggregates) and the first hour is read as before; a build without
// SQLite (the Lambda bootstrap) leaves this code out.

// scanCache is what a DB keeps of the buckets scan_durations read.
type scanCache struct {
	mu      sync.Mutex
	buckets map[bucketKey]*cachedBucket
	size    int // the units of every kept bucket (cachedBucket.size)
	limit   int // the most units kept; 0: scanCacheSize
}

// scanCacheSize bounds what a DB keeps, in units of 8 bytes (a histogram
// entry, a duration, an offset): 8M, 64 MB. A 10M-run window keeps about
// 1.3M: the first hour's runs (400k durations and offsets), the later
// hours' histograms (150k entries) and the wanted bins' durations (300k).
const scanCacheSize = 8 << 20

// cachedBucket is what was read of one bucket at change mark v. hj and
// first are never changed once kept; bins grows as calls read more of the
// bucket's bins.
type cachedBucket struct {
	key   bucketKey
	v     int64
	hj    hourJob
	first []firstGroup // read as a window's first hour; nil if not
	mu    sync.Mutex
	bins  map[int32][]int64 // the durations of one bin
	size  int               // units held (under scanCache.mu)
}

// hourJob is a bucket's segments summed: counts, and the histogram as its
// non-empty bins, ascending.
type hourJob struct {
	n, lo, hi, total int64
	bins             []int32
	counts           []int64
}

// firstGroup is the runs of one bin of one of a bucket's segments, in
// the order of the segment (ascending durations): the runs of a window's
// first hour, kept whole so that any start of the window can filter them.
type firstGroup struct {
	bin        int32
	durs, offs []int64
}

// count returns the runs of bin b in the bucket.
func (hj *hourJob) count(b int) int64 {
	i, ok := slices.BinarySearch(hj.bins, int32(b))
	if !ok {
		return 0
	}
	return hj.counts[i]
}

// get returns the kept bucket k at v, or nil; with first, only one kept
// with its runs.
func (c *scanCache) get(k bucketKey, v int64, first bool) *cachedBucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.buckets[k]; b != nil && b.v == v && (!first || b.first != nil) {
		return b
	}
	return nil
}

// put keeps b unless a bucket read at a later mark, or at the same one
// with its runs where b has none, is kept. A kept bucket of an hour before
// h0 (out of this call's window) makes room first; if there is still none,
// b is not kept.
func (c *scanCache) put(b *cachedBucket, h0 int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.buckets[b.key]; old != nil {
		if old.v > b.v || old.v == b.v && (old.first != nil || b.first == nil) {
			return
		}
		c.drop(old)
	}
	if !c.makeRoom(b.size, h0) {
		return
	}
	if c.buckets == nil {
		c.buckets = map[bucketKey]*cachedBucket{}
	}
	c.buckets[b.key] = b
	c.size += b.size
}

// grow counts n more units held by b (durations of its bins) and says
// whether there is room for them; if not, they are not to be kept. The
// caller holds b.mu (the lock order is b.mu, then c.mu).
func (c *scanCache) grow(b *cachedBucket, n int, h0 int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buckets[b.key] != b || !c.makeRoom(n, h0) {
		return false // not kept (any more): its bins would only hold memory
	}
	b.size += n
	c.size += n
	return true
}

// makeRoom drops kept buckets of hours before h0 (out of the window of the
// call that needs the room) until n more units fit, and says whether they
// do (under c.mu). A call thus never drops what it uses itself, and a
// window bigger than the limit keeps what fits and reads the rest.
func (c *scanCache) makeRoom(n int, h0 int64) bool {
	limit := c.limit
	if limit == 0 {
		limit = scanCacheSize
	}
	if c.size+n <= limit {
		return true
	}
	for k, b := range c.buckets {
		if k.hour < h0 && c.size+n > limit {
			c.drop(b)
		}
	}
	return c.size+n <= limit
}

// clear forgets every kept bucket.
func (c *scanCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buckets, c.size = nil, 0
}

func (c *scanCache) drop(b *cachedBucket) {
	delete(c.buckets, b.key)
	c.size -= b.size
}

// Step 1 from the kept buckets: the window's change marks, then the
// segments of the buckets not kept at theirs, found by key (a JSON array
// of [job_id, hour]) when they are few, or over the window's later hours
// (or its first) when they are many, as on a first call: 5,000 seeks into
// duration_segments cost twice the walk over it.
const (
	bucketMarksSQL = `SELECT hour, job_id, v FROM duration_buckets WHERE hour >= ?`
	bucketSegsSQL  = `SELECT v.value->>1, v.value->>0, s.bins FROM json_each(?) AS v
		JOIN duration_segments AS s ON s.job_id = v.value->>0 AND s.hour = v.value->>1`
	bucketRunsSQL = `SELECT v.value->>1, v.value->>0, s.bins, r.durs, r.offs FROM json_each(?) AS v
		JOIN duration_segments AS s ON s.job_id = v.value->>0 AND s.hour = v.value->>1
		JOIN duration_runs AS r ON r.hour = s.hour AND r.job_id = s.job_id AND r.seg = s.seg`
	laterSegsSQL = `SELECT hour, job_id, bins FROM duration_segments WHERE hour > ?`
	firstRunsSQL = `SELECT s.hour, s.job_id, s.bins, r.durs, r.offs
		FROM duration_segments AS s JOIN duration_runs AS r USING (hour, job_id, seg) WHERE s.hour = ?`
)

// readCached is step 1 on SQLite with the kept buckets: the first hour's
// runs in the window (as readFirstHour keeps them) and the later hours'
// counts and histograms, each bucket from what is kept where its mark has
// not moved. It returns each job's later buckets, for readBinsCached.
func (w *durWindow) readCached(ctx context.Context, q queryer, c *scanCache) (map[*jobAcc][]*cachedBucket, error) {
	rows, err := q.QueryContext(ctx, bucketMarksSQL, w.h0)
	if err != nil {
		return nil, err
	}
	var all, stale, staleFirst []*cachedBucket
	nFirst := 0
	for rows.Next() {
		var k bucketKey
		var v int64
		if err := rows.Scan(&k.hour, &k.job, &v); err != nil {
			rows.Close()
			return nil, err
		}
		first := k.hour == w.h0
		if first {
			nFirst++
		}
		b := c.get(k, v, first)
		if b == nil {
			b = &cachedBucket{key: k, v: v}
			if first {
				staleFirst = append(staleFirst, b)
			} else {
				stale = append(stale, b)
			}
		}
		all = append(all, b)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	// Walked when more than a quarter of them are to be read.
	if err := readBuckets(ctx, q, stale, false, 4*len(stale) > len(all)-nFirst, w.h0); err != nil {
		return nil, err
	}
	if err := readBuckets(ctx, q, staleFirst, true, 4*len(staleFirst) > nFirst, w.h0); err != nil {
		return nil, err
	}
	for _, b := range stale {
		c.put(b, w.h0)
	}
	for _, b := range staleFirst {
		c.put(b, w.h0)
	}
	later := map[*jobAcc][]*cachedBucket{}
	for _, b := range all {
		j := w.jobs[b.key.job]
		if j == nil {
			j = w.job(b.key.job)
		}
		if b.key.hour == w.h0 {
			w.addFirst(j, b.first)
			continue
		}
		hj := &b.hj
		if hj.n == 0 {
			continue // a mark without segments (the triggers leave none): nothing to add
		}
		j.count(hj.n, hj.lo, hj.hi, hj.total)
		for i, bin := range hj.bins {
			j.hist[int(bin)+binSpan] += hj.counts[i]
		}
		later[j] = append(later[j], b)
	}
	return later, nil
}

// readBuckets reads the segments of buckets (not read yet), with their
// runs (the window's first hour, h0) or without (later hours): by key, or,
// with walk, by walking the hour(s), skipping the buckets not asked for.
func readBuckets(ctx context.Context, q queryer, buckets []*cachedBucket, runs, walk bool, h0 int64) error {
	if len(buckets) == 0 {
		return nil
	}
	byKey := make(map[bucketKey]*cachedBucket, len(buckets))
	for _, b := range buckets {
		byKey[b.key] = b
	}
	read := func(query string, args ...any) error {
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k bucketKey
			var job, bins, durs, offs sql.RawBytes
			dest := []any{&k.hour, &job, &bins}
			if runs {
				dest = append(dest, &durs, &offs)
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			b := byKey[bucketKey{hour: k.hour, job: string(job)}]
			if b == nil {
				if walk {
					continue // kept at its mark
				}
				return fmt.Errorf("segment of job %q, hour %d read, not asked for", job, k.hour)
			}
			if err := b.add(bins, durs, offs, runs); err != nil {
				return fmt.Errorf("job %q, hour %d: %w", job, k.hour, err)
			}
		}
		return rows.Err()
	}
	switch {
	case walk && runs:
		if err := read(firstRunsSQL, h0); err != nil {
			return err
		}
	case walk:
		if err := read(laterSegsSQL, h0); err != nil {
			return err
		}
	default:
		query := bucketSegsSQL
		if runs {
			query = bucketRunsSQL
		}
		for start := 0; start < len(buckets); start += binsChunk {
			chunk := buckets[start:min(start+binsChunk, len(buckets))]
			arg := pairsJSON(len(chunk), func(i int) (string, int64) { return chunk[i].key.job, chunk[i].key.hour })
			if err := read(query, arg); err != nil {
				return err
			}
		}
	}
	for _, b := range buckets {
		b.size = len(b.hj.bins)
		for _, g := range b.first {
			b.size += 2 * len(g.durs)
		}
		if runs && b.first == nil {
			b.first = []firstGroup{} // kept with its runs, which are none
		}
	}
	return nil
}

// add adds one segment of b: its bins blob and, with runs, its durations
// and offsets.
func (b *cachedBucket) add(bins, durs, offs []byte, runs bool) error {
	head, dir, err := splitBins(bins)
	if err != nil {
		return err
	}
	hj := &b.hj
	if hj.n == 0 {
		hj.lo, hj.hi = head.lo, head.hi
	}
	hj.n += head.runs
	hj.total += head.total
	hj.lo, hj.hi = min(hj.lo, head.lo), max(hj.hi, head.hi)
	merge := len(hj.bins) > 0 // an open hour's second segment or later
	if !merge {
		// Sized once: a directory entry takes at least three bytes.
		hj.bins, hj.counts = make([]int32, 0, len(dir)/3), make([]int64, 0, len(dir)/3)
	}
	bad := false
	var groups []segBin
	size := -1 // durs not read
	if runs {
		if head.runs > int64(len(durs)) || head.runs > int64(len(offs)) {
			return errCorruptSegment // every run takes a byte of each blob
		}
		size = len(durs)
		groups = make([]segBin, 0, len(dir)/3)
	}
	err = readBins(dir, head.runs, size, func(sb segBin) {
		bad = bad || sb.bin < -binSpan || sb.bin >= binSpan
		hj.bins = append(hj.bins, int32(sb.bin))
		hj.counts = append(hj.counts, sb.n)
		if runs {
			groups = append(groups, sb)
		}
	})
	if err != nil {
		return err
	}
	if bad {
		return errCorruptSegment
	}
	if merge {
		hj.sortBins()
	}
	if !runs {
		return nil
	}
	rest := []byte(offs)
	slab := make([]int64, 2*head.runs) // every group's durations and offsets
	for _, sb := range groups {
		g := firstGroup{bin: int32(sb.bin), durs: slab[0:0:sb.n], offs: slab[sb.n : sb.n : 2*sb.n]}
		slab = slab[2*sb.n:]
		if g.durs, err = decodeAll(g.durs, durs[sb.start:sb.end]); err != nil {
			return err
		}
		if int64(len(g.durs)) != sb.n {
			return errCorruptSegment
		}
		for range sb.n {
			o, k := binary.Uvarint(rest)
			if k <= 0 {
				return errCorruptSegment
			}
			g.offs = append(g.offs, int64(o))
			rest = rest[k:]
		}
		b.first = append(b.first, g)
	}
	if len(rest) != 0 {
		return errCorruptSegment
	}
	return nil
}

// sortBins sorts hj's bins and sums the counts of a bin listed twice.
func (hj *hourJob) sortBins() {
	idx := make([]int, len(hj.bins))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(hj.bins[a]) - int(hj.bins[b]) })
	bins, counts := make([]int32, 0, len(idx)), make([]int64, 0, len(idx))
	for _, i := range idx {
		if k := len(bins); k > 0 && bins[k-1] == hj.bins[i] {
			counts[k-1] += hj.counts[i]
			continue
		}
		bins, counts = append(bins, hj.bins[i]), append(counts, hj.counts[i])
	}
	hj.bins, hj.counts = bins, counts
}

// addFirst adds the runs of a first-hour bucket that finished at or after
// the window's start to j, as durWindow.add does from the blobs.
func (w *durWindow) addFirst(j *jobAcc, groups []firstGroup) {
	off0 := w.off0
	for _, g := range groups {
		first := slices.Grow(w.first, len(g.durs))
		buf, pos := first[:cap(first)], len(first)
		start := pos
		var sum int64
		for i, v := range g.durs {
			keep := int(uint64(off0-1-g.offs[i]) >> 63) // 1 if offs[i] >= off0 (both below 2⁶²)
			buf[pos] = v
			pos += keep
			sum += v & -int64(keep)
		}
		if kept := pos - start; kept > 0 {
			j.count(int64(kept), buf[start], buf[pos-1], sum)
			j.hist[int(g.bin)+binSpan] += int64(kept)
			j.firstBins = append(j.firstBins, firstSpan{bin: g.bin, start: int32(start), end: int32(pos)})
		}
		w.first = buf[:pos]
	}
}

// binsHourSQL is step 3 for the bins not kept: per [job_id, bin, hour],
// one row of its index in the statement and the bin's rows in that hour
// (one per segment) joined as binsRawSQL joins them.
const binsHourSQL = `SELECT v.key, (SELECT CAST(group_concat(printf('%x:', length(b.durs)) || b.durs, '') AS BLOB)
		FROM duration_bins AS b WHERE b.job_id = v.value->>0 AND b.bin = v.value->>1 AND b.hour = v.value->>2)
	FROM json_each(?1) AS v`

// bucketBin is one wanted bin in one later bucket, not kept.
type bucketBin struct {
	wb     *wanted
	bin    int32
	bucket *cachedBucket
}

// readBinsCached is step 3 with the later buckets of readCached: each
// wanted bin's durations from the kept buckets, and from the database for
// those not kept (all of them on a first call; on later ones the buckets
// whose mark moved), which are then kept too.
func (w *durWindow) readBinsCached(ctx context.Context, q queryer, pairs []binPair, later map[*jobAcc][]*cachedBucket, c *scanCache) error {
	var missing []bucketBin
	var walked []binPair
	var kept [][]int64
	for _, p := range pairs {
		wb := p.job.wantedBin(p.bin)
		kept = kept[:0]
		var absent []bucketBin
		for _, b := range later[p.job] {
			if b.hj.count(p.bin) == 0 {
				continue
			}
			b.mu.Lock()
			vals, ok := b.bins[int32(p.bin)]
			b.mu.Unlock()
			if ok {
				kept = append(kept, vals)
			} else {
				absent = append(absent, bucketBin{wb: wb, bin: int32(p.bin), bucket: b})
			}
		}
		// A bin of which more than a quarter of the buckets are to be
		// read (every one on a first call) is read whole, one index
		// range, instead of a seek per bucket.
		if 4*len(absent) > len(absent)+len(kept) {
			walked = append(walked, p)
			continue
		}
		for _, vals := range kept {
			wb.vals = append(wb.vals, vals...)
		}
		missing = append(missing, absent...)
	}
	if err := w.readBinsWalked(ctx, q, walked, later, c); err != nil {
		return err
	}
	for start := 0; start < len(missing); start += binsChunk {
		chunk := missing[start:min(start+binsChunk, len(missing))]
		err := indexedRows(ctx, q, len(chunk), binsHourSQL, []any{triplesJSON(chunk)}, func(i int, joined sql.RawBytes) error {
			p := chunk[i]
			vals, err := decodeRaw(nil, joined)
			if err == nil && int64(len(vals)) != p.bucket.hj.count(int(p.bin)) {
				err = errCorruptSegment
			}
			if err != nil {
				return fmt.Errorf("job %q, bin %d, hour %d: %w", p.bucket.key.job, p.bin, p.bucket.key.hour, err)
			}
			p.wb.vals = append(p.wb.vals, vals...)
			p.bucket.keep(c, p.bin, vals, w.h0)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// binsWalkSQL is step 3 for the bins read whole: per [job_id, bin], one
// row per segment of each hour after ?1 that holds runs of the bin, with
// the row's index in the statement and the hour.
const binsWalkSQL = `SELECT v.key, b.hour, b.durs FROM json_each(?2) AS v
	JOIN duration_bins AS b ON b.job_id = v.value->>0 AND b.bin = v.value->>1 AND b.hour > ?1`

// readBinsWalked reads the bins of pairs over the window's later hours,
// bucket by bucket, adds them to the wanted bins and keeps those of each
// bucket.
func (w *durWindow) readBinsWalked(ctx context.Context, q queryer, pairs []binPair, later map[*jobAcc][]*cachedBucket, c *scanCache) error {
	type pairHour struct {
		i    int
		hour int64
	}
	for start := 0; start < len(pairs); start += binsChunk {
		chunk := pairs[start:min(start+binsChunk, len(pairs))]
		arg := pairsJSON(len(chunk), func(i int) (string, int64) { return chunk[i].job.name, int64(chunk[i].bin) })
		rows, err := q.QueryContext(ctx, binsWalkSQL, w.h0, arg)
		if err != nil {
			return err
		}
		read := map[pairHour][]int64{}
		for rows.Next() {
			var k pairHour
			var durs sql.RawBytes
			if err := rows.Scan(&k.i, &k.hour, &durs); err != nil {
				rows.Close()
				return err
			}
			if k.i < 0 || k.i >= len(chunk) {
				rows.Close()
				return fmt.Errorf("bins of pair %d read, %d asked for", k.i, len(chunk))
			}
			if read[k], err = decodeAll(read[k], durs); err != nil {
				rows.Close()
				return fmt.Errorf("job %q, bin %d, hour %d: %w", chunk[k.i].job.name, chunk[k.i].bin, k.hour, err)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for k, vals := range read {
			p := chunk[k.i]
			var b *cachedBucket
			for _, lb := range later[p.job] {
				if lb.key.hour == k.hour {
					b = lb
					break
				}
			}
			if b == nil || int64(len(vals)) != b.hj.count(p.bin) {
				return fmt.Errorf("job %q, bin %d, hour %d: %d runs read, not in its histogram: %w", p.job.name, p.bin, k.hour, len(vals), errCorruptSegment)
			}
			wb := p.job.wantedBin(p.bin)
			wb.vals = append(wb.vals, vals...)
			b.keep(c, int32(p.bin), vals, w.h0)
		}
	}
	return nil
}

// keep keeps the durations of bin of b, unless they are kept already
// (read by another call at the same time) or there is no room.
func (b *cachedBucket) keep(c *scanCache, bin int32, vals []int64, h0 int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.bins[bin]; ok || !c.grow(b, len(vals), h0) {
		return
	}
	if b.bins == nil {
		b.bins = map[int32][]int64{}
	}
	b.bins[bin] = vals
}

// triplesJSON is the JSON array of [job_id, bin, hour] of bins, for a
// json_each argument.
func triplesJSON(bins []bucketBin) string {
	b := make([]byte, 0, 32*len(bins)+2)
	b = append(b, '[')
	for i, p := range bins {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKeyJSON(b, p.bucket.key.job, int64(p.bin), p.bucket.key.hour)
	}
	return string(append(b, ']'))
}

// appendKeyJSON appends the JSON array [name, nums…] to b.
func appendKeyJSON(b []byte, name string, nums ...int64) []byte {
	// A string always marshals; job IDs are valid UTF-8 (decoded from
	// JSON), so none is changed on the way.
	q, _ := json.Marshal(name)
	b = append(b, '[')
	b = append(b, q...)
	for _, v := range nums {
		b = append(b, ',')
		b = strconv.AppendInt(b, v, 10)
	}
	return append(b, ']')
}

// indexedRows runs query, whose rows are each an index into the n keys it
// was asked about and one value, and calls fn with each (the value valid
// until fn returns).
func indexedRows(ctx context.Context, q queryer, n int, query string, args []any, fn func(i int, v sql.RawBytes) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var v sql.RawBytes
		if err := rows.Scan(&i, &v); err != nil {
			return err
		}
		if i < 0 || i >= n {
			return fmt.Errorf("row of pair %d read, %d asked for", i, n)
		}
		if err := fn(i, v); err != nil {
			return err
		}
	}
	return rows.Close()
}
