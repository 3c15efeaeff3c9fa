package projection

import (
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
)

// progress is what one stream's loop knows about how far it got: the
// offset it committed, when that last moved, the batches it holds that are
// not committed yet, and its last failure. The fetcher and the applier of
// the loop both write it; readiness and metrics read snapshots.
type progress struct {
	name string

	mu           sync.Mutex
	applied      uint64
	lastProgress time.Time
	// flights are the batches received and not yet committed, oldest first.
	flights []flight
	// stuckSince is the stream time of the oldest message a failed batch
	// held: after a failure nothing is in flight, yet those messages still
	// wait. Cleared by the next commit.
	stuckSince time.Time
	// serverPending is how many messages the server had left after the
	// last one received (its NumPending metadata).
	serverPending uint64
	lastErr       string
	lastErrAt     time.Time
}

// flight is one batch on its way to the database.
type flight struct {
	maxSeq uint64
	first  time.Time // stream time of its first message
	n      int
}

// resumed records the offset a loop starts from.
func (p *progress) resumed(seq uint64, movedAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied = max(p.applied, seq)
	if movedAt.After(p.lastProgress) {
		p.lastProgress = movedAt
	}
	p.flights = nil
}

// received records a message added to the batch being assembled; begin
// says it is that batch's first message.
func (p *progress) received(seq uint64, at time.Time, numPending uint64, begin bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if begin || len(p.flights) == 0 {
		p.flights = append(p.flights, flight{first: at})
	}
	f := &p.flights[len(p.flights)-1]
	f.maxSeq = max(f.maxSeq, seq)
	f.n++
	p.serverPending = numPending
}

// committed records that everything up to seq is applied (by this worker
// or, when the batch was already behind the offset, by another one).
func (p *progress) committed(seq uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq > p.applied {
		p.applied = seq
	}
	p.lastProgress = now
	p.stuckSince = time.Time{}
	i := 0
	for i < len(p.flights) && p.flights[i].maxSeq <= seq {
		i++
	}
	p.flights = p.flights[i:]
}

// idle records that the server has nothing more for the loop: when the
// loop holds nothing either, nothing waits.
func (p *progress) idle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serverPending = 0
	if len(p.flights) == 0 {
		p.stuckSince = time.Time{}
	}
}

// failed records a failure of the loop; what it held stays waiting.
func (p *progress) failed(err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.flights) > 0 && (p.stuckSince.IsZero() || p.flights[0].first.Before(p.stuckSince)) {
		p.stuckSince = p.flights[0].first
	}
	p.flights = nil
	p.lastErr = err.Error()
	p.lastErrAt = now
}

// snapshot is the progress in the shared form.
func (p *progress) snapshot() kanade.ProjectionProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := kanade.ProjectionProgress{Name: p.name, AppliedSeq: p.applied, LastProgress: p.lastProgress,
		OldestUnapplied: p.stuckSince, LastError: p.lastErr, LastErrorAt: p.lastErrAt}
	if len(p.flights) > 0 && (out.OldestUnapplied.IsZero() || p.flights[0].first.Before(out.OldestUnapplied)) {
		out.OldestUnapplied = p.flights[0].first
	}
	return out
}

// pending is how many messages wait for this loop: those it holds and those
// the server still has for it.
func (p *progress) pending() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.serverPending
	for _, f := range p.flights {
		n += uint64(f.n)
	}
	return n
}
