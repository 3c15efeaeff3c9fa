package projection

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// pruneFleet writes agents last seen 1, 5, 9, 11, 20 and 40 days before
// now, and two seen exactly 10 days before.
func (e *env) pruneFleet(now time.Time) {
	e.t.Helper()
	for _, days := range []int{1, 5, 9, 11, 20, 40} {
		e.beat(fmt.Sprintf("PC-%02dd", days), now.Add(-time.Duration(days)*24*time.Hour))
	}
	e.beat("PC-10d-a", now.Add(-10*24*time.Hour))
	e.beat("PC-10d-b", now.Add(-10*24*time.Hour))
}

// settings writes the server_settings document, creating the bucket.
func (e *env) settings(doc string) {
	e.t.Helper()
	ctx := context.Background()
	kv, err := e.srv.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kanade.BucketServerSettings})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, kanade.KeyServerSettings, doc); err != nil {
		e.t.Fatal(err)
	}
}

func TestPruneAgents(t *testing.T) {
	now := time.Date(2026, 9, 30, 12, 0, 0, 0, time.UTC)
	all := []string{"PC-01d", "PC-05d", "PC-09d", "PC-10d-a", "PC-10d-b", "PC-11d", "PC-20d", "PC-40d"}
	upTo10 := []string{"PC-01d", "PC-05d", "PC-09d", "PC-10d-a", "PC-10d-b"}
	for _, c := range []struct {
		name     string
		flag     int
		settings string // "" leaves the bucket out
		want     []string
		err      string
	}{
		{name: "off by default", want: all},
		{name: "the flag's days, without a server_settings bucket", flag: 10, want: upTo10},
		{name: "the flag's days, without a document", flag: 10, settings: "-", want: upTo10},
		{name: "the flag's days, when the document does not set the field", flag: 10, settings: `{"agent_prune_days":null,"other":1}`, want: upTo10},
		{name: "the document's days win", flag: 30, settings: `{"agent_prune_days":10}`, want: upTo10},
		{name: "the document's 0 turns it off", flag: 10, settings: `{"agent_prune_days":0}`, want: all},
		{name: "the document turns it on", settings: `{"agent_prune_days":10}`, want: upTo10},
		{name: "a huge window is clamped and prunes nothing here", settings: `{"agent_prune_days":99999999}`, want: all},
		{name: "an undecodable document skips the prune", flag: 10, settings: `{"agent_prune_days":"ten"}`, want: all, err: "agent_prune_days"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.pruneFleet(now)
			switch c.settings {
			case "":
			case "-":
				if _, err := e.srv.JS.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: kanade.BucketServerSettings}); err != nil {
					t.Fatal(err)
				}
			default:
				e.settings(c.settings)
			}
			// Small batches: the prune loops until one comes back short.
			w := e.watcher(&movingClock{t: now}, func(cfg *Config) { cfg.AgentPruneDays = c.flag; cfg.HousekeepingBatch = 1 })
			err := w.Housekeep(context.Background())
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("Housekeep: %v, want an error with %q", err, c.err)
			}
			if diff := cmp.Diff(c.want, e.dump(`SELECT pc_id FROM agents ORDER BY pc_id`)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if pruned := value(w.m.housekeeping.WithLabelValues("prune_agents")); pruned != float64(len(all)-len(c.want)) {
				t.Errorf("prune_agents counted %v", pruned)
			}
		})
	}
}

// The prune's window moves with the injected clock, and a pruned agent
// that beats again is back.
func TestPruneAgentsFollowsTheClock(t *testing.T) {
	now := time.Date(2026, 9, 30, 12, 0, 0, 0, time.UTC)
	e := newEnv(t)
	e.pruneFleet(now)
	clock := &movingClock{t: now}
	w := e.watcher(clock, func(cfg *Config) { cfg.AgentPruneDays = 30 })
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{0, 7}, {9 * 24 * time.Hour, 7}, {10*24*time.Hour + time.Nanosecond, 6}, {25 * 24 * time.Hour, 2}} {
		clock.set(now.Add(c.after))
		if err := w.Housekeep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := len(e.dump(`SELECT pc_id FROM agents`)); got != c.want {
			t.Errorf("after %v: %d agents, want %d", c.after, got, c.want)
		}
	}
	e.beat("PC-40d", now.Add(25*24*time.Hour))
	if got := len(e.dump(`SELECT pc_id FROM agents`)); got != 3 {
		t.Errorf("the pruned agent did not come back: %d agents", got)
	}
}

func TestAgentPruneDaysConfiguration(t *testing.T) {
	e := newEnv(t)
	if _, err := New(Config{DB: e.db, AgentPruneDays: -1}); err == nil {
		t.Error("a negative AgentPruneDays was accepted")
	}
	w, err := New(Config{DB: e.db, AgentPruneDays: 1 << 40})
	if err != nil || w.cfg.AgentPruneDays != kanade.MaxAgentPruneDays {
		t.Errorf("AgentPruneDays 2^40: %v, %v; want clamped to %d", w.cfg.AgentPruneDays, err, kanade.MaxAgentPruneDays)
	}
}
