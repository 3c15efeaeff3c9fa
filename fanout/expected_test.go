package fanout_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/fanout"
)

func TestExpectedPCs(t *testing.T) {
	alive := []string{"pc-c", "pc-a", "pc-b", "pc-d"}
	pcGroups := map[string][]string{
		"pc-a":    {"canary"},
		"pc-b":    {"office", "wave1"},
		"pc-c":    {"wave1"},
		"pc-dead": {"canary"}, // in the group but not alive
	}
	tests := []struct {
		name   string
		target kanade.Target
		alive  []string
		want   []string
	}{
		{name: "all is every alive PC", target: kanade.Target{All: true}, alive: alive, want: []string{"pc-a", "pc-b", "pc-c", "pc-d"}},
		{name: "listed PCs even when not alive", target: kanade.Target{PCs: []string{"pc-z", "pc-a"}}, alive: alive, want: []string{"pc-a", "pc-z"}},
		{name: "alive members of any listed group", target: kanade.Target{Groups: []string{"canary", "wave1"}}, alive: alive, want: []string{"pc-a", "pc-b", "pc-c"}},
		{name: "a group nobody is in", target: kanade.Target{Groups: []string{"nobody"}}, alive: alive},
		{name: "union without duplicates", target: kanade.Target{All: true, Groups: []string{"wave1"}, PCs: []string{"pc-b", "pc-x", "pc-x"}}, alive: alive, want: []string{"pc-a", "pc-b", "pc-c", "pc-d", "pc-x"}},
		{name: "nothing alive", target: kanade.Target{All: true, Groups: []string{"canary"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, fanout.ExpectedPCs(tt.target, &fanout.Fleet{Alive: tt.alive, Groups: pcGroups})); diff != "" {
				t.Errorf("ExpectedPCs (-want +got):\n%s", diff)
			}
		})
	}
}
