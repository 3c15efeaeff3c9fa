// Package schedule is the cron scheduler of shared/spec/scheduler.md.
//
// The Schedule record and its calendar arithmetic live in the root package
// (kanade.Schedule, NextFire, UpcomingFirings) because the API validates and
// previews schedules too. This package holds the rest, in two halves.
//
// The decision core (decide.go) is every dispatch decision: who is expected,
// who is due, what is in flight, what was missed while no worker ran, and
// which KV key makes a firing exactly-once. It is pure: no NATS, no SQL, no
// goroutines, no clock; the instant a decision is taken for is always a
// parameter, so every rule is tested at its boundaries with a fake now. Keep
// it that way.
//
// The runtime (scheduler.go) is a thin loop around that core: it follows KV
// "schedules", ticks, claims each firing by creating a key in KV
// "scheduler_dispatch" (JetStream lets exactly one worker create it), and
// publishes commands, the executions row and the audit event.
//
// NATS closes a client for good on a protocol error, so nothing read back
// from storage goes into a subject or KV key unchecked: pc_ids from the
// agents table must be kanade.ValidPCID and group names from KV agent_groups
// kanade.ValidToken, or they are skipped, logged (clipped) and counted
// (kanade_scheduler_invalid_ids_total). Ids in log lines go through
// kanade.Clip.
package schedule
