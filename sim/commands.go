package sim

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The simulated agents answer the commands the scheduler publishes, so the
// demo shows the whole loop: schedule → command → started event → result →
// execution completed.

// agentIndex is the index of a simulated PC id, or -1 for someone else's.
func (f *Fleet) agentIndex(pc string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(pc, f.cfg.Prefix))
	if err != nil || !strings.HasPrefix(pc, f.cfg.Prefix) || n < 0 || n >= f.cfg.Agents || f.PcID(n) != pc {
		return -1
	}
	return n
}

// Targets lists the simulated agents a command subject reaches, in index
// order: a group's are its members as the fleet last read them from KV
// agent_groups (see Groups).
func (f *Fleet) Targets(subject string) []int {
	var out []int
	switch {
	case subject == kanade.SubjectCommandsAll:
		for i := range f.cfg.Agents {
			out = append(out, i)
		}
	case strings.HasPrefix(subject, kanade.SubjectCommandsGroup):
		out = f.groups.in(strings.TrimPrefix(subject, kanade.SubjectCommandsGroup))
	case strings.HasPrefix(subject, kanade.SubjectCommandsPC):
		if i := f.agentIndex(strings.TrimPrefix(subject, kanade.SubjectCommandsPC)); i >= 0 {
			out = append(out, i)
		}
	}
	return out
}

// DemoJob is the job only the demo schedules run (the agents' own random
// runs would otherwise keep a per_target job permanently up to date).
var DemoJob = Job{ID: "sim-compliance-check", Version: "2", MedianMs: 2500, Sigma: 0.4, Timeout: 10 * time.Minute}

// DemoSchedules are the schedules the demo starts with: a per_target job
// every 10 minutes, a per_pc job on the canaries, and a weekday calendar
// rollout (canaries first) that shows in the upcoming firings.
func DemoSchedules() map[string]string {
	return map[string]string{
		"sim-compliance-every-10m": `{"id":"sim-compliance-every-10m","when":{"per_target":{"every":"10m"}},"job_id":"sim-compliance-check","target":{"all":true},"jitter":"20s"}`,
		"sim-ping-canaries":        `{"id":"sim-ping-canaries","when":{"per_pc":{"every":"1h"}},"job_id":"sim-ping","target":{"groups":["sim-canary"]}}`,
		"sim-patch-weekdays": `{"id":"sim-patch-weekdays","when":{"calendar":{"at":"09:00","days":["mon-fri"]}},"job_id":"sim-patch-scan","target":{"all":true},` +
			`"rollout":{"strategy":"wave","waves":[{"group":"sim-canary","delay":"0s"},{"group":"sim-fleet","delay":"10m"}]},"starting_deadline":"1h","tz":"utc"}`,
	}
}

// PutDemoSchedules creates the demo schedules that do not exist yet, so an
// operator's edit survives a restart (a deleted one comes back: the demo is
// for looking around).
func PutDemoSchedules(ctx context.Context, c *bus.Client) error {
	if err := PutManifests(ctx, c, []Job{DemoJob}); err != nil {
		return err
	}
	for id, v := range DemoSchedules() {
		if _, err := c.Create(ctx, kanade.BucketSchedules, id, []byte(v)); err != nil && !errors.Is(err, bus.ErrExists) {
			return err
		}
	}
	return nil
}

// decodeCommand reads a command payload; nil when it is not one.
func decodeCommand(data []byte) *kanade.Command {
	var c kanade.Command
	if json.Unmarshal(data, &c) != nil || c.ID == "" || c.RequestID == "" {
		return nil
	}
	return &c
}
