package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/fanout"
)

// A per_pc firing may go to 100k PCs. It used to write one KV mark per PC
// and then publish one acknowledged message per PC: two JetStream writes
// per PC, most of the dispatch's time. Exactly once needs neither: the
// reconcile claim already makes one worker fire, and what a worker that
// dies half way must know is where it stopped, not which PC got what.
//
// So a firing is written to KV scheduler_dispatch as
//
//   - mark.<schedule>.set.<exec_id>.<i>: chunk i of the PCs (chunkSize of
//     them) with the dispatch time. These are the firing's dispatch marks
//     (scheduler.md: "the marks live in KV scheduler_dispatch") and the list
//     a resuming worker sends from.
//   - firing.<schedule>.<exec_id>: the command as published, and the cursor:
//     the chunk being sent, the EXEC sequence before it (its floor) and when
//     the owner last moved it. Every move is a compare-and-set on the key's
//     revision, so one worker owns the firing at a time.
//
// and each chunk goes out through bus.CommandChunk (core publishes, one
// acknowledgement proving the chunk stored). A worker that finds a firing
// whose cursor has not moved for resumeAfter takes it over by the same
// compare-and-set, checks the chunk it stopped in against the stream
// (bus.VerifyChunk: the messages there are the ones live subscribers saw)
// and sends the rest. The key is deleted once the audit event is out.

// chunkSize is the PCs of one mark set and one acknowledged chunk: 2000
// keeps a mark set near 30 KB (far below NATS's 1 MB default payload) and
// the cursor writes at 50 for 100k PCs.
const chunkSize = 2000

// resumeAfter is how long a firing's cursor may stand still before another
// worker (or this one, restarted) takes it over. A chunk takes tens of
// milliseconds; a connection that dropped mid-chunk has long reconnected
// or given up by then, so nothing of the old owner is still in flight.
const resumeAfter = 30 * time.Second

// firing is the value of firing.<schedule>.<exec_id>.
type firing struct {
	ScheduleID string `json:"schedule_id"`
	JobID      string `json:"job_id"`
	ExecID     string `json:"exec_id"`
	// Command is the body every message carries, byte for byte.
	Command []byte `json:"command"`
	// Sets is the number of mark sets (chunks).
	Sets int `json:"sets"`
	// Audit is the payload of the exec audit event sent at the end.
	Audit json.RawMessage `json:"audit"`

	// Chunk is the chunk being sent (Sets: all sent, the audit pending);
	// Floor the EXEC sequence before it; Moved when its owner last wrote.
	Chunk int              `json:"chunk"`
	Floor uint64           `json:"floor"`
	Moved kanade.Timestamp `json:"moved"`
}

// markSet is the value of mark.<schedule>.set.<exec_id>.<i>.
type markSet struct {
	At  kanade.Timestamp `json:"at"`
	PCs []string         `json:"pcs"`
}

func firingKey(scheduleID, execID string) string {
	return "firing." + escapeKey(scheduleID) + "." + escapeKey(execID)
}

func setKey(scheduleID, execID string, i int) string {
	return MarkPrefix(scheduleID) + "set." + escapeKey(execID) + "." + strconv.Itoa(i)
}

// chunkPublisher is bus.Client.CommandChunk; tests put a worker that dies
// half way in its place.
type chunkPublisher func(ctx context.Context, data []byte, subjects []string, msgID func(string) string, floor uint64) (uint64, error)

// errTakenOver: another worker moved the cursor; this one stops.
var errTakenOver = errors.New("firing taken over by another worker")

// firePerPC performs a per_pc firing to pcs (sorted, at least one) in
// resumable chunks.
func (s *Scheduler) firePerPC(ctx context.Context, scID string, e fanout.Exec, pcs []string, now time.Time) error {
	b := s.cfg.Bus
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	e.Subjects = nil // Begin builds the command only; the subjects are the chunks'
	begun, err := s.fan.Begin(ctx, e)
	if err != nil {
		return err
	}
	begun.Subjects = subjectsOf(pcs)
	audit, err := json.Marshal(fanout.AuditPayload(e, begun.Outcome))
	if err != nil {
		return errors.Join(err, s.fan.Abandon(ctx, begun.ExecID))
	}
	f := &firing{ScheduleID: scID, JobID: e.Manifest.ID, ExecID: begun.ExecID, Command: begun.Data,
		Sets: (len(pcs) + s.chunk - 1) / s.chunk, Audit: audit, Moved: kanade.Timestamp{Time: now}}
	keys := make([]string, 0, f.Sets)
	values := make([][]byte, 0, f.Sets)
	for i := 0; i < f.Sets; i++ {
		v, err := json.Marshal(markSet{At: kanade.Timestamp{Time: now}, PCs: pcs[i*s.chunk : min(len(pcs), (i+1)*s.chunk)]})
		if err != nil {
			return errors.Join(err, s.fan.Abandon(ctx, begun.ExecID))
		}
		keys, values = append(keys, setKey(scID, begun.ExecID, i)), append(values, v)
	}
	if err := b.PutEach(ctx, kanade.BucketDispatch, keys, values); err != nil {
		return errors.Join(fmt.Errorf("mark sets: %w", err), s.fan.Abandon(ctx, begun.ExecID))
	}
	if f.Floor, err = b.ExecSeq(ctx); err != nil {
		return errors.Join(err, s.fan.Abandon(ctx, begun.ExecID))
	}
	v, err := json.Marshal(f)
	if err != nil {
		return errors.Join(err, s.fan.Abandon(ctx, begun.ExecID))
	}
	rev, err := b.Create(ctx, kanade.BucketDispatch, firingKey(scID, f.ExecID), v)
	if err != nil {
		return errors.Join(fmt.Errorf("record firing: %w", err), s.fan.Abandon(ctx, begun.ExecID))
	}
	return s.send(ctx, f, rev, pcs, false, now)
}

// send publishes the firing's chunks from f.Chunk on, moving the cursor
// after each, then audits and deletes the firing key. pcs is the whole PC
// list when the caller has it (nil: each chunk is read from its mark set).
// resumed says f.Chunk may be partly out already and is checked against
// the stream first. now is the tick's instant; the cursor's time moves on
// from it by the clock's progress, so a long firing is not taken for a
// dead one.
func (s *Scheduler) send(ctx context.Context, f *firing, rev uint64, pcs []string, resumed bool, now time.Time) error {
	b := s.cfg.Bus
	start := s.cfg.Clock()
	key := firingKey(f.ScheduleID, f.ExecID)
	// No Nats-Msg-Id (wire.md lets it go; agents ignore it): nothing here
	// publishes a message twice on purpose (VerifyChunk looks first), and
	// the stream's duplicate tracking of 100k ids is a large part of what
	// storing them costs (bench/scale prints both).
	var msgID func(string) string
	for f.Chunk < f.Sets {
		var chunk []string
		if pcs != nil {
			chunk = pcs[f.Chunk*s.chunk : min(len(pcs), (f.Chunk+1)*s.chunk)]
		} else {
			e, err := b.Get(ctx, kanade.BucketDispatch, setKey(f.ScheduleID, f.ExecID, f.Chunk))
			if err != nil {
				return fmt.Errorf("firing %s chunk %d: %w", f.ExecID, f.Chunk, err)
			}
			var set markSet
			if err := json.Unmarshal(e.Value, &set); err != nil {
				return fmt.Errorf("firing %s chunk %d: %w", f.ExecID, f.Chunk, err)
			}
			chunk = set.PCs
		}
		subjects := subjectsOf(chunk)
		var err error
		if resumed {
			f.Floor, err = b.VerifyChunk(ctx, f.Command, subjects, msgID, f.Floor)
			resumed = false
		} else {
			f.Floor, err = s.publish(ctx, f.Command, subjects, msgID, f.Floor)
		}
		if err != nil {
			return fmt.Errorf("firing %s chunk %d of %d: %w", f.ExecID, f.Chunk+1, f.Sets, err)
		}
		f.Chunk++
		f.Moved = kanade.Timestamp{Time: now.Add(s.cfg.Clock().Sub(start))}
		if rev, err = s.move(ctx, key, f, rev); err != nil {
			return err
		}
	}
	var payload map[string]any
	if err := json.Unmarshal(f.Audit, &payload); err != nil {
		return fmt.Errorf("firing %s audit: %w", f.ExecID, err)
	}
	if err := s.audit(ctx, "exec", f.JobID, payload, now.Add(s.cfg.Clock().Sub(start))); err != nil {
		s.log.Warn("scheduler: audit event lost", slog.String("exec_id", f.ExecID), slog.Any("err", err))
	}
	if err := b.Delete(ctx, kanade.BucketDispatch, key, rev); err != nil && !errors.Is(err, bus.ErrChanged) {
		return err
	}
	return nil
}

// move writes f at revision rev (compare-and-set) and returns the new one.
func (s *Scheduler) move(ctx context.Context, key string, f *firing, rev uint64) (uint64, error) {
	v, err := json.Marshal(f)
	if err != nil {
		return 0, err
	}
	next, err := s.cfg.Bus.Update(ctx, kanade.BucketDispatch, key, v, rev)
	if errors.Is(err, bus.ErrChanged) {
		return 0, fmt.Errorf("firing %s: %w", f.ExecID, errTakenOver)
	}
	return next, err
}

// resume takes over every firing whose cursor stood still for resumeAfter
// (its worker died, or lost NATS mid-chunk) and sends the rest.
func (s *Scheduler) resume(ctx context.Context, now time.Time) error {
	if err := s.ensureBucket(ctx); err != nil {
		return err
	}
	entries, err := s.cfg.Bus.Matching(ctx, kanade.BucketDispatch, "firing.>")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		var f firing
		if err := json.Unmarshal(e.Value, &f); err != nil {
			s.log.Warn("scheduler: skipping a firing record that does not parse", slog.String("key", kanade.Clip(e.Key)), slog.Any("err", err))
			continue
		}
		if now.Sub(f.Moved.Time) < resumeAfter {
			continue
		}
		f.Moved = kanade.Timestamp{Time: now}
		rev, err := s.move(ctx, e.Key, &f, e.Revision)
		if errors.Is(err, errTakenOver) {
			continue // another worker took it first
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.m.resumed.Inc()
		s.log.Warn("scheduler: resuming a firing its worker left unfinished", slog.String("schedule", kanade.Clip(f.ScheduleID)),
			slog.String("exec_id", f.ExecID), slog.Int("chunk", f.Chunk), slog.Int("chunks", f.Sets))
		if err := s.send(ctx, &f, rev, nil, true, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// subjectsOf is commands.pc.<pc> for each pc.
func subjectsOf(pcs []string) []string {
	out := make([]string, len(pcs))
	for i, pc := range pcs {
		out[i] = kanade.SubjectCommandsPC + pc
	}
	return out
}

// setMarks adds the PCs of a mark set entry to out, at its time.
func setMarks(value []byte, out map[string]time.Time) {
	var set markSet
	if json.Unmarshal(value, &set) != nil {
		return
	}
	for _, pc := range set.PCs {
		if t, ok := out[pc]; !ok || set.At.After(t) {
			out[pc] = set.At.Time
		}
	}
}

// isSetKey says key (after the schedule's mark prefix) is a mark set.
func isSetKey(rest string) bool { return strings.HasPrefix(rest, "set.") }
