package kanade

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Group memberships and the layered agent configuration (fleet.md §1, §2):
// the values of KV agent_groups and agent_config that agents read, and the
// merge that turns a PC's scopes into what it runs with. The handlers write
// them, the scheduler reads memberships, the simulator plays an agent that
// follows them; all share these types so a value one writes the others read.

// Buckets and the object store of the fleet organisation (wire.md §2).
const (
	BucketAgentConfig   = "agent_config"
	ObjectAgentReleases = "agent_releases"
)

// Keys of KV agent_config (fleet.md §2.1).
const (
	ScopeKeyGlobal = "global"
	scopeGroups    = "groups."
	scopePCs       = "pcs."
	// LegacyTargetVersionKey is the pre-layered key; nothing writes it and
	// every walk of the bucket skips it.
	LegacyTargetVersionKey = "target_version"
)

// GroupScopeKey is the agent_config key of group g's scope.
func GroupScopeKey(g string) string { return scopeGroups + g }

// PCScopeKey is the agent_config key of PC pc's scope.
func PCScopeKey(pc string) string { return scopePCs + pc }

// Scope kinds of ParseScopeKey and of a rollout's scope (fleet.md §6.4).
const (
	ScopeGlobal = "global"
	ScopeGroup  = "group"
	ScopePC     = "pc"
)

// ParseScopeKey names the scope an agent_config key holds: its kind and,
// for a group or a PC, the name. ok is false for any other key (the legacy
// target_version key among them).
func ParseScopeKey(key string) (kind, name string, ok bool) {
	switch {
	case key == ScopeKeyGlobal:
		return ScopeGlobal, "", true
	case strings.HasPrefix(key, scopeGroups) && len(key) > len(scopeGroups):
		return ScopeGroup, key[len(scopeGroups):], true
	case strings.HasPrefix(key, scopePCs) && len(key) > len(scopePCs):
		return ScopePC, key[len(scopePCs):], true
	}
	return "", "", false
}

// ScopeLabel is how messages name a scope: global, group:<g>, pc:<pc>.
func ScopeLabel(kind, name string) string {
	if kind == ScopeGlobal {
		return ScopeGlobal
	}
	return kind + ":" + name
}

// ValidGroupName reports whether s can be a group a PC belongs to
// (fleet.md §0.4): it becomes the token of commands.group.<g> and
// notifications.group.<g>, so it follows ValidToken.
func ValidGroupName(s string) bool { return ValidToken(s) }

// ValidScopeGroup reports whether group s can also carry a config scope:
// groups.<s> is a KV key, so s must keep to the KV key alphabet, without
// '.'. (A group named in Japanese can have members but no scope.)
func ValidScopeGroup(s string) bool { return ValidPCID(s) }

const (
	ruleGroup      = "must be a group name: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters"
	ruleScopeGroup = "must be 1–128 bytes of [A-Za-z0-9_=/-] to carry a config scope"
)

// AgentGroups is the value of KV agent_groups/<pc_id>: the PC's groups,
// sorted bytewise and without duplicates when written by Normalize.
// Unknown fields are ignored on read (room was left for metadata).
type AgentGroups struct {
	Groups []string `json:"groups"`
}

// NormalizeGroups sorts and de-duplicates gs into a new non-nil slice, the
// one form writers store, so equal sets are byte-identical values.
func NormalizeGroups(gs []string) []string {
	out := slices.Clone(gs)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// CheckGroups returns a FieldError for the first entry of gs that is not a
// group name, naming it groups[i].
func CheckGroups(gs []string) error {
	var c checker
	for i, g := range gs {
		c.rule("groups["+strconv.Itoa(i)+"]", g, ValidGroupName(g), ruleGroup)
	}
	return c.err
}

// CheckScopeGroup returns a FieldError when g cannot carry a config scope.
func CheckScopeGroup(field, g string) error {
	var c checker
	c.rule(field, g, ValidGroupName(g), ruleGroup)
	c.rule(field, g, ValidScopeGroup(g), ruleScopeGroup)
	return c.err
}

// DecodeAgentGroups reads a stored membership value. An empty value (a
// delete marker) and {"groups":null} are no groups. The result is
// normalised, so callers can compare it with what they would write.
func DecodeAgentGroups(b []byte) ([]string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return []string{}, nil
	}
	var v AgentGroups
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode agent groups: %w", err)
	}
	return NormalizeGroups(v.Groups), nil
}

// EncodeAgentGroups is the stored form of gs: normalised,
// {"groups":[…]}, never null.
func EncodeAgentGroups(gs []string) []byte {
	b, _ := json.Marshal(AgentGroups{Groups: NormalizeGroups(gs)}) // a struct of strings always marshals
	return b
}

// ConfigScope is the value of every agent_config scope key (fleet.md §2.2):
// each field set overrides the layers below it; absent and null both mean
// "inherit", and a stored value holds only the fields that are set. Unknown
// fields are ignored on read (newer agents read fields this build does not
// know).
type ConfigScope struct {
	TargetVersion        *string `json:"target_version,omitempty" doc:"the agent version to run; agents on another version self-update to it"`
	TargetVersionJitter  *string `json:"target_version_jitter,omitempty" doc:"how long an agent may wait at random before updating, a duration such as 10m"`
	HeartbeatInterval    *string `json:"heartbeat_interval,omitempty" doc:"a duration such as 30s"`
	HostPerfInterval     *string `json:"host_perf_interval,omitempty" doc:"a duration such as 60s"`
	ProcessPerfEnabled   *bool   `json:"process_perf_enabled,omitempty"`
	ProcessPerfExpiresAt *string `json:"process_perf_expires_at,omitempty" doc:"RFC 3339; process sampling stops then"`
	ProcessPerfTopN      *int64  `json:"process_perf_top_n,omitempty" doc:"0–4294967295 processes per sample"`
	ClientDisplayName    *string `json:"client_display_name,omitempty"`
	MaxLocalConcurrent   *int64  `json:"max_local_concurrent,omitempty" doc:"at least 1; absent: the agent sizes by its CPU count"`
}

// ConfigFields are the ConfigScope fields by JSON name, in name order: the
// order of multi-group warnings and the names the field routes take.
var ConfigFields = []string{
	"client_display_name", "heartbeat_interval", "host_perf_interval", "max_local_concurrent",
	"process_perf_enabled", "process_perf_expires_at", "process_perf_top_n",
	"target_version", "target_version_jitter",
}

// Validate applies the write-time checks of fleet.md §2.2: durations parse,
// the timestamp is RFC 3339, the counts are in range, a target version is
// not empty. The agent silently falls back to its default on a value it
// cannot parse, so a bad one must stop here.
func (s ConfigScope) Validate() error {
	var c checker
	if s.TargetVersion != nil {
		c.rule("target_version", *s.TargetVersion, strings.TrimSpace(*s.TargetVersion) != "" && ValidID(*s.TargetVersion),
			"must be a version: 1–128 bytes of UTF-8 without control characters, not blank")
	}
	for _, d := range []struct {
		field string
		v     *string
	}{{"target_version_jitter", s.TargetVersionJitter}, {"heartbeat_interval", s.HeartbeatInterval}, {"host_perf_interval", s.HostPerfInterval}} {
		if d.v != nil {
			c.duration(d.field, *d.v)
		}
	}
	for _, d := range []struct {
		field string
		v     *string
	}{{"heartbeat_interval", s.HeartbeatInterval}, {"host_perf_interval", s.HostPerfInterval}} {
		if d.v != nil && c.err == nil {
			dur, _ := ParseDuration(*d.v)
			c.rule(d.field, *d.v, dur > 0, "must be a duration above zero")
		}
	}
	if s.ProcessPerfExpiresAt != nil {
		_, err := time.Parse(time.RFC3339, *s.ProcessPerfExpiresAt)
		c.rule("process_perf_expires_at", *s.ProcessPerfExpiresAt, err == nil, "must be an RFC 3339 timestamp such as 2026-12-24T18:00:00Z")
	}
	if s.ProcessPerfTopN != nil {
		n := *s.ProcessPerfTopN
		c.rule("process_perf_top_n", strconv.FormatInt(n, 10), n >= 0 && n <= math.MaxUint32, "must be an integer from 0 to 4294967295")
	}
	if s.MaxLocalConcurrent != nil {
		n := *s.MaxLocalConcurrent
		c.rule("max_local_concurrent", strconv.FormatInt(n, 10), n >= 1 && n <= math.MaxUint32, "must be an integer of at least 1")
	}
	if s.ClientDisplayName != nil {
		c.rule("client_display_name", *s.ClientDisplayName, ValidText(*s.ClientDisplayName, 256), "must be at most 256 bytes of UTF-8 without control characters")
	}
	return c.err
}

// DecodeConfigScope reads a ConfigScope: unknown fields ignored, a JSON
// type mismatch a FieldError naming the field. It does not Validate (a
// stored value is read as it is; writers validate).
func DecodeConfigScope(b []byte) (ConfigScope, error) {
	var s ConfigScope
	if len(bytes.TrimSpace(b)) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return ConfigScope{}, jsonError("config scope", "", err)
	}
	return s, nil
}

// Encode is the stored form of s: only the fields that are set.
func (s ConfigScope) Encode() []byte {
	b, _ := json.Marshal(s) // pointers to strings, bools and ints always marshal
	return b
}

// WithField is s with one field set to the JSON value raw (null clears
// it): the field routes' edit (fleet.md §2.6). Only that field is checked,
// as the whole-scope PUT would check it, so a value stored behind the
// API's back in another field does not block the edit. Newer CLIs and SPAs
// send every value as text (upstream's {"value": "…"}), so a boolean or
// integer field also takes its text form ("true", "20"). An unknown field
// name is a FieldError naming "field".
func (s ConfigScope) WithField(field string, raw json.RawMessage) (ConfigScope, error) {
	if !slices.Contains(ConfigFields, field) {
		return s, &FieldError{Field: "field", Rule: "must be one of " + strings.Join(ConfigFields, ", "), Excerpt: clip(field, errExcerptBytes)}
	}
	raw = bytes.TrimSpace(raw)
	unset := len(raw) == 0 || bytes.Equal(raw, []byte("null"))
	var one ConfigScope
	if !unset {
		if v, ok := textForm(field, raw); ok {
			raw = v
		}
		b, err := json.Marshal(map[string]json.RawMessage{field: raw})
		if err != nil {
			return s, &FieldError{Field: field, Rule: "must be a JSON value"}
		}
		if one, err = DecodeConfigScope(b); err != nil {
			return s, err
		}
		if err := one.Validate(); err != nil {
			return s, err
		}
	}
	// Merge through the stored form: the fields of s, then this one's.
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(s.Encode(), &m); err != nil {
		return s, err
	}
	delete(m, field)
	if !unset {
		if err := json.Unmarshal(one.Encode(), &m); err != nil {
			return s, err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return s, err
	}
	return DecodeConfigScope(b)
}

// textForm is the JSON literal a boolean or integer field's text value
// stands for ("true" → true, "20" → 20), or false when raw is not such a
// text.
func textForm(field string, raw json.RawMessage) (json.RawMessage, bool) {
	var text string
	if json.Unmarshal(raw, &text) != nil {
		return nil, false
	}
	switch field {
	case "process_perf_enabled":
		if text == "true" || text == "false" {
			return json.RawMessage(text), true
		}
	case "process_perf_top_n", "max_local_concurrent":
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return json.RawMessage(strconv.FormatInt(n, 10)), true
		}
	}
	return nil, false
}

// EffectiveConfig is what one agent runs with (fleet.md §2.3): every field
// with a concrete value, the nullable ones null, all keys always present.
type EffectiveConfig struct {
	TargetVersion        *string `json:"target_version"`
	TargetVersionJitter  string  `json:"target_version_jitter"`
	HeartbeatInterval    string  `json:"heartbeat_interval"`
	HostPerfInterval     string  `json:"host_perf_interval"`
	ProcessPerfEnabled   bool    `json:"process_perf_enabled"`
	ProcessPerfExpiresAt *string `json:"process_perf_expires_at"`
	ProcessPerfTopN      int64   `json:"process_perf_top_n"`
	ClientDisplayName    *string `json:"client_display_name"`
	MaxLocalConcurrent   *int64  `json:"max_local_concurrent"`
}

// DefaultEffectiveConfig is the built-in defaults every resolution starts
// from (fleet.md §2.2; the jitter is 10m since upstream #491).
func DefaultEffectiveConfig() EffectiveConfig {
	return EffectiveConfig{TargetVersionJitter: "10m", HeartbeatInterval: "30s", HostPerfInterval: "60s", ProcessPerfTopN: 20}
}

// Apply copies the fields s sets over e.
func (e *EffectiveConfig) Apply(s ConfigScope) {
	set := func(dst **string, v *string) {
		if v != nil {
			*dst = new(*v)
		}
	}
	set(&e.TargetVersion, s.TargetVersion)
	set(&e.ProcessPerfExpiresAt, s.ProcessPerfExpiresAt)
	set(&e.ClientDisplayName, s.ClientDisplayName)
	if s.TargetVersionJitter != nil {
		e.TargetVersionJitter = *s.TargetVersionJitter
	}
	if s.HeartbeatInterval != nil {
		e.HeartbeatInterval = *s.HeartbeatInterval
	}
	if s.HostPerfInterval != nil {
		e.HostPerfInterval = *s.HostPerfInterval
	}
	if s.ProcessPerfEnabled != nil {
		e.ProcessPerfEnabled = *s.ProcessPerfEnabled
	}
	if s.ProcessPerfTopN != nil {
		e.ProcessPerfTopN = *s.ProcessPerfTopN
	}
	if s.MaxLocalConcurrent != nil {
		e.MaxLocalConcurrent = new(*s.MaxLocalConcurrent)
	}
}

// ConfigLayers are the scopes stored in agent_config: global (nil when
// absent), every group's, and the PCs' by pc_id.
type ConfigLayers struct {
	Global *ConfigScope
	Groups map[string]ConfigScope
	PCs    map[string]ConfigScope
}

// Resolution is one PC's effective configuration and how it came about.
type Resolution struct {
	Effective EffectiveConfig
	// Groups are the PC's groups in application order (sorted, unique).
	Groups []string
	// Warnings name each field two or more of the PC's groups set, in
	// field-name order (human-readable, not contractual).
	Warnings []string
}

// Resolve merges the layers for a PC in the groups memberships (fleet.md
// §2.3): defaults, then global, then each of its groups' scopes in sorted
// order (a later group wins field by field), then the PC's own scope.
// withPC false leaves the PC's scope out (the "inherited" view).
func (l ConfigLayers) Resolve(pc string, memberships []string, withPC bool) Resolution {
	r := Resolution{Effective: DefaultEffectiveConfig(), Groups: NormalizeGroups(memberships)}
	if l.Global != nil {
		r.Effective.Apply(*l.Global)
	}
	setBy := map[string][]string{}
	for _, g := range r.Groups {
		s, ok := l.Groups[g]
		if !ok {
			continue
		}
		for _, f := range s.setFields() {
			setBy[f] = append(setBy[f], g)
		}
		r.Effective.Apply(s)
	}
	for _, f := range slices.Sorted(maps.Keys(setBy)) {
		if gs := setBy[f]; len(gs) > 1 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("multi-group conflict on `%s`: set by [%s]; %s wins",
				f, strings.Join(gs, ", "), gs[len(gs)-1]))
		}
	}
	if s, ok := l.PCs[pc]; ok && withPC {
		r.Effective.Apply(s)
	}
	return r
}

// setFields are the JSON names of the fields s sets.
func (s ConfigScope) setFields() []string {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(s.Encode(), &m) // Encode's output is an object
	return slices.Sorted(maps.Keys(m))
}
