package schedule

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// Bounds of the in-flight window (scheduler.md).
const (
	MinDispatchWindow = 90 * time.Second
	MaxDispatchWindow = 30 * time.Minute
)

// DispatchWindow is how long a dispatch counts as in flight, so the
// reconcile does not send it again while the first run may still report:
// jitter + timeout + 90 s, clamped to [90 s, 30 min].
func DispatchWindow(jitter, timeout time.Duration) time.Duration {
	jitter, timeout = max(jitter, 0), max(timeout, 0)
	if jitter >= MaxDispatchWindow || timeout >= MaxDispatchWindow {
		return MaxDispatchWindow // and no overflow on absurd inputs
	}
	return min(max(jitter+timeout+MinDispatchWindow, MinDispatchWindow), MaxDispatchWindow)
}

// TargetMark is the key of ReconcileInput.Marks for a per_target dispatch. It
// can never be a PC id ("*" is not a subject token), so one map serves both.
const TargetMark = "*"

// ReconcileInput is everything a per-minute reconcile decision depends on.
type ReconcileInput struct {
	Now time.Time
	// Expected is the result of fanout.ExpectedPCs.
	Expected []string
	// Completions holds each PC's newest finished run of the job with
	// exit_code 0 (PCs without one are absent).
	Completions map[string]time.Time
	// Marks are recent dispatches from KV scheduler_dispatch: by PC for
	// per_pc, under TargetMark for per_target.
	Marks map[string]time.Time
	// Window is DispatchWindow of the job: a mark younger than it means the
	// run may still be in flight.
	Window time.Duration
}

// Decision is the outcome of Reconcile.
type Decision struct {
	Fire bool
	// PCs are, for per_pc, the PCs to dispatch to (commands.pc.{pc}); for
	// per_target, the expected PCs the whole-target dispatch reaches (its
	// target_count). Sorted; empty when Fire is false.
	PCs []string
	// Reason says why nothing fires (or, for per_pc, why some PCs were held
	// back), for debug logs and tests.
	Reason string
}

// Reconcile decides what a per_pc or per_target schedule dispatches at
// in.Now (scheduler.md). per_pc fires at each expected PC without a
// completion or whose completion is at least `every` old ("once": any
// completion is final). per_target fires the whole target when no expected PC
// has a completion, or the newest among them is at least `every` old; it skips
// when no PC is expected. Anything dispatched less than in.Window ago is not
// dispatched again. A disabled, inactive, agent-run or calendar schedule
// never fires here.
func Reconcile(s *kanade.Schedule, in ReconcileInput) Decision {
	switch {
	case !s.Enabled:
		return Decision{Reason: "disabled"}
	case s.RunsOn == kanade.RunsOnAgent:
		return Decision{Reason: "runs on the agents"}
	case s.Kind() == kanade.KindCalendar:
		return Decision{Reason: "calendar schedules fire on their own timer"}
	case !s.ActiveAt(in.Now):
		return Decision{Reason: "outside the active window"}
	}
	expected := slices.Compact(slices.Sorted(slices.Values(in.Expected)))
	if len(expected) == 0 {
		return Decision{Reason: "no PC expected"}
	}
	due := func(done time.Time, ok bool, every time.Duration) bool {
		if !ok {
			return true
		}
		return every > 0 && in.Now.Sub(done) >= every
	}
	inFlight := func(key string) bool {
		m, ok := in.Marks[key]
		return ok && in.Now.Sub(m) < in.Window
	}

	if s.Kind() == kanade.KindPerTarget {
		every := s.When.PerTarget.Interval()
		var newest time.Time
		var have bool
		for _, pc := range expected {
			if c, ok := in.Completions[pc]; ok && (!have || c.After(newest)) {
				newest, have = c, true
			}
		}
		switch {
		case !due(newest, have, every):
			return Decision{Reason: "up to date"}
		case inFlight(TargetMark):
			return Decision{Reason: "dispatched within the window"}
		}
		return Decision{Fire: true, PCs: expected}
	}

	every := s.When.PerPC.Interval()
	var fire []string
	held := 0
	for _, pc := range expected {
		c, ok := in.Completions[pc]
		if !due(c, ok, every) {
			continue
		}
		if inFlight(pc) {
			held++
			continue
		}
		fire = append(fire, pc)
	}
	d := Decision{Fire: len(fire) > 0, PCs: fire}
	switch {
	case held > 0:
		d.Reason = fmt.Sprintf("%d due PC(s) dispatched within the window", held)
	case !d.Fire:
		d.Reason = "up to date"
	}
	return d
}

// MaxMissed caps the missed firings CatchUp returns: a worker that comes back
// after years must not produce years of audit events.
const MaxMissed = 100

// CatchUp decides what to do with the calendar firings in (lastSeen, now]
// that no worker performed. The newest runs late once if it is younger than
// starting_deadline (when one is set); every other one is missed, returned
// oldest first so the runtime logs, counts and audits it. Only the newest
// MaxMissed misses are returned. Reconciled schedules need no catch-up: the
// next minute's Reconcile sees what is due.
func CatchUp(s *kanade.Schedule, lastSeen, now time.Time) (runLate *time.Time, missed []time.Time) {
	if s.Kind() != kanade.KindCalendar || !s.Backend() || !now.After(lastSeen) {
		return nil, nil
	}
	// A repeating schedule fires at least weekly until its active window
	// ends, so its newest MaxMissed+1 firings lie within that many weeks (plus
	// one for DST shifts) of the end; starting there bounds the work for a
	// lastSeen from long ago.
	if !s.When.Calendar.OneShot() {
		end := now
		if !s.ActiveUntil().IsZero() && s.ActiveUntil().Before(end) {
			end = s.ActiveUntil()
		}
		if horizon := end.Add(-time.Duration(MaxMissed+2) * 7 * 24 * time.Hour); lastSeen.Before(horizon) {
			lastSeen = horizon
		}
	}
	var fires []time.Time
	for cur := lastSeen; ; {
		next, ok := s.NextFire(cur)
		if !ok || next.After(now) {
			break
		}
		fires = append(fires, next)
		if len(fires) > MaxMissed+1 {
			fires = fires[1:]
		}
		cur = next
	}
	if len(fires) == 0 {
		return nil, nil
	}
	newest := fires[len(fires)-1]
	if s.Deadline() > 0 && now.Sub(newest) < s.Deadline() {
		runLate = &newest
		fires = fires[:len(fires)-1]
	}
	if len(fires) > MaxMissed {
		fires = fires[len(fires)-MaxMissed:]
	}
	if len(fires) > 0 {
		missed = slices.Clone(fires)
	}
	return runLate, missed
}

// FireKey is the create-only KV key (bucket scheduler_dispatch) that makes one
// calendar firing exactly-once across workers: whoever creates it dispatches.
// It is a valid NATS KV key for any schedule id.
func FireKey(scheduleID string, at time.Time) string {
	return "fire." + escapeKey(scheduleID) + "." + at.UTC().Format("20060102T150405Z")
}

// ReconcileKey is the create-only key that lets one worker, and one only,
// reconcile a per_pc or per_target schedule in a given minute.
func ReconcileKey(scheduleID string, minute time.Time) string {
	return "reconcile." + escapeKey(scheduleID) + "." + minute.UTC().Truncate(time.Minute).Format("20060102T1504Z")
}

// MarkKey is the key of a dispatch mark: pc is a PC id for per_pc, or
// TargetMark for per_target. Its value (the dispatch time) feeds
// ReconcileInput.Marks.
func MarkKey(scheduleID, pc string) string {
	if pc == TargetMark {
		return "mark." + escapeKey(scheduleID) + ".target"
	}
	return "mark." + escapeKey(scheduleID) + ".pc." + escapeKey(pc)
}

// MarkPrefix is the key prefix of every mark of a schedule (for a KV watch or
// list, append ">").
func MarkPrefix(scheduleID string) string { return "mark." + escapeKey(scheduleID) + "." }

// escapeKey makes any string one token of a NATS KV key: letters, digits, '-'
// and '_' stay (so common ids remain readable) and every other byte, '=' and
// '.' included, becomes "=XX" (hex). The mapping is injective, so distinct
// ids never share a key; the empty string becomes "=".
func escapeKey(s string) string {
	if s == "" {
		return "="
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// unescapeKey inverts escapeKey.
func unescapeKey(s string) (string, bool) {
	if s == "=" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		var v byte
		for _, c := range []byte{s[i+1], s[i+2]} {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			default:
				return "", false
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), true
}
