package kanade

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Identifier rules.
//
// NATS closes a client's connection for good when it sends a protocol line
// over 4096 bytes ("maximum control line exceeded"), and a subject, a KV key
// (published as $KV.<bucket>.<key>) and an object name (whose base64 is a
// subject token of the object store) all travel in such a line. One hostile
// or buggy message whose id reaches a publish would therefore take the
// backend's connection down. Every id that arrives from outside is checked
// against the rule of the place it may end up in before it is used; the
// bounds below leave each composed subject far under the limit.

// Byte bounds of the identifier rules.
const (
	// MaxTokenBytes bounds one subject token (a group, an exec_id, …).
	MaxTokenBytes = 128
	// MaxPCIDBytes bounds a pc_id (fleet.md §0.4).
	MaxPCIDBytes = 128
	// MaxKVKeyBytes bounds a KV key such as a manifest id.
	MaxKVKeyBytes = 255
	// MaxObjectNameBytes bounds a result_output object name; its base64
	// (340 bytes) is what goes into the object store's subjects.
	MaxObjectNameBytes = 255
	// MaxIDBytes bounds an id that only reaches SQL (result_id, version,
	// actor, action, …).
	MaxIDBytes = 128
	// MaxTargetBytes bounds an audit target: it may be a path or a list, so
	// it gets more room than an id; it only reaches a subject when it is
	// also a valid token.
	MaxTargetBytes = 1024
	// MaxTextBytes bounds the free text of a heartbeat (hostname, logon
	// user, …).
	MaxTextBytes = 1024
	// MaxListEntries and MaxListEntryBytes bound the string lists of a
	// heartbeat (quarantined_versions, command_keys, command_protocols).
	MaxListEntries    = 256
	MaxListEntryBytes = 256
)

// The rules as error messages say them.
const (
	ruleToken  = "must be a subject token: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters"
	rulePCID   = "must be 1–128 bytes of [A-Za-z0-9_=/-]"
	ruleKVKey  = "must be a KV key: 1–255 bytes of [-/_=.A-Za-z0-9], not starting or ending with '.', no '..'"
	ruleObject = "must be an object name: 1–255 bytes of UTF-8 without control characters"
	ruleID     = "must be 1–128 bytes of UTF-8 without control characters"
)

// ValidToken reports whether s can be one token of a NATS subject: not
// empty, at most 128 bytes, valid UTF-8, and free of '.' (which would split
// it), '*' and '>' (wildcards), whitespace (which ends a subject in the
// protocol line) and control characters (including DEL).
func ValidToken(s string) bool {
	if s == "" || len(s) > MaxTokenBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r == '*', r == '>':
			return false
		case unicode.IsSpace(r), unicode.IsControl(r):
			return false
		}
	}
	return true
}

// ValidPCID reports whether s is a pc_id (fleet.md §0.4): 1–128 bytes of
// [A-Za-z0-9_=/-]. A pc_id is a subject token (heartbeat.<pc_id>,
// commands.pc.<pc_id>), a KV key in agent_groups and a key suffix in
// agent_config, so it must fit the narrowest of them, the KV key alphabet
// without '.'. Agents name PCs like PC-0123 or DESKTOP-ABC12.
func ValidPCID(s string) bool {
	if s == "" || len(s) > MaxPCIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !kvKeyByte(s[i]) || s[i] == '.' {
			return false
		}
	}
	return true
}

// ValidKVKey reports whether s can be a NATS KV key: 1–255 bytes of
// [-/_=.A-Za-z0-9], not starting or ending with '.' (control.md "KV keys",
// the rule nats.go applies). Two dots in a row are refused too: the key is
// published as $KV.<bucket>.<key>, where ".." is an empty subject token.
func ValidKVKey(s string) bool {
	if s == "" || len(s) > MaxKVKeyBytes || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !kvKeyByte(s[i]) || (s[i] == '.' && s[i-1] == '.') {
			return false
		}
	}
	return true
}

func kvKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '/' || c == '_' || c == '=' || c == '.'
}

// ValidObjectName reports whether s can name an object in result_output
// (keys <request_id>/stdout and <request_id>/stderr): 1–255 bytes of valid
// UTF-8 without control characters. The object store puts the base64 of the
// name into a subject, so any character is safe there but the length is
// not.
func ValidObjectName(s string) bool {
	return s != "" && ValidText(s, MaxObjectNameBytes)
}

// ValidID reports whether s is a bounded id that only reaches SQL and logs
// (result_id, parent_result_id, version, actor, action): 1–128 bytes of
// valid UTF-8 without control characters. It needs no narrower alphabet, but
// an unbounded or binary id would bloat every row, index and log line that
// carries it.
func ValidID(s string) bool {
	return s != "" && ValidText(s, MaxIDBytes)
}

// ValidText reports whether s is at most maxBytes of valid UTF-8 without
// control characters (DEL and the C1 range included), so that it can be
// stored, served and logged as text. Empty is valid: callers decide whether
// the field is required.
func ValidText(s string, maxBytes int) bool {
	if len(s) > maxBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validPrintable is ValidText for a short label (an agent version): 1 to
// maxBytes of printable characters, so no control or invisible formatting
// characters either.
func validPrintable(s string, maxBytes int) bool {
	if s == "" || len(s) > maxBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// FieldError is a payload field that is missing or breaks its rule: the
// error of every validator of this package, for wire payloads and for the
// records operators write (Manifest, Schedule), so that the API can point at
// the field without reading the message. It
// carries a clipped excerpt of the value, never the value itself: the value
// came from the wire and may be megabytes of control characters, and this
// error ends up in log lines and problem bodies.
type FieldError struct {
	// Field is the JSON path of the field from the payload's root: names
	// joined by dots, an index for list entries ("command_keys[3]",
	// "execute.shell", "when.calendar.days[0]").
	Field string
	// Rule says what is wrong: "is required" or "must be …".
	Rule string
	// Excerpt is a log-safe excerpt of the value (at most 64 bytes of it);
	// empty for a missing field.
	Excerpt string
}

func (e *FieldError) Error() string {
	if e.Excerpt == "" {
		return e.Field + " " + e.Rule
	}
	return e.Field + " " + strconv.Quote(e.Excerpt) + " " + e.Rule
}

// checker collects the first broken rule of a payload, so Validate methods
// read as a list of rules.
type checker struct{ err error }

// required records field as missing unless present.
func (c *checker) required(field string, present bool) {
	if c.err == nil && !present {
		c.err = &FieldError{Field: field, Rule: "is required"}
	}
}

// rule records value of field as breaking rule unless ok.
func (c *checker) rule(field, value string, ok bool, rule string) {
	if c.err == nil && !ok {
		c.err = &FieldError{Field: field, Rule: rule, Excerpt: clip(value, errExcerptBytes)}
	}
}

// holds records field as breaking rule unless ok, for a rule about the
// field as a whole (an empty list, two members that exclude each other), so
// no value is quoted.
func (c *checker) holds(field string, ok bool, rule string) {
	if c.err == nil && !ok {
		c.err = &FieldError{Field: field, Rule: rule}
	}
}

// duration parses value, a duration (ParseDuration) that field requires,
// and records why it is not one. It returns 0 once a rule is broken.
func (c *checker) duration(field, value string) time.Duration {
	c.required(field, strings.TrimSpace(value) != "")
	if c.err != nil {
		return 0
	}
	d, err := ParseDuration(value)
	c.rule(field, value, err == nil, durationRule(err))
	return d
}

// under records err, an error of a nested value whose FieldError names the
// field relative to that value (groups[0]), with the field put under prefix
// (target.groups[0]).
func (c *checker) under(prefix string, err error) {
	if c.err != nil || err == nil {
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		nested := *fe
		nested.Field = prefix + "." + fe.Field
		err = &nested
	}
	c.err = err
}

// optional applies valid to value when it is not empty.
func (c *checker) optional(field, value string, valid func(string) bool, rule string) {
	c.rule(field, value, value == "" || valid(value), rule)
}

// time records a required timestamp that is missing or outside the years
// the SQL layout can hold (Timestamps decoded from JSON are checked already;
// this covers ones built in Go).
func (c *checker) time(field string, t Timestamp) {
	c.required(field, !t.IsZero())
	if c.err == nil && !validYear(t.Time) {
		c.err = &FieldError{Field: field, Rule: "must have a year in 0001–9999", Excerpt: t.UTC().Format("2006-01-02T15:04:05Z07:00")}
	}
}

// list applies the heartbeat list bounds: at most MaxListEntries entries of
// at most MaxListEntryBytes bytes of UTF-8 without control characters each.
func (c *checker) list(field string, l []string) {
	if c.err == nil && len(l) > MaxListEntries {
		c.err = &FieldError{Field: field, Rule: "must have at most 256 entries (has " + strconv.Itoa(len(l)) + ")"}
	}
	for i, v := range l {
		if c.err != nil {
			return
		}
		c.rule(field+"["+strconv.Itoa(i)+"]", v, ValidText(v, MaxListEntryBytes),
			"must be at most 256 bytes of UTF-8 without control characters")
	}
}
