package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/fanout"
	"github.com/kanade-fleet/backend/storage"
)

// This file carries out the scheduler's decisions: claims, marks, and a
// firing handed to package fanout (which publishes it, the one path shared
// with the operator's exec). Every JetStream call goes through bus.

// dispatchPlan is what one firing publishes.
type dispatchPlan struct {
	subjects    []string
	rollout     *kanade.Rollout
	targetCount int64
	marks       []string // written before anything is published
	kind        string   // metric label
	// perPC, when set, are the PCs of a per_pc firing (sorted), sent in
	// resumable chunks (firePerPC) instead of subjects and marks.
	perPC []string
}

// dispatchJob performs one firing (scheduler.md "A firing"): the marks, then
// the fan-out (script_current, the executions row with the calendar
// progress, the commands or the stored later waves, the audit event).
func (s *Scheduler) dispatchJob(ctx context.Context, sc *kanade.Schedule, m *kanade.Manifest, at, now time.Time, p dispatchPlan) error {
	b := s.cfg.Bus
	if len(p.marks) > 0 {
		if err := s.ensureBucket(ctx); err != nil {
			return err
		}
		if err := b.PutAll(ctx, kanade.BucketDispatch, p.marks, []byte(kanade.FormatTime(now))); err != nil {
			return fmt.Errorf("put marks: %w", err)
		}
	}
	e := fanout.Exec{Manifest: m, Subjects: p.subjects, Rollout: p.rollout, At: at, TargetCount: p.targetCount,
		Actor: "scheduler", Audit: map[string]any{"schedule_id": sc.ID, "fire_at": kanade.FormatTime(at)}}
	// on_failure.retry: the schedule's, else the job's (control.md §1.4).
	if e.Options.Retry = sc.Retry(); e.Options.Retry == nil {
		e.Options.Retry = m.Retry()
	}
	if sc.Jitter != "" {
		j := sc.JitterDuration()
		e.Options.Jitter = &j
	}
	if d := sc.Deadline(); d > 0 {
		e.Deadline = func(waveAt time.Time) *time.Time { t := waveAt.Add(d); return &t }
	}
	if sc.Kind() == kanade.KindCalendar {
		e.InTx = func(ctx context.Context, tx *storage.Tx) error { return tx.SetScheduleChecked(ctx, sc.ID, at) }
	}
	if len(p.perPC) > 0 {
		if err := s.firePerPC(ctx, sc.ID, e, p.perPC, now); err != nil {
			return err
		}
		s.m.firings.WithLabelValues(p.kind).Inc()
		s.log.Info("scheduler: fired", slog.String("schedule", kanade.Clip(sc.ID)), slog.String("job", kanade.Clip(m.ID)),
			slog.String("version", kanade.Clip(m.Version)), slog.Time("fire_at", at), slog.Int("pcs", len(p.perPC)))
		return nil
	}
	o, err := s.fan.Send(ctx, e)
	if err != nil {
		return err
	}
	s.m.firings.WithLabelValues(p.kind).Inc()
	s.log.Info("scheduler: fired", slog.String("schedule", kanade.Clip(sc.ID)), slog.String("job", kanade.Clip(m.ID)),
		slog.String("version", kanade.Clip(m.Version)), slog.String("exec_id", o.ExecID), slog.Time("fire_at", at),
		slog.Int("subjects", len(o.Subjects)), slog.Int("waves_later", o.Later))
	return nil
}

// sendDueWaves publishes the rollout waves whose delay has passed.
func (s *Scheduler) sendDueWaves(ctx context.Context, now time.Time) error {
	n, err := s.fan.SendDueWaves(ctx, now)
	s.m.waves.Add(float64(n))
	return err
}

// audit publishes an audit event on audit.scheduler.{action}.{job}.
func (s *Scheduler) audit(ctx context.Context, action, jobID string, payload any, now time.Time) error {
	return fanout.Audit(ctx, s.cfg.Bus, "scheduler", action, jobID, payload, now)
}

// claim creates key in KV scheduler_dispatch; true means this worker owns
// what the key names.
func (s *Scheduler) claim(ctx context.Context, key string) (bool, error) {
	if err := s.ensureBucket(ctx); err != nil {
		return false, err
	}
	_, err := s.cfg.Bus.Create(ctx, kanade.BucketDispatch, key, []byte(kanade.FormatTime(s.cfg.Clock())))
	switch {
	case errors.Is(err, bus.ErrExists):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("claim: %w", err)
	}
	return true, nil
}

// ensureBucket creates (or updates) KV scheduler_dispatch once per
// Scheduler: history 1, entries kept an hour, longer than any dispatch
// window.
func (s *Scheduler) ensureBucket(ctx context.Context) error {
	s.bucketOnce.Lock()
	defer s.bucketOnce.Unlock()
	if s.bucketOK {
		return nil
	}
	if err := s.cfg.Bus.EnsureBucket(ctx, kanade.BucketDispatch,
		"kanade scheduler: exactly-once claims and dispatch marks", 1, time.Hour); err != nil {
		return err
	}
	s.bucketOK = true
	return nil
}

// marks reads a schedule's dispatch marks (key → dispatch time) by PC, or
// under TargetMark.
func (s *Scheduler) marks(ctx context.Context, scheduleID string) (map[string]time.Time, error) {
	if err := s.ensureBucket(ctx); err != nil {
		return nil, err
	}
	prefix := MarkPrefix(scheduleID)
	entries, err := s.cfg.Bus.Matching(ctx, kanade.BucketDispatch, prefix+">")
	if err != nil {
		return nil, err
	}
	target := MarkKey(scheduleID, TargetMark)
	out := map[string]time.Time{}
	for _, e := range entries {
		if isSetKey(strings.TrimPrefix(e.Key, prefix)) {
			setMarks(e.Value, out)
			continue
		}
		t, err := kanade.ParseTime(string(e.Value))
		if err != nil {
			continue
		}
		if e.Key == target {
			out[TargetMark] = t
			continue
		}
		// One key per PC: written by workers before mark sets (within
		// the bucket's hour they may still be there).
		if pc, ok := unescapeKey(strings.TrimPrefix(e.Key, prefix+"pc.")); ok {
			if prev, seen := out[pc]; !seen || t.After(prev) {
				out[pc] = t
			}
		}
	}
	return out, nil
}
