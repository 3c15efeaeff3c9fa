package schedule

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/internal/testkit"

	"github.com/google/go-cmp/cmp"
)

func TestDispatchWindow(t *testing.T) {
	tests := []struct {
		jitter, timeout, want time.Duration
	}{
		{0, 0, 90 * time.Second},
		{10 * time.Second, time.Minute, 160 * time.Second},
		{-time.Hour, 0, 90 * time.Second},
		{28 * time.Minute, 0, 29*time.Minute + 30*time.Second},
		{0, 28*time.Minute + 30*time.Second, 30 * time.Minute}, // exactly the cap
		{0, 28*time.Minute + 31*time.Second, 30 * time.Minute},
		{time.Hour, time.Hour, 30 * time.Minute},
		{math.MaxInt64, math.MaxInt64, 30 * time.Minute},
		{30*time.Minute - 1, 30*time.Minute - 1, 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v+%v", tt.jitter, tt.timeout), func(t *testing.T) {
			if got := DispatchWindow(tt.jitter, tt.timeout); got != tt.want {
				t.Errorf("DispatchWindow(%v, %v) = %v, want %v", tt.jitter, tt.timeout, got, tt.want)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	const window = 5 * time.Minute
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	perPC6h := `{"when":{"per_pc":{"every":"6h"}},"tz":"utc"}`
	perPCOnce := `{"when":{"per_pc":"once"},"tz":"utc"}`
	perTarget24h := `{"when":{"per_target":{"every":"24h"}},"tz":"utc"}`
	perTargetOnce := `{"when":{"per_target":"once"},"tz":"utc"}`
	tests := []struct {
		name        string
		schedule    string
		expected    []string
		completions map[string]time.Time
		marks       map[string]time.Time
		want        Decision
	}{
		// per_pc every 6h
		{name: "per_pc: never completed fires", schedule: perPC6h, expected: []string{"a"},
			want: Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_pc: completion 6h-1ns old is fresh", schedule: perPC6h, expected: []string{"a"},
			completions: map[string]time.Time{"a": ago(6*time.Hour - 1)},
			want:        Decision{Reason: "up to date"}},
		{name: "per_pc: completion exactly 6h old fires", schedule: perPC6h, expected: []string{"a"},
			completions: map[string]time.Time{"a": ago(6 * time.Hour)},
			want:        Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_pc: completion in the future (clock skew) is fresh", schedule: perPC6h, expected: []string{"a"},
			completions: map[string]time.Time{"a": now.Add(time.Minute)},
			want:        Decision{Reason: "up to date"}},
		{name: "per_pc: marked window-1ns ago is in flight", schedule: perPC6h, expected: []string{"a"},
			marks: map[string]time.Time{"a": ago(window - 1)},
			want:  Decision{Reason: "1 due PC(s) dispatched within the window"}},
		{name: "per_pc: marked exactly window ago fires again", schedule: perPC6h, expected: []string{"a"},
			marks: map[string]time.Time{"a": ago(window)},
			want:  Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_pc: the target mark does not hold a PC back", schedule: perPC6h, expected: []string{"a"},
			marks: map[string]time.Time{TargetMark: now},
			want:  Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_pc: only the due, unmarked PCs, sorted and once each", schedule: perPC6h,
			expected:    []string{"d", "c", "b", "a", "d", "e"},
			completions: map[string]time.Time{"b": ago(time.Hour), "c": ago(7 * time.Hour), "d": ago(7 * time.Hour), "x": ago(time.Minute)},
			marks:       map[string]time.Time{"c": ago(time.Minute), "b": ago(time.Minute), "e": ago(time.Hour)},
			want:        Decision{Fire: true, PCs: []string{"a", "d", "e"}, Reason: "1 due PC(s) dispatched within the window"}},
		// per_pc once
		{name: "per_pc once: one success is final", schedule: perPCOnce, expected: []string{"a", "b"},
			completions: map[string]time.Time{"a": ago(10 * 365 * 24 * time.Hour)},
			want:        Decision{Fire: true, PCs: []string{"b"}}},
		{name: "per_pc once: all done", schedule: perPCOnce, expected: []string{"a"},
			completions: map[string]time.Time{"a": ago(time.Second)},
			want:        Decision{Reason: "up to date"}},
		{name: "per_pc: nobody expected", schedule: perPCOnce,
			want: Decision{Reason: "no PC expected"}},
		// per_target every 24h
		{name: "per_target: no completion fires the whole target", schedule: perTarget24h, expected: []string{"b", "a"},
			want: Decision{Fire: true, PCs: []string{"a", "b"}}},
		{name: "per_target: the newest expected completion decides (24h-1ns)", schedule: perTarget24h, expected: []string{"a", "b"},
			completions: map[string]time.Time{"a": ago(48 * time.Hour), "b": ago(24*time.Hour - 1)},
			want:        Decision{Reason: "up to date"}},
		{name: "per_target: newest exactly 24h old fires", schedule: perTarget24h, expected: []string{"a", "b"},
			completions: map[string]time.Time{"a": ago(48 * time.Hour), "b": ago(24 * time.Hour)},
			want:        Decision{Fire: true, PCs: []string{"a", "b"}}},
		{name: "per_target: a completion outside the expected PCs does not count", schedule: perTarget24h, expected: []string{"a"},
			completions: map[string]time.Time{"gone": ago(time.Minute)},
			want:        Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_target: marked window-1ns ago is in flight", schedule: perTarget24h, expected: []string{"a"},
			marks: map[string]time.Time{TargetMark: ago(window - 1)},
			want:  Decision{Reason: "dispatched within the window"}},
		{name: "per_target: marked exactly window ago fires", schedule: perTarget24h, expected: []string{"a"},
			marks: map[string]time.Time{TargetMark: ago(window)},
			want:  Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_target: PC marks do not hold the target back", schedule: perTarget24h, expected: []string{"a"},
			marks: map[string]time.Time{"a": now},
			want:  Decision{Fire: true, PCs: []string{"a"}}},
		{name: "per_target: skipped when no PC is expected", schedule: perTarget24h,
			want: Decision{Reason: "no PC expected"}},
		{name: "per_target once: any expected completion is final", schedule: perTargetOnce, expected: []string{"a", "b"},
			completions: map[string]time.Time{"b": ago(10 * 365 * 24 * time.Hour)},
			want:        Decision{Reason: "up to date"}},
		{name: "per_target once: none yet", schedule: perTargetOnce, expected: []string{"a", "b"},
			want: Decision{Fire: true, PCs: []string{"a", "b"}}},
		// never
		{name: "disabled", schedule: `{"when":{"per_pc":"once"},"enabled":false}`, expected: []string{"a"},
			want: Decision{Reason: "disabled"}},
		{name: "runs on the agents", schedule: `{"when":{"per_pc":"once"},"runs_on":"agent"}`, expected: []string{"a"},
			want: Decision{Reason: "runs on the agents"}},
		{name: "calendar", schedule: `{"when":{"calendar":{"at":"12:00"}},"tz":"utc"}`, expected: []string{"a"},
			want: Decision{Reason: "calendar schedules fire on their own timer"}},
		{name: "now exactly at active.until", schedule: `{"when":{"per_pc":"once"},"active":{"until":"2026-06-10T12:00:00Z"}}`, expected: []string{"a"},
			want: Decision{Reason: "outside the active window"}},
		{name: "now exactly at active.from", schedule: `{"when":{"per_pc":"once"},"active":{"from":"2026-06-10T12:00:00Z"}}`, expected: []string{"a"},
			want: Decision{Fire: true, PCs: []string{"a"}}},
		{name: "now before active.from", schedule: `{"when":{"per_pc":"once"},"active":{"from":"2026-06-10T12:00:00.000000001Z"}}`, expected: []string{"a"},
			want: Decision{Reason: "outside the active window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.schedule)
			got := Reconcile(s, ReconcileInput{Now: now, Expected: tt.expected, Completions: tt.completions, Marks: tt.marks, Window: window})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Reconcile (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCatchUp(t *testing.T) {
	at := func(s string) time.Time { return testkit.Time(t, s) }
	daily := `{"at":"09:00"}`
	tests := []struct {
		name     string
		calendar string
		extra    string
		lastSeen string
		now      string
		wantLate string // "" = none
		want     []string
	}{
		{name: "missed by less than the deadline runs late", calendar: daily, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:30:00Z", wantLate: "2026-06-10T09:00:00Z"},
		{name: "missed by a nanosecond less than the deadline runs late", calendar: daily, extra: `"starting_deadline":"30m"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:29:59.999999999Z", wantLate: "2026-06-10T09:00:00Z"},
		{name: "missed by exactly the deadline is missed", calendar: daily, extra: `"starting_deadline":"30m"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:30:00Z", want: []string{"2026-06-10T09:00:00Z"}},
		{name: "no deadline: missed", calendar: daily,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:00:01Z", want: []string{"2026-06-10T09:00:00Z"}},
		{name: "due exactly now runs late (age 0)", calendar: daily, extra: `"starting_deadline":"1m"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:00:00Z", wantLate: "2026-06-10T09:00:00Z"},
		{name: "only the newest runs late; the older ones are missed", calendar: daily, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-07T10:00:00Z", now: "2026-06-10T09:10:00Z", wantLate: "2026-06-10T09:00:00Z",
			want: []string{"2026-06-08T09:00:00Z", "2026-06-09T09:00:00Z"}},
		{name: "the newest too old to run late", calendar: daily, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-08T10:00:00Z", now: "2026-06-10T10:00:00Z",
			want: []string{"2026-06-09T09:00:00Z", "2026-06-10T09:00:00Z"}},
		{name: "a firing exactly at lastSeen was seen", calendar: daily, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-10T09:00:00Z", now: "2026-06-10T09:30:00Z"},
		{name: "nothing due in between", calendar: daily,
			lastSeen: "2026-06-10T09:00:01Z", now: "2026-06-11T08:59:59Z"},
		{name: "now before lastSeen", calendar: daily,
			lastSeen: "2026-06-12T00:00:00Z", now: "2026-06-10T00:00:00Z"},
		{name: "weekday filter", calendar: `{"at":"09:00","days":["sat","sun"]}`,
			lastSeen: "2026-06-12T00:00:00Z", now: "2026-06-15T12:00:00Z", want: []string{"2026-06-13T09:00:00Z", "2026-06-14T09:00:00Z"}},
		{name: "one-shot missed long ago is still reported", calendar: `{"at":"2020-01-01 09:00"}`, extra: `"starting_deadline":"1h"`,
			lastSeen: "2019-12-31T00:00:00Z", now: "2026-06-10T00:00:00Z", want: []string{"2020-01-01T09:00:00Z"}},
		{name: "one-shot runs late", calendar: `{"at":"2026-06-10 09:00"}`, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:59:00Z", wantLate: "2026-06-10T09:00:00Z"},
		{name: "one-shot before lastSeen", calendar: `{"at":"2026-06-10 09:00"}`, extra: `"starting_deadline":"1h"`,
			lastSeen: "2026-06-10T09:00:00Z", now: "2026-06-10T09:01:00Z"},
		{name: "firings before active.from are not missed", calendar: daily, extra: `"active":{"from":"2026-06-10T00:00:00Z"}`,
			lastSeen: "2026-06-01T00:00:00Z", now: "2026-06-11T00:00:00Z", want: []string{"2026-06-10T09:00:00Z"}},
		{name: "disabled", calendar: daily, extra: `"enabled":false,"starting_deadline":"1h"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:30:00Z"},
		{name: "runs on the agents", calendar: daily, extra: `"runs_on":"agent","starting_deadline":"1h"`,
			lastSeen: "2026-06-10T08:00:00Z", now: "2026-06-10T09:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cal(t, tt.calendar, "utc", tt.extra)
			late, missed := CatchUp(s, at(tt.lastSeen), at(tt.now))
			gotLate := ""
			if late != nil {
				gotLate = late.UTC().Format(time.RFC3339Nano)
			}
			if gotLate != tt.wantLate {
				t.Errorf("runLate = %q, want %q", gotLate, tt.wantLate)
			}
			if diff := cmp.Diff(tt.want, formatAll(missed)); diff != "" {
				t.Errorf("missed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCatchUpIgnoresReconciledSchedules(t *testing.T) {
	s := mustParse(t, `{"when":{"per_target":{"every":"1h"}},"starting_deadline":"1h"}`)
	late, missed := CatchUp(s, testkit.Time(t, "2026-01-01T00:00:00Z"), testkit.Time(t, "2026-06-10T00:00:00Z"))
	if late != nil || missed != nil {
		t.Errorf("CatchUp of per_target = %v, %v; want nothing", late, missed)
	}
}

// TestCatchUpCapsTheMissedList: a worker back after decades reports only the
// newest MaxMissed misses, contiguous up to the one that runs late, and does
// not walk the decades to find them.
func TestCatchUpCapsTheMissedList(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		lastSeen   string
		now        string
		wantLate   string
		wantNewest string // newest missed
	}{
		{name: "down since 2000", extra: `"starting_deadline":"1h"`, lastSeen: "2000-01-01T00:00:00Z", now: "2026-06-10T09:30:00Z",
			wantLate: "2026-06-10T09:00:00Z", wantNewest: "2026-06-09T09:00:00Z"},
		{name: "down since year 1", lastSeen: "0001-01-01T00:00:00Z", now: "2026-06-10T09:30:00Z",
			wantNewest: "2026-06-10T09:00:00Z"},
		{name: "active window that ended long ago", extra: `"active":{"until":"2023-01-01"}`, lastSeen: "2000-01-01T00:00:00Z", now: "2026-06-10T09:30:00Z",
			wantNewest: "2022-12-31T09:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cal(t, `{"at":"09:00"}`, "utc", tt.extra)
			start := time.Now()
			late, missed := CatchUp(s, testkit.Time(t, tt.lastSeen), testkit.Time(t, tt.now))
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("CatchUp took %v", elapsed)
			}
			gotLate := ""
			if late != nil {
				gotLate = late.UTC().Format(time.RFC3339)
			}
			if gotLate != tt.wantLate {
				t.Errorf("runLate = %q, want %q", gotLate, tt.wantLate)
			}
			if len(missed) != MaxMissed {
				t.Fatalf("%d missed, want %d", len(missed), MaxMissed)
			}
			if got := missed[len(missed)-1].UTC().Format(time.RFC3339); got != tt.wantNewest {
				t.Errorf("newest missed = %s, want %s", got, tt.wantNewest)
			}
			for i := 1; i < len(missed); i++ {
				if d := missed[i].Sub(missed[i-1]); d != 24*time.Hour {
					t.Fatalf("missed[%d]-missed[%d] = %v, want one day", i, i-1, d)
				}
			}
		})
	}
}

// natsKey is nats.go's KV key rule (jetstream keyValid).
var natsKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func validKVKey(k string) bool {
	return natsKey.MatchString(k) && !strings.HasPrefix(k, ".") && !strings.HasSuffix(k, ".") && !strings.Contains(k, "..")
}

func TestKeysAreValidAndDistinctForAnyScheduleID(t *testing.T) {
	ids := []string{"nightly", "nightly backup", "büro-täglich", "日本", "a.b", "a=2Eb", "a..b", ".", "..", "*", ">", "a.*.>",
		"a/b", "a_b", "A_B", "tab\there", "new\nline", "=", "==", "", "x\x00y", "emoji 🚀", "%2E", "-"}
	at := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)
	seen := map[string]string{}
	check := func(kind, id, key string) {
		t.Helper()
		if !validKVKey(key) {
			t.Errorf("%s(%q) = %q is not a valid NATS KV key", kind, id, key)
		}
		if other, dup := seen[key]; dup {
			t.Errorf("%s(%q) = %q collides with %s", kind, id, key, other)
		}
		seen[key] = fmt.Sprintf("%s(%q)", kind, id)
	}
	for _, id := range ids {
		check("FireKey", id, FireKey(id, at))
		check("ReconcileKey", id, ReconcileKey(id, at))
		check("MarkKey target", id, MarkKey(id, TargetMark))
		for _, pc := range []string{"pc-1", "PC_2", "target"} {
			check("MarkKey "+pc, id, MarkKey(id, pc))
		}
		if k := MarkKey(id, "pc-1"); !strings.HasPrefix(k, MarkPrefix(id)) {
			t.Errorf("MarkKey(%q, pc-1) = %q does not start with MarkPrefix %q", id, k, MarkPrefix(id))
		}
	}
	// Prefixes must not capture another schedule's marks.
	for _, a := range ids {
		for _, b := range ids {
			if a != b && strings.HasPrefix(MarkKey(b, "pc-1"), MarkPrefix(a)) {
				t.Errorf("MarkPrefix(%q) covers MarkKey(%q, pc-1)", a, b)
			}
		}
	}
}

func TestKeysIdentifyTheInstant(t *testing.T) {
	berlin := testkit.Location(t, "Europe/Berlin")
	at := time.Date(2026, 6, 10, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		a, b      string
		wantEqual bool
	}{
		{name: "same fire instant in another zone", a: FireKey("s", at), b: FireKey("s", at.In(berlin)), wantEqual: true},
		{name: "another fire instant", a: FireKey("s", at), b: FireKey("s", at.Add(time.Second))},
		{name: "another schedule", a: FireKey("s", at), b: FireKey("t", at)},
		{name: "same minute", a: ReconcileKey("s", at.Add(time.Second)), b: ReconcileKey("s", at.Add(59*time.Second).In(berlin)), wantEqual: true},
		{name: "next minute", a: ReconcileKey("s", at.Add(59*time.Second)), b: ReconcileKey("s", at.Add(time.Minute))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a == tt.b; got != tt.wantEqual {
				t.Errorf("%q == %q is %v, want %v", tt.a, tt.b, got, tt.wantEqual)
			}
		})
	}
	if got, want := FireKey("nightly backup", at), "fire.nightly=20backup.20260610T090000Z"; got != want {
		t.Errorf("FireKey = %q, want %q", got, want)
	}
	if got, want := ReconcileKey("a.b", at.Add(90*time.Second)), "reconcile.a=2Eb.20260610T0901Z"; got != want {
		t.Errorf("ReconcileKey = %q, want %q", got, want)
	}
}

func formatAll(ts []time.Time) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.UTC().Format(time.RFC3339Nano))
	}
	return out
}
