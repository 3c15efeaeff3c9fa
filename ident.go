package kanade

import (
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
