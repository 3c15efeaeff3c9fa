package kanade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The Schedule record: one value of KV "schedules", its JSON shape and its
// validation. Its calendar arithmetic is calendar.go; the scheduler that
// drives schedules is package schedule, and its SQL state
// storage/dispatch_state.go.

// Kind is which of the three `when` forms a schedule uses; it decides which
// runtime path drives it (calendar timers or the per-minute reconcile).
type ScheduleKind string

// The three forms of `when`.
const (
	KindPerPC     ScheduleKind = "per_pc"
	KindPerTarget ScheduleKind = "per_target"
	KindCalendar  ScheduleKind = "calendar"
)

// Values of runs_on, tz and rollout.strategy the spec names.
const (
	RunsOnBackend = "backend" // the worker fires it (default)
	RunsOnAgent   = "agent"   // agents tick it themselves; the backend ignores it
	TZLocal       = "local"   // the worker host's zone (default)
	TZUTC         = "utc"
	StrategyWave  = "wave"
)

// Schedule is one value of KV "schedules" (shared/spec/scheduler.md). The
// exported fields are the JSON exactly as stored; the unexported ones hold the
// parsed forms, filled by Parse or Validate, which the methods below and the
// calendar and decision functions rely on. A Schedule that did not go through
// Parse or Validate must not be handed to them.
type Schedule struct {
	ID               string   `json:"id" schema:"required,pattern=kvkey"`
	When             When     `json:"when" schema:"required"`
	JobID            string   `json:"job_id" schema:"required,pattern=jobid"`
	Target           Target   `json:"target" schema:"required"`
	Rollout          *Rollout `json:"rollout,omitempty"`
	Jitter           string   `json:"jitter,omitempty" schema:"pattern=duration"`
	StartingDeadline string   `json:"starting_deadline,omitempty" schema:"pattern=duration"`
	Active           *Active  `json:"active,omitempty"`
	TZ               string   `json:"tz,omitempty" schema:"pattern=tz"`
	RunsOn           string   `json:"runs_on,omitempty" schema:"enum=backend|agent"`
	// Enabled is true when the JSON leaves it out (or null): a schedule is
	// meant to run unless someone switched it off. A Schedule built in Go
	// rather than decoded must set it.
	Enabled bool `json:"enabled"`
	// OnFailure is what an agent does when a run of this schedule fails
	// (upstream #466): retry in place. The scheduler copies Retry() into
	// every Command.
	OnFailure *OnFailure `json:"on_failure,omitempty"`

	loc         *time.Location
	jitter      time.Duration
	deadline    time.Duration
	from, until time.Time
}

// When holds exactly one of its three fields (Validate enforces it).
type When struct {
	PerPC     *Cadence  `json:"per_pc,omitempty"`
	PerTarget *Cadence  `json:"per_target,omitempty"`
	Calendar  *Calendar `json:"calendar,omitempty"`
}

// Cadence is the value of per_pc and per_target: the JSON string "once" or
// {"every": duration}.
type Cadence struct {
	Once  bool
	Every string

	every time.Duration
}

// Calendar is the value of `calendar`: `at` is "HH:MM" (repeating, on Days,
// every day when Days is empty) or "YYYY-MM-DD HH:MM" (one-shot, no Days).
type Calendar struct {
	At   string   `json:"at" schema:"required,pattern=at"`
	Days []string `json:"days,omitempty" schema:"pattern=day"`

	oneShot      bool
	year         int
	month        time.Month
	day          int
	hour, minute int
	weekdays     uint8 // bit 1<<time.Weekday per allowed day
}

// Active bounds when a schedule may fire, half-open [From, Until). A bound is
// "YYYY-MM-DD" (midnight in the schedule's tz) or RFC 3339; empty is unbounded.
type Active struct {
	From  string `json:"from,omitempty" schema:"pattern=bound"`
	Until string `json:"until,omitempty" schema:"pattern=bound"`
}

// OnFailure is a schedule's on_failure block.
type OnFailure struct {
	Retry *Retry `json:"retry,omitempty"`
}

// Retry re-runs a failed script on the agent: at most Max more attempts
// (1–10, so a typo cannot pin a flapping script in a tight loop), Backoff
// apart (at least 1s: the wire carries whole seconds).
type Retry struct {
	Max     int    `json:"max" schema:"required,min=1,max=10"`
	Backoff string `json:"backoff" schema:"required,pattern=duration"`
}

// Validate checks retry's bounds. The *FieldError names the field from
// the on_failure object (retry.max).
func (o *OnFailure) Validate() error {
	if o.Retry == nil {
		return nil
	}
	var c checker
	r := o.Retry
	c.rule("retry.max", strconv.Itoa(r.Max), r.Max >= 1 && r.Max <= 10, "must be 1–10 (attempts after the first run)")
	b := c.duration("retry.backoff", r.Backoff)
	c.rule("retry.backoff", r.Backoff, b >= time.Second, "must be at least 1s (the wire carries whole seconds)")
	return c.err
}

// Lower is retry as the wire carries it, nil when there is none or it
// does not validate (a record read tolerantly must not make the scheduler
// send a retry nobody checked).
func (o *OnFailure) Lower() *RetrySpec {
	if o == nil || o.Retry == nil || o.Validate() != nil {
		return nil
	}
	d, _ := ParseDuration(o.Retry.Backoff)
	return &RetrySpec{Max: o.Retry.Max, BackoffSecs: int64(d / time.Second)}
}

// Retry is on_failure.retry lowered to the wire, nil when the schedule has
// none.
func (s *Schedule) Retry() *RetrySpec { return s.OnFailure.Lower() }

// ParseSchedule decodes one value of KV "schedules" stored under key and
// validates it (see Validate); key may be empty when there is none to compare
// to yet. An error about a field is a *FieldError naming it (when.calendar.at,
// target.pcs[1]), a JSON member of the wrong type included, so the API can
// point at it; only a value that is not a JSON object at all gets a plain
// error.
func ParseSchedule(key string, data []byte) (*Schedule, error) {
	var s Schedule
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, jsonError("schedule", "", err)
	}
	if err := s.Validate(key); err != nil {
		return nil, err
	}
	return &s, nil
}

// UnmarshalJSON decodes the stored shape and applies the one default JSON
// cannot express: enabled is true when absent or null. It checks shapes only;
// Validate checks meaning.
func (s *Schedule) UnmarshalJSON(data []byte) error {
	type plain Schedule // without methods, so this does not recurse
	p := plain{Enabled: true}
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*s = Schedule(p)
	return nil
}

// Validate checks every rule of the Schedule JSON, fills the defaults (tz
// "local", runs_on "backend") and the parsed forms the other functions use.
// key is the KV key the record is stored under; when not empty, the id must
// equal it. The first broken rule is a *FieldError naming the field.
func (s *Schedule) Validate(key string) error {
	var c checker
	c.required("id", s.ID != "")
	c.rule("id", s.ID, ValidKVKey(s.ID), ruleKVKey)
	c.rule("id", s.ID, key == "" || s.ID == key, "must equal the key "+strconv.Quote(clip(key, errExcerptBytes)))
	c.required("job_id", strings.TrimSpace(s.JobID) != "")
	c.rule("job_id", s.JobID, patternMatch("jobid", s.JobID),
		"must be a job id: 1–128 characters of [-/_=A-Za-z0-9]")

	if s.TZ == "" {
		s.TZ = TZLocal
	}
	loc, err := loadLocation(s.TZ)
	c.rule("tz", s.TZ, err == nil, "must be local, utc or an IANA zone name such as Europe/Berlin")
	if c.err != nil {
		return c.err
	}
	s.loc = loc

	if err := s.When.validate(loc); err != nil {
		return err
	}
	c.holds("target", !s.Target.Empty(), "must name PCs: set all, or at least one group or pc")
	c.under("target", s.Target.Validate())
	if s.Rollout != nil && c.err == nil {
		c.err = s.Rollout.Validate()
	}

	s.jitter = 0
	if s.Jitter != "" {
		s.jitter = c.duration("jitter", s.Jitter)
	}
	s.deadline = 0
	if s.StartingDeadline != "" {
		s.deadline = c.duration("starting_deadline", s.StartingDeadline)
		c.rule("starting_deadline", s.StartingDeadline, s.deadline > 0,
			"must be greater than zero (every command would arrive past its deadline)")
	}

	s.from, s.until = time.Time{}, time.Time{}
	if s.Active != nil {
		const ruleBound = "must be YYYY-MM-DD or RFC 3339"
		if s.Active.From != "" {
			s.from, err = parseBound(s.Active.From, loc)
			c.rule("active.from", s.Active.From, err == nil, ruleBound)
		}
		if s.Active.Until != "" {
			s.until, err = parseBound(s.Active.Until, loc)
			c.rule("active.until", s.Active.Until, err == nil, ruleBound)
		}
		c.rule("active.until", s.Active.Until, s.from.IsZero() || s.until.IsZero() || s.from.Before(s.until),
			"must be after active.from "+strconv.Quote(clip(s.Active.From, errExcerptBytes)))
	}

	if s.OnFailure != nil {
		c.under("on_failure", s.OnFailure.Validate())
	}

	if s.RunsOn == "" && c.err == nil {
		s.RunsOn = RunsOnBackend
	}
	c.rule("runs_on", s.RunsOn, s.RunsOn == RunsOnBackend || s.RunsOn == RunsOnAgent, `must be "backend" or "agent"`)
	return c.err
}

// Kind tells which `when` form the schedule uses.
func (s *Schedule) Kind() ScheduleKind {
	switch {
	case s.When.PerPC != nil:
		return KindPerPC
	case s.When.PerTarget != nil:
		return KindPerTarget
	default:
		return KindCalendar
	}
}

// DisplayWhen is the one-line summary of `when` that logs, audit payloads
// and the API's schedule summary show (control.md §5.6), as upstream
// writes it: "per_pc once", "per_pc every 6h", "per_target once",
// "per_target every 24h", "at 09:00", "at 09:00 [mon-fri,sun]". Durations,
// times and day tokens appear as the operator wrote them, so the summary
// matches the YAML. It needs no Validate.
func (s *Schedule) DisplayWhen() string { return s.When.String() }

// String is DisplayWhen of a schedule with this `when`; "" when no form
// is set. With several set (a record Validate refuses) the first of
// per_pc, per_target, calendar is shown.
func (w When) String() string {
	cadence := func(c *Cadence) string {
		if c.Once {
			return "once"
		}
		return "every " + c.Every
	}
	switch {
	case w.PerPC != nil:
		return "per_pc " + cadence(w.PerPC)
	case w.PerTarget != nil:
		return "per_target " + cadence(w.PerTarget)
	case w.Calendar != nil && len(w.Calendar.Days) == 0:
		return "at " + w.Calendar.At
	case w.Calendar != nil:
		return "at " + w.Calendar.At + " [" + strings.Join(w.Calendar.Days, ",") + "]"
	}
	return ""
}

// Backend reports whether the worker drives this schedule at all: enabled and
// not left to the agents.
func (s *Schedule) Backend() bool { return s.Enabled && s.RunsOn != RunsOnAgent }

// Location is the zone calendar times and date bounds are read in.
func (s *Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.Local
	}
	return s.loc
}

// JitterDuration is the parsed jitter (0 when unset); it becomes
// Command.jitter_secs and widens the in-flight window.
func (s *Schedule) JitterDuration() time.Duration { return s.jitter }

// Deadline is the parsed starting_deadline, 0 when unset. When set, a command
// carries deadline_at = fire time + Deadline, and a calendar firing missed by
// less than it still runs late once.
func (s *Schedule) Deadline() time.Duration { return s.deadline }

// ActiveUntil is the exclusive end of the active window; zero when unbounded.
func (s *Schedule) ActiveUntil() time.Time { return s.until }

// ActiveAt reports whether t lies in the active window [from, until).
func (s *Schedule) ActiveAt(t time.Time) bool {
	if !s.from.IsZero() && t.Before(s.from) {
		return false
	}
	return s.until.IsZero() || t.Before(s.until)
}

// Interval is the `every` of a per_pc or per_target cadence; 0 means "once".
func (c *Cadence) Interval() time.Duration { return c.every }

// OneShot reports whether `at` names a single date rather than a daily time.
func (c *Calendar) OneShot() bool { return c.oneShot }

// UnmarshalJSON reads the three forms of `when` itself so that its errors
// name the field (when.per_pc, when.calendar.at, …) instead of a Go type.
func (w *When) UnmarshalJSON(data []byte) error {
	*w = When{}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return &FieldError{Field: "when", Rule: "must be an object with one of per_pc, per_target, calendar"}
	}
	for _, name := range []string{"per_pc", "per_target", "calendar"} {
		raw, ok := fields[name]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		switch name {
		case "per_pc", "per_target":
			var c Cadence
			if err := c.UnmarshalJSON(raw); err != nil {
				var word string
				_ = json.Unmarshal(raw, &word) // quoted when it is a string
				return &FieldError{Field: "when." + name, Rule: ruleCadence, Excerpt: clip(word, errExcerptBytes)}
			}
			if name == "per_pc" {
				w.PerPC = &c
			} else {
				w.PerTarget = &c
			}
		case "calendar":
			var c Calendar
			if err := json.Unmarshal(raw, &c); err != nil {
				return jsonError("schedule", "when.calendar", err)
			}
			w.Calendar = &c
		}
	}
	return nil
}

// ruleCadence is the rule of per_pc and per_target.
const ruleCadence = `must be "once" or {"every": duration}`

// UnmarshalJSON accepts "once" or {"every": duration}.
func (c *Cadence) UnmarshalJSON(data []byte) error {
	*c = Cadence{}
	var word string
	if err := json.Unmarshal(data, &word); err == nil {
		if word != "once" {
			return fmt.Errorf(`cadence %q %s`, clip(word, errExcerptBytes), ruleCadence)
		}
		c.Once = true
		return nil
	}
	var obj struct {
		Every *string `json:"every"`
	}
	if err := json.Unmarshal(data, &obj); err != nil || obj.Every == nil {
		return errors.New("cadence " + ruleCadence)
	}
	c.Every = *obj.Every
	return nil
}

// MarshalJSON writes "once" or {"every": duration}.
func (c Cadence) MarshalJSON() ([]byte, error) {
	if c.Once {
		return []byte(`"once"`), nil
	}
	return json.Marshal(struct {
		Every string `json:"every"`
	}{c.Every})
}

func (w *When) validate(loc *time.Location) error {
	n := 0
	for _, set := range []bool{w.PerPC != nil, w.PerTarget != nil, w.Calendar != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return &FieldError{Field: "when", Rule: "must have exactly one of per_pc, per_target, calendar"}
	}
	switch {
	case w.PerPC != nil:
		return w.PerPC.validate("when.per_pc")
	case w.PerTarget != nil:
		return w.PerTarget.validate("when.per_target")
	default:
		return w.Calendar.validate(loc)
	}
}

func (c *Cadence) validate(field string) error {
	c.every = 0
	var ck checker
	if c.Once {
		ck.holds(field, c.Every == "", `must be "once" or {"every": duration}, not both`)
		return ck.err
	}
	ck.holds(field, c.Every != "", ruleCadence)
	d := ck.duration(field+".every", c.Every)
	ck.rule(field+".every", c.Every, d > 0, "must be greater than zero")
	c.every = d
	return ck.err
}

func (c *Calendar) validate(loc *time.Location) error {
	c.oneShot, c.year, c.month, c.day, c.weekdays = false, 0, 0, 0, 0
	const ruleAt = `must be "HH:MM" or "YYYY-MM-DD HH:MM"`
	var ck checker
	ck.required("when.calendar.at", c.At != "")
	at := strings.TrimSpace(c.At)
	switch len(at) {
	case len("15:04"):
		h, m, ok := parseClock(at)
		ck.rule("when.calendar.at", c.At, ok, ruleAt)
		c.hour, c.minute = h, m
	case len("2006-01-02 15:04"):
		d, err := time.Parse("2006-01-02", at[:10])
		h, m, ok := parseClock(at[11:])
		ck.rule("when.calendar.at", c.At, err == nil && at[10] == ' ' && ok, ruleAt)
		ck.holds("when.calendar.days", len(c.Days) == 0, "must be empty with a one-shot at (YYYY-MM-DD HH:MM)")
		c.oneShot = true
		c.year, c.month, c.day = d.Date()
		c.hour, c.minute = h, m
		return ck.err
	default:
		ck.rule("when.calendar.at", c.At, false, ruleAt)
	}
	if len(c.Days) == 0 {
		c.weekdays = allDays
	}
	for i, tok := range c.Days {
		mask, ok := parseDays(tok)
		ck.rule("when.calendar.days["+strconv.Itoa(i)+"]", tok, ok, "must be a day mon..sun or a range such as mon-fri")
		c.weekdays |= mask
	}
	return ck.err
}

const allDays uint8 = 1<<7 - 1

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseDays reads "mon" or a range "mon-fri"; a range may wrap the week
// ("fri-mon" is fri, sat, sun, mon).
func parseDays(tok string) (uint8, bool) {
	t := strings.ToLower(strings.TrimSpace(tok))
	first, last, isRange := strings.Cut(t, "-")
	a, okA := dayNames[first]
	b, okB := a, okA
	if isRange {
		b, okB = dayNames[last]
	}
	if !okA || !okB {
		return 0, false
	}
	var mask uint8
	for d := a; ; d = (d + 1) % 7 {
		mask |= 1 << d
		if d == b {
			return mask, true
		}
	}
}

// parseClock reads exactly "HH:MM" (two digits each, 00:00..23:59).
func parseClock(s string) (hour, minute int, ok bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, 0, false
		}
	}
	hour = int(s[0]-'0')*10 + int(s[1]-'0')
	minute = int(s[3]-'0')*10 + int(s[4]-'0')
	return hour, minute, hour < 24 && minute < 60
}

func loadLocation(name string) (*time.Location, error) {
	switch name {
	case TZLocal:
		return time.Local, nil
	case TZUTC:
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown zone %q (want local, utc or an IANA name): %w", name, err)
	}
	return loc, nil
}

// parseBound reads an active bound: a date is midnight in loc (or the first
// instant after it, on the rare days a zone skips midnight), anything else
// must be RFC 3339.
func parseBound(s string, loc *time.Location) (time.Time, error) {
	if len(s) == len("2006-01-02") {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD nor RFC 3339", s)
		}
		y, m, day := d.Date()
		return wallInstant(y, m, day, 0, 0, loc), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD nor RFC 3339", s)
	}
	return t, nil
}

// jsonError turns encoding/json's errors about a record (doc: "schedule",
// "manifest") into ones that name the field: a member of the wrong JSON type
// is a *FieldError on its path, below prefix when the JSON decoded was a
// nested value (when.calendar); a record that is not an object at all, or
// not JSON, gets a plain error.
func jsonError(doc, prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if prefix != "" {
			field = strings.TrimSuffix(prefix+"."+field, ".")
		}
		rule := "must be " + jsonKind(te.Type) + " (got a JSON " + te.Value + ")"
		if field == "" {
			return fmt.Errorf("%s %s", doc, rule)
		}
		return &FieldError{Field: field, Rule: rule}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %w", se.Offset, err)
	}
	var fe *FieldError
	if prefix == "" || errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// jsonKind names the JSON shape a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "a number"
	}
}
