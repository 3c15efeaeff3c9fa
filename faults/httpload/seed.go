package httpload

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

const (
	// seedBatch is the rows per write transaction, the projector's order of
	// magnitude.
	seedBatch = 5000
	// seedJobs is the number of distinct manifest ids the runs spread over.
	seedJobs = 200
	// freshPermille of the agents beat within the last minute; the rest are
	// stale by minutes to a month (powered-off laptops).
	freshPermille = 650
)

// Seeded describes the data set Run serves.
type Seeded struct {
	Agents, Fresh int
	Runs, Failed  int
	// Jobs is the number of distinct job ids that have at least one run.
	Jobs int
	Took time.Duration
}

// seed fills a fresh SQLite file at path through the projection's write path
// (storage.Tx.ApplyResults and UpsertHeartbeats, so the trigger-maintained
// summaries the endpoints read are built as in production). Runs finish
// between now−23 h and now−1 min, so they stay inside /api/health/
// scan_durations' default 24 h window for the rest of the hour however long
// seeding takes. Heartbeats are written last, so the fresh ones are still
// fresh when the load starts. The data is a deterministic function of the
// sizes and now.
func seed(ctx context.Context, path string, agents, runs int, now func() time.Time) (Seeded, error) {
	start := time.Now()
	db, err := storage.Open(ctx, path, storage.Options{})
	if err != nil {
		return Seeded{}, fmt.Errorf("seed: %w", err)
	}
	defer db.Close()
	s := Seeded{Agents: agents, Runs: runs}
	rng := rand.New(rand.NewPCG(uint64(agents), uint64(runs)))

	// Each job has its own typical duration, log-uniform from 50 ms to 30
	// min (4.5 orders of magnitude), with a log-normal spread around it.
	mu := make([]float64, seedJobs)
	for j := range mu {
		mu[j] = math.Log(50) + rng.Float64()*(math.Log(30*60*1000)-math.Log(50))
	}
	jobs := map[int]bool{}
	base := now()
	first, span := base.Add(-23*time.Hour), 23*time.Hour-time.Minute
	exitOK, exitFail := int64(0), int64(1)
	batch := make([]storage.Result, 0, seedBatch)
	for i := range runs {
		finished := spread(first, span, i, runs).Add(time.Duration(rng.Int64N(int64(time.Millisecond))))
		j := rng.IntN(seedJobs)
		jobs[j] = true
		d := time.Duration(math.Exp(mu[j]+rng.NormFloat64()*0.8) * float64(time.Millisecond))
		if rng.IntN(1000) == 0 { // clock skew: finished before started
			d = -time.Duration(rng.Int64N(int64(time.Second)))
		}
		exit := &exitOK
		if rng.IntN(50) == 0 {
			exit, s.Failed = &exitFail, s.Failed+1
		}
		id := fmt.Sprintf("%016x-%07d", rng.Uint64(), i)
		batch = append(batch, storage.Result{
			ExecResult: kanade.ExecResult{ResultID: id, RequestID: id, PcID: pcID(rng.IntN(max(agents, 1))),
				ExitCode: exit, StartedAt: kanade.Timestamp{Time: finished.Add(-d)}, FinishedAt: kanade.Timestamp{Time: finished},
				ManifestID: fmt.Sprintf("job-%03d", j), Stdout: "ok"},
			RecordedAt: finished.Add(time.Duration(rng.Int64N(int64(2 * time.Second)))),
		})
		if len(batch) == seedBatch || i == runs-1 {
			if err := db.Update(ctx, func(tx *storage.Tx) error {
				_, err := tx.ApplyResults(ctx, batch)
				return err
			}); err != nil {
				return Seeded{}, fmt.Errorf("seed runs %d..%d: %w", i+1-len(batch), i, err)
			}
			batch = batch[:0]
		}
	}
	s.Jobs = len(jobs)

	base = now()
	beats := make([]kanade.Heartbeat, 0, seedBatch)
	for i := range agents {
		var at time.Time
		if rng.IntN(1000) < freshPermille {
			at = base.Add(-time.Duration(rng.Int64N(int64(time.Minute))))
			s.Fresh++
		} else {
			at = base.Add(-3*time.Minute - time.Duration(rng.Int64N(int64(30*24*time.Hour))))
		}
		host, os := fmt.Sprintf("pc-%06d.corp.example", i), "windows"
		beats = append(beats, kanade.Heartbeat{PcID: pcID(i), At: kanade.Timestamp{Time: at}, AgentVersion: "0.45.3",
			Hostname: &host, OsFamily: &os})
		if len(beats) == seedBatch || i == agents-1 {
			if err := db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, beats) }); err != nil {
				return Seeded{}, fmt.Errorf("seed heartbeats %d..%d: %w", i+1-len(beats), i, err)
			}
			beats = beats[:0]
		}
	}
	if err := db.Close(); err != nil {
		return Seeded{}, fmt.Errorf("seed: close %s: %w", path, err)
	}
	s.Took = time.Since(start)
	return s, nil
}

// spread is the i-th of n instants evenly spaced over [first, first+span).
// It divides first: i·span overflows int64 nanoseconds beyond about 110 000
// runs over 23 h, which once folded a million runs into five hours.
func spread(first time.Time, span time.Duration, i, n int) time.Time {
	step := span / time.Duration(n)
	return first.Add(step * time.Duration(i))
}

// pcID is the i-th agent's id, inside the wire pattern [A-Za-z0-9_=/-]{1,128}.
func pcID(i int) string { return fmt.Sprintf("PC-%06d", i) }
