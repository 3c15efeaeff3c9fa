package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// The projection's write path (storage.md "Projection rules"). Every method
// applies a whole batch with a handful of statements, because a batch is one
// transaction and, over libSQL, every statement is a network round trip.
//
// All rules are idempotent on their own (a redelivered message changes
// nothing); the projector additionally skips messages whose stream sequence is
// at or below the consumer's recorded offset.

// maxVars bounds the bind variables of one statement (SQLite's limit is 32766).
const maxVars = 30000

// Result is an ExecResult ready to apply: output already fetched from the
// object store when the agent moved it there.
type Result struct {
	kanade.ExecResult
	// RecordedAt is the stream timestamp of the message (never the wall clock,
	// so a replay reproduces identical rows).
	RecordedAt time.Time
	// Inventory is the report of a successful run of a job with an
	// inventory hint (PrepareInventory); nil for every other result.
	Inventory *InventoryReport

	// packed says stdout and stderr hold the values to bind for Stdout and
	// Stderr (Pack).
	packed         bool
	stdout, stderr any
}

// Pack compresses the long outputs (packText) ahead of the transaction:
// the projector packs while it fetches, beside the writer. Call it after
// the last change to Stdout, Stderr and Inventory. ApplyResults packs the
// results that were not.
func (r *Result) Pack() {
	if rep := r.Inventory; rep != nil && rep.facts == r.Stdout && rep.packedFacts != nil {
		r.stdout = rep.packedFacts // the same text, packed once
	} else {
		r.stdout = packText(r.Stdout)
	}
	r.stderr, r.packed = packText(r.Stderr), true
}

// outputs are the values to bind for r's stdout and stderr.
func (r *Result) outputs() (stdout, stderr any) {
	if !r.packed {
		return packText(r.Stdout), packText(r.Stderr)
	}
	return r.stdout, r.stderr
}

// Started is a started event ready to apply.
type Started struct {
	kanade.EventStarted
	RecordedAt time.Time
	// Timeout is the manifest's timeout; 0 when unknown (expires_at stays NULL).
	Timeout time.Duration
}

// ApplyStats says what a batch changed, for metrics and tests.
type ApplyStats struct {
	Inserted, Updated, Unchanged int
	// Implausible counts runs stored without a duration because their
	// timestamps are too far apart to be believed (see MaxRunDuration).
	Implausible int
	// Inventory says what the inventory projection did (results only).
	Inventory InventoryStats
}

// MaxRunDuration is the longest run whose duration the backend believes.
// An agent with a broken clock can report a run from year 0001 to 9999; its
// row is kept (the exit code and output are real) but it gets no duration
// and stays out of the scan-duration summaries, where one such run would be
// every job's p99 and max. 31 days is past any job timeout an operator sets
// and past the RESULTS stream's 30-day retention.
const MaxRunDuration = 31 * 24 * time.Hour

// runMillis is the duration rule of storage.md (kanade.DurationMillis), and
// whether the duration is believable: started and finished at most
// MaxRunDuration apart, in either direction (a negative gap is clock skew,
// clamped to 0, but a negative gap of years is no measurement at all).
func runMillis(started, finished time.Time) (int64, bool) {
	if d := finished.Sub(started); d > MaxRunDuration || d < -MaxRunDuration {
		return 0, false
	}
	return kanade.DurationMillis(started, finished), true
}

// durationArg is a duration column value: the milliseconds, or NULL for an
// implausible run.
func durationArg(ms int64, ok bool) any {
	if !ok {
		return nil
	}
	return ms
}

// existingRun is the part of a stored row the result rules look at.
type existingRun struct {
	finished  bool
	reaped    bool
	skipped   bool
	jobID     *string
	execID    *string
	startedAt *string
	// finishedAtRaw and exitCode are the stored values (a reaped row has both).
	finishedAtRaw *string
	exitCode      *int64
	// duration is the summary entry the row currently has (valid if inSummary).
	finishedAt string
	durationMs int64
	inSummary  bool
}

func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// loadBatchRuns is loadRuns of the result ids of a batch (results or
// started events).
func loadBatchRuns[T any](ctx context.Context, tx *Tx, batch []T, resultID func(*T) string) (map[string]*existingRun, error) {
	ids := make([]string, 0, len(batch))
	for i := range batch {
		ids = append(ids, resultID(&batch[i]))
	}
	return tx.loadRuns(ctx, ids)
}

func (tx *Tx) loadRuns(ctx context.Context, ids []string) (map[string]*existingRun, error) {
	out := make(map[string]*existingRun, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		ids = ids[n:]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := tx.tx.QueryContext(ctx, `SELECT result_id, finished_at, reaped, job_id, exec_id, started_at, duration_ms, exit_code, skipped
			FROM execution_results WHERE result_id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("load runs: %w", err)
		}
		for rows.Next() {
			var id string
			var finishedAt, jobID, execID, startedAt *string
			var reaped, skipped int
			var dur, exit *int64
			if err := rows.Scan(&id, &finishedAt, &reaped, &jobID, &execID, &startedAt, &dur, &exit, &skipped); err != nil {
				rows.Close()
				return nil, fmt.Errorf("load runs: %w", err)
			}
			r := &existingRun{finished: finishedAt != nil && reaped == 0, reaped: reaped != 0, skipped: skipped != 0,
				jobID: jobID, execID: execID, startedAt: startedAt, finishedAtRaw: finishedAt, exitCode: exit}
			if finishedAt != nil && dur != nil && jobID != nil {
				r.inSummary, r.finishedAt, r.durationMs = true, *finishedAt, *dur
			}
			out[id] = r
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("load runs: %w", err)
		}
	}
	return out, nil
}

// execDelta accumulates one execution's counter changes within a batch.
type execDelta struct{ success, failure, skipped int64 }

// The counter invariant: a run with an exec_id and an exit code (finished or
// reaped) is counted exactly once, in the counter of its outcome, the same
// outcome as run_status (migration 0014) and the fleet rollup: skipped
// whatever the exit code, else success for exit 0, else failure (a reaped
// run's -1 included). A run whose outcome changes (a reaped run's real
// result arriving) moves from one counter to the other; so the counters
// always equal a recount of the runs.

// outcome is a finished run's counter.
type outcome int

const (
	outSuccess outcome = iota
	outFailure
	outSkipped
)

func outcomeOf(exit int64, skipped bool) outcome {
	switch {
	case skipped:
		return outSkipped
	case exit == 0:
		return outSuccess
	}
	return outFailure
}

// add moves n runs of outcome o into (n > 0) or out of (n < 0) execID's
// counters in deltas.
func addOutcome(deltas map[string]*execDelta, execID string, o outcome, n int64) {
	if execID == "" {
		return
	}
	d := deltas[execID]
	if d == nil {
		d = &execDelta{}
		deltas[execID] = d
	}
	switch o {
	case outSuccess:
		d.success += n
	case outFailure:
		d.failure += n
	case outSkipped:
		d.skipped += n
	}
}

// ApplyResults applies a batch of results in order (storage.md RESULTS rules):
// insert a finished row when none exists; fill in a running or reaped row;
// leave a finished row alone. Execution counters move only when a row really
// changed, and a late result for a reaped run moves it from failure to its
// own outcome instead of counting it again.
func (tx *Tx) ApplyResults(ctx context.Context, batch []Result) (ApplyStats, error) {
	var st ApplyStats
	if len(batch) == 0 {
		return st, nil
	}
	runs, err := loadBatchRuns(ctx, tx, batch, func(r *Result) string { return r.ResultID })
	if err != nil {
		return st, err
	}
	var inserts, reports []*Result
	execs := map[string]*execDelta{}
	for i := range batch {
		r := &batch[i]
		exit := *r.ExitCode
		cur, ok := runs[r.ResultID]
		switch {
		case !ok:
			inserts = append(inserts, r)
			runs[r.ResultID] = &existingRun{finished: true}
			addOutcome(execs, r.ExecID, outcomeOf(exit, r.Skipped), 1)
			ms, plausible := runMillis(r.StartedAt.Time, r.FinishedAt.Time)
			if !plausible {
				st.Implausible++
			} else if r.ManifestID != "" {
				tx.addDuration(r.ManifestID, r.FinishedAt.Time, ms)
			}
			st.Inserted++
			reports = inventoryReport(reports, r)
		case cur.finished:
			st.Unchanged++
		default: // running or reaped
			started := r.StartedAt.Time
			if cur.startedAt != nil {
				if t, err := kanade.ParseTime(*cur.startedAt); err == nil {
					started = t
				}
			}
			jobID := r.ManifestID
			if cur.jobID != nil {
				jobID = *cur.jobID
			}
			dur, plausible := runMillis(started, r.FinishedAt.Time)
			if cur.inSummary {
				t, err := kanade.ParseTime(cur.finishedAt)
				if err != nil {
					return st, fmt.Errorf("result %s: stored finished_at: %w", r.ResultID, err)
				}
				tx.removeDuration(*cur.jobID, t, cur.durationMs)
			}
			if !plausible {
				st.Implausible++
			} else if jobID != "" {
				tx.addDuration(jobID, r.FinishedAt.Time, dur)
			}
			skipped := 0
			if r.Skipped {
				skipped = 1
			}
			stdout, stderr := r.outputs()
			_, err := tx.tx.ExecContext(ctx, `UPDATE execution_results
				SET exit_code = ?, skipped = ?, stdout = ?, stderr = ?, finished_at = ?, reaped = 0,
				    job_id = COALESCE(job_id, ?), duration_ms = ?,
				    recorded_at = CASE WHEN ? < recorded_at THEN ? ELSE recorded_at END
				WHERE result_id = ?`,
				exit, skipped, stdout, stderr, kanade.FormatTime(r.FinishedAt.Time),
				nullString(r.ManifestID), durationArg(dur, plausible),
				kanade.FormatTime(r.RecordedAt), kanade.FormatTime(r.RecordedAt), r.ResultID)
			if err != nil {
				return st, fmt.Errorf("update run %s: %w", r.ResultID, err)
			}
			if cur.execID != nil {
				if cur.reaped { // counted as a failure by the reaper (or the started event)
					addOutcome(execs, *cur.execID, outFailure, -1)
				}
				addOutcome(execs, *cur.execID, outcomeOf(exit, r.Skipped), 1)
			}
			runs[r.ResultID] = &existingRun{finished: true}
			st.Updated++
			reports = inventoryReport(reports, r)
		}
	}
	if err := tx.insertResults(ctx, inserts); err != nil {
		return st, err
	}
	if err := tx.bumpExecutions(ctx, execs); err != nil {
		return st, err
	}
	return st, tx.projectInventory(ctx, reports, &st.Inventory)
}

// inventoryReport adds r to reports when its run, just stored, carries an
// inventory report to project: a successful run that was not skipped.
func inventoryReport(reports []*Result, r *Result) []*Result {
	if r.Inventory == nil || r.Skipped || r.ExitCode == nil || *r.ExitCode != 0 || r.ManifestID == "" {
		return reports
	}
	return append(reports, r)
}

const resultCols = 17

func (tx *Tx) insertResults(ctx context.Context, rows []*Result) error {
	per := maxVars / resultCols
	for len(rows) > 0 {
		n := min(len(rows), per)
		chunk := rows[:n]
		rows = rows[n:]
		args := make([]any, 0, n*resultCols)
		for _, r := range chunk {
			skipped := 0
			if r.Skipped {
				skipped = 1
			}
			stdout, stderr := r.outputs()
			args = append(args, r.ResultID, r.RequestID, nullString(r.ExecID), r.PcID,
				nullString(r.ManifestID), nil, *r.ExitCode, skipped, stdout, stderr,
				kanade.FormatTime(r.StartedAt.Time), kanade.FormatTime(r.FinishedAt.Time),
				kanade.FormatTime(r.RecordedAt), nil, 0, nullString(r.ParentResultID),
				durationArg(runMillis(r.StartedAt.Time, r.FinishedAt.Time)))
		}
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO execution_results
			(result_id, request_id, exec_id, pc_id, job_id, version, exit_code, skipped, stdout, stderr,
			 started_at, finished_at, recorded_at, expires_at, reaped, parent_result_id, duration_ms)
			VALUES `+placeholders(n, resultCols), args...)
		if err != nil {
			return fmt.Errorf("insert %d runs: %w", n, err)
		}
	}
	return nil
}

func (tx *Tx) bumpExecutions(ctx context.Context, execs map[string]*execDelta) error {
	for id, d := range execs {
		if *d == (execDelta{}) {
			continue // a run that moved within one counter
		}
		// Every answer counts toward completion: a skipped run is an answer.
		_, err := tx.tx.ExecContext(ctx, `UPDATE executions
			SET success_count = success_count + ?, failure_count = failure_count + ?,
			    skipped_count = skipped_count + ?,
			    status = CASE WHEN target_count IS NOT NULL
			                   AND success_count + ? + failure_count + ? + skipped_count + ? >= target_count
			              THEN 'completed' ELSE 'running' END
			WHERE exec_id = ?`, d.success, d.failure, d.skipped, d.success, d.failure, d.skipped, id)
		if err != nil {
			return fmt.Errorf("bump execution %s: %w", id, err)
		}
	}
	return nil
}

// ApplyStarted inserts a running row for each started event whose result_id
// has no row yet, and moves its execution from pending to running.
//
// When the row exists because the result was projected first, the started
// event still contributes what it is authoritative for, so the final row is
// the one the ordered stream would have produced: started_at (a result never
// changes it), exec_id and job_id when the result lacked them, version,
// request_id, expires_at, and recorded_at moves back to the earlier message.
// A finished row that gains its exec_id bumps that execution now, because the
// result could not; a changed started_at or a new job_id moves the run's
// duration-summary entry in this transaction.
func (tx *Tx) ApplyStarted(ctx context.Context, batch []Started) (ApplyStats, error) {
	var st ApplyStats
	if len(batch) == 0 {
		return st, nil
	}
	runs, err := loadBatchRuns(ctx, tx, batch, func(e *Started) string { return e.ResultID })
	if err != nil {
		return st, err
	}
	const cols = 9
	var args []any
	n := 0
	starts := map[string]bool{}
	bumps := map[string]*execDelta{}
	flush := func() error {
		if n == 0 {
			return nil
		}
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO execution_results
			(result_id, request_id, exec_id, pc_id, job_id, version, started_at, recorded_at, expires_at)
			VALUES `+placeholders(n, cols), args...)
		args, n = args[:0], 0
		if err != nil {
			return fmt.Errorf("insert running runs: %w", err)
		}
		return nil
	}
	for i := range batch {
		e := &batch[i]
		var expires any
		if e.Timeout > 0 {
			expires = kanade.FormatTime(e.RecordedAt.Add(e.Timeout + max(2*time.Minute, e.Timeout/2)))
		}
		if e.ExecID != "" {
			starts[e.ExecID] = true
		}
		if cur, ok := runs[e.ResultID]; ok {
			changed, err := tx.fillFromStarted(ctx, e, cur, expires, bumps)
			if err != nil {
				return st, err
			}
			if changed {
				st.Updated++
			} else {
				st.Unchanged++
			}
			continue
		}
		startedAt := kanade.FormatTime(e.StartedAt.Time)
		runs[e.ResultID] = &existingRun{startedAt: &startedAt, jobID: nullPtr(e.ManifestID), execID: nullPtr(e.ExecID)}
		args = append(args, e.ResultID, nullString(e.RequestID), nullString(e.ExecID), e.PcID,
			nullString(e.ManifestID), nullString(e.Version), startedAt,
			kanade.FormatTime(e.RecordedAt), expires)
		n++
		st.Inserted++
		if (n+1)*cols > maxVars {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	// pending → running first, so a run that completes an execution in the
	// bump below leaves it completed, as in the ordered stream.
	for id := range starts {
		if _, err := tx.tx.ExecContext(ctx,
			`UPDATE executions SET status = 'running' WHERE exec_id = ? AND status = 'pending'`, id); err != nil {
			return st, fmt.Errorf("start execution %s: %w", id, err)
		}
	}
	return st, tx.bumpExecutions(ctx, bumps)
}

func nullPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// fillFromStarted applies a started event to a row that already exists (see
// ApplyStarted) and keeps cur in step with the row, so a duplicate later in
// the same batch sees what this one wrote. It reports whether anything
// changed.
func (tx *Tx) fillFromStarted(ctx context.Context, e *Started, cur *existingRun, expires any, bumps map[string]*execDelta) (bool, error) {
	startedAt := kanade.FormatTime(e.StartedAt.Time)
	newStart := cur.startedAt == nil || *cur.startedAt != startedAt
	newJob := cur.jobID == nil && e.ManifestID != ""
	newExec := cur.execID == nil && e.ExecID != ""
	// setDur says whether duration_ms is rewritten (to dur, NULL for an
	// implausible run).
	var setDur bool
	var dur any
	if cur.finishedAtRaw != nil && (newStart || newJob) {
		fin, err := kanade.ParseTime(*cur.finishedAtRaw)
		if err != nil {
			return false, fmt.Errorf("run %s: stored finished_at: %w", e.ResultID, err)
		}
		d, plausible := runMillis(e.StartedAt.Time, fin)
		setDur, dur = true, durationArg(d, plausible)
		if cur.inSummary {
			old, err := kanade.ParseTime(cur.finishedAt)
			if err != nil {
				return false, fmt.Errorf("run %s: stored finished_at: %w", e.ResultID, err)
			}
			tx.removeDuration(*cur.jobID, old, cur.durationMs)
			cur.inSummary = false
		}
		job := e.ManifestID
		if cur.jobID != nil {
			job = *cur.jobID
		}
		if job != "" && plausible {
			tx.addDuration(job, fin, d)
			cur.inSummary, cur.finishedAt, cur.durationMs = true, *cur.finishedAtRaw, d
		}
	}
	res, err := tx.tx.ExecContext(ctx, `UPDATE execution_results
		SET started_at = ?, job_id = COALESCE(job_id, ?), exec_id = COALESCE(exec_id, ?),
		    version = COALESCE(version, ?), request_id = COALESCE(request_id, ?),
		    expires_at = COALESCE(expires_at, ?),
		    recorded_at = CASE WHEN ? < recorded_at THEN ? ELSE recorded_at END,
		    duration_ms = CASE WHEN ? THEN ? ELSE duration_ms END
		WHERE result_id = ?
		  AND (started_at IS NOT ? OR job_id IS NULL AND ? IS NOT NULL OR exec_id IS NULL AND ? IS NOT NULL
		       OR version IS NULL AND ? IS NOT NULL OR request_id IS NULL AND ? IS NOT NULL
		       OR expires_at IS NULL AND ? IS NOT NULL OR ? < recorded_at)`,
		startedAt, nullString(e.ManifestID), nullString(e.ExecID),
		nullString(e.Version), nullString(e.RequestID), expires,
		kanade.FormatTime(e.RecordedAt), kanade.FormatTime(e.RecordedAt), setDur, dur,
		e.ResultID,
		startedAt, nullString(e.ManifestID), nullString(e.ExecID),
		nullString(e.Version), nullString(e.RequestID), expires, kanade.FormatTime(e.RecordedAt))
	if err != nil {
		return false, fmt.Errorf("fill run %s from started event: %w", e.ResultID, err)
	}
	// A finished or reaped row that did not know its execution was counted
	// nowhere; it is counted now (the counter invariant above).
	if newExec && cur.exitCode != nil {
		addOutcome(bumps, e.ExecID, outcomeOf(*cur.exitCode, cur.skipped), 1)
	}
	cur.startedAt = &startedAt
	if newJob {
		cur.jobID = nullPtr(e.ManifestID)
	}
	if newExec {
		cur.execID = nullPtr(e.ExecID)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

const agentCols = 16

// The heartbeat upsert compares the beat's `at` with the stored one, so beats
// of one PC applied out of order (two workers share the heartbeat
// subscription; a ping reply can overtake a beat) end as if applied in
// order of `at`, the same rule as projection's in-memory merge.
const newer = `excluded.last_heartbeat >= agents.last_heartbeat`

// newest keeps the value of the later beat.
func newest(col string) string {
	return `CASE WHEN ` + newer + ` THEN excluded.` + col + ` ELSE agents.` + col + ` END`
}

// carried keeps the later beat's value when it carries one, else the
// earlier's.
func carried(col string) string {
	return `CASE WHEN ` + newer + ` THEN COALESCE(excluded.` + col + `, agents.` + col + `)
	             ELSE COALESCE(agents.` + col + `, excluded.` + col + `) END`
}

// UpsertHeartbeats writes the newest beat of each PC (storage.md heartbeat
// rules): hostname and os_family keep their first non-NULL value; logon user,
// command keys and protocols and enforcing change only when the beat carries
// them (a ping reply must not erase them); everything else is replaced. A
// beat older than the stored one only fills what the stored one lacks.
// beats must hold at most one beat per pc_id.
func (tx *Tx) UpsertHeartbeats(ctx context.Context, beats []kanade.Heartbeat) error {
	now := kanade.FormatTime(tx.now)
	per := maxVars / agentCols
	for len(beats) > 0 {
		n := min(len(beats), per)
		chunk := beats[:n]
		beats = beats[n:]
		args := make([]any, 0, n*agentCols)
		for i := range chunk {
			h := &chunk[i]
			var quarantined, keys, protocols any
			if len(h.QuarantinedVersions) > 0 {
				quarantined = mustJSON(h.QuarantinedVersions)
			}
			if h.CommandKeys != nil {
				keys = mustJSON(*h.CommandKeys)
			}
			if h.CommandProtocols != nil {
				protocols = mustJSON(*h.CommandProtocols)
			}
			var enforcing any
			if h.Enforcing != nil {
				enforcing = 0
				if *h.Enforcing {
					enforcing = 1
				}
			}
			args = append(args, h.PcID, h.Hostname, h.OsFamily, h.AgentVersion,
				kanade.FormatTime(h.At.Time), h.AgentCPUPct, h.AgentRSSBytes, h.AgentDiskReadBytes,
				h.AgentDiskWrittenBytes, quarantined, h.LastLogonUser, h.LastLogonDisplayName,
				keys, protocols, enforcing, now)
		}
		_, err := tx.tx.ExecContext(ctx, `INSERT INTO agents
			(pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct, agent_rss_bytes,
			 agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, last_logon_user,
			 last_logon_display_name, command_keys, command_protocols, enforcing, updated_at)
			VALUES `+placeholders(n, agentCols)+`
			ON CONFLICT (pc_id) DO UPDATE SET
			    hostname = CASE WHEN `+newer+` THEN COALESCE(agents.hostname, excluded.hostname)
			                    ELSE COALESCE(excluded.hostname, agents.hostname) END,
			    os_family = CASE WHEN `+newer+` THEN COALESCE(agents.os_family, excluded.os_family)
			                     ELSE COALESCE(excluded.os_family, agents.os_family) END,
			    agent_version = `+newest("agent_version")+`,
			    last_heartbeat = `+newest("last_heartbeat")+`,
			    agent_cpu_pct = `+newest("agent_cpu_pct")+`,
			    agent_rss_bytes = `+newest("agent_rss_bytes")+`,
			    agent_disk_read_bytes = `+newest("agent_disk_read_bytes")+`,
			    agent_disk_written_bytes = `+newest("agent_disk_written_bytes")+`,
			    quarantined_versions = `+newest("quarantined_versions")+`,
			    last_logon_user = `+carried("last_logon_user")+`,
			    last_logon_display_name = `+carried("last_logon_display_name")+`,
			    command_keys = `+carried("command_keys")+`,
			    command_protocols = `+carried("command_protocols")+`,
			    enforcing = `+carried("enforcing")+`,
			    updated_at = excluded.updated_at`, args...)
		if err != nil {
			return fmt.Errorf("upsert %d heartbeats: %w", n, err)
		}
	}
	return nil
}

func mustJSON(v []string) string {
	b, _ := json.Marshal(v) // []string always marshals
	return string(b)
}

// Audit is an audit event with the stream sequence that makes it idempotent.
type Audit struct {
	kanade.AuditEvent
	StreamSeq uint64
}

// InsertAudit appends audit events; an event whose stream sequence is already
// stored is skipped.
func (tx *Tx) InsertAudit(ctx context.Context, batch []Audit) (ApplyStats, error) {
	var st ApplyStats
	for i := range batch {
		a := &batch[i]
		var payload any
		if len(a.Payload) > 0 && string(a.Payload) != "null" {
			payload = string(a.Payload)
		}
		res, err := tx.tx.ExecContext(ctx, `INSERT INTO audit_log (actor, action, target, payload, occurred_at, stream_seq)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (stream_seq) WHERE stream_seq IS NOT NULL DO NOTHING`,
			a.Actor, a.Action, a.Target, payload, kanade.FormatTime(a.OccurredAt.Time), int64(a.StreamSeq))
		if err != nil {
			return st, fmt.Errorf("insert audit seq %d: %w", a.StreamSeq, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			st.Inserted++
		} else {
			st.Unchanged++
		}
	}
	return st, nil
}
