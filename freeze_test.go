package kanade_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/testkit"
)

func TestFreezeActive(t *testing.T) {
	tokyo := testkit.Location(t, "Asia/Tokyo") // the "host" zone of tz local
	at := func(s string) time.Time { return testkit.Time(t, s) }
	tests := []struct {
		name   string
		freeze string
		at     string
		want   bool
	}{
		{"an empty freeze holds forever", `{}`, "2026-01-01T00:00:00Z", true},
		{"an empty freeze with tz", `{"tz":"utc","reason":"incident"}`, "1999-01-01T00:00:00Z", true},
		{"nulls are absent", `{"from":null,"until":null,"reason":null,"tz":null}`, "2026-01-01T00:00:00Z", true},
		{"before a utc date from", `{"from":"2026-12-20","tz":"utc"}`, "2026-12-19T23:59:59.999Z", false},
		{"at a utc date from", `{"from":"2026-12-20","tz":"utc"}`, "2026-12-20T00:00:00Z", true},
		{"open-ended after from", `{"from":"2026-12-20","tz":"utc"}`, "2036-12-20T00:00:00Z", true},
		{"before until", `{"until":"2027-01-05","tz":"utc"}`, "2027-01-04T23:59:59Z", true},
		{"at until, which is exclusive", `{"until":"2027-01-05","tz":"utc"}`, "2027-01-05T00:00:00Z", false},
		{"inside a window", `{"from":"2026-12-20","until":"2027-01-05","tz":"utc"}`, "2026-12-31T12:00:00Z", true},
		{"after a window: configured but not active", `{"from":"2026-12-20","until":"2027-01-05","tz":"utc"}`, "2027-02-01T00:00:00Z", false},
		// tz local is the host's zone (Tokyo here, UTC+9): the date starts
		// at 15:00 UTC the day before.
		{"a local date from, just before", `{"from":"2026-12-20","tz":"local"}`, "2026-12-19T14:59:59Z", false},
		{"a local date from, reached", `{"from":"2026-12-20","tz":"local"}`, "2026-12-19T15:00:00Z", true},
		{"tz absent is local", `{"from":"2026-12-20"}`, "2026-12-19T15:00:00Z", true},
		{"a local date until", `{"until":"2027-01-05","tz":"local"}`, "2027-01-04T15:00:00Z", false},
		// An RFC 3339 bound keeps its own offset, whatever the tz.
		{"an RFC 3339 from ignores tz local", `{"from":"2026-12-20T09:00:00+09:00","tz":"local"}`, "2026-12-20T00:00:00Z", true},
		{"an RFC 3339 from ignores tz utc", `{"from":"2026-12-20T09:00:00+09:00","tz":"utc"}`, "2026-12-19T23:59:59Z", false},
		{"an RFC 3339 until with fractions", `{"until":"2026-12-20T00:00:00.5Z","tz":"utc"}`, "2026-12-20T00:00:00.4Z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := kanade.DecodeFreeze([]byte(tt.freeze))
			if err != nil {
				t.Fatalf("DecodeFreeze(%s) = %v", tt.freeze, err)
			}
			if got := f.ActiveIn(at(tt.at), tokyo); got != tt.want {
				t.Errorf("ActiveIn(%s) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
	// Active reads local as this host's zone; with tz utc it cannot depend
	// on it.
	f := kanade.Freeze{From: ptr("2026-12-20"), Until: ptr("2027-01-05"), TZ: "utc"}
	if !f.Active(at("2026-12-25T00:00:00Z")) || f.Active(at("2027-01-05T00:00:00Z")) {
		t.Error("Active disagrees with the window of a utc freeze")
	}
}

// TestFreezeDoubtHolds: bounds Validate refuses never make a freeze less
// active than it says; an unreadable bound counts as open.
func TestFreezeDoubtHolds(t *testing.T) {
	now := testkit.Time(t, "2026-06-01T00:00:00Z")
	for _, f := range []kanade.Freeze{
		{From: ptr("soon"), TZ: "utc"},
		{Until: ptr("never"), TZ: "utc"},
		{From: ptr(""), Until: ptr("2026-13-45"), TZ: "utc"},
	} {
		if !f.ActiveIn(now, time.UTC) {
			t.Errorf("%+v is not active; an unreadable bound must count as open", f)
		}
	}
}

func TestDecodeFreeze(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		field string // the FieldError's field; "-" = an error with none; "" = valid
	}{
		{"the spec's example", `{"from":"2026-12-20","until":"2027-01-05","reason":"year-end freeze","tz":"local"}`, ""},
		{"an empty freeze", `{}`, ""},
		{"unknown members are ignored", `{"reason":"x","by":"alice"}`, ""},
		{"mixed bound forms", `{"from":"2026-12-20","until":"2026-12-20T00:00:01+00:00","tz":"utc"}`, ""},
		{"null", `null`, "-"},
		{"nothing", ``, "-"},
		{"not JSON", `{"from":`, "-"},
		{"an array", `[]`, "-"},
		{"a bound that is a number", `{"from":20261220}`, "from"},
		{"a bound in words", `{"from":"next week"}`, "from"},
		{"an empty bound", `{"until":""}`, "until"},
		{"a date that does not exist", `{"until":"2026-02-30"}`, "until"},
		{"from equal to until", `{"from":"2026-12-20","until":"2026-12-20"}`, "until"},
		{"from after until", `{"from":"2027-01-05","until":"2026-12-20","tz":"utc"}`, "until"},
		{"an IANA zone", `{"tz":"Europe/Berlin"}`, "tz"},
		{"tz UTC in capitals", `{"tz":"UTC"}`, "tz"},
		{"a reason with a control character", `{"reason":"a\u0007b"}`, "reason"},
		{"a reason of 2000 bytes", `{"reason":"` + strings.Repeat("x", 2000) + `"}`, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := kanade.DecodeFreeze([]byte(tt.data))
			if tt.field == "" {
				if err != nil || f == nil {
					t.Fatalf("DecodeFreeze = %v, %v; want a freeze", f, err)
				}
				return
			}
			if f != nil || !errors.Is(err, kanade.ErrUndecodableFreeze) {
				t.Fatalf("DecodeFreeze = %+v, %v; want nil and ErrUndecodableFreeze", f, err)
			}
			var fe *kanade.FieldError
			if got := errors.As(err, &fe); got != (tt.field != "-") || got && fe.Field != tt.field {
				t.Errorf("error %v: FieldError %+v, want one on %q", err, fe, tt.field)
			}
		})
	}
}

func TestFreezeJSON(t *testing.T) {
	tests := []struct {
		name string
		in   kanade.Freeze
		want string
	}{
		{"tz is always written", kanade.Freeze{}, `{"tz":"local"}`},
		{"absent fields are left out", kanade.Freeze{From: ptr("2026-12-20"), TZ: "utc"}, `{"from":"2026-12-20","tz":"utc"}`},
		{"every field", kanade.Freeze{From: ptr("2026-12-20"), Until: ptr("2027-01-05"), Reason: ptr("year-end"), TZ: "local"},
			`{"from":"2026-12-20","until":"2027-01-05","reason":"year-end","tz":"local"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.in)
			if err != nil || string(b) != tt.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tt.want)
			}
			f, err := kanade.DecodeFreeze(b)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(f); string(again) != tt.want {
				t.Errorf("round trip = %s, want %s", again, tt.want)
			}
		})
	}
	// Validate fills the default tz in place, as a PUT echoes it.
	f := kanade.Freeze{}
	if err := f.Validate(); err != nil || f.TZ != "local" {
		t.Errorf("Validate() = %v, tz %q; want nil and local", err, f.TZ)
	}
}

func ptr(s string) *string { return &s }
