package app

import (
	"strconv"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
)

// TestSettingDefaultsAreTheSharedDefaults: the settings table writes its
// defaults as text (they show in -h), while handlers and the scheduler fall
// back on the root package's constants; both must be the same fact.
func TestSettingDefaultsAreTheSharedDefaults(t *testing.T) {
	def := func(env string) string {
		for _, s := range settings {
			if s.env == env {
				return s.def
			}
		}
		t.Fatalf("no setting %s", env)
		return ""
	}
	for env, want := range map[string]time.Duration{
		"KANADE_STALE_THRESHOLD":  kanade.DefaultStaleThreshold,
		"KANADE_PROJECTION_STALL": kanade.DefaultStallAfter,
	} {
		if got, err := time.ParseDuration(def(env)); err != nil || got != want {
			t.Errorf("%s default %q, want %v", env, def(env), want)
		}
	}
	if got, err := strconv.ParseFloat(def("KANADE_STALE_DEGRADED_RATIO"), 64); err != nil || got != kanade.DefaultStaleDegradedRatio {
		t.Errorf("KANADE_STALE_DEGRADED_RATIO default %q, want %v", def("KANADE_STALE_DEGRADED_RATIO"), kanade.DefaultStaleDegradedRatio)
	}
}
