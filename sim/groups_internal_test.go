package sim

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMembershipsAgreeWithAScan: after any sequence of changes, a group's
// members by the bitsets are the agents whose groups name it, in index
// order, and a group nobody is in is forgotten.
func TestMembershipsAgreeWithAScan(t *testing.T) {
	const agents = 150 // not a multiple of 64
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "c", "d"}
	m := newMemberships(agents)
	for step := range 1000 {
		var gs []string
		for _, g := range names {
			if rng.IntN(3) == 0 {
				gs = append(gs, g)
			}
		}
		i := rng.IntN(agents)
		before := slices.Clone(m.of[i])
		if changed := m.set(i, gs); changed == slices.Equal(before, gs) {
			t.Fatalf("step %d: set(%d, %v) over %v said changed=%v", step, i, gs, before, changed)
		}
		for _, g := range names {
			var want []int
			for j, of := range m.of {
				if slices.Contains(of, g) {
					want = append(want, j)
				}
			}
			if diff := cmp.Diff(want, m.in(g)); diff != "" {
				t.Fatalf("step %d: members of %s (-scan +bitset):\n%s", step, g, diff)
			}
			if _, ok := m.members[g]; ok != (len(want) > 0) {
				t.Fatalf("step %d: group %s kept=%v with %d members", step, g, ok, len(want))
			}
		}
	}
}
