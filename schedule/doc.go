// Package schedule is the cron scheduler of shared/spec/scheduler.md.
//
// It has two halves. The decision core (schedule.go, calendar.go, decide.go)
// is the Schedule record (parsing, validation, the JSON stored in KV
// "schedules"), the calendar arithmetic that turns "09:00 on mon-fri in
// Europe/Berlin" into instants (daylight-saving gaps and folds included), and
// every dispatch decision (who is due, what is in flight, what was missed while
// no worker ran, which KV key makes a firing exactly-once). All of it is pure:
// no NATS, no SQL, no goroutines, no clock; the instant a decision is taken for
// is always a parameter, so every rule is tested at its boundaries with a fake
// now. Keep it that way.
//
// The runtime (scheduler.go) is a thin loop around that core: it follows KV
// "schedules", ticks, claims each firing by creating a key in KV
// "scheduler_dispatch" (JetStream lets exactly one worker create it), and
// publishes commands, the executions row and the audit event. It never
// decides anything the core could not be asked about.
package schedule
