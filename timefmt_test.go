package kanade_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestTimestampKeepsToFourDigitYears(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // FormatTime of the decoded value; "" = refused
	}{
		{"the first instant after the zero time", `"0001-01-01T00:00:00.000000001Z"`, "0001-01-01T00:00:00.000000001Z"},
		{"the last instant of 9999", `"9999-12-31T23:59:59.999999999Z"`, "9999-12-31T23:59:59.999999999Z"},
		{"an offset is converted to UTC", `"2026-06-10T09:00:00+09:00"`, "2026-06-10T00:00:00.000000000Z"},
		{"year 0000", `"0000-06-01T00:00:00Z"`, ""},
		{"year 0001 pulled into 0000 by its offset", `"0001-01-01T00:30:00+01:00"`, ""},
		{"year 9999 pushed into 10000 by its offset", `"9999-12-31T23:30:00-01:00"`, ""},
		{"a five-digit year", `"10000-01-01T00:00:00Z"`, ""},
		{"a negative year", `"-0001-01-01T00:00:00Z"`, ""},
		{"a date without time", `"2026-06-10"`, ""},
		{"a number", `1760000000`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts kanade.Timestamp
			err := json.Unmarshal([]byte(tt.in), &ts)
			got := ""
			if err == nil {
				got = kanade.FormatTime(ts.Time)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decoded %s (-want +got):\n%s\n(error: %v)", tt.in, diff, err)
			}
		})
	}
}

// TestParseTimeKeepsYearZeroForQueryBounds pins the one difference between
// ParseTime and the wire Timestamp: observe.md §0.4 accepts year 0000 in a
// query bound.
func TestParseTimeKeepsYearZeroForQueryBounds(t *testing.T) {
	got, err := kanade.ParseTime("0000-06-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if s := kanade.FormatTime(got); s != "0000-06-01T00:00:00.000000000Z" {
		t.Errorf("FormatTime = %s", s)
	}
}

func TestTimeErrorsQuoteOnlyAnExcerpt(t *testing.T) {
	huge := strings.Repeat("9", 100_000)
	for _, in := range []string{
		`"` + huge + `"`,
		`"2026-06-10T00:00:00` + huge + `Z"`,
		`"2026-13-10T00:00:00Z` + huge + `"`,
		`"` + strings.Repeat("\\n", 5000) + `"`,
		huge,
	} {
		var ts kanade.Timestamp
		err := json.Unmarshal([]byte(in), &ts)
		if err == nil {
			t.Fatalf("decoded %.40s…", in)
		}
		if len(err.Error()) > 300 {
			t.Errorf("error for %.40s… is %d bytes: %.200s…", in, len(err.Error()), err)
		}
	}
	_, err := kanade.ParseTime("2026-13-10T00:00:00Z")
	if want := `parse timestamp "2026-13-10T00:00:00Z": not an RFC 3339 timestamp: month out of range`; err == nil || err.Error() != want {
		t.Errorf("ParseTime error = %v, want %s", err, want)
	}
}
