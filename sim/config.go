package sim

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The layered configuration (fleet.md §2) and the self-update it drives
// (§6.1): a real agent watches KV agent_config, merges the scopes that
// concern it (global, its groups', its own) with kanade.ConfigLayers, and,
// when the effective target_version differs from the version it runs,
// waits a random time within target_version_jitter and restarts on that
// version. The fleet watches the bucket once for all its agents, resolves
// again those a change concerns (every agent for global, a group's members,
// one PC), and plays the wait on its Clock: each agent's is drawn from the
// seed, its pc_id and the version, so a seed gives the same rollout every
// run. It also follows heartbeat_interval; the other fields change nothing
// a simulated agent shows.

// configs is what the agents make of KV agent_config.
type configs struct {
	layers kanade.ConfigLayers
	// beat is each agent's heartbeat interval from KV, 0 when no scope of
	// its sets one (it beats every Config.HeartbeatInterval then).
	beat []time.Duration
	// update is each agent's self-update in waiting, if any.
	update  []selfUpdate
	waiting int
}

// selfUpdate is an agent about to restart on version to at at.
type selfUpdate struct {
	to string
	at time.Time
}

func newConfigs(agents int) configs {
	return configs{layers: kanade.ConfigLayers{Groups: map[string]kanade.ConfigScope{}, PCs: map[string]kanade.ConfigScope{}},
		beat: make([]time.Duration, agents), update: make([]selfUpdate, agents)}
}

// set records the agent_config entry e in the layers: the kind and name of
// the scope, ok false for a key that is no scope (the legacy
// target_version). A value that does not decode counts as no scope.
func (c *configs) set(e bus.Entry) (kind, name string, ok bool) {
	kind, name, ok = kanade.ParseScopeKey(e.Key)
	if !ok {
		return "", "", false
	}
	s, err := kanade.DecodeConfigScope(e.Value)
	gone := e.Deleted || err != nil
	switch kind {
	case kanade.ScopeGlobal:
		c.layers.Global = nil
		if !gone {
			c.layers.Global = &s
		}
	case kanade.ScopeGroup:
		delete(c.layers.Groups, name)
		if !gone {
			c.layers.Groups[name] = s
		}
	default:
		delete(c.layers.PCs, name)
		if !gone {
			c.layers.PCs[name] = s
		}
	}
	return kind, name, true
}

// beatSet says whether a scope that concerns pc, in groups gs, sets
// heartbeat_interval: the fleet's own interval stands for the built-in
// default otherwise.
func (c *configs) beatSet(pc string, gs []string) bool {
	if g := c.layers.Global; g != nil && g.HeartbeatInterval != nil {
		return true
	}
	for _, g := range gs {
		if s, ok := c.layers.Groups[g]; ok && s.HeartbeatInterval != nil {
			return true
		}
	}
	s, ok := c.layers.PCs[pc]
	return ok && s.HeartbeatInterval != nil
}

// updateDelay is how long agent i waits before it restarts on version,
// target_version_jitter being jitter: in [0, jitter], drawn from the seed,
// the pc_id and the version alone, so it does not depend on what else the
// fleet did.
func (f *Fleet) updateDelay(i int, version string, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(f.PcID(i)))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(version))
	_, _ = h.Write(binary.BigEndian.AppendUint64(nil, f.cfg.Seed))
	x := h.Sum64()
	// splitmix64's finaliser, so nearby pc_ids land far apart
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return time.Duration(x % uint64(jitter+1))
}

// applyConfig takes one change of KV agent_config: the agents it concerns
// resolve their configuration again.
func (a *agents) applyConfig(e bus.Entry, now time.Time) {
	kind, name, ok := a.cfgs.set(e)
	if !ok {
		return
	}
	switch kind {
	case kanade.ScopeGlobal:
		for i := range a.f.cfg.Agents {
			a.resolve(i, now)
		}
	case kanade.ScopeGroup:
		for _, i := range a.f.groups.in(name) {
			a.resolve(i, now)
		}
	default:
		if i := a.f.agentIndex(name); i >= 0 {
			a.resolve(i, now)
		}
	}
}

// loadConfig takes the whole of KV agent_config: every agent resolves its
// configuration.
func (a *agents) loadConfig(entries []bus.Entry, now time.Time) {
	c := newConfigs(a.f.cfg.Agents)
	// What the agents do now goes on unless the new values change it.
	c.beat, c.update, c.waiting = a.cfgs.beat, a.cfgs.update, a.cfgs.waiting
	for _, e := range entries {
		c.set(e)
	}
	a.cfgs = c
	for i := range a.f.cfg.Agents {
		a.resolve(i, now)
	}
}

// resolve makes agent i act on its effective configuration at now: its
// heartbeat interval, and a self-update when the target version is not the
// version it runs (scheduled once per target: resolving again does not
// delay it), cancelled when the target goes or becomes its version again.
func (a *agents) resolve(i int, now time.Time) {
	pc, gs := a.f.PcID(i), a.f.groups.of[i]
	eff := a.cfgs.layers.Resolve(pc, gs, true).Effective
	beat := time.Duration(0)
	if d, err := kanade.ParseDuration(eff.HeartbeatInterval); err == nil && d > 0 && a.cfgs.beatSet(pc, gs) {
		beat = d
	}
	if beat != a.cfgs.beat[i] {
		a.cfgs.beat[i] = beat
		a.log.add(i, logLine{at: now, level: "INFO", target: "kanade_agent::heartbeat", msg: "heartbeat interval changed",
			fields: []string{"interval", a.beatInterval(i).String()}})
	}
	u := &a.cfgs.update[i]
	switch target := eff.TargetVersion; {
	case target == nil || *target == a.f.version(i):
		if u.to != "" {
			*u = selfUpdate{}
			a.cfgs.waiting--
			a.log.add(i, logLine{at: now, level: "INFO", target: "kanade_agent::self_update", msg: "self-update cancelled",
				fields: []string{"version", a.f.version(i)}})
		}
	case *target != u.to:
		jitter, err := kanade.ParseDuration(eff.TargetVersionJitter)
		if err != nil { // the agent falls back to the default on a value it cannot read
			jitter, _ = kanade.ParseDuration(kanade.DefaultEffectiveConfig().TargetVersionJitter)
		}
		if u.to == "" {
			a.cfgs.waiting++
		}
		delay := a.f.updateDelay(i, *target, jitter)
		*u = selfUpdate{to: *target, at: now.Add(delay)}
		a.log.add(i, logLine{at: now, level: "INFO", target: "kanade_agent::self_update", msg: "self-update scheduled",
			fields: []string{"version", a.f.version(i), "target_version", *target, "in", delay.Round(time.Millisecond).String()}})
	}
}

// selfUpdates restarts the agents whose wait has ended by now on their
// target version: each beats at once, as an agent does when it starts.
func (a *agents) selfUpdates(now time.Time) []Message {
	if a.cfgs.waiting == 0 {
		return nil
	}
	var out []Message
	for i := range a.cfgs.update {
		u := a.cfgs.update[i]
		if u.to == "" || now.Before(u.at) {
			continue
		}
		a.cfgs.update[i] = selfUpdate{}
		a.cfgs.waiting--
		a.log.add(i, logLine{at: u.at, level: "INFO", target: "kanade_agent::self_update", msg: "self-update: restarting",
			fields: []string{"from", a.f.version(i), "to", u.to}})
		a.f.setVersion(i, u.to)
		a.log.add(i, logLine{at: u.at, level: "INFO", target: "kanade_agent", msg: "kanade-agent starting",
			fields: []string{"version", u.to, "pc_id", a.f.PcID(i)}})
		out = append(out, HeartbeatMessage(a.f.Heartbeat(i, now)))
	}
	return out
}

// beatInterval is agent i's heartbeat interval.
func (a *agents) beatInterval(i int) time.Duration {
	if d := a.cfgs.beat[i]; d > 0 {
		return d
	}
	return a.f.cfg.HeartbeatInterval
}
