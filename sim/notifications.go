package sim

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// End-user notifications (observe.md §4): the agents receive what the
// backend publishes on notifications.all, .group.<g> and .pc.<pc_id>, and
// a simulated user confirms most of those that ask for it, a while later:
// the agent then publishes NotificationAcked on
// events.notifications.acked.<pc_id>.<user_sid>.<id>.

// SubjectNotifications is what the fleet subscribes to.
const SubjectNotifications = "notifications.>"

// ackRate is the share of users who confirm a notification that asks.
const ackRate = 0.7

// maxAckDelay bounds how long a simulated user takes to confirm.
const maxAckDelay = 3 * time.Minute

// maxNotified bounds the (notification, agent) pairs the fleet
// remembers, so a notification reaching an agent on two subjects (all
// and its group) is confirmed once.
const maxNotified = 100_000

// pendingAck is a confirmation due at at.
type pendingAck struct {
	at  time.Time
	ack kanade.NotificationAcked
}

// notified is the fleet's notification state.
type notified struct {
	seen    map[string]bool
	pending []pendingAck
}

// NotificationTargets lists the simulated agents a notification subject
// reaches, in index order.
func (f *Fleet) NotificationTargets(subject string) []int {
	switch {
	case subject == kanade.NotificationSubjectAll:
		return f.Targets(kanade.SubjectCommandsAll)
	case strings.HasPrefix(subject, kanade.NotificationSubjectGroup("")):
		return f.Targets(kanade.SubjectCommandsGroup + strings.TrimPrefix(subject, kanade.NotificationSubjectGroup("")))
	case strings.HasPrefix(subject, kanade.NotificationSubjectPC("")):
		return f.Targets(kanade.SubjectCommandsPC + strings.TrimPrefix(subject, kanade.NotificationSubjectPC("")))
	}
	return nil
}

// UserSID is the simulated user of agent i.
func UserSID(i int) string { return fmt.Sprintf("S-1-5-21-%d-1001", 1000+i) }

// notify takes a notification published on subject at now: each agent it
// reaches shows it once, and when it asks for confirmation, its user
// confirms it with a chance of ackRate, within maxAckDelay.
func (f *Fleet) notify(n *notified, subject string, data []byte, now time.Time) {
	var note kanade.Notification
	if json.Unmarshal(data, &note) != nil || !kanade.ValidNotificationID(note.ID) || !note.RequireAck {
		return
	}
	if n.seen == nil || len(n.seen) > maxNotified {
		n.seen = map[string]bool{}
	}
	for _, i := range f.NotificationTargets(subject) {
		key := note.ID + "\x00" + f.PcID(i)
		if n.seen[key] {
			continue
		}
		n.seen[key] = true
		if f.rng.Float64() >= ackRate {
			continue
		}
		at := now.Add(time.Duration(f.rng.Int64N(int64(maxAckDelay))))
		n.pending = append(n.pending, pendingAck{at: at, ack: kanade.NotificationAcked{NotificationID: note.ID,
			PcID: f.PcID(i), UserSID: UserSID(i), AckedAt: kanade.Timestamp{Time: at.UTC()}}})
	}
}

// dueAcks returns the messages of the confirmations due by now.
func (n *notified) dueAcks(now time.Time) []Message {
	var out []Message
	keep := n.pending[:0]
	for _, p := range n.pending {
		if p.at.After(now) {
			keep = append(keep, p)
			continue
		}
		out = append(out, AckMessage(p.ack))
	}
	n.pending = keep
	return out
}

// AckMessage wraps a confirmation for JetStream (stream EVENTS).
func AckMessage(a kanade.NotificationAcked) Message {
	return Message{Subject: "events.notifications.acked." + a.PcID + "." + a.UserSID + "." + a.NotificationID,
		Data: mustJSON(a), JetStream: true}
}
