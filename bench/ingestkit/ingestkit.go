// Package ingestkit holds the pieces the results-projection benchmarks
// share (bench/ingest, and bench/scale's ingest section), so both time the
// same projector run against the same baseline: publishing results to the
// RESULTS stream, running the real projector until it has committed a
// stream position, and the raw batched insert into the same schema that is
// the ratio's denominator.
package ingestkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/projection"
	"github.com/kanade-fleet/backend/storage"
)

// Publish publishes the n results gen makes to RESULTS and returns them, as
// the projector will record them, with the stream's last sequence after
// them. It waits for the server's acknowledgements every 5000 messages.
func Publish(ctx context.Context, js jetstream.JetStream, n int, gen func(i int) kanade.ExecResult) ([]storage.Result, uint64, error) {
	results := make([]storage.Result, n)
	for i := range n {
		r := gen(i)
		data, err := json.Marshal(r)
		if err != nil {
			return nil, 0, err
		}
		// A busy machine may keep the server from acknowledging for a
		// while: wait for room rather than fail (the default waits 200 ms).
		if _, err := js.PublishAsync("results."+r.RequestID, data, jetstream.WithStallWait(time.Minute)); err != nil {
			return nil, 0, err
		}
		if i%5000 == 4999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				return nil, 0, errors.New("publish stalled")
			}
		}
		results[i] = storage.Result{ExecResult: r, RecordedAt: time.Now()}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	stream, err := js.Stream(ctx, kanade.StreamResults)
	if err != nil {
		return nil, 0, err
	}
	return results, stream.CachedInfo().State.LastSeq, nil
}

// Project runs the projector (housekeeping off) on db until its RESULTS
// offset reaches last, and returns how long that took from the worker's
// start. cfg may set BatchSize, Registerer or Logger; DB, Bus and
// Housekeeping are Project's.
func Project(ctx context.Context, db *storage.DB, client *bus.Client, cfg projection.Config, last uint64) (time.Duration, error) {
	cfg.DB, cfg.Bus, cfg.Housekeeping = db, client, -1
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	w, err := projection.New(cfg)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	defer func() { cancel(); <-done }()
	for {
		off, err := db.Offset(ctx, projection.ConsumerResults)
		if err != nil {
			return 0, err
		}
		if off.Seq >= last {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

const resultCols = 17

// RawInsert is the baseline the projector's rate is divided by: the rows as
// multi-row INSERTs into execution_results, 10k rows per transaction, with
// no read-before-write and no summaries.
func RawInsert(ctx context.Context, db *storage.DB, rows []storage.Result) error {
	const perStmt = 30000 / resultCols
	const perTx = 10000
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", resultCols), ",") + ")"
	for len(rows) > 0 {
		txRows := rows[:min(perTx, len(rows))]
		rows = rows[len(txRows):]
		err := db.Update(ctx, func(tx *storage.Tx) error {
			for len(txRows) > 0 {
				chunk := txRows[:min(perStmt, len(txRows))]
				txRows = txRows[len(chunk):]
				args := make([]any, 0, len(chunk)*resultCols)
				for _, r := range chunk {
					skipped := 0
					if r.Skipped {
						skipped = 1
					}
					args = append(args, r.ResultID, r.RequestID, nil, r.PcID, r.ManifestID, nil, *r.ExitCode, skipped,
						r.Stdout, r.Stderr, kanade.FormatTime(r.StartedAt.Time), kanade.FormatTime(r.FinishedAt.Time),
						kanade.FormatTime(r.RecordedAt), nil, 0, nil, kanade.DurationMillis(r.StartedAt.Time, r.FinishedAt.Time))
				}
				q := `INSERT INTO execution_results (result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped,
					stdout, stderr, started_at, finished_at, recorded_at, expires_at, reaped, parent_result_id, duration_ms) VALUES ` +
					strings.TrimSuffix(strings.Repeat(one+",", len(chunk)), ",")
				if _, err := tx.Exec(ctx, q, args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("raw insert: %w", err)
		}
	}
	return nil
}
