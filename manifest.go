package kanade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Target names the PCs a job or schedule goes to (wire.md Manifest,
// scheduler.md Schedule): every alive PC, members of groups, or listed PCs.
type Target struct {
	All    bool     `json:"all"`
	Groups []string `json:"groups,omitempty" schema:"pattern=token"`
	PCs    []string `json:"pcs,omitempty" schema:"pattern=token"`
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
	Group string `json:"group" schema:"required,pattern=token"`
	Delay string `json:"delay,omitempty" schema:"pattern=duration"`

	delay time.Duration
}

// DelayDuration is Delay parsed (by Rollout.Validate).
func (w Wave) DelayDuration() time.Duration { return w.delay }

// Rollout stages a dispatch in waves (a manifest's, a schedule's or an
// exec's). Strategy "wave" is the only one and the default.
type Rollout struct {
	Strategy string `json:"strategy" schema:"enum=wave"`
	Waves    []Wave `json:"waves" schema:"required,minItems=1"`
}

// Validate checks the strategy, the groups and the delays, and keeps the
// parsed delays for DelayDuration. The *FieldError names the field from
// "rollout." (rollout.waves[1].delay). An absent strategy is "wave", as
// upstream's default, so YAML written for upstream's CLI is accepted.
func (r *Rollout) Validate() error {
	var c checker
	c.rule("rollout.strategy", r.Strategy, r.Strategy == "" || r.Strategy == StrategyWave, `must be "wave"`)
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

// Execute is how an agent runs a job. Exactly one of Script, ScriptFile
// and ScriptObject names the body ("" is unset, so an operator may leave
// an emptied script: key behind): inline text, a file the upstream CLI
// reads and inlines before it sends the manifest (agents cannot read it,
// so a manifest still naming one is accepted but cannot be dispatched), or
// the key <name>/<version> of an object in object store "scripts".
type Execute struct {
	Shell        string `json:"shell" schema:"required,enum=powershell|pwsh|cmd|sh"`
	Script       string `json:"script,omitempty"`
	ScriptFile   string `json:"script_file,omitempty"`
	ScriptObject string `json:"script_object,omitempty" schema:"pattern=objectkey"`
	Timeout      string `json:"timeout" schema:"required,pattern=duration"`
	// Jitter is this backend's own: upstream moved jitter to the fan-out
	// plan (schedule, exec request) in v0.18; a plan's jitter wins.
	Jitter string `json:"jitter,omitempty" schema:"pattern=duration"`
	RunAs  string `json:"run_as,omitempty" schema:"enum=system|user|system_gui"`
	Cwd    string `json:"cwd,omitempty"`
}

// Manifest is a job definition, the value of KV "jobs" (wire.md Manifest),
// as upstream kanade-backend 0.43.56 knows it, plus this backend's own
// target, rollout and execute.jitter. Fields this backend does not know
// are kept in Extra and written back, so an older backend never strips
// what a newer CLI wrote.
//
// The hints (inventory, emit, check, collect, client) are kept as the JSON
// the operator wrote: agents, the projector and the SPA interpret them,
// this backend checks their shape (Validate), copies emit, check and
// collect into every Command, and reads inventory itself (InventorySpec)
// to project inventory reports.
type Manifest struct {
	ID          string  `json:"id" schema:"required,pattern=jobid"`
	Version     string  `json:"version" schema:"required,nonblank"`
	Description string  `json:"description,omitempty"`
	Execute     Execute `json:"execute" schema:"required"`
	// RequireApproval is upstream's flag for jobs an approver must
	// release; kept and served, not acted on.
	RequireApproval bool `json:"require_approval,omitempty"`
	// Staleness is how fresh an agent's cached revoke and version-pin
	// state must be (absent: {"mode":"cached"}).
	Staleness *Staleness `json:"staleness,omitempty"`
	// Inventory marks a job whose stdout is an inventory JSON object.
	Inventory json.RawMessage `json:"inventory,omitempty" schema:"hint=inventory"`
	// Emit marks a job whose stdout is NDJSON observability events.
	Emit json.RawMessage `json:"emit,omitempty" schema:"hint=emit"`
	// Check marks a health-check job for the Client App's Health tab.
	Check json.RawMessage `json:"check,omitempty" schema:"hint=check"`
	// Collect marks a job whose listed files an agent bundles.
	Collect json.RawMessage `json:"collect,omitempty" schema:"hint=collect"`
	// Client offers the job to end users in the Client App.
	Client json.RawMessage `json:"client,omitempty" schema:"hint=client"`
	// OnFailure lets an agent retry a failed run of this job in place.
	// A schedule may set its own, which wins (Schedule.Retry); HTTP execs
	// send none (control.md §1.4).
	OnFailure *OnFailure `json:"on_failure,omitempty"`
	Target    *Target    `json:"target,omitempty"`
	Rollout   *Rollout   `json:"rollout,omitempty"`
	// Extra holds the unknown top-level fields, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// The inner shapes of the hints, as upstream's agents and SPA read them;
// only their tags are used (shape.go).
type (
	emitHint struct {
		Type          string `json:"type" schema:"required,enum=events"`
		WatermarkPath string `json:"watermark_path,omitempty"`
	}
	checkHint struct {
		Name         string `json:"name" schema:"required,nonblank"`
		Label        string `json:"label,omitempty" schema:"nonblank"`
		StatusField  string `json:"status_field,omitempty" schema:"nonblank"`
		DetailField  string `json:"detail_field,omitempty" schema:"nonblank"`
		Troubleshoot string `json:"troubleshoot,omitempty" schema:"nonblank"`
		Fleet        bool   `json:"fleet,omitempty"`
	}
	collectHint struct {
		Name        string `json:"name" schema:"required,nonblank"`
		Description string `json:"description,omitempty" schema:"nonblank"`
		MaxSize     string `json:"max_size,omitempty" schema:"pattern=size"`
		FilesField  string `json:"files_field,omitempty" schema:"nonblank"`
	}
	clientHint struct {
		Name        string `json:"name" schema:"required,nonblank"`
		Description string `json:"description,omitempty" schema:"nonblank"`
		Category    string `json:"category" schema:"required,enum=software_update|troubleshoot|catalog"`
		Icon        string `json:"icon,omitempty" schema:"nonblank"`
	}
)

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
	"execute": true, "require_approval": true, "staleness": true, "inventory": true, "emit": true,
	"check": true, "collect": true, "client": true, "on_failure": true, "target": true, "rollout": true}

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
	for _, h := range []*json.RawMessage{&m.Inventory, &m.Emit, &m.Check, &m.Collect, &m.Client} {
		if bytes.Equal(bytes.TrimSpace(*h), []byte("null")) {
			*h = nil // null is "not given", like an absent hint
		}
	}
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

// Validate checks what an agent needs to run the job and the shape of
// every hint. The first broken rule is a *FieldError naming the field
// (execute.shell, target.groups[0], check.name).
func (m *Manifest) Validate() error {
	var c checker
	c.required("id", m.ID != "")
	c.rule("id", m.ID, patternMatch("jobid", m.ID),
		"must be 1–128 characters of [-/_=A-Za-z0-9] (a subject token and a KV key)")
	c.required("version", strings.TrimSpace(m.Version) != "")
	c.rule("execute.shell", m.Execute.Shell, validShells[m.Execute.Shell], "must be one of powershell, pwsh, cmd, sh")
	if c.err != nil {
		return c.err
	}
	if err := m.Execute.validateSource(); err != nil {
		return err
	}
	if _, err := m.Timeout(); err != nil {
		return err
	}
	if m.Execute.Jitter != "" {
		c.duration("execute.jitter", m.Execute.Jitter)
	}
	c.rule("execute.run_as", m.Execute.RunAs, validRunAs[m.Execute.RunAs], "must be one of system, user, system_gui")
	if m.Staleness != nil {
		c.under("staleness", m.Staleness.Validate())
	}
	if m.OnFailure != nil {
		c.under("on_failure", m.OnFailure.Validate())
	}
	if c.err != nil {
		return c.err
	}
	if err := m.validateHints(); err != nil {
		return err
	}
	if m.Target != nil {
		c.under("target", m.Target.Validate())
	}
	if m.Rollout != nil && c.err == nil {
		c.err = m.Rollout.Validate()
	}
	return c.err
}

// validateSource enforces exactly one script source.
func (e *Execute) validateSource() error {
	var set []string
	for _, s := range []struct{ name, v string }{
		{"script", e.Script}, {"script_file", e.ScriptFile}, {"script_object", e.ScriptObject},
	} {
		if s.v != "" {
			set = append(set, s.name)
		}
	}
	var c checker
	c.holds("execute.script", len(set) > 0, "is required (or one of execute.script_file, execute.script_object)")
	c.holds("execute", len(set) < 2, "must set only one of script, script_file, script_object (has "+strings.Join(set, ", ")+")")
	c.rule("execute.script_object", e.ScriptObject, e.ScriptObject == "" || ValidScriptObjectKey(e.ScriptObject),
		"must be <name>/<version>: two parts of 1–128 printable ASCII characters without '/', '\"' or '\\', neither '.' nor '..' (observe.md §5.2)")
	return c.err
}

// validateHints checks each hint against its shape and the one rule
// between them: emit's stdout is NDJSON events that agents leave out of
// the result, so no hint that reads one JSON object from stdout may join
// it.
func (m *Manifest) validateHints() error {
	ms, _ := shapes()
	for _, h := range []struct {
		name string
		raw  json.RawMessage
	}{{"inventory", m.Inventory}, {"emit", m.Emit}, {"check", m.Check}, {"collect", m.Collect}, {"client", m.Client}} {
		if len(h.raw) == 0 {
			continue
		}
		v, err := decodeGeneric(h.raw)
		if err != nil {
			return &FieldError{Field: h.name, Rule: "must be JSON"}
		}
		if v == nil {
			continue
		}
		if err := checkValue(v, ms.prop(h.name).shape, h.name); err != nil {
			return err
		}
	}
	// The shape cannot say that a primary key names a declared column,
	// nor that names are unique; an invalid spec never reaches SQL.
	if _, err := m.InventorySpec(); err != nil {
		return err
	}
	var c checker
	if len(m.Check) > 0 {
		// check.name becomes a SQL key and a path segment of DELETE
		// /api/checks/{check_name} (observe.md §3.1).
		var h struct {
			Name *string `json:"name"`
		}
		if json.Unmarshal(m.Check, &h) == nil && h.Name != nil {
			c.rule("check.name", *h.Name, ValidCheckName(*h.Name), "must be 1–128 bytes of UTF-8 without '/' or control characters")
		}
	}
	c.holds("emit", len(m.Emit) == 0 || len(m.Inventory)+len(m.Check)+len(m.Collect) == 0,
		"cannot be combined with inventory, check or collect (its stdout is NDJSON events)")
	return c.err
}

// Validate checks the mode and that max_cache_age comes with strict mode
// only. The *FieldError names the field from the staleness object.
func (s *Staleness) Validate() error {
	var c checker
	c.rule("mode", s.Mode, s.Mode == StalenessCached || s.Mode == StalenessStrict || s.Mode == StalenessUnchecked,
		"must be one of cached, strict, unchecked")
	if s.Mode == StalenessStrict {
		c.duration("max_cache_age", s.MaxCacheAge)
	} else {
		c.holds("max_cache_age", s.MaxCacheAge == "", "is only for mode strict")
	}
	return c.err
}

// Retry is the manifest's on_failure.retry lowered to the wire, nil when
// it has none.
func (m *Manifest) Retry() *RetrySpec { return m.OnFailure.Lower() }

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
	// Jitter overrides execute.jitter when set (a schedule's or an
	// exec's jitter).
	Jitter *time.Duration
	// DeadlineAt is when an agent that gets the command later skips it.
	DeadlineAt *time.Time
	// ScriptObjectSHA256 is the lower-case hex SHA-256 of the object
	// execute.script_object names, as the caller read it from object
	// store "scripts" (control.md §1.2 step 4); required for such a
	// manifest, ignored otherwise.
	ScriptObjectSHA256 string
	// Retry is what the scheduler sends from on_failure.retry: the
	// schedule's (Schedule.Retry), else the manifest's (Manifest.Retry).
	// Nil for HTTP execs and ad-hoc runs (control.md §1.4).
	Retry *RetrySpec
}

// Command builds the wire Command for this manifest (control.md §1.4). It
// refuses a manifest that fails Validate, one whose script is still a
// script_file (agents cannot read the operator's files) and a
// script_object without its digest.
func (m *Manifest) Command(o CommandOptions) (Command, error) {
	if err := m.Validate(); err != nil {
		return Command{}, fmt.Errorf("manifest %s: %w", m.ID, err)
	}
	if m.Execute.ScriptFile != "" {
		return Command{}, fmt.Errorf("manifest %s: execute.script_file %q was never inlined; register the job with the body in execute.script",
			m.ID, clip(m.Execute.ScriptFile, errExcerptBytes))
	}
	timeout, _ := m.Timeout()
	c := Command{ID: m.ID, Version: m.Version, RequestID: o.RequestID, ExecID: o.ExecID,
		Shell: m.Execute.Shell, Script: m.Execute.Script, TimeoutSecs: int64(timeout / time.Second), // truncated (control.md §0.2)
		RunAs: m.Execute.RunAs, Cwd: m.Execute.Cwd, Staleness: Staleness{Mode: StalenessCached},
		Emit: m.Emit, Check: m.Check, Collect: m.Collect, Retry: o.Retry}
	if m.Execute.ScriptObject != "" {
		if !validSHA256Hex(o.ScriptObjectSHA256) {
			return Command{}, fmt.Errorf("manifest %s: execute.script_object %q needs its SHA-256 as 64 lower-case hex digits, got %q",
				m.ID, clip(m.Execute.ScriptObject, errExcerptBytes), clip(o.ScriptObjectSHA256, errExcerptBytes))
		}
		c.Script, c.ScriptObject, c.ScriptObjectSHA256 = "", m.Execute.ScriptObject, o.ScriptObjectSHA256
	}
	if m.Staleness != nil {
		c.Staleness = *m.Staleness
	}
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

func validSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// decodeGeneric decodes one JSON value with numbers kept as json.Number.
func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}
