package handlers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// GET /api/schedules/{id}/preview and /status (control.md §5.8, later
// upstream): what a schedule will do and what its job did, for the CLI's
// `schedule preview` and the dashboard.

type previewInput struct {
	ID    string `path:"id" doc:"The schedule id."`
	Count int    `query:"count" default:"5" doc:"How many fire instants to list; clamped to 1–50."`
}

type previewBody struct {
	ID      string             `json:"id"`
	When    string             `json:"when" doc:"The one-line form of when."`
	TZ      string             `json:"tz"`
	Enabled bool               `json:"enabled"`
	Fires   []kanade.Timestamp `json:"fires" doc:"The next calendar fire instants in UTC, within active; empty for per_pc / per_target."`
	Note    string             `json:"note,omitempty" doc:"Why fires is empty."`
}

type lastRun struct {
	PcID       string            `json:"pc_id"`
	ExitCode   *int64            `json:"exit_code"`
	StartedAt  kanade.Timestamp  `json:"started_at"`
	FinishedAt *kanade.Timestamp `json:"finished_at"`
}

type recentRuns struct {
	WindowHours int   `json:"window_hours"`
	OK          int64 `json:"ok" doc:"Runs of the job started in the window that exited 0."`
	Fail        int64 `json:"fail" doc:"Runs of the job started in the window that failed or were reaped."`
}

type statusBody struct {
	ID      string            `json:"id"`
	When    string            `json:"when"`
	TZ      string            `json:"tz"`
	Enabled bool              `json:"enabled"`
	NextRun *kanade.Timestamp `json:"next_run" doc:"The next calendar fire instant; null for per_pc / per_target, a disabled schedule or none left."`
	LastRun *lastRun          `json:"last_run" doc:"The job's newest run, from any schedule or exec of it; null when it never ran."`
	Recent  recentRuns        `json:"recent"`
}

// statusWindow is the window of a status's recent counts.
const statusWindow = 24 * time.Hour

func (srv *Server) registerPreview(api huma.API) {
	register(api, huma.Operation{OperationID: "preview-schedule", Method: http.MethodGet, Path: "/api/schedules/{id}/preview",
		Summary: "A schedule's next fire instants", Tags: []string{"manage"},
		Description: "Calendar schedules list their next fires (UTC) within active; per_pc and per_target answer fires [] and a note " +
			"on their cadence. 404 unknown id; 500 when the stored value does not decode."},
		func(ctx context.Context, in *previewInput) (*struct{ Body previewBody }, error) {
			ctx, cancel := context.WithTimeout(ctx, manageTimeout)
			defer cancel()
			_, s, err := srv.schedule(ctx, in.ID)
			if err != nil {
				return nil, err
			}
			b := previewBody{ID: s.ID, When: s.DisplayWhen(), TZ: s.TZ, Enabled: s.Enabled, Fires: []kanade.Timestamp{}}
			at := srv.cfg.Clock()
			for range min(max(in.Count, 1), 50) {
				next, ok := s.NextFire(at)
				if !ok {
					break
				}
				b.Fires = append(b.Fires, kanade.Timestamp{Time: next.UTC()})
				at = next
			}
			if len(b.Fires) == 0 {
				b.Note = previewNote(s)
			}
			return &struct{ Body previewBody }{b}, nil
		})
	register(api, huma.Operation{OperationID: "schedule-status", Method: http.MethodGet, Path: "/api/schedules/{id}/status",
		Summary: "A schedule's next run and its job's recent runs", Tags: []string{"manage"},
		Description: "next_run (calendar only), the job's newest run and the counts of its runs started in the last 24 hours. " +
			"The run figures are the job's: schedules sharing a job share them."},
		func(ctx context.Context, in *manageIDInput) (*struct{ Body statusBody }, error) {
			ctx, cancel := context.WithTimeout(ctx, manageTimeout)
			defer cancel()
			_, s, err := srv.schedule(ctx, in.ID)
			if err != nil {
				return nil, err
			}
			now := srv.cfg.Clock()
			b := statusBody{ID: s.ID, When: s.DisplayWhen(), TZ: s.TZ, Enabled: s.Enabled, Recent: recentRuns{WindowHours: int(statusWindow.Hours())}}
			if next, ok := s.NextFire(now); ok && s.Enabled {
				b.NextRun = &kanade.Timestamp{Time: next.UTC()}
			}
			last, ok, fail, err := srv.cfg.DB.JobRuns(ctx, s.JobID, now.Add(-statusWindow))
			if err != nil {
				return nil, srv.dbProblem(ctx, "read the job's runs", err)
			}
			b.Recent.OK, b.Recent.Fail = ok, fail
			if last != nil {
				b.LastRun = &lastRun{PcID: last.PcID, ExitCode: last.ExitCode, StartedAt: kanade.Timestamp{Time: last.StartedAt}}
				if last.FinishedAt != nil {
					b.LastRun.FinishedAt = &kanade.Timestamp{Time: *last.FinishedAt}
				}
			}
			return &struct{ Body statusBody }{b}, nil
		})
}

// schedule reads and decodes one schedule: 404 when absent, 500 when the
// stored value does not decode. The entry comes too, for a compare-and-set.
func (srv *Server) schedule(ctx context.Context, id string) (bus.Entry, *kanade.Schedule, error) {
	e, err := srv.getEntry(ctx, manageKind{bucket: kanade.BucketSchedules, noun: "schedule"}, id)
	if err != nil {
		return e, nil, err
	}
	s, err := kanade.ParseSchedule(id, e.Value)
	if err != nil {
		return e, nil, huma.Error500InternalServerError(fmt.Sprintf("the stored schedule '%s' does not decode: %v; PUT a valid one", id, err))
	}
	return e, s, nil
}

// previewNote says why a schedule has no fire instants to list.
func previewNote(s *kanade.Schedule) string {
	switch s.Kind() {
	case kanade.KindPerPC:
		return "per_pc has no fixed fire times: each targeted PC gets the job when it has not completed it " +
			cadence(s) + " (checked every minute while the PC is alive)"
	case kanade.KindPerTarget:
		return "per_target has no fixed fire times: the whole target gets the job when it has not run " + cadence(s) +
			" (checked every minute)"
	}
	return "no fire instant left (a one-shot in the past, or active.until reached)"
}

func cadence(s *kanade.Schedule) string {
	c := s.When.PerPC
	if c == nil {
		c = s.When.PerTarget
	}
	if c != nil && c.Interval() > 0 {
		return "within the last " + c.Every
	}
	return "yet (once)"
}
