package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The heartbeat watchdog (fleet.md §3.5) turns heartbeat gaps into durable
// events: when an agent turns stale it publishes an ObsEvent agent_offline
// on obs.<pc_id>, dated at the last heartbeat, and when a reported agent
// beats again an agent_online, dated at the new beat; each also goes to the
// audit trail (actor backend:heartbeat-watchdog, target the pc_id), so an
// operator sees in GET /api/audit when a PC dropped out and came back.
//
// What it claims, and what not: only agents whose last heartbeat is at or
// after Config.WatchSince (the worker's start) are judged. While no worker
// runs nobody watches heartbeats, so on a restart every agent looks stale;
// reporting them would invent an outage. An agent that drops while no
// worker runs is never reported offline.
//
// Delivery: the state lives in the agents row (storage.ClaimWatch), so any
// number of workers share it. A round claims the rows needing a transition
// in one UPDATE … WHERE per kind (no two workers can both hold a row),
// publishes their events through JetStream and waits for the acks, then
// records the transitions of the agents whose events were all acknowledged.
// An agent with any event lost records nothing and is claimed again next
// round, which publishes the same events (a pair for an agent that came
// back and went again within one round) with the same event_record_id and
// Nats-Msg-Id: the stream drops a copy within its duplicate window, and the
// obs_events projection by (pc_id, source, event_record_id) after it. A
// worker that dies between claim and record leaves the rows claimed until
// watchLease passes; then another takes them over and publishes again (the
// same deduplication applies). So every transition is published at least
// once, and twice only after a lost acknowledgement or a crash.

const (
	// watchLease is how long a claim holds: far above the time one batch
	// takes to publish (watchPublishTimeout), so a live worker's claim is
	// never taken over.
	watchLease = 10 * time.Minute
	// watchPublishTimeout bounds the publishing of one batch.
	watchPublishTimeout = time.Minute
)

// watchEvent is one transition of one agent, before anything is published:
// kind, the instant it describes (at) and the start of the outage it
// belongs to (since), which keys its event_record_id.
type watchEvent struct {
	pcID      string
	kind      string
	at, since time.Time
}

// transitions is the watchdog's rule for one claimed row, given the stale
// cutoff (a heartbeat before it is stale): the events to publish, in order.
//   - Fresh after a reported outage: agent_online at the new beat.
//   - Stale and not reported for this heartbeat: agent_offline at it; when
//     an earlier outage was reported, the agent came back (this heartbeat
//     proves it) and went again within one round, so that outage is closed
//     first with agent_online at this heartbeat. Dropping the close would
//     leave two offline events in a row, read as one long outage.
func transitions(r storage.WatchRow, cutoff time.Time) []watchEvent {
	stale := r.LastHeartbeat.Before(cutoff)
	reportedNow := r.OfflineSince != nil && r.OfflineSince.Equal(r.LastHeartbeat)
	var out []watchEvent
	if r.OfflineSince != nil && !reportedNow {
		out = append(out, watchEvent{pcID: r.PCID, kind: kanade.KindAgentOnline, at: r.LastHeartbeat, since: *r.OfflineSince})
	}
	if stale && !reportedNow {
		out = append(out, watchEvent{pcID: r.PCID, kind: kanade.KindAgentOffline, at: r.LastHeartbeat, since: r.LastHeartbeat})
	}
	return out
}

// recordID is the event_record_id of e: its kind and the outage start in
// Unix milliseconds, the same on every retry.
func (e watchEvent) recordID() string {
	return e.kind + ":" + strconv.FormatInt(e.since.UnixMilli(), 10)
}

// messages are e's ObsEvent on obs.<pc_id> and its AuditEvent, each with a
// Nats-Msg-Id derived from the event_record_id.
func (e watchEvent) messages(threshold time.Duration) ([]*nats.Msg, error) {
	id := e.recordID()
	payload, err := json.Marshal(map[string]any{
		"last_heartbeat": kanade.Timestamp{Time: e.since}, "threshold_secs": int64(threshold / time.Second)})
	if err != nil {
		return nil, err
	}
	obs, err := json.Marshal(kanade.ObsEvent{PcID: e.pcID, At: kanade.Timestamp{Time: e.at}, Kind: e.kind,
		Source: kanade.WatchdogSource, EventRecordID: &id, Payload: payload})
	if err != nil {
		return nil, err
	}
	target := e.pcID
	auditPayload, err := json.Marshal(map[string]any{"last_heartbeat": kanade.Timestamp{Time: e.since},
		"threshold_secs": int64(threshold / time.Second), "event_record_id": id})
	if err != nil {
		return nil, err
	}
	ev := kanade.AuditEvent{Actor: kanade.WatchdogActor, Action: e.kind, Target: &target, Payload: auditPayload,
		OccurredAt: kanade.Timestamp{Time: e.at}}
	subject, err := ev.Subject()
	if err != nil {
		return nil, err
	}
	audit, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	msgID := func(kind string) nats.Header {
		return nats.Header{jetstream.MsgIDHeader: []string{kind + ":" + e.pcID + ":" + id}}
	}
	return []*nats.Msg{
		{Subject: kanade.SubjectObs(e.pcID), Data: obs, Header: msgID("obs")},
		{Subject: subject, Data: audit, Header: msgID("audit")},
	}, nil
}

// watch runs the watchdog's batches at now until one comes back short.
func (w *Worker) watch(ctx context.Context, c *bus.Client, now time.Time) error {
	cutoff := now.Add(-w.cfg.StaleThreshold)
	for {
		full, err := w.watchBatch(ctx, c, now, cutoff)
		if err != nil || !full {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// watchBatch claims, publishes and records one batch; full says a claim
// came back with Limit rows, so more may wait.
func (w *Worker) watchBatch(ctx context.Context, c *bus.Client, now, cutoff time.Time) (full bool, err error) {
	limit := w.cfg.HousekeepingBatch
	token := kanade.NewUUID()
	rows, err := w.cfg.DB.ClaimWatch(ctx, storage.WatchClaim{Token: token, Now: now, Lease: watchLease,
		Since: w.cfg.WatchSince, Cutoff: cutoff, Limit: limit})
	if err != nil || len(rows) == 0 {
		return false, err
	}
	var msgs []*nats.Msg
	var owners []string // the pc_id of each message
	var events []watchEvent
	lost := map[string]error{}
	for _, r := range rows {
		if !kanade.ValidPCID(r.PCID) {
			// Not from the projection, which refuses such ids: it could
			// not be a subject token. Recorded without an event.
			w.log.Warn("watchdog: skipping an agent whose pc_id cannot be a subject token", slog.String("pc_id", kanade.Clip(r.PCID)))
			continue
		}
		for _, e := range transitions(r, cutoff) {
			m, err := e.messages(w.cfg.StaleThreshold)
			if err != nil {
				lost[r.PCID] = fmt.Errorf("watchdog event of %s: %w", r.PCID, err)
				break
			}
			msgs = append(msgs, m...)
			for range m {
				owners = append(owners, r.PCID)
			}
			events = append(events, e)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, watchPublishTimeout)
	errs := c.PublishEach(pctx, msgs)
	cancel()
	for i, err := range errs {
		if err != nil && lost[owners[i]] == nil {
			lost[owners[i]] = err
		}
	}
	failed := make([]string, 0, len(lost))
	for pc := range lost {
		failed = append(failed, pc)
	}
	// Settle even when ctx ended: the claims would otherwise hold the rows
	// for the whole lease.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := w.cfg.DB.SettleWatch(sctx, token, failed); err != nil {
		return false, err
	}
	var offline, online int
	for _, e := range events {
		if lost[e.pcID] != nil {
			continue
		}
		if e.kind == kanade.KindAgentOffline {
			offline++
		} else {
			online++
		}
		w.m.housekeeping.WithLabelValues(e.kind).Inc()
		w.log.Debug("watchdog: "+e.kind, slog.String("pc_id", e.pcID), slog.Time("at", e.at), slog.Time("outage_since", e.since))
	}
	if offline+online > 0 {
		w.log.Info("watchdog: recorded agent transitions", slog.Int("agent_offline", offline), slog.Int("agent_online", online))
	}
	for _, err := range lost {
		// One error stands for all: they are usually the same.
		return false, fmt.Errorf("watchdog: the events of %d agents were not published; they are claimed again next round: %w", len(failed), err)
	}
	return len(rows) >= limit, nil
}
