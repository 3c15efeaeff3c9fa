package sim

import (
	"context"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// How the simulated agents learn their groups (fleet.md §1.8): a real agent
// reads and watches its own key of KV agent_groups and holds a subscription
// on commands.group.<g> for each group there. The fleet watches the whole
// bucket once, keeps every agent's groups and every group's members in
// memory, and hands a group command to the members KV lists at the moment
// it arrives: the same agents, with one watch and one subscription (on
// commands.>) whatever the fleet size.

// memberships are the groups of the simulated agents: each agent's, and
// each group's members as a bitset over agent indexes, so a group command
// finds its members in one pass over a bitset, and a change moves one
// agent in the time of its groups.
type memberships struct {
	of      [][]string // by agent: sorted, unique, never modified in place
	members map[string]*members
}

type members struct {
	bits []uint64 // a bit per agent
	n    int
}

func newMemberships(agents int) *memberships {
	return &memberships{of: make([][]string, max(agents, 0)), members: map[string]*members{}}
}

// set makes gs, sorted and unique, agent i's groups; false when they were
// these already.
func (m *memberships) set(i int, gs []string) bool {
	if slices.Equal(m.of[i], gs) {
		return false
	}
	for _, g := range m.of[i] {
		s := m.members[g]
		s.bits[i/64] &^= 1 << (i % 64)
		if s.n--; s.n == 0 {
			delete(m.members, g)
		}
	}
	for _, g := range gs {
		s := m.members[g]
		if s == nil {
			s = &members{bits: make([]uint64, (len(m.of)+63)/64)}
			m.members[g] = s
		}
		s.bits[i/64] |= 1 << (i % 64)
		s.n++
	}
	m.of[i] = gs
	return true
}

// in lists the members of group g in index order.
func (m *memberships) in(g string) []int {
	s := m.members[g]
	if s == nil {
		return nil
	}
	out := make([]int, 0, s.n)
	for w, word := range s.bits {
		for word != 0 {
			out = append(out, w*64+bits.TrailingZeros64(word))
			word &= word - 1
		}
	}
	return out
}

// Group names a simulated agent's group as the fleet seeds KV agent_groups
// (see PutGroups): every tenth agent is a canary.
func (f *Fleet) Group(i int) string {
	if i%10 == 0 {
		return "sim-canary"
	}
	return "sim-fleet"
}

// Groups are agent i's groups as the fleet last read them from KV
// agent_groups; before it has, the Group rule's.
func (f *Fleet) Groups(i int) []string { return slices.Clone(f.groups.of[i]) }

// seedGroups gives every agent the Group rule's group, the memberships a
// fleet has before it reads KV.
func (f *Fleet) seedGroups() {
	f.groups = newMemberships(f.cfg.Agents)
	canary, fleet := []string{f.Group(0)}, []string{f.Group(1)}
	for i := range f.cfg.Agents {
		if f.Group(i) == canary[0] {
			f.groups.set(i, canary)
		} else {
			f.groups.set(i, fleet)
		}
	}
}

// readGroups is agent i's groups from its agent_groups entry e; ok is false
// for a value that does not decode, which changes nothing (a real agent
// keeps its subscriptions when a read fails).
func readGroups(e bus.Entry) (gs []string, ok bool) {
	if e.Deleted {
		return []string{}, true
	}
	gs, err := kanade.DecodeAgentGroups(e.Value)
	return gs, err == nil
}

// applyGroups takes one change of KV agent_groups: the agent whose key it is,
// -1 for a key of none of the fleet's, and whether its groups changed.
func (f *Fleet) applyGroups(e bus.Entry) (int, bool) {
	i := f.agentIndex(e.Key)
	if i < 0 {
		return -1, false
	}
	gs, ok := readGroups(e)
	return i, ok && f.groups.set(i, gs)
}

// loadGroups makes entries, the whole of KV agent_groups, the agents'
// memberships: an agent without a key has no group. It returns the agents
// whose groups changed.
func (f *Fleet) loadGroups(entries []bus.Entry) []int {
	next := slices.Clone(f.groups.of)
	found := make([]bool, f.cfg.Agents)
	for _, e := range entries {
		i := f.agentIndex(e.Key)
		if i < 0 {
			continue
		}
		found[i] = true
		if gs, ok := readGroups(e); ok {
			next[i] = gs
		}
	}
	var changed []int
	for i, gs := range next {
		if !found[i] {
			gs = []string{}
		}
		if f.groups.set(i, gs) {
			changed = append(changed, i)
		}
	}
	return changed
}

// PutGroups seeds KV agent_groups: every simulated agent without a key gets
// the Group rule's group, so group targets and rollout waves reach them.
// An agent that has a key keeps it, so an operator's edit survives a
// restart of the demo (a deleted key comes back, as a deleted demo schedule
// does). One read of the bucket and a pipelined write per group, however
// large the fleet.
func PutGroups(ctx context.Context, c *bus.Client, f *Fleet) error {
	entries, err := c.Entries(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return fmt.Errorf("sim: seed groups: %w", err)
	}
	has := map[string]bool{}
	for _, e := range entries {
		has[e.Key] = true
	}
	missing := map[string][]string{} // group → pc_ids
	for i := range f.cfg.Agents {
		if pc := f.PcID(i); !has[pc] {
			missing[f.Group(i)] = append(missing[f.Group(i)], pc)
		}
	}
	for _, g := range slices.Sorted(maps.Keys(missing)) {
		if err := c.PutAll(ctx, kanade.BucketAgentGroups, missing[g], kanade.EncodeAgentGroups([]string{g})); err != nil {
			return fmt.Errorf("sim: seed groups: %w", err)
		}
	}
	return nil
}

// applyGroups takes one change of KV agent_groups.
func (a *agents) applyGroups(e bus.Entry, now time.Time) {
	if i, changed := a.f.applyGroups(e); changed {
		a.groupsChanged(i, now)
	}
}

// loadGroups takes the whole of KV agent_groups, read again.
func (a *agents) loadGroups(entries []bus.Entry, now time.Time) {
	for _, i := range a.f.loadGroups(entries) {
		a.groupsChanged(i, now)
	}
}

// groupsChanged is what follows a change of agent i's groups: its
// configuration takes its new groups' scopes.
func (a *agents) groupsChanged(i int, now time.Time) {
	a.log.add(i, logLine{at: now, level: "INFO", target: "kanade_agent::groups", msg: "groups changed",
		fields: []string{"groups", string(mustJSON(a.f.groups.of[i]))}})
	a.resolve(i, now)
}
