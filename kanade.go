// Package kanade holds the domain shared by every part of the kanade backend:
// the wire payloads agents exchange over NATS (shared/spec/wire.md), the list of
// JetStream resources the backend owns, the one timestamp layout used in SQL,
// the records operators write into KV (Manifest, Schedule) with their
// validation, and the API's read shapes (views.go) that storage produces and
// handlers serves.
//
// It imports no database and no HTTP code, so handlers, projection, schedule and
// the shells can all depend on it without depending on each other.
package kanade

import "time"

// Build information, set by the linker (-X) in release builds.
var (
	Version = "dev"
	Commit  = "unknown"
)

// Clock returns the current time. Every rule that depends on time (stale
// thresholds, windows, reaping, cron) takes a Clock at construction so tests can
// move time instead of sleeping.
type Clock func() time.Time

// SystemClock is the wall clock.
func SystemClock() time.Time { return time.Now() }
