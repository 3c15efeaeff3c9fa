package kanade

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Target names the PCs a job or schedule goes to (wire.md Manifest,
// scheduler.md Schedule): every alive PC, members of groups, or listed PCs.
type Target struct {
	All    bool     `json:"all"`
	Groups []string `json:"groups,omitempty"`
	PCs    []string `json:"pcs,omitempty"`
}

// Empty reports whether the target names no PC at all.
func (t Target) Empty() bool { return !t.All && len(t.Groups) == 0 && len(t.PCs) == 0 }

// Validate checks that every group and PC can be a subject token, since each
// becomes commands.group.{g} or commands.pc.{pc}. The *FieldError names the
// field from the target (groups[0]); a record puts it under its own field.
func (t Target) Validate() error {
	var c checker
	for i, g := range t.Groups {
		c.rule("groups["+strconv.Itoa(i)+"]", g, ValidToken(g), ruleToken)
	}
	for i, pc := range t.PCs {
		c.rule("pcs["+strconv.Itoa(i)+"]", pc, ValidToken(pc), ruleToken)
	}
	return c.err
}

// Subjects are the command subjects a whole-target dispatch publishes on,
// each once.
func (t Target) Subjects() []string {
	if t.All {
		return []string{SubjectCommandsAll}
	}
	out := make([]string, 0, len(t.Groups)+len(t.PCs))
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, g := range t.Groups {
		add(SubjectCommandsGroup + g)
	}
	for _, pc := range t.PCs {
		add(SubjectCommandsPC + pc)
	}
	return out
}

// Command subject prefixes (wire.md §1).
const (
	SubjectCommandsAll   = "commands.all"
	SubjectCommandsGroup = "commands.group."
	SubjectCommandsPC    = "commands.pc."
	// SubjectKill + exec_id stops the runs of one execution (control.md §3).
	SubjectKill = "kill."
)

// Wave is one step of a staged rollout: the command goes to
// commands.group.{Group} Delay after the firing (no delay: at once).
type Wave struct {
	Group string `json:"group"`
	Delay string `json:"delay,omitempty"`

	delay time.Duration
}

// DelayDuration is Delay parsed (by Rollout.Validate).
func (w Wave) DelayDuration() time.Duration { return w.delay }

// Rollout stages a dispatch in waves (a manifest's or a schedule's).
type Rollout struct {
	Strategy string `json:"strategy"`
	Waves    []Wave `json:"waves"`
}

// Validate checks the strategy, the groups and the delays, and keeps the
// parsed delays for DelayDuration. The *FieldError names the field from
// "rollout." (rollout.waves[1].delay).
func (r *Rollout) Validate() error {
	var c checker
	c.rule("rollout.strategy", r.Strategy, r.Strategy == StrategyWave, `must be "wave"`)
	c.holds("rollout.waves", len(r.Waves) > 0, "must have at least one wave")
	for i := range r.Waves {
		w := &r.Waves[i]
		field := "rollout.waves[" + strconv.Itoa(i) + "]"
		c.required(field+".group", w.Group != "")
		c.rule(field+".group", w.Group, ValidToken(w.Group), ruleToken)
		w.delay = 0
		if w.Delay != "" {
			w.delay = c.duration(field+".delay", w.Delay)
		}
	}
	return c.err
}

// Execute is how an agent runs a job.
type Execute struct {
	Shell   string `json:"shell"`
	Script  string `json:"script"`
	Timeout string `json:"timeout"`
	Jitter  string `json:"jitter,omitempty"`
	RunAs   string `json:"run_as,omitempty"`
	Cwd     string `json:"cwd,omitempty"`
}

// Manifest is a job definition, the value of KV "jobs" (wire.md Manifest).
// Fields this backend does not know are kept in Extra and written back, so an
// older backend never strips what a newer CLI wrote.
type Manifest struct {
	ID          string   `json:"id"`
	Version     string   `json:"version"`
	Description string   `json:"description,omitempty"`
	Execute     Execute  `json:"execute"`
	Target      *Target  `json:"target,omitempty"`
	Rollout     *Rollout `json:"rollout,omitempty"`
	// Extra holds the unknown top-level fields, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// ParseManifest decodes one value of KV "jobs" stored under key and
// validates it (see Validate); key may be empty when there is none to compare
// the id to yet. An error about a field is a *FieldError naming it, a JSON
// member of the wrong type included; only a value that is not a JSON object
// at all gets a plain error.
func ParseManifest(key string, data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, jsonError("manifest", "", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var c checker
	c.rule("id", m.ID, key == "" || m.ID == key, "must equal the key "+strconv.Quote(clip(key, errExcerptBytes)))
	if c.err != nil {
		return nil, c.err
	}
	return &m, nil
}

var manifestFields = map[string]bool{"id": true, "version": true, "description": true,
	"execute": true, "target": true, "rollout": true}

// knownManifestField reports whether encoding/json decodes member k into a
// known field. It matches names case-insensitively ("ID" sets ID), so such a
// member must not be kept in Extra too: written back after "id", it would
// win on the next read and change the manifest's id.
func knownManifestField(k string) bool {
	for f := range manifestFields {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// UnmarshalJSON decodes the known fields and keeps the others in Extra.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	type plain Manifest
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k := range all {
		if knownManifestField(k) {
			delete(all, k)
		}
	}
	if len(all) == 0 {
		all = nil
	}
	*m = Manifest(p)
	m.Extra = all
	return nil
}

// MarshalJSON writes the known fields and Extra back.
func (m Manifest) MarshalJSON() ([]byte, error) {
	type plain Manifest
	known, err := json.Marshal(plain(m))
	if err != nil {
		return nil, err
	}
	if len(m.Extra) == 0 {
		return known, nil
	}
	extra, err := json.Marshal(m.Extra)
	if err != nil {
		return nil, err
	}
	// Both are JSON objects: splice the extra members into the known ones.
	known = bytes.TrimSuffix(known, []byte("}"))
	return append(append(known, ','), extra[1:]...), nil
}

// Shells an agent can run.
var validShells = map[string]bool{"powershell": true, "pwsh": true, "cmd": true, "sh": true}

// Run-as modes an agent knows.
var validRunAs = map[string]bool{"": true, "system": true, "user": true, "system_gui": true}

// Validate checks what an agent needs to run the job. The first broken rule
// is a *FieldError naming the field (execute.shell, target.groups[0]).
func (m *Manifest) Validate() error {
	var c checker
	c.required("id", m.ID != "")
	c.rule("id", m.ID, ValidToken(m.ID), ruleToken)
	c.required("version", m.Version != "")
	c.rule("execute.shell", m.Execute.Shell, validShells[m.Execute.Shell], "must be one of powershell, pwsh, cmd, sh")
	c.required("execute.script", m.Execute.Script != "")
	if c.err != nil {
		return c.err
	}
	if _, err := m.Timeout(); err != nil {
		return err
	}
	if m.Execute.Jitter != "" {
		c.duration("execute.jitter", m.Execute.Jitter)
	}
	c.rule("execute.run_as", m.Execute.RunAs, validRunAs[m.Execute.RunAs], "must be one of system, user, system_gui")
	if m.Target != nil {
		c.under("target", m.Target.Validate())
	}
	if m.Rollout != nil && c.err == nil {
		c.err = m.Rollout.Validate()
	}
	return c.err
}

// Timeout is execute.timeout; it must be positive. Its error is a
// *FieldError on execute.timeout.
func (m *Manifest) Timeout() (time.Duration, error) {
	var c checker
	d := c.duration("execute.timeout", m.Execute.Timeout)
	c.rule("execute.timeout", m.Execute.Timeout, d > 0, "must be greater than zero")
	return d, c.err
}

// CommandOptions are the per-dispatch parts of a Command.
type CommandOptions struct {
	ExecID    string
	RequestID string
	// Jitter overrides execute.jitter when set (a schedule's jitter).
	Jitter *time.Duration
	// DeadlineAt is when an agent that gets the command later skips it.
	DeadlineAt *time.Time
}

// Command builds the wire Command for this manifest.
func (m *Manifest) Command(o CommandOptions) (Command, error) {
	if err := m.Validate(); err != nil {
		return Command{}, fmt.Errorf("manifest %s: %w", m.ID, err)
	}
	timeout, _ := m.Timeout()
	c := Command{ID: m.ID, Version: m.Version, RequestID: o.RequestID, ExecID: o.ExecID,
		Shell: m.Execute.Shell, Script: m.Execute.Script, TimeoutSecs: int64(timeout.Round(time.Second) / time.Second),
		RunAs: m.Execute.RunAs, Cwd: m.Execute.Cwd, Staleness: Staleness{Mode: "cached"}}
	if c.TimeoutSecs == 0 {
		c.TimeoutSecs = 1
	}
	jitter := o.Jitter
	if jitter == nil && m.Execute.Jitter != "" {
		j, _ := ParseDuration(m.Execute.Jitter)
		jitter = &j
	}
	if jitter != nil {
		s := int64(*jitter / time.Second)
		c.JitterSecs = &s
	}
	if o.DeadlineAt != nil {
		c.DeadlineAt = &Timestamp{Time: o.DeadlineAt.UTC()}
	}
	return c, nil
}
