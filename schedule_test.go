package kanade

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kanade-fleet/backend/internal/testkit"
)

func mustParse(t *testing.T, patch string) *Schedule {
	t.Helper()
	s, err := ParseSchedule("", testkit.Schedule(t, patch))
	if err != nil {
		t.Fatalf("ParseSchedule(%s): %v", patch, err)
	}
	return s
}

func TestParseRejectsEachRuleWithAnErrorNamingTheField(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		raw   string // whole document, when set
		patch string
		want  string // prefix of the error; its first word is the field
	}{
		{name: "not JSON", raw: `{"id":`, want: "invalid JSON at byte"},
		{name: "not an object", raw: `[]`, want: "schedule must be an object (got a JSON array)"},
		{name: "null", raw: `null`, want: "id is required"},
		{name: "a field of the wrong JSON type", patch: `{"job_id":7}`, want: "job_id must be a string (got a JSON number)"},
		{name: "a nested field of the wrong JSON type", patch: `{"target":{"pcs":"pc1"}}`, want: "target.pcs must be an array (got a JSON string)"},
		{name: "enabled as a string", patch: `{"enabled":"yes"}`, want: "enabled must be a boolean (got a JSON string)"},
		{name: "no id", patch: `{"id":null}`, want: "id is required"},
		{name: "id differs from the key", key: "b", patch: `{"id":"a"}`, want: `id "a" must equal the key "b"`},
		{name: "no job_id", patch: `{"job_id":null}`, want: "job_id is required"},
		{name: "blank job_id", patch: `{"job_id":"  "}`, want: "job_id is required"},
		{name: "no when", patch: `{"when":null}`, want: "when must have exactly one of per_pc, per_target, calendar"},
		{name: "empty when", patch: `{"when":{}}`, want: "when must have exactly one of per_pc, per_target, calendar"},
		{name: "unknown when kind", patch: `{"when":{"cron":"* * * * *"}}`, want: "when must have exactly one of per_pc, per_target, calendar"},
		{name: "two when kinds", patch: `{"when":{"per_pc":"once","per_target":"once"}}`, want: "when must have exactly one of per_pc, per_target, calendar"},
		{name: "when not an object", patch: `{"when":"daily"}`, want: "when must be an object with one of per_pc, per_target, calendar"},
		{name: "per_pc neither once nor every", patch: `{"when":{"per_pc":"twice"}}`, want: `when.per_pc "twice" must be "once" or {"every": duration}`},
		{name: "per_pc object without every", patch: `{"when":{"per_pc":{}}}`, want: `when.per_pc must be "once" or {"every": duration}`},
		{name: "per_pc every not a duration", patch: `{"when":{"per_pc":{"every":"soon"}}}`, want: `when.per_pc.every "soon" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{name: "per_pc every zero", patch: `{"when":{"per_pc":{"every":"0s"}}}`, want: `when.per_pc.every "0s" must be greater than zero`},
		{name: "per_target every negative", patch: `{"when":{"per_target":{"every":"-1h"}}}`, want: `when.per_target.every "-1h" must not be negative`},
		{name: "per_target a number", patch: `{"when":{"per_target":5}}`, want: `when.per_target must be "once" or {"every": duration}`},
		{name: "calendar at with one hour digit", patch: `{"when":{"calendar":{"at":"9:00"}}}`, want: `when.calendar.at "9:00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at with letters", patch: `{"when":{"calendar":{"at":"ab:cd"}}}`, want: `when.calendar.at "ab:cd" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at with a dash", patch: `{"when":{"calendar":{"at":"09-00"}}}`, want: `when.calendar.at "09-00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at with seconds", patch: `{"when":{"calendar":{"at":"09:00:00"}}}`, want: `when.calendar.at "09:00:00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at 24:00", patch: `{"when":{"calendar":{"at":"24:00"}}}`, want: `when.calendar.at "24:00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at minute 60", patch: `{"when":{"calendar":{"at":"12:60"}}}`, want: `when.calendar.at "12:60" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar at missing", patch: `{"when":{"calendar":{"days":["mon"]}}}`, want: "when.calendar.at is required"},
		{name: "calendar one-shot on a date that does not exist", patch: `{"when":{"calendar":{"at":"2026-02-30 09:00"}}}`, want: `when.calendar.at "2026-02-30 09:00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar one-shot with a T", patch: `{"when":{"calendar":{"at":"2026-06-10T09:00"}}}`, want: `when.calendar.at "2026-06-10T09:00" must be "HH:MM" or "YYYY-MM-DD HH:MM"`},
		{name: "calendar one-shot with days", patch: `{"when":{"calendar":{"at":"2026-06-10 09:00","days":["mon"]}}}`, want: "when.calendar.days must be empty with a one-shot at (YYYY-MM-DD HH:MM)"},
		{name: "calendar unknown day", patch: `{"when":{"calendar":{"at":"09:00","days":["mon","fri-xyz"]}}}`, want: `when.calendar.days[1] "fri-xyz" must be a day mon..sun or a range such as mon-fri`},
		{name: "calendar open range", patch: `{"when":{"calendar":{"at":"09:00","days":["mon-"]}}}`, want: `when.calendar.days[0] "mon-" must be a day mon..sun or a range such as mon-fri`},
		{name: "calendar full day name", patch: `{"when":{"calendar":{"at":"09:00","days":["monday"]}}}`, want: `when.calendar.days[0] "monday" must be a day mon..sun or a range such as mon-fri`},
		{name: "calendar days not an array", patch: `{"when":{"calendar":{"at":"09:00","days":"mon"}}}`, want: "when.calendar.days must be an array (got a JSON string)"},
		{name: "unknown zone", patch: `{"tz":"Mars/Olympus"}`, want: `tz "Mars/Olympus" must be local, utc or an IANA zone name such as Europe/Berlin`},
		{name: "active from not a date", patch: `{"active":{"from":"2026-13-01"}}`, want: `active.from "2026-13-01" must be YYYY-MM-DD or RFC 3339`},
		{name: "active until without zone", patch: `{"active":{"until":"2026-06-10T09:00:00"}}`, want: `active.until "2026-06-10T09:00:00" must be YYYY-MM-DD or RFC 3339`},
		{name: "active from equal to until", patch: `{"active":{"from":"2026-06-10","until":"2026-06-10"}}`, want: `active.until "2026-06-10" must be after active.from "2026-06-10"`},
		{name: "active from after until", patch: `{"active":{"from":"2026-06-10T00:00:00Z","until":"2026-06-09"}}`, want: `active.until "2026-06-09" must be after active.from "2026-06-10T00:00:00Z"`},
		{name: "rollout unknown strategy", patch: `{"rollout":{"strategy":"canary","waves":[{"group":"a"}]}}`, want: `rollout.strategy "canary" must be "wave"`},
		{name: "rollout without waves", patch: `{"rollout":{"strategy":"wave","waves":[]}}`, want: "rollout.waves must have at least one wave"},
		{name: "rollout wave without group", patch: `{"rollout":{"strategy":"wave","waves":[{"group":"a"},{"delay":"5m"}]}}`, want: "rollout.waves[1].group is required"},
		{name: "rollout wave group with a dot", patch: `{"rollout":{"strategy":"wave","waves":[{"group":"a.b"}]}}`, want: `rollout.waves[0].group "a.b" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`},
		{name: "rollout wave bad delay", patch: `{"rollout":{"strategy":"wave","waves":[{"group":"a","delay":"later"}]}}`, want: `rollout.waves[0].delay "later" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{name: "empty target", patch: `{"target":{}}`, want: "target must name PCs: set all, or at least one group or pc"},
		{name: "target with empty lists", patch: `{"target":{"all":false,"groups":[],"pcs":[]}}`, want: "target must name PCs: set all, or at least one group or pc"},
		{name: "no target", patch: `{"target":null}`, want: "target must name PCs: set all, or at least one group or pc"},
		{name: "target pc with a space", patch: `{"target":{"pcs":["pc1","pc 2"]}}`, want: `target.pcs[1] "pc 2" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`},
		{name: "target group wildcard", patch: `{"target":{"groups":[">"]}}`, want: `target.groups[0] ">" must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters`},
		{name: "bad jitter", patch: `{"jitter":"a bit"}`, want: `jitter "a bit" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{name: "bad starting_deadline", patch: `{"starting_deadline":"1x"}`, want: `starting_deadline "1x" must be a duration such as 90s, 5m, 1h30m or 1.5d`},
		{name: "zero starting_deadline", patch: `{"starting_deadline":"0s"}`, want: `starting_deadline "0s" must be greater than zero (every command would arrive past its deadline)`},
		{name: "unknown runs_on", patch: `{"runs_on":"cloud"}`, want: `runs_on "cloud" must be "backend" or "agent"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.raw)
			if tt.raw == "" {
				data = testkit.Schedule(t, tt.patch)
			}
			s, err := ParseSchedule(tt.key, data)
			if err == nil {
				t.Fatalf("ParseSchedule(%s) = %+v, want error %q", data, s, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("ParseSchedule(%s) error:\n got %q\nwant prefix %q", data, err, tt.want)
			}
			// The field is what the message starts with; the API finds it
			// in the FieldError, never in the text. A document that is not
			// a JSON object names no field.
			field, _, _ := strings.Cut(tt.want, " ")
			var fe *FieldError
			switch isField := errors.As(err, &fe); {
			case field == "schedule" || field == "invalid":
				if isField {
					t.Errorf("ParseSchedule(%s) = FieldError %+v, want a plain error", data, fe)
				}
			case !isField || fe.Field != field:
				t.Errorf("ParseSchedule(%s) error %q: FieldError %+v, want one on %s", data, err, fe, field)
			}
		})
	}
}

func TestParseAcceptsEveryFormAndFillsDefaults(t *testing.T) {
	berlin := testkit.Location(t, "Europe/Berlin")
	type got struct {
		Kind      ScheduleKind
		Enabled   bool
		TZ        string
		Loc       string
		RunsOn    string
		Every     time.Duration
		OneShot   bool
		Weekdays  uint8
		Jitter    time.Duration
		Deadline  time.Duration
		Delays    []time.Duration
		Backend   bool
		LocIsHost bool
	}
	wd := func(days ...time.Weekday) uint8 {
		var m uint8
		for _, d := range days {
			m |= 1 << d
		}
		return m
	}
	tests := []struct {
		name  string
		key   string
		patch string
		want  got
	}{
		{name: "defaults: enabled, local zone, backend", key: "s1", patch: `{}`,
			want: got{Kind: KindPerPC, Enabled: true, TZ: "local", Loc: time.Local.String(), RunsOn: "backend", Backend: true, LocIsHost: true}},
		{name: "enabled null counts as absent", patch: `{"enabled":null}`,
			want: got{Kind: KindPerPC, Enabled: true, TZ: "local", Loc: time.Local.String(), RunsOn: "backend", Backend: true, LocIsHost: true}},
		{name: "disabled", patch: `{"enabled":false,"tz":"utc"}`,
			want: got{Kind: KindPerPC, TZ: "utc", Loc: "UTC", RunsOn: "backend"}},
		{name: "per_pc every in days", patch: `{"when":{"per_pc":{"every":"1d"}},"tz":"Europe/Berlin"}`,
			want: got{Kind: KindPerPC, Enabled: true, TZ: "Europe/Berlin", Loc: berlin.String(), RunsOn: "backend", Every: 24 * time.Hour, Backend: true}},
		{name: "per_target once, run by the agents", patch: `{"when":{"per_target":"once"},"runs_on":"agent","tz":"utc"}`,
			want: got{Kind: KindPerTarget, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "agent"}},
		{name: "per_target every 6h", patch: `{"when":{"per_target":{"every":"6h"}},"tz":"UTC"}`,
			want: got{Kind: KindPerTarget, Enabled: true, TZ: "UTC", Loc: "UTC", RunsOn: "backend", Every: 6 * time.Hour, Backend: true}},
		{name: "calendar every day", patch: `{"when":{"calendar":{"at":"00:00"}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Weekdays: allDays, Backend: true}},
		{name: "calendar empty days is every day", patch: `{"when":{"calendar":{"at":"23:59","days":[]}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Weekdays: allDays, Backend: true}},
		{name: "calendar weekdays", patch: `{"when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Backend: true,
				Weekdays: wd(time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday)}},
		{name: "calendar wrapping range and mixed case", patch: `{"when":{"calendar":{"at":"09:00","days":["Fri-MON"," wed "]}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Backend: true,
				Weekdays: wd(time.Friday, time.Saturday, time.Sunday, time.Monday, time.Wednesday)}},
		{name: "calendar one-day range", patch: `{"when":{"calendar":{"at":"09:00","days":["sun-sun"]}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Backend: true, Weekdays: wd(time.Sunday)}},
		{name: "calendar one-shot", patch: `{"when":{"calendar":{"at":"2028-02-29 23:59"}},"tz":"utc"}`,
			want: got{Kind: KindCalendar, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", OneShot: true, Backend: true}},
		{name: "durations and waves", patch: `{"tz":"utc","jitter":"90s","starting_deadline":"1d12h","rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"},{"group":"rest"}]}}`,
			want: got{Kind: KindPerPC, Enabled: true, TZ: "utc", Loc: "UTC", RunsOn: "backend", Backend: true,
				Jitter: 90 * time.Second, Deadline: 36 * time.Hour, Delays: []time.Duration{0, time.Hour, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.key, testkit.Schedule(t, tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			g := got{Kind: s.Kind(), Enabled: s.Enabled, TZ: s.TZ, Loc: s.Location().String(), RunsOn: s.RunsOn,
				Jitter: s.JitterDuration(), Deadline: s.Deadline(), Backend: s.Backend(), LocIsHost: s.Location() == time.Local}
			switch {
			case s.When.PerPC != nil:
				g.Every = s.When.PerPC.Interval()
			case s.When.PerTarget != nil:
				g.Every = s.When.PerTarget.Interval()
			default:
				g.OneShot, g.Weekdays = s.When.Calendar.OneShot(), s.When.Calendar.weekdays
			}
			if s.Rollout != nil {
				for _, w := range s.Rollout.Waves {
					g.Delays = append(g.Delays, w.DelayDuration())
				}
			}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("parsed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestActiveAtIsHalfOpenWithDatesAtMidnightInTheZone(t *testing.T) {
	tests := []struct {
		name        string
		patch       string
		from, until string // the instants the bounds must mean ("" = unbounded)
	}{
		{name: "dates in Berlin summer time", patch: `{"tz":"Europe/Berlin","active":{"from":"2026-06-01","until":"2026-07-01"}}`,
			from: "2026-05-31T22:00:00Z", until: "2026-06-30T22:00:00Z"},
		{name: "dates in New York winter time", patch: `{"tz":"America/New_York","active":{"from":"2026-01-05"}}`,
			from: "2026-01-05T05:00:00Z"},
		{name: "RFC 3339 bounds ignore tz", patch: `{"tz":"Asia/Tokyo","active":{"from":"2026-06-01T12:00:00+02:00","until":"2026-06-01T12:00:00.5Z"}}`,
			from: "2026-06-01T10:00:00Z", until: "2026-06-01T12:00:00.5Z"},
		{name: "midnight skipped by Sao Paulo's 2018 spring forward is 01:00", patch: `{"tz":"America/Sao_Paulo","active":{"until":"2018-11-04"}}`,
			until: "2018-11-04T03:00:00Z"},
		{name: "midnight skipped by Santiago's 2026 spring forward is 01:00", patch: `{"tz":"America/Santiago","active":{"from":"2026-09-06"}}`,
			from: "2026-09-06T04:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.patch)
			type probe struct {
				At     time.Time
				Active bool
			}
			var want, got []probe
			add := func(at time.Time, active bool) {
				want = append(want, probe{at, active})
				got = append(got, probe{at, s.ActiveAt(at)})
			}
			if tt.from != "" {
				from := testkit.Time(t, tt.from)
				add(from.Add(-time.Nanosecond), false)
				add(from, true)
			} else {
				add(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), true)
			}
			if tt.until != "" {
				until := testkit.Time(t, tt.until)
				add(until.Add(-time.Nanosecond), true)
				add(until, false)
			} else {
				add(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), true)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ActiveAt (-want +got):\n%s", diff)
			}
		})
	}
}

// TestScheduleJSONRoundTrips proves what the API stores is what it read: the
// marshalled form is the spec's JSON (defaults spelled out), and parsing it
// again gives the same schedule, parsed state included.
func TestScheduleJSONRoundTrips(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "every field",
			in: `{"id":"nightly-backup","when":{"calendar":{"at":"02:30","days":["mon-fri","sun"]}},"job_id":"backup",
				"target":{"all":false,"groups":["office"],"pcs":["pc-1","pc-2"]},
				"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"office","delay":"1h"}]},
				"jitter":"5m","starting_deadline":"1d","active":{"from":"2026-01-01","until":"2027-01-01T00:00:00Z"},
				"tz":"Europe/Berlin","runs_on":"backend","enabled":false,"unknown":"ignored"}`,
			want: `{"id":"nightly-backup","when":{"calendar":{"at":"02:30","days":["mon-fri","sun"]}},"job_id":"backup",
				"target":{"all":false,"groups":["office"],"pcs":["pc-1","pc-2"]},
				"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"office","delay":"1h"}]},
				"jitter":"5m","starting_deadline":"1d","active":{"from":"2026-01-01","until":"2027-01-01T00:00:00Z"},
				"tz":"Europe/Berlin","runs_on":"backend","enabled":false}`,
		},
		{
			name: "defaults spelled out",
			in:   `{"id":"a","when":{"per_pc":"once"},"job_id":"j","target":{"all":true}}`,
			want: `{"id":"a","when":{"per_pc":"once"},"job_id":"j","target":{"all":true},"tz":"local","runs_on":"backend","enabled":true}`,
		},
		{
			name: "per_target every and a null sibling kind",
			in:   `{"id":"b","when":{"per_target":{"every":"1d"},"per_pc":null},"job_id":"j","target":{"pcs":["x"]},"tz":"utc","runs_on":"agent"}`,
			want: `{"id":"b","when":{"per_target":{"every":"1d"}},"job_id":"j","target":{"all":false,"pcs":["x"]},"tz":"utc","runs_on":"agent","enabled":true}`,
		},
		{
			name: "one-shot",
			in:   `{"id":"c","when":{"calendar":{"at":"2026-06-10 09:00"}},"job_id":"j","target":{"groups":["g"]},"tz":"America/New_York"}`,
			want: `{"id":"c","when":{"calendar":{"at":"2026-06-10 09:00"}},"job_id":"j","target":{"all":false,"groups":["g"]},"tz":"America/New_York","runs_on":"backend","enabled":true}`,
		},
	}
	opts := cmp.Options{
		cmp.AllowUnexported(Schedule{}, Cadence{}, Calendar{}, Wave{}),
		cmp.Comparer(func(a, b *time.Location) bool { return a.String() == b.String() }),
		cmpopts.EquateEmpty(),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, err := ParseSchedule("", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(first)
			if err != nil {
				t.Fatal(err)
			}
			var gotDoc, wantDoc any
			if err := json.Unmarshal(out, &gotDoc); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &wantDoc); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantDoc, gotDoc); diff != "" {
				t.Errorf("marshalled JSON (-want +got):\n%s", diff)
			}
			second, err := ParseSchedule(first.ID, out)
			if err != nil {
				t.Fatalf("re-parse %s: %v", out, err)
			}
			if diff := cmp.Diff(first, second, opts); diff != "" {
				t.Errorf("round trip (-first +second):\n%s", diff)
			}
		})
	}
}

func TestDisplayWhen(t *testing.T) {
	tests := []struct {
		when string
		want string
	}{
		{`{"per_pc":"once"}`, "per_pc once"},
		{`{"per_pc":{"every":"6h"}}`, "per_pc every 6h"},
		{`{"per_target":"once"}`, "per_target once"},
		{`{"per_target":{"every":"1d12h"}}`, "per_target every 1d12h"},
		{`{"calendar":{"at":"09:00"}}`, "at 09:00"},
		{`{"calendar":{"at":"09:00","days":["mon-fri"]}}`, "at 09:00 [mon-fri]"},
		{`{"calendar":{"at":"23:30","days":["mon","WED","fri-sun"]}}`, "at 23:30 [mon,WED,fri-sun]"},
		{`{"calendar":{"at":"2026-06-10 09:00"}}`, "at 2026-06-10 09:00"},
	}
	for _, tt := range tests {
		s, err := ParseSchedule("", testkit.Schedule(t, `{"when":`+tt.when+`}`))
		if err != nil {
			t.Fatalf("%s: %v", tt.when, err)
		}
		if got := s.DisplayWhen(); got != tt.want {
			t.Errorf("DisplayWhen(%s) = %q, want %q", tt.when, got, tt.want)
		}
	}
	// Without Validate, and with no form at all.
	if got := (&Schedule{When: When{PerTarget: &Cadence{Every: "90s"}}}).DisplayWhen(); got != "per_target every 90s" {
		t.Errorf("unvalidated DisplayWhen = %q", got)
	}
	if got := (&Schedule{}).DisplayWhen(); got != "" {
		t.Errorf("DisplayWhen of no when = %q, want empty", got)
	}
}
