package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// This file carries out the scheduler's decisions: claims, a firing's
// publishes and rows, delayed waves, and reading what a decision needs
// (the job, the groups, the marks). Every JetStream call goes through bus.

// dispatchPlan is what one firing publishes.
type dispatchPlan struct {
	subjects    []string
	rollout     *kanade.Rollout
	targetCount *int64
	marks       []string // written before anything is published
	kind        string   // metric label
}

// auditSubjects caps the subjects an audit event lists.
const auditSubjects = 1000

// dispatchJob performs one firing (scheduler.md "A firing"): marks, then
// script_current, then the commands (or the first waves, the later ones
// stored for sendDueWaves), then the executions row, then the audit event.
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
	if err := b.SetScriptCurrent(ctx, m.ID, m.Version); err != nil {
		return err
	}
	execID := kanade.NewUUID()
	command := func(waveAt time.Time) (kanade.Command, error) {
		o := kanade.CommandOptions{ExecID: execID, RequestID: kanade.NewUUID()}
		if sc.Jitter != "" {
			j := sc.JitterDuration()
			o.Jitter = &j
		}
		if sc.Deadline() > 0 {
			d := waveAt.Add(sc.Deadline())
			o.DeadlineAt = &d
		}
		return m.Command(o)
	}
	var subjects []string
	var later []storage.Wave
	var out []bus.Outgoing
	add := func(subject string) error {
		c, err := command(at)
		if err != nil {
			return err
		}
		out = append(out, bus.Outgoing{Subject: subject, Command: c})
		subjects = append(subjects, subject)
		return nil
	}
	if p.rollout != nil && len(p.rollout.Waves) > 0 {
		for i, w := range p.rollout.Waves {
			subject := kanade.SubjectCommandsGroup + w.Group
			due := at.Add(w.DelayDuration())
			if !due.After(now) {
				if err := add(subject); err != nil {
					return err
				}
				continue
			}
			c, err := command(due)
			if err != nil {
				return err
			}
			data, err := json.Marshal(c)
			if err != nil {
				return err
			}
			later = append(later, storage.Wave{ExecID: execID, Wave: i, Subject: subject, DueAt: due, Command: data})
			subjects = append(subjects, subject)
		}
	} else {
		for _, subject := range p.subjects {
			if err := add(subject); err != nil {
				return err
			}
		}
	}
	if err := b.Commands(ctx, out); err != nil {
		return err
	}
	err := s.cfg.DB.Update(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertExecution(ctx, storage.NewExecution{ExecID: execID, JobID: m.ID, Version: m.Version,
			InitiatedBy: "scheduler", InitiatedAt: now, TargetCount: p.targetCount}); err != nil {
			return err
		}
		if err := tx.AddWaves(ctx, later); err != nil {
			return err
		}
		if sc.Kind() == kanade.KindCalendar {
			return tx.SetScheduleChecked(ctx, sc.ID, at)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.m.firings.WithLabelValues(p.kind).Inc()
	s.log.Info("scheduler: fired", slog.String("schedule", kanade.Clip(sc.ID)), slog.String("job", kanade.Clip(m.ID)),
		slog.String("version", kanade.Clip(m.Version)), slog.String("exec_id", execID), slog.Time("fire_at", at),
		slog.Int("subjects", len(subjects)), slog.Int("waves_later", len(later)))
	// A per_pc dispatch may name 100k subjects: the event keeps the first
	// auditSubjects of them and the total, so it stays far below NATS's
	// message size limit.
	listed := subjects[:min(len(subjects), auditSubjects)]
	payload := map[string]any{"schedule_id": sc.ID, "exec_id": execID, "version": m.Version,
		"target_count": p.targetCount, "subjects": listed, "subjects_total": len(subjects),
		"fire_at": kanade.FormatTime(at)}
	return s.audit(ctx, "exec", m.ID, payload, now)
}

// sendDueWaves publishes rollout waves whose delay has passed. A wave is
// marked sent in the database before it is published: two workers never
// both send it, and a worker dying in between loses it (logged by nobody;
// the execution shows fewer answers).
func (s *Scheduler) sendDueWaves(ctx context.Context, now time.Time) error {
	waves, err := s.cfg.DB.DueWaves(ctx, now, 100)
	if err != nil {
		return err
	}
	for _, w := range waves {
		var won bool
		err := s.cfg.DB.Update(ctx, func(tx *storage.Tx) (err error) {
			won, err = tx.MarkWaveSent(ctx, w.ExecID, w.Wave, now)
			return err
		})
		if err != nil {
			return err
		}
		if !won {
			continue
		}
		var c kanade.Command
		if err := json.Unmarshal(w.Command, &c); err != nil {
			return fmt.Errorf("wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
		if err := s.cfg.Bus.Commands(ctx, []bus.Outgoing{{Subject: w.Subject, Command: c}}); err != nil {
			return fmt.Errorf("wave %d of %s: %w", w.Wave, w.ExecID, err)
		}
		s.m.waves.Inc()
	}
	return nil
}

// audit publishes an audit event on audit.scheduler.{action}.{job}.
func (s *Scheduler) audit(ctx context.Context, action, jobID string, payload any, now time.Time) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	var target *string
	if jobID != "" {
		target = &jobID
	}
	return s.cfg.Bus.Audit(ctx, kanade.AuditEvent{Actor: "scheduler", Action: action, Target: target, Payload: b,
		OccurredAt: kanade.Timestamp{Time: now}})
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

// pcGroups reads KV agent_groups (pc_id → {"groups":[…]}).
func (s *Scheduler) pcGroups(ctx context.Context) (map[string][]string, error) {
	entries, err := s.cfg.Bus.Entries(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, e := range entries {
		var v struct {
			Groups []string `json:"groups"`
		}
		if json.Unmarshal(e.Value, &v) == nil {
			out[e.Key] = s.skipInvalid("group", kanade.BucketAgentGroups, v.Groups, kanade.ValidToken)
		}
	}
	return out, nil
}

// skipInvalid removes from ids (in place) those valid refuses, logging and
// counting each. The agents table and KV agent_groups may hold ids written
// before the identifier rules existed, and one of them in a subject or a
// dispatch-mark key would cost this worker its NATS connection ("maximum
// control line exceeded") or publish on a wrong subject.
func (s *Scheduler) skipInvalid(kind, source string, ids []string, valid func(string) bool) []string {
	return slices.DeleteFunc(ids, func(id string) bool {
		if valid(id) {
			return false
		}
		s.m.invalidIDs.Inc()
		s.log.Warn("scheduler: skipping an id that cannot go into a subject", slog.String("kind", kind),
			slog.String("source", source), slog.String("id", kanade.Clip(id)), slog.Int("bytes", len(id)))
		return true
	})
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
		t, err := kanade.ParseTime(string(e.Value))
		if err != nil {
			continue
		}
		if e.Key == target {
			out[TargetMark] = t
			continue
		}
		if pc, ok := unescapeKey(strings.TrimPrefix(e.Key, prefix+"pc.")); ok {
			out[pc] = t
		}
	}
	return out, nil
}
