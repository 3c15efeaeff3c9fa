package kanade

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kanade-fleet/backend/internal/testkit"
)

// cal builds a calendar schedule in zone tz; extra is more top-level JSON
// fields (without braces), e.g. `"active":{"from":"2026-01-01"}`.
func cal(t *testing.T, calendar, tz, extra string) *Schedule {
	t.Helper()
	patch := fmt.Sprintf(`{"when":{"calendar":%s},"tz":%q`, calendar, tz)
	if extra != "" {
		patch += "," + extra
	}
	return mustParse(t, patch+"}")
}

func TestNextFire(t *testing.T) {
	tests := []struct {
		name     string
		calendar string
		tz       string
		extra    string
		after    string
		want     string // "" = no fire
	}{
		{name: "later the same day", calendar: `{"at":"09:00"}`, tz: "Europe/Berlin", after: "2026-06-10T06:00:00Z", want: "2026-06-10T07:00:00Z"},
		{name: "one nanosecond before", calendar: `{"at":"09:00"}`, tz: "Europe/Berlin", after: "2026-06-10T06:59:59.999999999Z", want: "2026-06-10T07:00:00Z"},
		{name: "strictly after: exactly at a fire gives the next", calendar: `{"at":"09:00"}`, tz: "Europe/Berlin", after: "2026-06-10T07:00:00Z", want: "2026-06-11T07:00:00Z"},
		{name: "weekdays skip the weekend", calendar: `{"at":"09:00","days":["mon-fri"]}`, tz: "Europe/Berlin", after: "2026-06-12T08:00:00Z", want: "2026-06-15T07:00:00Z"},
		{name: "weekend only, from a Monday", calendar: `{"at":"09:00","days":["sat","sun"]}`, tz: "utc", after: "2026-06-08T00:00:00Z", want: "2026-06-13T09:00:00Z"},
		{name: "wrapping range from a Tuesday is Friday", calendar: `{"at":"09:00","days":["fri-mon"]}`, tz: "utc", after: "2026-06-09T00:00:00Z", want: "2026-06-12T09:00:00Z"},
		{name: "wrapping range includes Sunday", calendar: `{"at":"09:00","days":["fri-mon"]}`, tz: "utc", after: "2026-06-13T10:00:00Z", want: "2026-06-14T09:00:00Z"},
		{name: "wrapping range ends Monday", calendar: `{"at":"09:00","days":["fri-mon"]}`, tz: "utc", after: "2026-06-15T09:00:00Z", want: "2026-06-19T09:00:00Z"},
		{name: "single day a full week ahead", calendar: `{"at":"09:00","days":["wed"]}`, tz: "utc", after: "2026-06-10T09:00:00Z", want: "2026-06-17T09:00:00Z"},
		{name: "the weekday is the zone's, not UTC's", calendar: `{"at":"00:30","days":["sat"]}`, tz: "Asia/Tokyo", after: "2026-06-11T00:00:00Z", want: "2026-06-12T15:30:00Z"},
		{name: "month end", calendar: `{"at":"23:30"}`, tz: "utc", after: "2026-01-31T23:30:00Z", want: "2026-02-01T23:30:00Z"},
		{name: "year end", calendar: `{"at":"00:00"}`, tz: "utc", after: "2026-12-31T00:00:00Z", want: "2027-01-01T00:00:00Z"},
		{name: "leap day", calendar: `{"at":"12:00"}`, tz: "utc", after: "2028-02-28T12:00:00Z", want: "2028-02-29T12:00:00Z"},
		{name: "year end in a zone ahead of UTC", calendar: `{"at":"00:15","days":["fri"]}`, tz: "Pacific/Auckland", after: "2026-12-31T00:00:00Z", want: "2026-12-31T11:15:00Z"}, // Friday 2027-01-01 00:15 NZDT,
		{name: "one-shot in the future", calendar: `{"at":"2026-06-10 09:00"}`, tz: "Europe/Berlin", after: "2026-01-01T00:00:00Z", want: "2026-06-10T07:00:00Z"},
		{name: "one-shot just before it", calendar: `{"at":"2026-06-10 09:00"}`, tz: "Europe/Berlin", after: "2026-06-10T06:59:59Z", want: "2026-06-10T07:00:00Z"},
		{name: "one-shot exactly at it", calendar: `{"at":"2026-06-10 09:00"}`, tz: "Europe/Berlin", after: "2026-06-10T07:00:00Z"},
		{name: "one-shot in the past", calendar: `{"at":"2026-06-10 09:00"}`, tz: "Europe/Berlin", after: "2027-01-01T00:00:00Z"},
		{name: "one-shot before active.from", calendar: `{"at":"2026-06-10 09:00"}`, tz: "utc", extra: `"active":{"from":"2026-06-11"}`, after: "2026-01-01T00:00:00Z"},
		{name: "one-shot at active.until", calendar: `{"at":"2026-06-10 09:00"}`, tz: "utc", extra: `"active":{"until":"2026-06-10T09:00:00Z"}`, after: "2026-01-01T00:00:00Z"},
		{name: "a fire exactly at active.from counts", calendar: `{"at":"09:00"}`, tz: "utc", extra: `"active":{"from":"2026-06-10T09:00:00Z"}`, after: "2026-06-01T00:00:00Z", want: "2026-06-10T09:00:00Z"},
		{name: "active.from a nanosecond after a fire skips it", calendar: `{"at":"09:00"}`, tz: "utc", extra: `"active":{"from":"2026-06-10T09:00:00.000000001Z"}`, after: "2026-06-01T00:00:00Z", want: "2026-06-11T09:00:00Z"},
		{name: "a fire exactly at active.until does not", calendar: `{"at":"09:00"}`, tz: "utc", extra: `"active":{"until":"2026-06-10T09:00:00Z"}`, after: "2026-06-09T10:00:00Z"},
		{name: "before active.until", calendar: `{"at":"09:00"}`, tz: "utc", extra: `"active":{"until":"2026-06-10T09:00:00Z"}`, after: "2026-06-09T08:00:00Z", want: "2026-06-09T09:00:00Z"},
		{name: "active.until as a date is midnight in the zone", calendar: `{"at":"23:59"}`, tz: "Europe/Berlin", extra: `"active":{"until":"2026-06-11"}`, after: "2026-06-10T00:00:00Z", want: "2026-06-10T21:59:00Z"},
		{name: "after active.until", calendar: `{"at":"23:59"}`, tz: "Europe/Berlin", extra: `"active":{"until":"2026-06-11"}`, after: "2026-06-10T21:59:00Z"},

		// Daylight saving. New York springs forward at 02:00 EST (07:00Z) on
		// 2026-03-08 and falls back at 02:00 EDT (06:00Z) on 2026-11-01.
		{name: "New York gap fires when the clock jumps (03:00 EDT)", calendar: `{"at":"02:30"}`, tz: "America/New_York", after: "2026-03-08T00:00:00Z", want: "2026-03-08T07:00:00Z"},
		{name: "New York gap start fires at the jump too", calendar: `{"at":"02:00"}`, tz: "America/New_York", after: "2026-03-08T00:00:00Z", want: "2026-03-08T07:00:00Z"},
		{name: "New York the day after the gap", calendar: `{"at":"02:30"}`, tz: "America/New_York", after: "2026-03-08T07:00:00Z", want: "2026-03-09T06:30:00Z"},
		{name: "New York gap on a filtered day", calendar: `{"at":"02:59","days":["sun"]}`, tz: "America/New_York", after: "2026-03-01T08:00:00Z", want: "2026-03-08T07:00:00Z"},
		{name: "New York gap one-shot", calendar: `{"at":"2026-03-08 02:30"}`, tz: "America/New_York", after: "2026-03-01T00:00:00Z", want: "2026-03-08T07:00:00Z"},
		{name: "New York fold fires at the first 01:30 (EDT)", calendar: `{"at":"01:30"}`, tz: "America/New_York", after: "2026-11-01T04:00:00Z", want: "2026-11-01T05:30:00Z"},
		{name: "New York fold fires once: between the two 01:30s comes the next day", calendar: `{"at":"01:30"}`, tz: "America/New_York", after: "2026-11-01T05:30:00Z", want: "2026-11-02T06:30:00Z"},
		{name: "New York just after the fold", calendar: `{"at":"02:00"}`, tz: "America/New_York", after: "2026-11-01T05:59:00Z", want: "2026-11-01T07:00:00Z"},
		// Berlin springs forward at 02:00 CET (01:00Z) on 2026-03-29 and falls
		// back at 03:00 CEST (01:00Z) on 2026-10-25.
		{name: "Berlin gap fires when the clock jumps", calendar: `{"at":"02:30"}`, tz: "Europe/Berlin", after: "2026-03-28T12:00:00Z", want: "2026-03-29T01:00:00Z"},
		{name: "Berlin time after the gap is unchanged", calendar: `{"at":"03:00"}`, tz: "Europe/Berlin", after: "2026-03-28T12:00:00Z", want: "2026-03-29T01:00:00Z"},
		{name: "Berlin fold fires at the first 02:30 (CEST)", calendar: `{"at":"02:30"}`, tz: "Europe/Berlin", after: "2026-10-24T12:00:00Z", want: "2026-10-25T00:30:00Z"},
		{name: "Berlin fold fires once", calendar: `{"at":"02:30"}`, tz: "Europe/Berlin", after: "2026-10-25T00:30:00Z", want: "2026-10-26T01:30:00Z"},
		{name: "Berlin fold one-shot is the first occurrence", calendar: `{"at":"2026-10-25 02:00"}`, tz: "Europe/Berlin", after: "2026-10-01T00:00:00Z", want: "2026-10-25T00:00:00Z"},
		// Lord Howe shifts by 30 minutes: 02:00 +10:30 → 02:30 +11 at 15:30Z on
		// 2026-10-03, and 02:00 +11 → 01:30 +10:30 at 15:00Z on 2026-04-04.
		{name: "Lord Howe 30-minute gap", calendar: `{"at":"02:15"}`, tz: "Australia/Lord_Howe", after: "2026-10-03T00:00:00Z", want: "2026-10-03T15:30:00Z"},
		{name: "Lord Howe 30-minute fold first occurrence", calendar: `{"at":"01:45"}`, tz: "Australia/Lord_Howe", after: "2026-04-04T00:00:00Z", want: "2026-04-04T14:45:00Z"},
		{name: "Lord Howe 30-minute fold fires once", calendar: `{"at":"01:45"}`, tz: "Australia/Lord_Howe", after: "2026-04-04T14:45:00Z", want: "2026-04-05T15:15:00Z"},
		// Sao Paulo sprang forward at midnight (00:00 -03 → 01:00 -02) on 2018-11-04.
		{name: "midnight gap fires at 01:00", calendar: `{"at":"00:30"}`, tz: "America/Sao_Paulo", after: "2018-11-03T12:00:00Z", want: "2018-11-04T03:00:00Z"},
		// Samoa skipped 2011-12-30 entirely (23:59:59 -10 → 00:00 +14 at 10:00Z).
		{name: "a skipped day fires when it ends", calendar: `{"at":"09:00"}`, tz: "Pacific/Apia", after: "2011-12-29T20:00:00Z", want: "2011-12-30T10:00:00Z"},
		{name: "the day after the skipped day", calendar: `{"at":"09:00"}`, tz: "Pacific/Apia", after: "2011-12-30T10:00:00Z", want: "2011-12-30T19:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cal(t, tt.calendar, tt.tz, tt.extra)
			got, ok := s.NextFire(testkit.Time(t, tt.after))
			gotText := ""
			if ok {
				gotText = got.UTC().Format(time.RFC3339Nano)
			}
			if gotText != tt.want {
				t.Errorf("NextFire(%s) = %q, want %q", tt.after, gotText, tt.want)
			}
			if ok && got.Location().String() != s.Location().String() {
				t.Errorf("NextFire returned %v in %v, want the schedule's zone %v", got, got.Location(), s.Location())
			}
		})
	}
}

func TestNextFireIsFalseForReconciledSchedules(t *testing.T) {
	s := mustParse(t, `{"when":{"per_target":{"every":"1h"}}}`)
	if got, ok := s.NextFire(testkit.Time(t, "2026-06-10T00:00:00Z")); ok {
		t.Errorf("NextFire of a per_target schedule = %v, want none", got)
	}
}

// TestDSTGapFiresAtTheWallTimeTheClockJumpsTo reads the gap firing back on the
// local clock: the spec's "next valid instant" is 03:00 EDT, not 01:30 EST.
func TestDSTGapFiresAtTheWallTimeTheClockJumpsTo(t *testing.T) {
	s := cal(t, `{"at":"02:30"}`, "America/New_York", "")
	got, _ := s.NextFire(testkit.Time(t, "2026-03-08T00:00:00Z"))
	if want := "2026-03-08 03:00 EDT"; got.Format("2006-01-02 15:04 MST") != want {
		t.Errorf("gap firing reads %s on the local clock, want %s", got.Format("2006-01-02 15:04 MST"), want)
	}
}

func TestFiresBetweenIsHalfOpenAndCapped(t *testing.T) {
	s := cal(t, `{"at":"09:00"}`, "utc", "")
	from, to := testkit.Time(t, "2026-06-01T09:00:00Z"), testkit.Time(t, "2026-06-04T09:00:00Z")
	tests := []struct {
		name string
		max  int
		want []string
	}{
		{name: "from excluded, to included", max: 10, want: []string{"2026-06-02T09:00:00Z", "2026-06-03T09:00:00Z", "2026-06-04T09:00:00Z"}},
		{name: "capped", max: 2, want: []string{"2026-06-02T09:00:00Z", "2026-06-03T09:00:00Z"}},
		{name: "zero max", max: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, at := range s.FiresBetween(from, to, tt.max) {
				got = append(got, at.UTC().Format(time.RFC3339))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FiresBetween (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpcomingMergesCalendarSchedulesTheWorkerDrives(t *testing.T) {
	mk := func(id, patch string) *Schedule {
		s := mustParse(t, patch)
		s.ID, s.JobID = id, "job-"+id
		return s
	}
	schedules := []*Schedule{
		mk("b-oneshot", `{"when":{"calendar":{"at":"2026-06-10 09:00"}},"tz":"utc"}`),
		mk("a-daily", `{"when":{"calendar":{"at":"09:00"}},"tz":"utc"}`),
		mk("c-per-pc", `{"when":{"per_pc":{"every":"1h"}},"tz":"utc"}`),
		mk("d-disabled", `{"when":{"calendar":{"at":"08:00"}},"tz":"utc","enabled":false}`),
		mk("e-agent", `{"when":{"calendar":{"at":"08:00"}},"tz":"utc","runs_on":"agent"}`),
		mk("f-past", `{"when":{"calendar":{"at":"2020-01-01 00:00"}},"tz":"utc"}`),
		mk("g-weekly", `{"when":{"calendar":{"at":"10:00","days":["thu"]}},"tz":"Europe/Berlin"}`),
		nil,
	}
	now := testkit.Time(t, "2026-06-09T12:00:00Z")
	at := func(id, when string) Firing {
		return Firing{ScheduleID: id, JobID: "job-" + id, At: testkit.Time(t, when)}
	}
	tests := []struct {
		limit int
		want  []Firing
	}{
		{limit: 0},
		{limit: 1, want: []Firing{at("a-daily", "2026-06-10T09:00:00Z")}},
		{limit: 5, want: []Firing{
			at("a-daily", "2026-06-10T09:00:00Z"),
			at("b-oneshot", "2026-06-10T09:00:00Z"), // same instant: by id
			at("g-weekly", "2026-06-11T08:00:00Z"),
			at("a-daily", "2026-06-11T09:00:00Z"),
			at("a-daily", "2026-06-12T09:00:00Z"),
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("limit ", tt.limit), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, UpcomingFirings(schedules, now, tt.limit)); diff != "" {
				t.Errorf("Upcoming (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNextFireAgreesWithAMinuteByMinuteScan is the property test of the fast
// path: for random repeating schedules (times around the usual transition
// hours, random day sets, sometimes an active window) and random instants
// (many within days of a transition), NextFire equals the first minute, over
// the next nine days, at which the zone's clock first reaches an allowed
// day's wall time. "First reaches" is the spec's rule read literally: in a gap
// the clock reaches it by jumping past it, in a fold only the first pass
// counts.
func TestNextFireAgreesWithAMinuteByMinuteScan(t *testing.T) {
	zones := []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Sao_Paulo",
		"America/Santiago", "Pacific/Chatham", "Asia/Tehran", "Pacific/Apia", "Asia/Kolkata", "UTC"}
	cases := 1500
	if testing.Short() {
		cases = 200
	}
	rng := rand.New(rand.NewPCG(2026, 6))
	dayNames := []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
	gaps, folds := 0, 0
	for i := range cases {
		zone := zones[rng.IntN(len(zones))]
		loc := testkit.Location(t, zone)
		after, transition := randomInstant(rng, loc)

		hour := rng.IntN(24)
		if rng.IntN(2) == 0 {
			hour = []int{0, 1, 2, 3, 23}[rng.IntN(5)]
		}
		minute := []int{0, 15, 30, 45, 59, rng.IntN(60)}[rng.IntN(6)]
		if !transition.IsZero() && rng.IntN(4) != 0 {
			// A wall time near the transition as the clock reads it on
			// either side: in the gap or fold a third of the time.
			_, off := transition.In(loc).Zone()
			if rng.IntN(2) == 0 {
				_, off = transition.Add(-time.Second).In(loc).Zone()
			}
			w := transition.UTC().Add(time.Duration(off)*time.Second + time.Duration(rng.IntN(181)-90)*time.Minute)
			hour, minute = w.Hour(), w.Minute()
		}
		var allowed [7]bool
		var days []string
		switch rng.IntN(3) {
		case 0:
			allowed = [7]bool{true, true, true, true, true, true, true}
		case 1:
			a, b := rng.IntN(7), rng.IntN(7)
			for d := a; ; d = (d + 1) % 7 {
				allowed[d] = true
				if d == b {
					break
				}
			}
			days = []string{dayNames[a] + "-" + dayNames[b]}
		default:
			for range 1 + rng.IntN(3) {
				d := rng.IntN(7)
				allowed[d] = true
				days = append(days, dayNames[d])
			}
		}
		if wd := transition.In(loc).Weekday(); !transition.IsZero() && !allowed[wd] && rng.IntN(4) != 0 {
			allowed[wd] = true // mostly let the transition day fire
			days = append(days, dayNames[wd])
		}
		var from, until time.Time
		var active []string
		if rng.IntN(5) == 0 {
			from = after.Add(time.Duration(rng.Int64N(int64(60*time.Hour))) - 48*time.Hour).Truncate(time.Second)
			active = append(active, fmt.Sprintf(`"from":%q`, from.Format(time.RFC3339)))
		}
		if rng.IntN(5) == 0 {
			until = after.Add(time.Duration(rng.Int64N(int64(8 * 24 * time.Hour)))).Truncate(time.Second)
			if !from.IsZero() && !until.After(from) {
				until = from.Add(time.Hour)
			}
			active = append(active, fmt.Sprintf(`"until":%q`, until.Format(time.RFC3339)))
		}

		calendar := fmt.Sprintf(`{"at":"%02d:%02d","days":[%s]}`, hour, minute, quoteAll(days))
		extra := ""
		if len(active) > 0 {
			extra = `"active":{` + strings.Join(active, ",") + `}`
		}
		s := cal(t, calendar, zone, extra)

		want, wantOK := scanNextFire(after, 9*24*time.Hour, loc, hour, minute, allowed, from, until)
		got, gotOK := s.NextFire(after)
		if gotOK != wantOK || !got.Equal(want) {
			t.Fatalf("case %d: %s in %s, active [%v, %v), after %v (%v):\nNextFire = %v, %v\nscan     = %v, %v",
				i, calendar, zone, from, until, after.UTC(), after.In(loc), got.UTC(), gotOK, want.UTC(), wantOK)
		}
		if gotOK && got.Sub(after) > 8*24*time.Hour {
			t.Fatalf("case %d: next fire %v is more than 8 days after %v", i, got, after)
		}
		if gotOK {
			local := got.In(loc)
			if local.Hour() != hour || local.Minute() != minute {
				gaps++
			}
			for _, d := range []time.Duration{30 * time.Minute, time.Hour} {
				if later := got.Add(d).In(loc); later.Hour() == hour && later.Minute() == minute {
					folds++
				}
			}
		}
	}
	// The cases must exercise the hard part, or agreeing proves little.
	t.Logf("%d cases, %d fired in a gap, %d at the first pass of a fold", cases, gaps, folds)
	if gaps < cases/100 || folds < cases/100 {
		t.Errorf("only %d gap and %d fold firings among %d cases: the generator no longer reaches them", gaps, folds, cases)
	}
}

// scanNextFire is the brute-force reference: it walks minute by minute from a
// few hours before `after`, keeping the latest wall time the clock has shown,
// and reports the first minute after `after` at which the clock reaches, for
// the first time, hour:minute of an allowed day (inside [from, until)).
func scanNextFire(after time.Time, span time.Duration, loc *time.Location, hour, minute int, allowed [7]bool, from, until time.Time) (time.Time, bool) {
	wall := func(t time.Time) int64 {
		_, off := t.In(loc).Zone()
		return t.Unix() + int64(off)
	}
	const daySecs = 24 * 60 * 60
	seen := int64(math.MinInt64)
	for t := after.Truncate(time.Minute).Add(-6 * time.Hour); !t.After(after.Add(span)); t = t.Add(time.Minute) {
		w := wall(t)
		if w <= seen {
			continue // a fold: the clock shows what it already showed
		}
		if seen != math.MinInt64 && t.After(after) && (from.IsZero() || !t.Before(from)) && (until.IsZero() || t.Before(until)) {
			for day := seen / daySecs; day <= w/daySecs+1; day++ {
				target := day*daySecs + int64(hour*3600+minute*60)
				weekday := time.Unix(day*daySecs, 0).UTC().Weekday()
				if allowed[weekday] && seen < target && target <= w {
					return t, true
				}
			}
		}
		seen = w
	}
	return time.Time{}, false
}

// randomInstant is uniform over 2005..2035 half of the time, and otherwise
// up to a day before, or an hour after, one of the zone's transitions (which
// it then returns too).
func randomInstant(rng *rand.Rand, loc *time.Location) (at, transition time.Time) {
	year := 2005 + rng.IntN(31)
	start := time.Date(year, 1, 1, 0, 0, 0, 0, loc)
	if rng.IntN(2) == 0 {
		var transitions []time.Time
		for t := start; t.Year() == year; {
			_, end := t.ZoneBounds()
			if end.IsZero() || end.Year() != year {
				break
			}
			transitions = append(transitions, end)
			t = end
		}
		if len(transitions) > 0 {
			tr := transitions[rng.IntN(len(transitions))]
			return tr.Add(time.Duration(rng.Int64N(int64(25*time.Hour))) - 24*time.Hour), tr
		}
	}
	return start.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour)))), time.Time{}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ",")
}
