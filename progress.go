package kanade

import "time"

// Projection names one stream the projector reads into SQL. The list lives
// here, beside the resource list, because three parts must agree on it: the
// projector that reads the streams, the database that keeps each one's
// offset under Name, and the fleet rollup that reports how far behind each
// one is.
type Projection struct {
	// Name keys the offset in the database and labels the metrics; it never
	// changes.
	Name string
	// Stream and Filter select the messages.
	Stream, Filter string
}

// Names of the projections.
const (
	ProjectionResults = "kanade-projector-results"
	ProjectionStarted = "kanade-projector-started"
	ProjectionAudit   = "kanade-projector-audit"
	// ProjectionNotificationAcks reads users' confirmations of
	// notifications (observe.md §4.5).
	ProjectionNotificationAcks = "kanade-projector-notification-acks"
	// ProjectionObs projects OBS_EVENTS into obs_events (observe.md §2.3).
	ProjectionObs = "kanade-projector-obs"
)

// Projections returns the streams the projector reads, in a fixed order.
func Projections() []Projection {
	return []Projection{
		{Name: ProjectionResults, Stream: StreamResults, Filter: SubjectResults},
		{Name: ProjectionStarted, Stream: StreamEvents, Filter: SubjectEventsStarted},
		{Name: ProjectionAudit, Stream: StreamAudit, Filter: SubjectAudit},
		{Name: ProjectionNotificationAcks, Stream: StreamEvents, Filter: SubjectNotificationsAcked},
		{Name: ProjectionObs, Stream: StreamObsEvents, Filter: SubjectObsAll},
	}
}

// DefaultStallAfter is how long a projection may make no progress while
// messages wait before it counts as stalled. It is well above a batch's
// commit time under load and above the clock skew NTP leaves between hosts.
const DefaultStallAfter = 2 * time.Minute

// DefaultStaleThreshold is how recent an agent's last heartbeat must be for
// it to count as alive (active in the fleet rollup, online in the roster, a
// target of the scheduler's all and groups). Agents beat every 30 s, so it
// forgives three lost beats and some clock skew. Every part that judges
// liveness defaults to it, so they never disagree about who is alive.
const DefaultStaleThreshold = 2 * time.Minute

// DefaultStaleDegradedRatio is the share of stale agents at which the fleet
// counts as degraded: 1.0, only when every known agent is stale (a total
// blackout, which points at NATS or the network rather than at PCs).
const DefaultStaleDegradedRatio = 1.0

// ProjectionProgress is how far one projection has got. The worker knows it
// from its own loop; the stateless API rebuilds it from the database (the
// offset and when it last moved) and JetStream (the oldest message past the
// offset), so both judge a stall by the same rule.
type ProjectionProgress struct {
	Name string
	// AppliedSeq is the stream sequence up to which every message's effect
	// is committed.
	AppliedSeq uint64
	// LastProgress is when AppliedSeq last moved; zero if it never did.
	LastProgress time.Time
	// OldestUnapplied is the stream time of the oldest message past
	// AppliedSeq; zero when none waits.
	OldestUnapplied time.Time
	// LastError and LastErrorAt are the most recent failure to apply, kept
	// after recovery so an operator can see what happened; empty if none.
	LastError   string
	LastErrorAt time.Time
}

// Stalled reports whether the projection has made no progress for after
// while a message has been waiting at least that long. Both conditions are
// needed: a quiet stream whose offset has not moved for hours is idle, not
// stuck, and a backlog that is draining moves its offset every batch however
// old its oldest message is.
func (p ProjectionProgress) Stalled(now time.Time, after time.Duration) bool {
	if p.OldestUnapplied.IsZero() {
		return false
	}
	return now.Sub(p.OldestUnapplied) >= after && now.Sub(p.LastProgress) >= after
}

// Backlog is what a stream holds past a projection's offset, as JetStream
// answers it: the fleet rollup's half of a projection's progress (the
// database holds the other half).
type Backlog struct {
	Name string
	// LastSeq is the stream's last sequence.
	LastSeq uint64
	// NextSeq and NextTime are the first message for the projection past
	// its offset; zero when none waits.
	NextSeq  uint64
	NextTime time.Time
	// Err says why the stream could not be asked.
	Err error
}
