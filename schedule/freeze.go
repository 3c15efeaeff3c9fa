package schedule

import (
	"context"
	"log/slog"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The fleet freeze gate (control.md §6.3): while KV fleet_config["freeze"]
// is active no calendar firing and no per_pc / per_target reconcile
// dispatches anything. Operator execs and runs are not gated; rollout waves
// of an execution that already started go on (they are part of a decision
// made before the freeze).

// freezeState is the scheduler's mirror of the freeze key.
type freezeState struct {
	loaded bool
	f      *kanade.Freeze // nil: not frozen
	// bad is set when the stored value does not decode: that counts as an
	// empty, always-active freeze, so a garbled value stops automation
	// rather than silently letting it run.
	bad bool
}

// active reports whether the freeze holds at now (local is the zone of a
// freeze whose tz is "local") and why.
func (fs freezeState) active(now time.Time, local *time.Location) (bool, string) {
	switch {
	case fs.bad:
		return true, "the stored freeze does not decode (fail safe: frozen until it is fixed or deleted)"
	case fs.f == nil:
		return false, ""
	case fs.f.ActiveIn(now, local):
		return true, deref(fs.f.Reason)
	}
	return false, ""
}

// watchFreeze keeps s.freeze equal to KV fleet_config["freeze"] until the
// watch ends. The first firing waits for the initial value: a scheduler
// that does not yet know whether the fleet is frozen must not fire.
func (s *Scheduler) watchFreeze(ctx context.Context) error {
	return s.follow(ctx, kanade.BucketFleetConfig, func(e *bus.Entry) {
		if e == nil { // every current value delivered: an absent key is "not frozen"
			s.mu.Lock()
			first := !s.freeze.loaded
			s.freeze.loaded = true
			st := s.freeze
			s.mu.Unlock()
			if first {
				s.logFreeze(st, "scheduler: freeze state loaded")
			}
			return
		}
		if e.Key != kanade.KeyFreeze {
			return
		}
		st := freezeState{loaded: true}
		if !e.Deleted {
			f, err := kanade.DecodeFreeze(e.Value)
			if err != nil {
				st.bad = true
				s.log.Error("scheduler: the stored freeze does not decode; treating the fleet as frozen",
					slog.Uint64("revision", e.Revision), slog.Any("err", err))
			} else {
				st.f = f
			}
		}
		s.mu.Lock()
		if !s.freeze.loaded {
			st.loaded = false // still in the initial values
		}
		s.freeze = st
		s.mu.Unlock()
		if st.loaded {
			s.logFreeze(st, "scheduler: freeze changed")
		}
	})
}

func (s *Scheduler) logFreeze(st freezeState, msg string) {
	switch {
	case st.bad:
		s.log.Warn(msg, slog.Bool("undecodable", true))
	case st.f == nil:
		s.log.Info(msg, slog.Bool("configured", false))
	default:
		s.log.Warn(msg, slog.Bool("configured", true), slog.String("from", deref(st.f.From)), slog.String("until", deref(st.f.Until)),
			slog.String("reason", kanade.Clip(deref(st.f.Reason))), slog.String("tz", st.f.TZ))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// skipFrozen passes over the calendar instants in (checked, now] without
// dispatching them, logs each, and records the schedule as checked up to
// now, so the first instant after the freeze ends fires normally.
func (s *Scheduler) skipFrozen(ctx context.Context, sc *kanade.Schedule, from, now time.Time, reason string) error {
	runLate, missed := CatchUp(sc, from, now)
	if runLate != nil {
		missed = append(missed, *runLate)
	}
	for _, at := range missed {
		s.m.frozen.Inc()
		s.log.Warn("scheduler: firing skipped: the fleet is frozen", slog.String("schedule", kanade.Clip(sc.ID)),
			slog.String("job", kanade.Clip(sc.JobID)), slog.Time("fire_at", at), slog.String("reason", kanade.Clip(reason)))
	}
	return s.setChecked(ctx, sc.ID, now)
}
