package handlers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Compliance checks and end-user notifications (observe.md §3, §4): the
// check_status table the results projection keeps, and notifications
// published into NOTIFICATIONS whose acknowledgements the projector
// records.

// maxCheckRows bounds the rows of GET /api/checks (observe.md §3.5).
const maxCheckRows = 50_000

// Notification bounds (observe.md §4.3 port rules).
const (
	maxTitleChars       = 200
	maxNotificationBody = 64 << 10
	maxIssuedByBytes    = 128
	maxNotifySubjects   = 1000
	// notificationHistory is how many of the newest NOTIFICATIONS
	// messages GET /api/notifications reads, and maxHistory how many
	// notifications it answers (§4.7).
	notificationHistory = 5000
	maxHistory          = 200
)

type checksInput struct {
	Check     string `query:"check" doc:"Only this check (trimmed; blank is all)." example:"bitlocker"`
	IncludeOK string `query:"include_ok" doc:"true also lists rows whose status is ok; default false. Anything but true or false is 400."`
}

type checkCountsItem = storage.CheckCounts

type checkRowItem struct {
	PcID       string  `json:"pc_id" example:"PC-0007"`
	CheckName  string  `json:"check_name" example:"bitlocker"`
	Status     string  `json:"status" enum:"ok,warn,fail,unknown" doc:"The latest state; a stored value outside the four reads as it is."`
	Detail     *string `json:"detail" doc:"One-line summary, or null." example:"C: not encrypted"`
	RecordedAt string  `json:"recorded_at" format:"date-time" doc:"Stream time of the result that set it (RFC 3339, UTC)."`
}

type checksBody struct {
	Counts    []checkCountsItem `json:"counts" doc:"One entry per check name present (or the one named), by check_name; never affected by include_ok."`
	Rows      []checkRowItem    `json:"rows" doc:"By check_name, then pc_id; ok rows only with include_ok=true."`
	Truncated bool              `json:"truncated,omitempty" doc:"Present (true) when more than 50 000 rows matched: the first 50 000 are listed."`
}

type checksOutput struct{ Body checksBody }

type checkClearInput struct {
	CheckName string `path:"check_name" doc:"The check whose rows to delete (trimmed)." example:"bitlocker"`
	PCID      string `query:"pc_id" doc:"Only this PC's row." example:"PC-0007"`
}

type checkClearOutput struct {
	Body struct {
		Deleted int64 `json:"deleted" doc:"Rows deleted (0 is not an error)."`
	}
}

type notifyTarget struct {
	All    bool     `json:"all,omitempty" doc:"Every agent (notifications.all)."`
	Groups []string `json:"groups,omitempty" doc:"Groups (notifications.group.<g>): subject tokens."`
	PCs    []string `json:"pcs,omitempty" doc:"PCs (notifications.pc.<pc_id>)."`
}

type notifyRequest struct {
	ID         *string      `json:"id,omitempty" doc:"The notification id (trimmed); absent or blank mints a UUID v4. 1–128 bytes without '.', '*', '>', whitespace or control characters." example:"maint-2026-06-20"`
	Priority   string       `json:"priority" enum:"info,warn,emergency"`
	RequireAck bool         `json:"require_ack,omitempty" doc:"Whether users must confirm it (default false)."`
	Title      string       `json:"title" doc:"Up to 200 characters, not blank." example:"Network maintenance"`
	Body       string       `json:"body" doc:"Markdown, up to 64 KiB; may be empty." example:"Offline 22:00–22:30"`
	IssuedBy   *string      `json:"issued_by,omitempty" doc:"Who issued it, up to 128 bytes." example:"infra-team"`
	ExpiresAt  *string      `json:"expires_at,omitempty" doc:"RFC 3339 instant after now; absent is never." example:"2026-06-21T00:00:00Z"`
	Target     notifyTarget `json:"target"`
}

type notifyInput struct{ Body notifyRequest }

type notifyOutput struct {
	Body struct {
		ID       string   `json:"id" example:"maint-2026-06-20"`
		Subjects []string `json:"subjects" doc:"The subjects the stream stored it on."`
	}
}

type notificationItem struct {
	ID         string  `json:"id"`
	Priority   string  `json:"priority"`
	RequireAck bool    `json:"require_ack"`
	Title      string  `json:"title"`
	Body       string  `json:"body"`
	IssuedAt   string  `json:"issued_at" format:"date-time"`
	IssuedBy   *string `json:"issued_by,omitempty"`
	ExpiresAt  *string `json:"expires_at,omitempty" format:"date-time"`
}

type notificationsOutput struct{ Body []notificationItem }

type ackStatusInput struct {
	ID string `path:"id" doc:"The notification id." example:"maint-2026-06-20"`
}

type ackItem struct {
	PcID    string `json:"pc_id" example:"PC-0123"`
	UserSID string `json:"user_sid" example:"S-1-5-21-1001"`
	AckedAt string `json:"acked_at" format:"date-time" doc:"The agent's clock when the user confirmed."`
}

type ackStatusOutput struct {
	Body struct {
		ID   string    `json:"id"`
		Acks []ackItem `json:"acks" doc:"Oldest first; empty when nobody confirmed yet (or it was never sent)."`
	}
}

func (srv *Server) registerContent(api huma.API) {
	register(api, huma.Operation{OperationID: "list-checks", Method: http.MethodGet, Path: "/api/checks",
		Summary: "Compliance check states", Tags: []string{"checks"},
		Description: "The latest state of every check on every PC (observe.md §3.5): counts per check and the rows, " +
			"ok rows only with include_ok=true; at most 50 000 rows (then truncated: true). 400 when include_ok is not " +
			"true or false."},
		func(ctx context.Context, in *checksInput) (*checksOutput, error) {
			includeOK, err := queryBool("include_ok", in.IncludeOK)
			if err != nil {
				return nil, err
			}
			check := strings.TrimSpace(in.Check)
			if check != "" && !kanade.ValidID(check) {
				return nil, badQuery("check", check, "must be 1–128 bytes of UTF-8 without control characters")
			}
			cs, err := srv.cfg.DB.ListChecks(ctx, check, includeOK, maxCheckRows)
			if err != nil {
				return nil, srv.dbProblem(ctx, "list checks", err)
			}
			out := &checksOutput{Body: checksBody{Counts: cs.Counts, Rows: make([]checkRowItem, len(cs.Rows)), Truncated: cs.Truncated}}
			for i, r := range cs.Rows {
				out.Body.Rows[i] = checkRowItem{PcID: r.PcID, CheckName: r.CheckName, Status: r.Status, Detail: r.Detail,
					RecordedAt: rfc3339(r.RecordedAt)}
			}
			return out, nil
		})

	register(api, huma.Operation{OperationID: "clear-check", Method: http.MethodDelete, Path: "/api/checks/{check_name}",
		Summary: "Clear a check's states", Tags: []string{"checks"},
		Description: "Deletes the check's rows, of every PC or of pc_id (observe.md §3.6): what a deleted or renamed " +
			"check job leaves behind. 200 with the count, also 0. Audited as check_clear. 400 when the name is blank or " +
			"either value is not 1–128 bytes of UTF-8 without control characters."},
		func(ctx context.Context, in *checkClearInput) (*checkClearOutput, error) {
			name := strings.TrimSpace(in.CheckName)
			if name == "" || !kanade.ValidID(name) {
				return nil, badToken("check_name", in.CheckName, "must be 1–128 bytes of UTF-8 without control characters, not blank")
			}
			if in.PCID != "" && !kanade.ValidID(in.PCID) {
				return nil, badQuery("pc_id", in.PCID, "must be 1–128 bytes of UTF-8 without control characters")
			}
			n, err := srv.cfg.DB.DeleteChecks(ctx, name, in.PCID)
			if err != nil {
				return nil, srv.dbProblem(ctx, "clear check", err)
			}
			var pc any
			if in.PCID != "" {
				pc = in.PCID
			}
			srv.audit(ctx, "check_clear", name, map[string]any{"check_name": name, "pc_id": pc, "deleted": n})
			out := &checkClearOutput{}
			out.Body.Deleted = n
			return out, nil
		})

	register(api, huma.Operation{OperationID: "publish-notification", Method: http.MethodPost, Path: "/api/notifications",
		Summary: "Notify end users", Tags: []string{"notifications"},
		Description: "Publishes one notification on notifications.all, notifications.group.<g> and notifications.pc.<pc_id> " +
			"(observe.md §4.3), each awaiting the stream's acknowledgement, best effort per subject; duplicates are sent " +
			"once. Audited as notification. 400 when the target names nothing, the title is blank or over 200 characters, " +
			"expires_at is not after now, an id, group or pc_id cannot be a subject token, or a bound is broken; 422 for " +
			"a missing field or an unknown priority; 502 when every publish failed; 503 when NOTIFICATIONS does not exist."},
		func(ctx context.Context, in *notifyInput) (*notifyOutput, error) {
			return srv.notify(ctx, &in.Body)
		})

	register(api, huma.Operation{OperationID: "list-notifications", Method: http.MethodGet, Path: "/api/notifications",
		Summary: "Sent notifications", Tags: []string{"notifications"},
		Description: "The newest 200 notifications among the stream's last 5 000 messages (observe.md §4.7), one per id " +
			"(the copy issued last), newest issued first; expired ones included. 503 when NOTIFICATIONS does not exist."},
		func(ctx context.Context, _ *struct{}) (*notificationsOutput, error) {
			return srv.sentNotifications(ctx)
		})

	register(api, huma.Operation{OperationID: "notification-ack-status", Method: http.MethodGet, Path: "/api/notifications/{id}/ack_status",
		Summary: "Who confirmed a notification", Tags: []string{"notifications"},
		Description: "Every user's confirmation of the notification, oldest first (observe.md §4.6). An unknown id is not " +
			"404: acks is empty. 400 when the id cannot be a notification id."},
		func(ctx context.Context, in *ackStatusInput) (*ackStatusOutput, error) {
			if !kanade.ValidNotificationID(in.ID) {
				return nil, badToken("id", in.ID, ruleToken)
			}
			acks, err := srv.cfg.DB.NotificationAcks(ctx, in.ID)
			if err != nil {
				return nil, srv.dbProblem(ctx, "read notification acks", err)
			}
			out := &ackStatusOutput{}
			out.Body.ID = in.ID
			out.Body.Acks = make([]ackItem, len(acks))
			for i, a := range acks {
				out.Body.Acks[i] = ackItem{PcID: a.PcID, UserSID: a.UserSID, AckedAt: rfc3339(a.AckedAt)}
			}
			return out, nil
		})
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// badQuery is the 400 of a query value that breaks its rule, quoting a
// clipped excerpt (badToken is the path's).
func badQuery(field, value, rule string) error { return badIn("query", field, value, rule) }

func badIn(where, field, value, rule string) error {
	fe := &kanade.FieldError{Field: field, Rule: rule, Excerpt: kanade.Clip(value)}
	return huma.Error400BadRequest(fe.Error(), &huma.ErrorDetail{Location: where + "." + field, Message: fe.Error(), Value: kanade.Clip(value)})
}

func bodyField(field, value, rule string) error {
	return bodyProblem("", &kanade.FieldError{Field: field, Rule: rule, Excerpt: kanade.Clip(value)})
}

// notify checks a notification as observe.md §4.3 orders it, before any
// publish, then publishes it on each subject.
func (srv *Server) notify(ctx context.Context, req *notifyRequest) (*notifyOutput, error) {
	t := req.Target
	if !t.All && len(t.Groups) == 0 && len(t.PCs) == 0 {
		return nil, huma.Error400BadRequest("target must set at least one of all, groups or pcs")
	}
	if strings.TrimSpace(req.Title) == "" {
		return nil, bodyField("title", req.Title, "must not be blank")
	}
	now := srv.cfg.Clock().UTC()
	var expires *kanade.Timestamp
	if req.ExpiresAt != nil {
		at, err := time.Parse(time.RFC3339Nano, *req.ExpiresAt)
		if err != nil || at.Year() < 1 || at.Year() > 9999 {
			return nil, bodyField("expires_at", *req.ExpiresAt, "must be an RFC 3339 instant with a year in 0001–9999")
		}
		if !at.After(now) {
			return nil, bodyField("expires_at", *req.ExpiresAt, "must be after now")
		}
		expires = &kanade.Timestamp{Time: at.UTC()}
	}
	id := ""
	if req.ID != nil {
		id = strings.TrimSpace(*req.ID)
	}
	if id != "" && !kanade.ValidNotificationID(id) {
		return nil, bodyField("id", id, ruleToken)
	}
	if n := utf8.RuneCountInString(req.Title); n > maxTitleChars {
		return nil, bodyField("title", req.Title, fmt.Sprintf("must be at most %d characters (has %d)", maxTitleChars, n))
	}
	if len(req.Body) > maxNotificationBody {
		return nil, bodyField("body", "", fmt.Sprintf("must be at most 64 KiB (has %d bytes)", len(req.Body)))
	}
	if req.IssuedBy != nil && len(*req.IssuedBy) > maxIssuedByBytes {
		return nil, bodyField("issued_by", *req.IssuedBy, "must be at most 128 bytes")
	}
	var subjects []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	if t.All {
		add(kanade.NotificationSubjectAll)
	}
	for i, g := range t.Groups {
		if !kanade.ValidGroupName(g) {
			return nil, bodyField(fmt.Sprintf("target.groups[%d]", i), g, ruleToken)
		}
		add(kanade.NotificationSubjectGroup(g))
	}
	for i, pc := range t.PCs {
		if !kanade.ValidPCID(pc) {
			return nil, bodyField(fmt.Sprintf("target.pcs[%d]", i), pc, "must be a pc_id: 1–128 bytes of [A-Za-z0-9_=/-]")
		}
		add(kanade.NotificationSubjectPC(pc))
	}
	if len(subjects) > maxNotifySubjects {
		return nil, huma.Error400BadRequest(fmt.Sprintf("target names %d subjects; at most %d", len(subjects), maxNotifySubjects))
	}
	if id == "" {
		id = kanade.NewUUID()
	}
	n := kanade.Notification{ID: id, Priority: req.Priority, RequireAck: req.RequireAck, Title: req.Title, Body: req.Body,
		IssuedAt: kanade.Timestamp{Time: now}, IssuedBy: req.IssuedBy, ExpiresAt: expires}
	data, err := json.Marshal(n)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode the notification: " + err.Error())
	}
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	if _, err := c.Stream(pctx, kanade.StreamNotifications); errors.Is(err, bus.ErrNotFound) {
		return nil, srv.noStore(ctx, "stream", kanade.StreamNotifications, err)
	} else if err != nil {
		return nil, srv.natsProblem(ctx, "open stream "+kanade.StreamNotifications, err)
	}
	msgs := make([]*nats.Msg, len(subjects))
	for i, s := range subjects {
		// A retried publish of this request is stored once; a new request
		// re-using the id is a new message (its issued_at differs).
		msgs[i] = &nats.Msg{Subject: s, Data: data, Header: nats.Header{
			jetstream.MsgIDHeader: []string{id + ":" + s + ":" + kanade.FormatTime(now)}}}
	}
	errs := c.PublishEach(pctx, msgs)
	stored, failed := []string{}, []string{}
	for i, err := range errs {
		if err != nil {
			srv.cfg.Logger.ErrorContext(ctx, "notification publish failed", "subject", subjects[i], "error", err)
			failed = append(failed, subjects[i])
			continue
		}
		stored = append(stored, subjects[i])
	}
	if len(stored) == 0 {
		return nil, huma.NewError(http.StatusBadGateway, fmt.Sprintf("publish to %s: %v", subjects[0], errs[0]))
	}
	srv.audit(ctx, "notification", id, map[string]any{"notification_id": id, "priority": n.Priority,
		"require_ack": n.RequireAck, "subjects": stored, "failed_subjects": failed})
	out := &notifyOutput{}
	out.Body.ID, out.Body.Subjects = id, stored
	return out, nil
}

// sentNotifications reads the stream's newest messages and collapses the
// per-subject copies to one notification per id (observe.md §4.7).
func (srv *Server) sentNotifications(ctx context.Context) (*notificationsOutput, error) {
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	byID := map[string]kanade.Notification{}
	err = c.Tail(ctx, kanade.StreamNotifications, kanade.SubjectNotifications, notificationHistory, func(m bus.Message) {
		var n kanade.Notification
		if json.Unmarshal(m.Data, &n) != nil || n.ID == "" || n.IssuedAt.IsZero() {
			return
		}
		if cur, ok := byID[n.ID]; !ok || !n.IssuedAt.Before(cur.IssuedAt.Time) {
			byID[n.ID] = n
		}
	})
	if errors.Is(err, bus.ErrNotFound) {
		return nil, srv.noStore(ctx, "stream", kanade.StreamNotifications, err)
	}
	if err != nil {
		return nil, srv.storeFailed(ctx, "read "+kanade.StreamNotifications, err)
	}
	all := make([]kanade.Notification, 0, len(byID))
	for _, n := range byID {
		all = append(all, n)
	}
	slices.SortFunc(all, func(a, b kanade.Notification) int {
		if c := b.IssuedAt.Compare(a.IssuedAt.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	all = all[:min(len(all), maxHistory)]
	out := &notificationsOutput{Body: make([]notificationItem, len(all))}
	for i, n := range all {
		it := notificationItem{ID: n.ID, Priority: n.Priority, RequireAck: n.RequireAck, Title: n.Title, Body: n.Body,
			IssuedAt: rfc3339(n.IssuedAt.Time), IssuedBy: n.IssuedBy}
		if n.ExpiresAt != nil {
			s := rfc3339(n.ExpiresAt.Time)
			it.ExpiresAt = &s
		}
		out.Body[i] = it
	}
	return out, nil
}
