package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// runIngest is the acceptance check: the HTTP shell with its
// embedded NATS and in-process worker; N results with unique result_ids
// published asynchronously (~1000 in flight); the fleet rollup's
// recent_results.total must reach N and the database must hold exactly N rows.
func runIngest(ctx context.Context, e *Env, r *Result) error {
	n := e.Size.IngestResults
	port, err := freePort()
	if err != nil {
		return err
	}
	data := filepath.Join(e.Dir, "data")
	db := filepath.Join(data, "kanade.db")
	sh, err := e.StartHTTP(ctx, "http", ShellOptions{DB: db, DataDir: data,
		Env: []string{"KANADE_WORKER=on", fmt.Sprintf("KANADE_NATS_LISTEN=127.0.0.1:%d", port)}})
	if err != nil {
		return err
	}
	r.Do("started shells/http with KANADE_WORKER=on and its embedded NATS on 127.0.0.1:%d", port)
	nc, err := connectNATS(fmt.Sprintf("nats://127.0.0.1:%d", port), "faults-ingest")
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000})
	if err != nil {
		return err
	}
	g := Gen{Prefix: "ingest", Base: time.Now().Add(-time.Hour), StdoutBytes: 100, Jobs: []string{"ingest-a", "ingest-b", "ingest-c"}}
	start := time.Now()
	acks, err := pub.Publish(ctx, n, okResults(g))
	pubDur := time.Since(start)
	if err != nil {
		return err
	}
	r.Do("published %d results with unique result_ids (async, 1000 in flight, 100-byte stdout)", n)
	r.Measure("publish: %d acked in %s (%s), %d retries", acks.Count(), round(pubDur), rate(acks.Count(), pubDur), pub.Retries())

	// Wait on the API, as an operator would.
	var total int64 = -1
	lastChange := time.Now()
	for total < int64(n) && time.Since(lastChange) < 60*time.Second {
		res, f := e.fleet(ctx, sh.URL)
		if res.Err == nil && f.RecentResults.Total != nil && *f.RecentResults.Total != total {
			total, lastChange = *f.RecentResults.Total, time.Now()
		}
		if total >= int64(n) {
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	landed := lastChange.Sub(start)
	r.Measure("/api/health/fleet recent_results.total reached %d of %d, %s after the first publish", total, n, round(landed))
	r.Figure("%d results, %s end to end", n, rate(int(total), landed))
	r.Check(total == int64(n), "recent_results.total = %d, want %d", total, n)
	rows, err := finishedRows(ctx, db)
	if err != nil {
		return err
	}
	r.Check(rows == int64(n), "the database holds %d rows, want exactly %d", rows, n)
	if rows != int64(n) {
		if _, err := checkLanded(ctx, e, r, "ids", db, wantIDs(g, acks, n), 5*time.Second); err != nil {
			return err
		}
	}
	r.Measure("ingest rate (first publish → last row visible in the API): %s", rate(int(total), landed))
	return nil
}
