// Package schedule will drive the cron scheduler of shared/spec/scheduler.md:
// schedules from KV "schedules", exactly-once firings across workers built on
// JetStream, and commands published on commands.*. It is not written yet; the
// shells' worker seam (shells/internal/app.NewWorker) is where it joins the
// projector.
package schedule
