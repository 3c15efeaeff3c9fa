package kanade

import (
	"errors"
	"fmt"
	"time"
)

// TimeLayout is the single fixed-width UTC layout of every timestamp column.
// Fixed width (always nine fractional digits) makes text order equal time order,
// which every range query and index in storage relies on; a variable number of
// digits would sort "…05Z" after "…05.1Z".
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// FormatTime renders t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime accepts any RFC 3339 timestamp (any offset, 0–9 fractional digits)
// and returns it in UTC. Years outside 0000–9999 are refused because they cannot
// be written in the fixed-width layout (observe.md §0.4 keeps 0000 for query
// bounds; wire Timestamps are narrower, see Timestamp). Its errors quote at
// most an excerpt of s (Clip), since s may come from the wire.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse timestamp %q: %s", clip(s, errExcerptBytes), parseErrorReason(err))
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("parse timestamp %q: year %d out of range", clip(s, errExcerptBytes), y)
	}
	return t, nil
}

// parseErrorReason says why time.Parse failed without repeating the whole
// input, which time.ParseError.Error does.
func parseErrorReason(err error) string {
	var pe *time.ParseError
	if !errors.As(err, &pe) {
		return "not an RFC 3339 timestamp"
	}
	if pe.Message != "" {
		// Message starts with ": " and may quote the rest of the input.
		return "not an RFC 3339 timestamp" + clip(pe.Message, errExcerptBytes/2)
	}
	return fmt.Sprintf("not an RFC 3339 timestamp: cannot parse %q as %q", clip(pe.ValueElem, errExcerptBytes/4), pe.LayoutElem)
}

// validYear reports whether t lies in the years 0001–9999 a wire timestamp
// may have: four digits in TimeLayout, and not before the zero time.Time,
// which stands for "absent".
func validYear(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// Timestamp is a wire timestamp: RFC 3339 in JSON with any offset, UTC in Go.
// Its year must be 0001–9999 (wire.md payloads): the SQL layout holds four
// digits, and a year before 0001 would sort before the zero time that stands
// for "absent", so only real-looking instants reach storage. The zero time
// itself, 0001-01-01T00:00:00Z, is "absent" too: it is the unset value of Go
// and of .NET's DateTime, so an agent that sends it sent no time.
type Timestamp struct{ time.Time }

// UnmarshalJSON accepts any RFC 3339 string with a year in 0001–9999; null
// leaves the zero value.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("timestamp must be a JSON string, got %s", clip(string(b), errExcerptBytes))
	}
	s := string(b[1 : len(b)-1])
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	if !validYear(v) {
		return fmt.Errorf("parse timestamp %q: year %d out of range 0001–9999", clip(s, errExcerptBytes), v.Year())
	}
	t.Time = v
	return nil
}

// MarshalJSON writes UTC RFC 3339 with nanoseconds trimmed, as agents do.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(time.RFC3339Nano) + `"`), nil
}

// DurationMillis is the run duration rule of storage.md: exact whole
// milliseconds, truncated toward zero, negatives (clock skew) clamped to 0.
func DurationMillis(started, finished time.Time) int64 {
	d := finished.Sub(started).Milliseconds()
	if d < 0 {
		return 0
	}
	return d
}
