package kanade_test

import (
	"testing"

	"github.com/kanade-fleet/backend"
)

func TestAgentPruneDays(t *testing.T) {
	for _, c := range []struct {
		doc     string
		days    int
		set     bool
		invalid bool
	}{
		{doc: `{}`},
		{doc: `{"agent_prune_days":null}`},
		{doc: `{"controller_group":"ops","agent_prune_days":30}`, days: 30, set: true},
		{doc: `{"agent_prune_days":0}`, days: 0, set: true},
		{doc: `{"agent_prune_days":36500}`, days: 36500, set: true},
		{doc: `{"agent_prune_days":36501}`, days: 36500, set: true},
		{doc: `{"agent_prune_days":4294967296000}`, days: 36500, set: true},
		{doc: `{"agent_prune_days":1e3}`, days: 1000, set: true},
		{doc: `{"agent_prune_days":-1}`, invalid: true},
		{doc: `{"agent_prune_days":1.5}`, invalid: true},
		{doc: `{"agent_prune_days":"30"}`, invalid: true},
		{doc: `[]`, invalid: true},
		{doc: `not json`, invalid: true},
		{doc: ``, invalid: true},
	} {
		days, set, err := kanade.AgentPruneDays([]byte(c.doc))
		if (err != nil) != c.invalid || days != c.days || set != c.set {
			t.Errorf("%s: %d %v %v; want %d %v invalid=%v", c.doc, days, set, err, c.days, c.set, c.invalid)
		}
	}
}
