package kanade

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// FanoutPlan is the body of POST /api/exec/{job_id} (control.md §1.1):
// who gets a registered job's command, staged how, and with what start
// jitter and deadline. Every field is optional; {} is well-formed and
// fails Validate. The exported fields are the JSON; the parsed jitter and
// wave delays are filled by Validate, which the methods below rely on.
type FanoutPlan struct {
	Target  Target   `json:"target"`
	Rollout *Rollout `json:"rollout,omitempty"`
	// Jitter becomes Command.jitter_secs: agents sleep a random part of
	// it. "" is none.
	Jitter string `json:"jitter,omitempty"`
	// DeadlineAt is copied to every Command: an agent that gets the
	// command later answers with a skipped result. Normally only the
	// scheduler sets it, but an HTTP caller may.
	DeadlineAt *Timestamp `json:"deadline_at,omitempty"`

	jitter time.Duration
}

// DecodeFanoutPlan reads a POST /api/exec body. Unlike a job or schedule
// body it is read tolerantly (unknown keys are ignored, as upstream does:
// the CLI of another version may send more). A body that is not a JSON
// object is a *BodySyntaxError; a member of the wrong type, deadline_at
// included, a *FieldError naming it. It does not Validate.
func DecodeFanoutPlan(body []byte) (*FanoutPlan, error) {
	v, err := jsonDocument(body)
	if err != nil {
		return nil, &BodySyntaxError{Format: "JSON", Msg: err.Error()}
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, &BodySyntaxError{Format: "JSON", Msg: "the body must be a JSON object"}
	}
	var p struct {
		Target     *Target         `json:"target"`
		Rollout    *Rollout        `json:"rollout"`
		Jitter     *string         `json:"jitter"`
		DeadlineAt json.RawMessage `json:"deadline_at"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, jsonError("exec request", "", err)
	}
	plan := &FanoutPlan{Rollout: p.Rollout}
	if p.Target != nil {
		plan.Target = *p.Target
	}
	if p.Jitter != nil {
		plan.Jitter = *p.Jitter
	}
	if len(p.DeadlineAt) > 0 && !bytes.Equal(p.DeadlineAt, []byte("null")) {
		var ts Timestamp
		if err := ts.UnmarshalJSON(p.DeadlineAt); err != nil {
			return nil, &FieldError{Field: "deadline_at", Rule: "must be an RFC 3339 timestamp with a year in 0001–9999",
				Excerpt: clip(string(p.DeadlineAt), errExcerptBytes)}
		}
		plan.DeadlineAt = &ts
	}
	return plan, nil
}

// HasRollout reports whether the plan stages its fan-out in waves: a
// rollout with at least one wave (control.md §1.2 step 2).
func (p *FanoutPlan) HasRollout() bool { return p.Rollout != nil && len(p.Rollout.Waves) > 0 }

// Validate runs the checks of control.md §1.2 that need no KV, object
// store or database, in the spec's order, and fills the parsed forms:
//
//   - the rollout's strategy is "wave" (or absent), as upstream's decoder
//     requires before anything else;
//   - step 2: without waves the target names someone (all, a group or a
//     pc);
//   - step 5: jitter parses, then every wave delay (an absent delay is
//     0s, the first wave's usual value);
//   - step 6 (this backend's additions): every target group and pc, and
//     every wave group, is a subject token, and a rollout has at least one
//     wave.
//
// The steps around them belong to the caller: the job lookup (1), the
// re-check of the stored manifest (3, Manifest.Validate, which also
// covers step 5's execute.timeout) and the script object's digest (4).
// A request failing both a rule here and step 4 therefore gets this 400
// rather than step 4's 404 or 503; nothing is published either way.
// The first broken rule is a *FieldError naming the body field
// (target.groups[0], jitter, rollout.waves[1].delay).
func (p *FanoutPlan) Validate() error {
	var c checker
	if p.Rollout != nil {
		c.rule("rollout.strategy", p.Rollout.Strategy, p.Rollout.Strategy == "" || p.Rollout.Strategy == StrategyWave, `must be "wave"`)
	}
	c.holds("target", p.HasRollout() || !p.Target.Empty(),
		"must specify at least one of all / groups / pcs (or set rollout.waves)")
	p.jitter = 0
	if p.Jitter != "" {
		p.jitter = c.duration("jitter", p.Jitter)
	}
	if p.Rollout != nil {
		for i := range p.Rollout.Waves {
			w := &p.Rollout.Waves[i]
			w.delay = 0
			if w.Delay != "" {
				w.delay = c.duration("rollout.waves["+strconv.Itoa(i)+"].delay", w.Delay)
			}
		}
	}
	c.under("target", p.Target.Validate())
	if p.Rollout != nil {
		c.holds("rollout.waves", len(p.Rollout.Waves) > 0, "must have at least one wave (or leave rollout out)")
		for i, w := range p.Rollout.Waves {
			field := "rollout.waves[" + strconv.Itoa(i) + "].group"
			c.required(field, w.Group != "")
			c.rule(field, w.Group, ValidToken(w.Group), ruleToken)
		}
	}
	return c.err
}

// JitterDuration is the parsed jitter, nil when the plan has none (so a
// manifest's own execute.jitter applies). Only meaningful after Validate.
func (p *FanoutPlan) JitterDuration() *time.Duration {
	if p.Jitter == "" {
		return nil
	}
	j := p.jitter
	return &j
}

// CommandOptions are the plan's parts of every Command of the exec
// (control.md §1.4): its jitter and deadline_at. The caller adds the ids
// and, for a script object, its digest; an HTTP exec sends no retry.
func (p *FanoutPlan) CommandOptions() CommandOptions {
	o := CommandOptions{Jitter: p.JitterDuration()}
	if p.DeadlineAt != nil && !p.DeadlineAt.IsZero() {
		t := p.DeadlineAt.UTC()
		o.DeadlineAt = &t
	}
	return o
}

// Subjects are the subjects of a plain fan-out, in the order upstream
// publishes them (control.md §1.5): commands.all when all, then each
// group, then each pc, each subject once. With waves the waves' groups
// are the subjects instead, in wave order (a group named by two waves
// gets two commands, one per wave).
func (p *FanoutPlan) Subjects() []string {
	var out []string
	if p.HasRollout() {
		for _, w := range p.Rollout.Waves {
			out = append(out, SubjectCommandsGroup+w.Group)
		}
		return out
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if p.Target.All {
		add(SubjectCommandsAll)
	}
	for _, g := range p.Target.Groups {
		add(SubjectCommandsGroup + g)
	}
	for _, pc := range p.Target.PCs {
		add(SubjectCommandsPC + pc)
	}
	return out
}

// ExpectedTarget is the target whose PCs are expected to answer, for
// target_count (control.md §1.3): the plan's target, or, with a rollout,
// the wave groups only (later waves included: their PCs are expected
// too).
func (p *FanoutPlan) ExpectedTarget() Target {
	if p.Rollout == nil {
		return p.Target
	}
	t := Target{}
	seen := map[string]bool{}
	for _, w := range p.Rollout.Waves {
		if !seen[w.Group] {
			seen[w.Group] = true
			t.Groups = append(t.Groups, w.Group)
		}
	}
	return t
}
