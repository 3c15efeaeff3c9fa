package kanade

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses the duration text of a manifest (execute.timeout,
// jitter, rollout delays): anything time.ParseDuration accepts ("600s", "5m",
// "1h30m") plus whole or fractional days with a "d" unit ("1d", "1.5d",
// "1d12h") and humantime's spaced parts ("1h 30m"), which agents and
// operators write but Go does not accept. Negative
// durations are refused: no manifest field means "before now".
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parse duration %q: %w", s, err)
	}
	return d, nil
}

// Why ParseDuration refuses a value, for the rule a FieldError states.
var (
	errDurationNegative   = errors.New("negative")
	errDurationOutOfRange = errors.New("out of range")
)

// durationRule is the FieldError rule of a duration ParseDuration refused
// with err.
func durationRule(err error) string {
	switch {
	case errors.Is(err, errDurationNegative):
		return "must not be negative"
	case errors.Is(err, errDurationOutOfRange):
		return "must be a duration under 290 years"
	}
	return "must be a duration such as 90s, 5m, 1h30m or 1.5d"
}

func parseDuration(s string) (time.Duration, error) {
	// humantime (the agent's parser) writes and reads "1h 30m"; the parts
	// are joined as Go spells them.
	in := strings.Join(strings.Fields(s), "")
	if in == "" {
		return 0, errors.New("empty")
	}
	if strings.HasPrefix(in, "-") {
		return 0, errDurationNegative
	}
	in = strings.TrimPrefix(in, "+")
	var days time.Duration
	if i := strings.IndexByte(in, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(in[:i], 64)
		if err != nil || i == 0 || strings.ContainsAny(in[:i], "eEinfINFxX_") {
			return 0, errors.New("bad day count")
		}
		d := n * float64(24*time.Hour)
		if d > math.MaxInt64 {
			return 0, errDurationOutOfRange
		}
		days = time.Duration(d)
		in = in[i+1:]
		if in == "" {
			return days, nil
		}
	}
	rest, err := time.ParseDuration(in)
	if err != nil {
		return 0, err
	}
	if rest < 0 {
		return 0, errDurationNegative
	}
	if days > math.MaxInt64-rest {
		return 0, errDurationOutOfRange
	}
	return days + rest, nil
}
