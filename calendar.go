package kanade

import (
	"cmp"
	"container/heap"
	"time"
)

// NextFire is the first calendar fire instant strictly after `after`, within
// the active window; false when there is none (not a calendar schedule, a
// one-shot already past, active.until reached).
//
// A wall time is read in the schedule's zone on each allowed day. Daylight
// saving is explicit rather than left to time.Date, which does not promise a
// side: a wall time that does not exist that day (spring-forward gap) fires at
// the instant the clock jumps past it, and a wall time that happens twice
// (fall-back fold) fires once, at its first occurrence.
func (s *Schedule) NextFire(after time.Time) (time.Time, bool) {
	c := s.When.Calendar
	if c == nil {
		return time.Time{}, false
	}
	start := after
	if !s.from.IsZero() && start.Before(s.from) {
		start = s.from.Add(-time.Nanosecond) // a fire exactly at from counts
	}
	loc := s.Location()
	var next time.Time
	if c.oneShot {
		next = wallInstant(c.year, c.month, c.day, c.hour, c.minute, loc)
		if !next.After(start) {
			return time.Time{}, false
		}
	} else {
		var ok bool
		if next, ok = c.nextRepeating(start, loc); !ok {
			return time.Time{}, false
		}
	}
	if !s.until.IsZero() && !next.Before(s.until) {
		return time.Time{}, false
	}
	return next, true
}

// nextRepeating walks the days from `after`'s date in loc. Fire instants grow
// with the day (a gap or fold shifts one by at most a few hours), so the first
// one after `after` is the answer, and any allowed weekday recurs within 7
// days. The day before is looked at too, as a cheap guard for zones with odd
// histories; the property test finds no case that needs it.
func (c *Calendar) nextRepeating(after time.Time, loc *time.Location) (time.Time, bool) {
	y, m, d := after.In(loc).Date()
	for i := -1; i <= 8; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC)
		if c.weekdays&(1<<day.Weekday()) == 0 {
			continue
		}
		dy, dm, dd := day.Date()
		if t := wallInstant(dy, dm, dd, c.hour, c.minute, loc); t.After(after) {
			return t, true
		}
	}
	return time.Time{}, false
}

// FiresBetween lists the fire instants in (from, to], oldest first, at most
// max of them. The runtime uses it to see what was due while no worker ran.
func (s *Schedule) FiresBetween(from, to time.Time, max int) []time.Time {
	var out []time.Time
	for cur := from; len(out) < max; {
		next, ok := s.NextFire(cur)
		if !ok || next.After(to) {
			break
		}
		out = append(out, next)
		cur = next
	}
	return out
}

// Firing is one upcoming calendar fire instant of a schedule.
type Firing struct {
	ScheduleID string    `json:"schedule_id"`
	JobID      string    `json:"job_id"`
	At         time.Time `json:"at"`
}

// Upcoming merges the next fire instants after now of the calendar schedules
// the worker drives (enabled, runs_on backend), soonest first and then by
// schedule id, at most limit of them. A schedule appears as many times as it
// fires within the list, so "the next 20" of a single daily schedule are the
// next 20 days. It backs GET /api/schedules/upcoming.
func UpcomingFirings(schedules []*Schedule, now time.Time, limit int) []Firing {
	var h firingHeap
	for _, s := range schedules {
		if s == nil || s.Kind() != KindCalendar || !s.Backend() {
			continue
		}
		if at, ok := s.NextFire(now); ok {
			h = append(h, pending{s: s, at: at})
		}
	}
	heap.Init(&h)
	var out []Firing
	for len(out) < limit && len(h) > 0 {
		p := h[0]
		out = append(out, Firing{ScheduleID: p.s.ID, JobID: p.s.JobID, At: p.at})
		if at, ok := p.s.NextFire(p.at); ok {
			h[0].at = at
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return out
}

type pending struct {
	s  *Schedule
	at time.Time
}

type firingHeap []pending

func (h firingHeap) Len() int { return len(h) }
func (h firingHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return cmp.Less(h[i].s.ID, h[j].s.ID)
}
func (h firingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *firingHeap) Push(x any)   { *h = append(*h, x.(pending)) }
func (h *firingHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// wallInstant is the instant the clock of loc first reads y-m-d hh:mm, or,
// when that wall time does not exist (a spring-forward gap), the instant the
// clock jumps past it. time.Date leaves both cases unspecified, so the offsets
// a day before and a day after are tried explicitly: an offset that maps the
// wall time back onto itself is a real occurrence, the earlier one wins in a
// fold, and when neither does the wall time lies in a gap, which ends where
// the later zone period starts.
func wallInstant(y int, m time.Month, d, hh, mm int, loc *time.Location) time.Time {
	const day = 24 * 60 * 60
	w := time.Date(y, m, d, hh, mm, 0, 0, time.UTC).Unix()
	before, after := offsetAt(w-day, loc), offsetAt(w+day, loc)
	var best int64
	found := false
	for _, off := range [2]int64{before, after} {
		if u := w - off; offsetAt(u, loc) == off && (!found || u < best) {
			best, found = u, true
		}
	}
	if found {
		return time.Unix(best, 0).In(loc)
	}
	if start, _ := time.Unix(w-before, 0).In(loc).ZoneBounds(); !start.IsZero() {
		return start.In(loc)
	}
	return time.Date(y, m, d, hh, mm, 0, 0, loc) // two transitions within a day: let Go pick
}

func offsetAt(unix int64, loc *time.Location) int64 {
	_, off := time.Unix(unix, 0).In(loc).Zone()
	return int64(off)
}
