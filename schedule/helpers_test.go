package schedule

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
)

// base is a minimal valid schedule; cases override top-level fields of it.
const base = `{"id":"s1","when":{"per_pc":"once"},"job_id":"j1","target":{"all":true}}`

// mustParse parses base with the top-level fields of patch replacing its
// own; a field patched to null is removed.
func mustParse(t *testing.T, patch string) *kanade.Schedule {
	t.Helper()
	var doc, p map[string]json.RawMessage
	if err := json.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	for k, v := range p {
		if string(v) == "null" {
			delete(doc, k)
			continue
		}
		doc[k] = v
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kanade.ParseSchedule("", raw)
	if err != nil {
		t.Fatalf("ParseSchedule(%s): %v", patch, err)
	}
	return s
}

// cal is a calendar schedule in tz, with extra top-level fields.
func cal(t *testing.T, calendar, tz, extra string) *kanade.Schedule {
	t.Helper()
	patch := fmt.Sprintf(`{"when":{"calendar":%s},"tz":%q`, calendar, tz)
	if extra != "" {
		patch += "," + extra
	}
	return mustParse(t, patch+"}")
}

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("tzdata: %v", err)
	}
	return loc
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
