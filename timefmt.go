package kanade

import (
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
// be written in the fixed-width layout.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse timestamp %q: %w", s, err)
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, fmt.Errorf("parse timestamp %q: year %d out of range", s, y)
	}
	return t, nil
}

// Timestamp is a wire timestamp: RFC 3339 in JSON with any offset, UTC in Go.
type Timestamp struct{ time.Time }

// UnmarshalJSON accepts any RFC 3339 string; null leaves the zero value.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("timestamp must be a JSON string, got %s", b)
	}
	v, err := ParseTime(string(b[1 : len(b)-1]))
	if err != nil {
		return err
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
