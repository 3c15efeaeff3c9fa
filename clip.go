package kanade

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// clipBytes bounds Clip's excerpt. 96 bytes shows a UUID, a pc_id or a
// subject in full while a hostile 1 MB id costs a log line no more than a
// normal one.
const clipBytes = 96

// errExcerptBytes bounds the excerpt of a value quoted in an error message
// (a FieldError, a timestamp that does not parse): a value is named, not
// reproduced.
const errExcerptBytes = 64

// Clip is a log-safe excerpt of s, for log attributes and error messages that
// name a value taken from the wire. Anything an agent or a stray publisher
// sends may be huge or hold control characters, and writing it raw lets one
// message flood the log or forge log lines (a newline starts a fake entry, an
// escape sequence rewrites a terminal). Clip keeps at most 96 bytes, cut at a
// rune boundary; replaces invalid UTF-8 with \xNN and control and other
// non-printable characters with \xNN, \uNNNN or \UNNNNNNNN (the escapes count
// towards the 96 bytes); and, when it cut, appends "…(N bytes)" with the
// length of the whole value, so a reader knows there was more.
func Clip(s string) string { return clip(s, clipBytes) }

// clip is Clip with an excerpt of at most max bytes (before the suffix).
func clip(s string, max int) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		piece, size := clipPiece(s[i:])
		if b.Len()+len(piece) > max {
			break
		}
		b.WriteString(piece)
		i += size
	}
	if i < len(s) {
		fmt.Fprintf(&b, "…(%d bytes)", len(s))
	}
	return b.String()
}

// clipPiece is the rendering of the first rune of s (or of its first byte,
// when s does not start with valid UTF-8) and how many bytes of s it covers.
func clipPiece(s string) (string, int) {
	r, size := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && size <= 1:
		return fmt.Sprintf(`\x%02x`, s[0]), 1
	case r == ' ' || unicode.IsPrint(r):
		return s[:size], size
	case r < utf8.RuneSelf:
		return fmt.Sprintf(`\x%02x`, r), size
	case r <= 0xFFFF:
		return fmt.Sprintf(`\u%04x`, r), size
	default:
		return fmt.Sprintf(`\U%08x`, r), size
	}
}
