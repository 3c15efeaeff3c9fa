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

// FuzzParseSchedule decodes a KV "schedules" value. It must never panic, and
// a schedule that parses must survive being written back: the API stores
// what it read, so marshal and parse again give the same schedule, parsed
// state included.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		testkit.MinimalSchedule,
		`{"id":"nightly-backup","when":{"calendar":{"at":"02:30","days":["mon-fri","sun"]}},"job_id":"backup",
			"target":{"all":false,"groups":["office"],"pcs":["pc-1","pc-2"]},
			"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"office","delay":"1h"}]},
			"jitter":"5m","starting_deadline":"1d","active":{"from":"2026-01-01","until":"2027-01-01T00:00:00Z"},
			"tz":"Europe/Berlin","runs_on":"backend","enabled":false,"unknown":"ignored"}`,
		`{"id":"b","when":{"per_target":{"every":"1d"},"per_pc":null},"job_id":"j","target":{"pcs":["x"]},"tz":"utc","runs_on":"agent"}`,
		`{"id":"c","when":{"calendar":{"at":"2026-06-10 09:00"}},"job_id":"j","target":{"groups":["g"]},"tz":"America/New_York"}`,
		`{"id":"d","when":{"calendar":{"at":"09:00","days":["Fri-MON"," wed "]}},"job_id":"j","target":{"all":true},"tz":"America/Sao_Paulo","active":{"until":"2018-11-04"}}`,
		`{"id":"e","when":{"per_pc":{"every":"soon"}},"job_id":7}`,
		`{"id":`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	opts := cmp.Options{
		cmp.AllowUnexported(Schedule{}, Cadence{}, Calendar{}, Wave{}),
		cmp.Comparer(func(a, b *time.Location) bool { return a.String() == b.String() }),
		cmpopts.EquateEmpty(),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		first, err := ParseSchedule("", data)
		if err != nil {
			// Every refusal names its field, but for a document that is
			// not a JSON object at all.
			var fe *FieldError
			if !errors.As(err, &fe) && !strings.HasPrefix(err.Error(), "schedule must be ") && !strings.HasPrefix(err.Error(), "invalid JSON") {
				t.Fatalf("ParseSchedule(%s) = %q, not a FieldError", data, err)
			}
			return
		}
		out, err := json.Marshal(first)
		if err != nil {
			t.Fatalf("marshal a parsed schedule: %v", err)
		}
		second, err := ParseSchedule(first.ID, out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if diff := cmp.Diff(first, second, opts); diff != "" {
			t.Fatalf("round trip of %s (-first +second):\n%s", data, diff)
		}
	})
}
