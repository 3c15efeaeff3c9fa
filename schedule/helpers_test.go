package schedule

import (
	"fmt"
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/internal/testkit"
)

// mustParse parses testkit.MinimalSchedule with the top-level fields of
// patch replacing its own; a field patched to null is removed.
func mustParse(t *testing.T, patch string) *kanade.Schedule {
	t.Helper()
	s, err := kanade.ParseSchedule("", testkit.Schedule(t, patch))
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
