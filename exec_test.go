package kanade_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestFanoutPlanValidate(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // the FieldError's field; "" = valid
		rule  string // a part of the rule, when it matters
	}{
		{name: "what the CLI sends", body: `{"target":{"groups":["canary","wave1"],"pcs":[],"all":false},"jitter":"5m"}`},
		{name: "all", body: `{"target":{"all":true}}`},
		{name: "pcs only", body: `{"target":{"pcs":["PC-1"]}}`},
		{name: "waves without a target", body: `{"rollout":{"waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"}]}}`},
		{name: "a wave without a delay goes at once", body: `{"rollout":{"strategy":"wave","waves":[{"group":"canary"}]}}`},
		{name: "a deadline", body: `{"target":{"all":true},"deadline_at":"2026-06-10T09:05:00+09:00"}`},
		{name: "unknown keys are ignored", body: `{"target":{"all":true},"dry_run":true}`},

		{name: "an empty body", body: `{}`, field: "target", rule: "(or set rollout.waves)"},
		{name: "a target naming nobody", body: `{"target":{"all":false,"groups":[],"pcs":[]}}`, field: "target"},
		{name: "an empty rollout does not replace the target", body: `{"rollout":{"waves":[]}}`, field: "target"},
		{name: "an empty rollout next to a target", body: `{"target":{"all":true},"rollout":{"waves":[]}}`, field: "rollout.waves"},
		{name: "another strategy", body: `{"rollout":{"strategy":"canary","waves":[{"group":"a"}]}}`, field: "rollout.strategy"},
		{name: "a jitter that is not a duration", body: `{"target":{"all":true},"jitter":"a bit"}`, field: "jitter"},
		{name: "a negative jitter", body: `{"target":{"all":true},"jitter":"-5m"}`, field: "jitter"},
		{name: "a wave delay that is not a duration", body: `{"rollout":{"waves":[{"group":"a","delay":"0s"},{"group":"b","delay":"later"}]}}`,
			field: "rollout.waves[1].delay"},
		{name: "a group that is not a token", body: `{"target":{"groups":["canary","a.b"]}}`, field: "target.groups[1]"},
		{name: "a pc that is not a token", body: `{"target":{"pcs":["PC 1"]}}`, field: "target.pcs[0]"},
		{name: "a pc that is a wildcard", body: `{"target":{"pcs":[">"]}}`, field: "target.pcs[0]"},
		{name: "a wave group that is not a token", body: `{"rollout":{"waves":[{"group":"*","delay":"0s"}]}}`, field: "rollout.waves[0].group"},
		{name: "a wave without a group", body: `{"rollout":{"waves":[{"delay":"0s"}]}}`, field: "rollout.waves[0].group"},
		// The spec's order: step 2 before step 5 before step 6.
		{name: "the target before the jitter", body: `{"jitter":"x","target":{"groups":[]}}`, field: "target"},
		{name: "the jitter before a delay", body: `{"jitter":"x","rollout":{"waves":[{"group":"a","delay":"y"}]}}`, field: "jitter"},
		{name: "a delay before a token", body: `{"target":{"groups":["a.b"]},"rollout":{"waves":[{"group":"a","delay":"y"}]}}`,
			field: "rollout.waves[0].delay"},
		{name: "a target token before a wave group", body: `{"target":{"groups":["a.b"]},"rollout":{"waves":[{"group":"c.d"}]}}`,
			field: "target.groups[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kanade.DecodeFanoutPlan([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeFanoutPlan = %v", err)
			}
			err = p.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *kanade.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Rule, tt.rule) {
				t.Fatalf("Validate() = %v, want a FieldError on %s (%q)", err, tt.field, tt.rule)
			}
		})
	}
}

func TestDecodeFanoutPlanErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		syntax bool
		field  string
	}{
		{"not JSON", `{"target":`, true, ""},
		{"an array", `[]`, true, ""},
		{"a key given twice", `{"jitter":"1m","jitter":"2m"}`, true, ""},
		{"a target that is a string", `{"target":"all"}`, false, "target"},
		{"all that is a string", `{"target":{"all":"yes"}}`, false, "target.all"},
		{"a deadline that is not a time", `{"deadline_at":"tomorrow"}`, false, "deadline_at"},
		{"a deadline that is a number", `{"deadline_at":1700000000}`, false, "deadline_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kanade.DecodeFanoutPlan([]byte(tt.body))
			var se *kanade.BodySyntaxError
			var fe *kanade.FieldError
			switch {
			case tt.syntax && !errors.As(err, &se):
				t.Errorf("error %v, want a BodySyntaxError", err)
			case !tt.syntax && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Errorf("error %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
}

func TestFanoutPlanDerivations(t *testing.T) {
	decode := func(body string) *kanade.FanoutPlan {
		t.Helper()
		p, err := kanade.DecodeFanoutPlan([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		body     string
		subjects []string
		expected kanade.Target
		jitter   *int64 // jitter_secs
		deadline string
	}{
		{"all, groups and pcs, in upstream's order, each once",
			`{"target":{"pcs":["PC-2","PC-1","PC-2"],"groups":["b","a","b"],"all":true},"jitter":"90.5s"}`,
			[]string{"commands.all", "commands.group.b", "commands.group.a", "commands.pc.PC-2", "commands.pc.PC-1"},
			kanade.Target{All: true, Groups: []string{"b", "a", "b"}, PCs: []string{"PC-2", "PC-1", "PC-2"}}, ptrInt(90), ""},
		{"waves replace the target; expected PCs are the wave groups",
			`{"target":{"all":true},"rollout":{"waves":[{"group":"canary","delay":"0s"},{"group":"wave1","delay":"1h"},{"group":"canary","delay":"2h"}]}}`,
			[]string{"commands.group.canary", "commands.group.wave1", "commands.group.canary"},
			kanade.Target{Groups: []string{"canary", "wave1"}}, nil, ""},
		{"a deadline in UTC", `{"target":{"pcs":["PC-1"]},"deadline_at":"2026-06-10T09:05:00+09:00"}`,
			[]string{"commands.pc.PC-1"}, kanade.Target{PCs: []string{"PC-1"}}, nil, "2026-06-10T00:05:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(tt.body)
			if diff := cmp.Diff(tt.subjects, p.Subjects()); diff != "" {
				t.Errorf("Subjects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.expected, p.ExpectedTarget()); diff != "" {
				t.Errorf("ExpectedTarget (-want +got):\n%s", diff)
			}
			m := kanade.Manifest{ID: "job", Version: "1", Execute: kanade.Execute{Shell: "sh", Script: "x", Timeout: "1m", Jitter: "7s"}}
			o := p.CommandOptions()
			o.ExecID, o.RequestID = "e", "r"
			c, err := m.Command(o)
			if err != nil {
				t.Fatal(err)
			}
			// A plan without jitter leaves the manifest's own.
			want := tt.jitter
			if want == nil {
				want = ptrInt(7)
			}
			if c.JitterSecs == nil || *c.JitterSecs != *want {
				t.Errorf("jitter_secs = %v, want %d", c.JitterSecs, *want)
			}
			got := ""
			if c.DeadlineAt != nil {
				got = c.DeadlineAt.Format(time.RFC3339)
			}
			if got != tt.deadline || c.Retry != nil {
				t.Errorf("deadline_at %q retry %v, want %q and no retry", got, c.Retry, tt.deadline)
			}
		})
	}
	// Validate keeps the parsed wave delays for the fan-out.
	p := decode(`{"rollout":{"waves":[{"group":"a","delay":"0s"},{"group":"b","delay":"1d2h"}]}}`)
	if got := p.Rollout.Waves[1].DelayDuration(); got != 26*time.Hour {
		t.Errorf("wave 1 delay = %v, want 26h", got)
	}
}

func ptrInt(n int64) *int64 { return &n }
