package main

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/bench/ingestkit"
	"github.com/kanade-fleet/backend/bench/seed"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
)

// Issue 16's ingest targets.
const (
	targetRatioKept = 0.90        // the ratio at -runs over the ratio at -compare
	targetStall     = time.Second // the longest a result waits while retention runs
)

// ingest is section 4. For each database size (-compare, then -runs) it
// copies the cached file (the projector and the baseline write into it),
// and times, over -ingest-rounds rounds of -ingest-n results, the real
// projector draining RESULTS of an embedded JetStream server against
// ingestkit.RawInsert of as many other results into the same copy,
// alternating which goes first so neither always meets the fuller
// database. The ratio of the two rates is bench/ingest's. On the -runs copy
// it then runs retention: results published at -ingest-rate a second, first
// with nothing else writing (the baseline), then while the real
// housekeeping (Worker.HousekeepOver) deletes old runs in its bounded
// transactions: by default in a round every -hk-period, each spread over
// three quarters of it as the worker's own loop spreads it, its clock set
// so that the runs past the window grow by -retention-rate a day; with
// -retention-rate 0, a backlog of -retention-rows runs in one round at
// once. The stall is how long a result waited from its publish until the
// projector's offset covered it.
func ingest(ctx context.Context, o options) ([]row, error) {
	sizes := []int{o.compare}
	if o.runs != o.compare {
		sizes = append(sizes, o.runs)
	}
	var rows []row
	var ratios []float64
	for i, size := range sizes {
		r, ratio, err := ingestAt(ctx, o, size, i == len(sizes)-1)
		if err != nil {
			return nil, fmt.Errorf("ingest at %d runs: %w", size, err)
		}
		rows = append(rows, r...)
		ratios = append(ratios, ratio)
	}
	if len(ratios) == 2 {
		q := ratios[1] / ratios[0]
		rows = append(rows, row{fmt.Sprintf("ingest ratio kept: at %d runs / at %d runs", o.runs, o.compare), fmt.Sprintf("%.2f", q),
			fmt.Sprintf("%.2f at %d", ratios[0], o.compare), fmt.Sprintf(">= %.2f", targetRatioKept), verdict(q >= targetRatioKept),
			fmt.Sprintf("projector/raw %.2f at %d runs, %.2f at %d runs", ratios[1], o.runs, ratios[0], o.compare)})
	}
	return rows, nil
}

// ingestAt measures one database size; with retention it also runs the
// retention part on it.
func ingestAt(ctx context.Context, o options, size int, retention bool) ([]row, float64, error) {
	cached, err := seed.BulkCached(ctx, size, o.jobs, o.agents, logf)
	if err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp(o.scratch, "kanade-bench-scale-ingest-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kanade.db")
	start := time.Now()
	if err := backup(ctx, cached, path); err != nil {
		return nil, 0, err
	}
	logf("ingest: copied %s in %v", cached, time.Since(start).Round(time.Millisecond))
	db, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, 0, err
	}
	defer raw.Close()
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"))
	if err != nil {
		return nil, 0, err
	}
	defer b.Close()
	js, client := b.JS, b.Client

	// Results of a 10k-PC simulated fleet, as bench/ingest publishes them;
	// each call of next makes results no earlier call made.
	fleet := sim.NewFleet(sim.Config{Agents: 10000, Seed: uint64(size), LateRate: -1, DuplicateRate: -1})
	jobs := fleet.Config().Jobs
	base := time.Now().Add(-24 * time.Hour)
	made := 0
	next := func(n int) func(int) kanade.ExecResult {
		from := made
		made += n
		return func(i int) kanade.ExecResult {
			k := from + i
			return fleet.Run(sim.RunSpec{Agent: k % 10000, Job: jobs[k%len(jobs)], StartedAt: base.Add(time.Duration(k) * 10 * time.Millisecond)}).Result
		}
	}
	before, err := countRows(ctx, raw)
	if err != nil {
		return nil, 0, err
	}
	// One round per side, untimed, warms the page cache, the projector's
	// caches and the server.
	warm := max(o.ingestN/10, 1000)
	var tOurs, tRaw []time.Duration
	var ratios []float64
	rounds := o.ingestRounds + o.ingestRounds%2 // pairs, one of each order
	for round := -1; round < rounds; round++ {
		n := o.ingestN
		if round < 0 {
			n = warm
		}
		_, last, err := ingestkit.Publish(ctx, js, n, next(n))
		if err != nil {
			return nil, 0, err
		}
		rawRows := make([]storage.Result, n)
		gen := next(n)
		for i := range rawRows {
			rawRows[i] = storage.Result{ExecResult: gen(i), RecordedAt: time.Now()}
		}
		var dOurs, dRaw time.Duration
		ours := func() error {
			dOurs, err = ingestkit.Project(ctx, db, client, projection.Config{BatchSize: 1000}, last)
			return err
		}
		baseline := func() error {
			start := time.Now()
			err := ingestkit.RawInsert(ctx, db, rawRows)
			dRaw = time.Since(start)
			return err
		}
		first, second := ours, baseline
		if round%2 != 0 {
			first, second = baseline, ours
		}
		if err := first(); err != nil {
			return nil, 0, err
		}
		if err := second(); err != nil {
			return nil, 0, err
		}
		if round >= 0 {
			tOurs, tRaw = append(tOurs, dOurs), append(tRaw, dRaw)
			ratios = append(ratios, dRaw.Seconds()/dOurs.Seconds())
			logf("ingest at %d runs, round %d: projector %v, raw %v (%d results each)", size, round, dOurs.Round(time.Millisecond),
				dRaw.Round(time.Millisecond), n)
		}
	}
	after, err := countRows(ctx, raw)
	if err != nil {
		return nil, 0, err
	}
	if want := before + 2*int64(warm+rounds*o.ingestN); after != want {
		return nil, 0, fmt.Errorf("%d rows after the rounds, want %d", after, want)
	}
	// Medians: on a shared machine one round in a few is slowed by a
	// neighbour, on either side. The ratio is of pairs of rounds, one of
	// each order: whichever side runs second in a round runs while the
	// checkpointer copies the first side's WAL, and took up to twice as
	// long (10M runs: ours 10.1 s then raw 11.1 s; raw 11.7 s then ours
	// 14.9 s), so a ratio of rounds swung between 0.8 and 1.4 with the
	// order, and an odd number of rounds leant to one order.
	n := float64(o.ingestN)
	oursRate, rawRate := n/median(tOurs).Seconds(), n/median(tRaw).Seconds()
	var pairs []float64
	for i := 0; i+1 < len(tOurs); i += 2 {
		pairs = append(pairs, (tRaw[i]+tRaw[i+1]).Seconds()/(tOurs[i]+tOurs[i+1]).Seconds())
	}
	sorted := slices.Sorted(slices.Values(pairs))
	ratio := (sorted[(len(sorted)-1)/2] + sorted[len(sorted)/2]) / 2 // of an even count, the middle two's mean
	rows := []row{{fmt.Sprintf("results projection into %d runs (median of %d rounds of %d results, batch 1000)", before, rounds, o.ingestN),
		fmt.Sprintf("%.0f rows/s", oursRate), fmt.Sprintf("raw batched INSERT %.0f rows/s", rawRate), "", "",
		fmt.Sprintf("projector/raw %.2f (bench/ingest's ratio; the median of pairs of rounds, one of each order, %.2f; of rounds %.2f)", ratio, pairs, ratios)}}
	logf("ingest at %d runs: projector %.0f rows/s, raw %.0f rows/s, ratio %.2f", size, oursRate, rawRate, ratio)
	if !retention {
		return rows, ratio, nil
	}
	r, err := retain(ctx, o, db, raw, client, js, next)
	if err != nil {
		return nil, 0, fmt.Errorf("retention: %w", err)
	}
	return append(rows, r), ratio, nil
}

// backup copies the SQLite file at src to dst through SQLite's online
// backup, in one step under one read transaction: the cached file may be
// written by another benchmark meanwhile (section 1's writer), and a cp of
// a file in mid-checkpoint would be torn.
func backup(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Raw(func(dc any) error {
		b, err := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		}).NewBackup(dst)
		if err != nil {
			return err
		}
		for more := true; more; { // Step says whether pages are left
			if more, err = b.Step(-1); err != nil {
				b.Finish()
				return err
			}
		}
		return b.Finish()
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func countRows(ctx context.Context, raw *sql.DB) (int64, error) {
	var n int64
	err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM execution_results`).Scan(&n)
	return n, err
}

// retain is the retention part of section 4 (see ingest).
func retain(ctx context.Context, o options, db *storage.DB, raw *sql.DB, client *bus.Client, js jetstream.JetStream,
	next func(int) func(int) kanade.ExecResult) (row, error) {
	total, err := countRows(ctx, raw)
	if err != nil {
		return row{}, err
	}
	// The housekeeping rounds: when each starts (after the retention
	// part's start), its now and whether runs expire by it. Paced, a round
	// every -hk-period, spread as the worker's loop spreads it, at the now
	// that makes the runs expired by then -retention-rate a day's worth of
	// the windows with retention; with -retention-control every other
	// round is a control: its now is the round's before, so it finds
	// nothing new to delete, and the results published in its window are
	// the baseline of those published in the others. As a backlog, one
	// round at once.
	type round struct {
		at  time.Duration
		now time.Time
		on  bool
	}
	var (
		rounds  []round
		windows int // paced: the rounds with retention
		spread  time.Duration
		edge    string // the last round's cutoff: what is older must be gone
	)
	if o.retentionRate == 0 {
		del := min(o.retentionRows, int(total/10))
		if err := raw.QueryRowContext(ctx, `SELECT recorded_at FROM execution_results ORDER BY recorded_at LIMIT 1 OFFSET ?`, del).Scan(&edge); err != nil {
			return row{}, err
		}
		cutoff, err := kanade.ParseTime(edge)
		if err != nil {
			return row{}, err
		}
		// Housekeeping's clock: the edge row is exactly ResultRetention old.
		// The results published below are recorded at the wall clock, months
		// after the seeded ones, so retention never reaches them.
		rounds = []round{{0, cutoff.Add(storage.ResultRetention), true}}
	} else {
		n := int(o.retentionTime / o.hkPeriod)
		if n == 0 || o.retentionControl && n < 2 {
			return row{}, fmt.Errorf("-retention-time %v holds no round of -hk-period %v with retention (and one without, with -retention-control)", o.retentionTime, o.hkPeriod)
		}
		on := func(i int) bool { return !o.retentionControl || i%2 == 0 }
		// expiring is how many runs expire in k windows with retention.
		expiring := func(k int) int {
			return int(float64(o.retentionRate) * (time.Duration(k) * o.hkPeriod).Seconds() / (24 * time.Hour).Seconds())
		}
		windows = n
		if o.retentionControl {
			windows = (n + 1) / 2 // the even rounds
		}
		del := min(expiring(windows), int(total/10))
		rs, err := raw.QueryContext(ctx, `SELECT recorded_at FROM execution_results ORDER BY recorded_at LIMIT ?`, del+1)
		if err != nil {
			return row{}, err
		}
		var edges []string
		for rs.Next() {
			var e string
			if err := rs.Scan(&e); err != nil {
				rs.Close()
				return row{}, err
			}
			edges = append(edges, e)
		}
		if err := cmp.Or(rs.Err(), rs.Close()); err != nil {
			return row{}, err
		}
		var now time.Time
		for i, k := 0, 0; i < n; i++ {
			if on(i) {
				k++
				edge = edges[min(expiring(k), len(edges)-1)]
				cutoff, err := kanade.ParseTime(edge)
				if err != nil {
					return row{}, err
				}
				now = cutoff.Add(storage.ResultRetention)
			}
			rounds = append(rounds, round{time.Duration(i) * o.hkPeriod, now, on(i)})
		}
		spread = projection.RetentionSpread(o.hkPeriod)
	}
	var expired int64
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM execution_results WHERE recorded_at < ?`, edge).Scan(&expired); err != nil {
		return row{}, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A round's first reading of the clock, its now (hence the cutoff), is
	// the round's now exactly; later ones move on with the wall clock, as
	// housekeeping times its transactions and rests with them.
	var armed atomic.Bool
	var roundNow atomic.Int64 // the round's now, ns
	var first atomic.Int64    // wall-clock ns of the round's first reading
	roundNow.Store(rounds[0].now.UnixNano())
	clock := func() time.Time {
		base := time.Unix(0, roundNow.Load()).UTC()
		if !armed.Load() || first.CompareAndSwap(0, time.Now().UnixNano()) {
			return base
		}
		return base.Add(time.Duration(time.Now().UnixNano() - first.Load()))
	}
	hk, err := projection.New(projection.Config{DB: db, Clock: clock, Housekeeping: -1,
		HousekeepingTxTime: o.hkTxTime, HousekeepingRest: o.hkRest, Registerer: prometheus.NewRegistry(), Logger: quiet})
	if err != nil {
		return row{}, err
	}
	w, err := projection.New(projection.Config{DB: db, Bus: client, Housekeeping: -1, Registerer: prometheus.NewRegistry(), Logger: quiet})
	if err != nil {
		return row{}, err
	}
	stream, err := js.Stream(ctx, kanade.StreamResults)
	if err != nil {
		return row{}, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return row{}, err
	}
	firstSeq := info.State.LastSeq + 1
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); w.Run(wctx) }()
	defer func() { stopWorker(); <-workerDone }()

	// The poller: when each offset became visible, at 5 ms resolution.
	type poll struct {
		start, at time.Time // the read's start and end
		seq       uint64
		began     time.Time // when the transaction that moved the offset to seq began (its updated_at)
	}
	var (
		mu    sync.Mutex
		polls []poll
	)
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	pollDone := make(chan error, 1)
	go func() {
		for pctx.Err() == nil {
			start := time.Now()
			off, err := db.Offset(pctx, projection.ConsumerResults)
			if err != nil && pctx.Err() == nil {
				pollDone <- err
				return
			}
			mu.Lock()
			polls = append(polls, poll{start, time.Now(), off.Seq, off.UpdatedAt})
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
		pollDone <- nil
	}()

	// The publisher: -ingest-rate results a second, paced every 10 ms, its
	// publish times indexed by stream sequence − firstSeq.
	var published []time.Time
	gen := next(1 << 30)
	publish := func(until func() bool) error {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		began, sent := time.Now(), 0
		for now := range t.C {
			if until() {
				return nil
			}
			for due := int(float64(o.ingestRate) * now.Sub(began).Seconds()); sent < due; sent++ {
				r := gen(len(published))
				data, err := json.Marshal(r)
				if err != nil {
					return err
				}
				published = append(published, time.Now())
				if _, err := js.PublishAsync("results."+r.RequestID, data, jetstream.WithStallWait(time.Minute)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// Baseline: the same rate, nothing else writing.
	baseUntil := time.Now().Add(o.retentionBase)
	if err := publish(func() bool { return time.Now().After(baseUntil) }); err != nil {
		return row{}, err
	}
	split := len(published)
	var (
		hkErr   error
		hkStart = time.Now()
		hkTook  time.Duration
		hkDone  = make(chan struct{})
	)
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile + ".retention")
		if err != nil {
			return row{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return row{}, err
		}
	}
	armed.Store(true)
	go func() {
		defer close(hkDone)
		if o.cpuprofile != "" {
			defer pprof.StopCPUProfile()
		}
		for _, r := range rounds {
			select {
			case <-time.After(time.Until(hkStart.Add(r.at))):
			case <-ctx.Done():
				hkErr = ctx.Err()
				return
			}
			first.Store(0)
			roundNow.Store(r.now.UnixNano())
			start := time.Now()
			if hkErr = hk.HousekeepOver(ctx, nil, spread); hkErr != nil {
				return
			}
			if len(rounds) > 1 {
				kind := "round"
				if !r.on {
					kind = "control round"
				}
				logf("retention: %s at %v (cutoff %s) took %v", kind, r.at, r.now.Add(-storage.ResultRetention).Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
			}
		}
		if len(rounds) > 1 { // the last window runs its length too
			select {
			case <-time.After(time.Until(hkStart.Add(time.Duration(len(rounds)) * o.hkPeriod))):
			case <-ctx.Done():
				hkErr = ctx.Err()
				return
			}
		}
		hkTook = time.Since(hkStart)
	}()
	if err := publish(func() bool {
		select {
		case <-hkDone:
			return true
		default:
			return false
		}
	}); err != nil {
		return row{}, err
	}
	<-hkDone
	if hkErr != nil {
		return row{}, hkErr
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return row{}, fmt.Errorf("publish: no acknowledgement within a minute")
	}
	lastSeq := firstSeq + uint64(len(published)) - 1
	for {
		off, err := db.Offset(ctx, projection.ConsumerResults)
		if err != nil {
			return row{}, err
		}
		if off.Seq >= lastSeq {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // one more poll sees it
	stopPoll()
	if err := <-pollDone; err != nil {
		return row{}, err
	}
	if info, err := stream.Info(ctx); err != nil {
		return row{}, err
	} else if info.State.LastSeq != lastSeq {
		return row{}, fmt.Errorf("stream's last sequence %d, want %d: something else published", info.State.LastSeq, lastSeq)
	}

	// Checks: nothing past the window is left, and exactly the expired rows
	// went (the published ones all arrived).
	var left int64
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM execution_results WHERE recorded_at < ?`, edge).Scan(&left); err != nil {
		return row{}, err
	}
	now, err := countRows(ctx, raw)
	if err != nil {
		return row{}, err
	}
	if left != 0 || now != total-expired+int64(len(published)) {
		return row{}, fmt.Errorf("after retention: %d rows past the window left (want 0), %d rows (want %d - %d + %d published)",
			left, now, total, expired, len(published))
	}

	// Lags: from a result's publish to the first poll that saw the offset
	// cover it (seenBy: that poll's index).
	lags := make([]time.Duration, len(published))
	seenBy := make([]int, len(published))
	for i, at := range published {
		seq := firstSeq + uint64(i)
		j := sort.Search(len(polls), func(j int) bool { return polls[j].seq >= seq })
		if j == len(polls) {
			return row{}, fmt.Errorf("result %d never committed", seq)
		}
		lags[i], seenBy[i] = max(polls[j].at.Sub(at), 0), j
	}
	pct := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	// The waits of the results published with retention (hkLags) and, in
	// the paced run with -retention-control, of those published in the
	// control windows between (offLags): a result belongs to the window of
	// the round its publish fell in.
	baseLags := lags[:split]
	var withIdx, offIdx []int // indexes into lags
	for i := split; i < len(lags); i++ {
		w := 0
		if len(rounds) > 1 {
			w = min(int(published[i].Sub(hkStart)/o.hkPeriod), len(rounds)-1)
		}
		if rounds[w].on {
			withIdx = append(withIdx, i)
		} else {
			offIdx = append(offIdx, i)
		}
	}
	pick := func(is []int) []time.Duration {
		ds := make([]time.Duration, len(is))
		for k, i := range is {
			ds[k] = lags[i]
		}
		return ds
	}
	hkLags, offLags := pick(withIdx), pick(offIdx)
	if len(baseLags) == 0 || len(hkLags) == 0 || o.retentionRate > 0 && o.retentionControl && len(offLags) == 0 {
		return row{}, fmt.Errorf("no results published in a phase (%d before, %d with retention, %d in control windows)", len(baseLags), len(hkLags), len(offLags))
	}
	mx, p99 := slices.Max(hkLags), pct(hkLags, 0.99)
	// Where the longest waits went: publish -> stored in the stream (the
	// message's timestamp) -> the projector's transaction began (its
	// updated_at: fetched, decoded, the writer's turn won) -> the poll that
	// saw it ended (applied, committed, read back). The five longest with
	// retention, and the three longest of the control windows.
	longest := func(is []int, k int) []int {
		s := slices.Clone(is)
		slices.SortFunc(s, func(a, b int) int { return cmp.Compare(lags[b], lags[a]) })
		return s[:min(k, len(s))]
	}
	worst := longest(withIdx, 5)
	worstOff := longest(offIdx, 3)
	var longestPoll time.Duration
	for _, p := range polls {
		longestPoll = max(longestPoll, p.at.Sub(p.start))
	}
	logf("retention: the longest poll (one read of the offset) took %v", longestPoll)
	for k, i := range append(worst, worstOff...) {
		seq := firstSeq + uint64(i)
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			return row{}, fmt.Errorf("stream message %d: %w", seq, err)
		}
		j := seenBy[i]
		p := polls[j]
		arm := "with retention"
		if k >= len(worst) {
			arm = "in a control window"
		}
		logf("retention: wait %v of result %d published at %s %s: publish -> stored %v, -> its transaction began %v, -> the poll that saw it ended %v (that poll took %v; the one before ended %v after the publish)",
			lags[i], seq, published[i].UTC().Format("15:04:05.000"), arm, m.Time.Sub(published[i]), p.began.Sub(m.Time), p.at.Sub(p.began), p.at.Sub(p.start), polls[max(j-1, 0)].at.Sub(published[i]))
	}
	// The rate over the windows with retention (a backlog: over its round).
	onTime := hkTook
	if o.retentionRate > 0 {
		onTime = time.Duration(windows) * o.hkPeriod
	}
	rate := float64(expired) / onTime.Seconds()
	baseline := fmt.Sprintf("no retention: max %s, p99 %s", ms(slices.Max(baseLags)), ms(pct(baseLags, 0.99)))
	logf("retention: %d rows in %v of windows with retention (%.1f rows/s); lag with retention p50 %v p99 %v max %v; %v before it p50 %v p99 %v max %v",
		expired, onTime.Round(time.Millisecond), rate, pct(hkLags, 0.5), p99, mx, o.retentionBase, pct(baseLags, 0.5), pct(baseLags, 0.99), slices.Max(baseLags))
	if len(offLags) > 0 {
		logf("retention: lag in the control windows between (%v) p50 %v p99 %v max %v", hkTook-onTime, pct(offLags, 0.5), pct(offLags, 0.99), slices.Max(offLags))
		baseline = fmt.Sprintf("control windows between: max %s, p99 %s (%v before: max %s)", ms(slices.Max(offLags)), ms(pct(offLags, 0.99)), o.retentionBase, ms(slices.Max(baseLags)))
	}
	how, txRows, paceRest := fmt.Sprintf("a backlog of %d of %d runs at once", expired, total), "1000 rows", ""
	if o.retentionRate > 0 {
		txRows, paceRest = "a second's pace", " or until its rows' share of the spread has passed"
		how = fmt.Sprintf("%d runs a day (%d of %d runs in %v, rounds every %v spread over %v)", o.retentionRate, expired, total, onTime, o.hkPeriod, spread)
		if len(offLags) > 0 {
			how += fmt.Sprintf(", each window with retention followed by a control window of %v", o.hkPeriod)
		}
	}
	counts := fmt.Sprintf("%d results during it", len(hkLags))
	if len(offLags) > 0 {
		counts = fmt.Sprintf("%d results with retention, %d in control windows", len(hkLags), len(offLags))
	}
	return row{fmt.Sprintf("ingest stall while retention deletes %s (%d results/s)", how, o.ingestRate),
		fmt.Sprintf("max %s, p99 %s", ms(mx), ms(p99)),
		baseline,
		"<= " + ms(targetStall), verdict(mx <= targetStall),
		fmt.Sprintf("publish -> offset, 5 ms polls; deleted at %.1f rows/s (transactions of at most %s, fewer past %v, each followed by a rest of %gx its time%s); %s",
			rate, txRows, cmp.Or(o.hkTxTime, projection.DefaultHousekeepingTxTime), max(cmp.Or(o.hkRest, projection.DefaultHousekeepingRest), 0), paceRest, counts)}, nil
}
