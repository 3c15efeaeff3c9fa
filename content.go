package kanade

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Compliance checks, end-user notifications and the two object stores an
// operator ships software and long scripts with (observe.md §3–§5): the
// wire shapes and rules the projector, the API and the simulator share.

// CheckHint is a manifest's check: hint (observe.md §3.1) with its
// defaults applied.
type CheckHint struct {
	Name        string
	StatusField string
	DetailField string
	// Fleet false keeps the check out of check_status (end-user Health
	// tab only).
	Fleet bool
}

// MaxCheckNameBytes bounds check.name: it becomes a path segment of
// DELETE /api/checks/{check_name} and a SQL key.
const MaxCheckNameBytes = 128

// FleetCheck returns the manifest's check hint when it has one whose
// results go into check_status (fleet not false); ok is false otherwise,
// also for a hint that does not decode (the write path refuses those; a
// value put behind its back projects nothing rather than failing the
// results stream).
func (m *Manifest) FleetCheck() (CheckHint, bool) {
	if len(m.Check) == 0 {
		return CheckHint{}, false
	}
	var h struct {
		Name        string `json:"name"`
		StatusField string `json:"status_field"`
		DetailField string `json:"detail_field"`
		Fleet       *bool  `json:"fleet"`
	}
	if err := json.Unmarshal(m.Check, &h); err != nil || !ValidCheckName(h.Name) {
		return CheckHint{}, false
	}
	out := CheckHint{Name: h.Name, StatusField: h.StatusField, DetailField: h.DetailField, Fleet: h.Fleet == nil || *h.Fleet}
	if out.StatusField == "" {
		out.StatusField = "status"
	}
	if out.DetailField == "" {
		out.DetailField = "detail"
	}
	return out, out.Fleet
}

// ValidCheckName reports whether s can be a check_name (observe.md §3.1
// port rule): 1–128 bytes of UTF-8 without '/' or control characters.
func ValidCheckName(s string) bool {
	return s != "" && ValidText(s, MaxCheckNameBytes) && !strings.Contains(s, "/")
}

// Check statuses (observe.md §3.3).
const (
	CheckOK      = "ok"
	CheckWarn    = "warn"
	CheckFail    = "fail"
	CheckUnknown = "unknown"
)

// MaxCheckDetailBytes bounds a stored check detail (observe.md §3.4 (c)).
const MaxCheckDetailBytes = 4 << 10

// CheckOutcome is what one result says about its check (observe.md §3.4):
// the status, and the detail (nil for none).
type CheckOutcome struct {
	Status string
	Detail *string
}

// EvaluateCheck reads a check's result: ok is false when nothing is to be
// projected (a skipped run, or a successful run whose stdout is not one
// JSON object).
func EvaluateCheck(h CheckHint, r *ExecResult) (CheckOutcome, bool) {
	if r.Skipped || r.ExitCode == nil {
		return CheckOutcome{}, false
	}
	if code := *r.ExitCode; code != 0 {
		d := "check script exited " + strconv.FormatInt(code, 10)
		if s := strings.TrimSpace(r.Stderr); s != "" {
			d += ": " + cutRunes(s, 200)
		}
		d = CutUTF8(d, MaxCheckDetailBytes)
		return CheckOutcome{Status: CheckUnknown, Detail: &d}, true
	}
	var out map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	if err := dec.Decode(&out); err != nil || out == nil || dec.More() {
		return CheckOutcome{}, false
	}
	o := CheckOutcome{Status: CheckUnknown}
	var s string
	if raw, ok := out[h.StatusField]; ok && json.Unmarshal(raw, &s) == nil {
		switch s {
		case CheckOK, CheckWarn, CheckFail:
			o.Status = s
		}
	}
	if raw, ok := out[h.DetailField]; ok {
		raw = bytes.TrimSpace(raw)
		var d string
		switch {
		case len(raw) == 0, string(raw) == "null":
		case raw[0] == '"':
			if json.Unmarshal(raw, &d) != nil {
				d = ""
			}
		case raw[0] == '{' || raw[0] == '[':
			var b bytes.Buffer
			if json.Compact(&b, raw) == nil {
				d = b.String()
			}
		default: // a number or a boolean, as its text
			d = string(raw)
		}
		if d != "" {
			d = CutUTF8(d, MaxCheckDetailBytes)
			o.Detail = &d
		}
	}
	return o, true
}

// cutRunes keeps the first n characters of s.
func cutRunes(s string, n int) string {
	i := 0
	for k := range s {
		if i == n {
			return s[:k]
		}
		i++
	}
	return s
}

// CutUTF8 cuts s to at most n bytes at a character boundary.
func CutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Notifications (observe.md §4).
const (
	// StreamNotifications keeps every published notification.
	StreamNotifications = "NOTIFICATIONS"
	// SubjectNotifications is the stream's subjects.
	SubjectNotifications = "notifications.>"
	// SubjectNotificationsAcked is where agents report a user's
	// confirmation (in stream EVENTS).
	SubjectNotificationsAcked = "events.notifications.acked.>"
	// BucketNotificationsRead is agent-owned: which user read what.
	BucketNotificationsRead = "notifications_read"
)

// Notification priorities.
const (
	PriorityInfo      = "info"
	PriorityWarn      = "warn"
	PriorityEmergency = "emergency"
)

// Notification is the body published on notifications.* (observe.md §4.2).
type Notification struct {
	ID         string     `json:"id"`
	Priority   string     `json:"priority"`
	RequireAck bool       `json:"require_ack"`
	Title      string     `json:"title"`
	Body       string     `json:"body"`
	IssuedAt   Timestamp  `json:"issued_at"`
	IssuedBy   *string    `json:"issued_by,omitempty"`
	ExpiresAt  *Timestamp `json:"expires_at,omitempty"`
}

// NotificationSubjectAll and the two builders name where a notification
// goes; group and pc must be valid tokens (ValidGroupName, ValidPCID).
const NotificationSubjectAll = "notifications.all"

// NotificationSubjectGroup is notifications.group.<g>.
func NotificationSubjectGroup(g string) string { return "notifications.group." + g }

// NotificationSubjectPC is notifications.pc.<pc_id>.
func NotificationSubjectPC(pc string) string { return "notifications.pc." + pc }

// ValidNotificationID reports whether s can be a notification id
// (observe.md §0.3): a subject token, since it ends the agents' ack
// subject.
func ValidNotificationID(s string) bool { return ValidToken(s) }

// MaxUserSIDBytes bounds an acknowledging user's SID.
const MaxUserSIDBytes = 256

// NotificationAcked is an agent's report that a user confirmed a
// notification (observe.md §4.4). The fields come from the body, never
// from the subject's tokens.
type NotificationAcked struct {
	NotificationID string    `json:"notification_id"`
	PcID           string    `json:"pc_id"`
	UserSID        string    `json:"user_sid"`
	AckedAt        Timestamp `json:"acked_at"`
}

// Validate applies the projection's bounds (observe.md §4.5): ids of at
// most 128 bytes, a SID of at most 256, a timestamp with a year in range.
func (a *NotificationAcked) Validate() error {
	var c checker
	c.required("notification_id", a.NotificationID != "")
	c.rule("notification_id", a.NotificationID, ValidID(a.NotificationID), ruleID)
	c.required("pc_id", a.PcID != "")
	c.rule("pc_id", a.PcID, ValidID(a.PcID), ruleID)
	c.required("user_sid", a.UserSID != "")
	c.rule("user_sid", a.UserSID, ValidText(a.UserSID, MaxUserSIDBytes), "must be 1–256 bytes of UTF-8 without control characters")
	c.time("acked_at", a.AckedAt)
	if c.err != nil {
		return fmt.Errorf("notification ack: %w", c.err)
	}
	return nil
}

// Object stores of observe.md §5.
const (
	// ObjectAppPackages holds installers and user-space binaries.
	ObjectAppPackages = "app_packages"
	// MaxAppPackageBytes and MaxScriptObjectBytes cap an upload's whole
	// request body (observe.md §5.1).
	MaxAppPackageBytes   = 8 << 30
	MaxScriptObjectBytes = 4 << 20
	// MaxObjectSegmentBytes bounds a name or version segment.
	MaxObjectSegmentBytes = 128
)

// ValidObjectSegment reports whether s can be the name or the version of
// an app package or script object (observe.md §5.2): 1–128 bytes of
// printable ASCII without '/', '"' or '\', and neither "." nor "..".
func ValidObjectSegment(s string) bool {
	if s == "" || len(s) > MaxObjectSegmentBytes || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '/' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ValidScriptObjectKey reports whether s is <name>/<version> with two
// segments that pass ValidObjectSegment (observe.md §5.7).
func ValidScriptObjectKey(s string) bool {
	name, version, ok := strings.Cut(s, "/")
	return ok && ValidObjectSegment(name) && ValidObjectSegment(version)
}
