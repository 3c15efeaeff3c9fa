package handlers

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
)

// RoleTableForTest is routeRoles, for the tests that walk every route.
func RoleTableForTest() map[string]auth.Role { return routeRoles() }

// ShortenLiveTimeoutsForTest makes the log and job tail requests wait logs
// and tail instead of 10 s and 3 s until the test ends. Tests using it must
// not run in parallel.
func ShortenLiveTimeoutsForTest(tb testing.TB, logs, tail time.Duration) {
	old := liveTimeouts
	liveTimeouts.logs, liveTimeouts.tail = logs, tail
	tb.Cleanup(func() { liveTimeouts = old })
}

// PingWaitForTest is the wait of a ping asked to wait secs seconds.
var PingWaitForTest = pingWait
