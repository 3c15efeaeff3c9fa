package kanade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Freeze is the fleet-wide "no automated change" switch (control.md §6):
// the value of KV fleet_config under KeyFreeze, absent when the fleet is
// not frozen. While it is active the scheduler dispatches nothing (and
// agents' local schedulers fire nothing); operators' execs, runs, kills
// and revokes are never held by it.
//
// A bound is "YYYY-MM-DD" (midnight in TZ) or RFC 3339 (its own offset
// wins); a nil bound is open. Writers leave absent fields out and always
// write tz (MarshalJSON); readers take null for absent.
type Freeze struct {
	From   *string `json:"from,omitempty"`
	Until  *string `json:"until,omitempty"` // exclusive
	Reason *string `json:"reason,omitempty"`
	// TZ is "local" (the evaluating host's zone; "" reads as it) or
	// "utc". Unlike a schedule's tz it takes no IANA name: upstream's
	// agents apply the same freeze from their own mirror and know only
	// these two, and a freeze they cannot read holds them for good.
	TZ string `json:"tz"`
}

// ErrUndecodableFreeze marks a stored freeze that is not a valid Freeze.
// The scheduler must then hold the fleet as if an empty freeze were set
// (control.md §6.3: never "not frozen" on doubt), and GET /api/freeze
// answers 500 so an operator fixes or clears it.
var ErrUndecodableFreeze = errors.New("the stored freeze is not a valid freeze")

// DecodeFreeze reads a freeze: the value of KV fleet_config "freeze" or a
// PUT /api/freeze body. Unknown members are ignored (upstream does too).
// Every error wraps ErrUndecodableFreeze; one about a field also carries
// a *FieldError naming it (from, until, tz, reason). JSON null is an
// error too: an absent freeze is an absent key, never a value. On error
// the Freeze is nil; a caller deciding whether to fire treats that as
// Freeze{} (active at every instant).
func DecodeFreeze(data []byte) (*Freeze, error) {
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, fmt.Errorf("%w: it is empty or null", ErrUndecodableFreeze)
	}
	var f Freeze
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodableFreeze, jsonError("freeze", "", err))
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodableFreeze, err)
	}
	return &f, nil
}

// Validate checks the freeze as a schedule's active window is checked
// (control.md §6.1): tz is local or utc ("" becomes local), every bound
// given parses, from is strictly before until when both are given, and
// the reason is text a log line and a banner can show (at most 1024 bytes,
// no control characters). The *FieldError names the field.
func (f *Freeze) Validate() error {
	var c checker
	if f.TZ == "" {
		f.TZ = TZLocal
	}
	c.rule("tz", f.TZ, f.TZ == TZLocal || f.TZ == TZUTC, `must be "local" or "utc"`)
	if c.err != nil {
		return c.err
	}
	loc := f.location(time.Local)
	const ruleBound = "must be YYYY-MM-DD or RFC 3339"
	var from, until time.Time
	var err error
	if f.From != nil {
		from, err = parseBound(*f.From, loc)
		c.rule("from", *f.From, err == nil, ruleBound)
	}
	if f.Until != nil {
		until, err = parseBound(*f.Until, loc)
		c.rule("until", *f.Until, err == nil, ruleBound)
	}
	if c.err == nil && f.From != nil && f.Until != nil {
		c.rule("until", *f.Until, from.Before(until), "must be after from "+strconv.Quote(clip(*f.From, errExcerptBytes)))
	}
	if f.Reason != nil {
		c.rule("reason", *f.Reason, ValidText(*f.Reason, MaxTextBytes), "must be at most 1024 bytes of text without control characters")
	}
	return c.err
}

// Active reports whether the freeze holds at t, local meaning this host's
// zone: (from absent or t ≥ from) and (until absent or t < until). An
// empty Freeze is active at every instant; one whose window is over, or
// not begun, is not active.
func (f *Freeze) Active(t time.Time) bool { return f.ActiveIn(t, time.Local) }

// ActiveIn is Active with tz "local" meaning the zone local, so a test or
// a caller with its own idea of the host zone gets a defined answer. A
// bound that does not parse (a record Validate refuses) counts as absent,
// which only widens the freeze: doubt holds the fleet.
func (f *Freeze) ActiveIn(t time.Time, local *time.Location) bool {
	loc := f.location(local)
	if f.From != nil {
		if from, err := parseBound(*f.From, loc); err == nil && t.Before(from) {
			return false
		}
	}
	if f.Until != nil {
		if until, err := parseBound(*f.Until, loc); err == nil && !t.Before(until) {
			return false
		}
	}
	return true
}

// location is the zone date bounds are read in.
func (f *Freeze) location(local *time.Location) *time.Location {
	if f.TZ == TZUTC {
		return time.UTC
	}
	if local == nil {
		return time.Local
	}
	return local
}

// MarshalJSON writes the freeze as upstream's writers do: absent fields
// left out, tz always there ("local" when unset).
func (f Freeze) MarshalJSON() ([]byte, error) {
	type plain Freeze // without methods, so this does not recurse
	if f.TZ == "" {
		f.TZ = TZLocal
	}
	return json.Marshal(plain(f))
}
