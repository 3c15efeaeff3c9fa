// Package jsonscan checks and unquotes JSON text the way encoding/json
// does, in a tight loop over the bytes.
//
// encoding/json checks a whole input with a state machine that calls a
// function per byte before it decodes anything; on a result carrying an
// inventory report (20 KB of JSON inside a JSON string) that check was
// most of the projector's decoding CPU. The answers here are those of
// encoding/json, byte for byte (the fuzz tests hold them to it): the same
// grammar, the same nesting limit, invalid UTF-8 accepted inside strings
// and replaced with U+FFFD when they are unquoted. It never decodes into
// Go values: callers that meet anything unusual hand the input to
// encoding/json, which then also writes the error message.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is encoding/json's limit on nested arrays and objects.
const maxDepth = 10000

// plain marks the bytes a string can hold without a closer look: not a
// quote, a backslash or a control character.
var plain = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

// Valid reports whether b is one JSON value (with white space around it),
// as json.Valid does.
func Valid(b []byte) bool {
	i := Value(b, SkipSpace(b, 0))
	return i >= 0 && SkipSpace(b, i) == len(b)
}

// Value checks the JSON value that starts at b[i] and returns the index
// just past it, or -1 if there is none: the part of Valid that walks one
// value, for callers that take an object's members apart as they check
// it.
func Value(b []byte, i int) int { return NestedValue(b, i, 0) }

// NestedValue is Value of a value inside outer open arrays and objects,
// which count toward the nesting limit as they do for encoding/json.
func NestedValue(b []byte, i, outer int) int {
	// The open containers, '{' or '['; inline up to 64 deep.
	var inline [64]byte
	stack := inline[:0]
value:
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		if outer+len(stack) >= maxDepth {
			return -1
		}
		stack = append(stack, c)
		i = SkipSpace(b, i+1)
		if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
			stack = stack[:len(stack)-1]
			i++
			break
		}
		if c == '{' {
			if i = member(b, i); i < 0 {
				return -1
			}
		}
		goto value
	case c == '"':
		if i = String(b, i); i < 0 {
			return -1
		}
	case c == '-' || c >= '0' && c <= '9':
		if i = number(b, i); i < 0 {
			return -1
		}
	case c == 't':
		if i = literal(b, i, "true"); i < 0 {
			return -1
		}
	case c == 'f':
		if i = literal(b, i, "false"); i < 0 {
			return -1
		}
	case c == 'n':
		if i = literal(b, i, "null"); i < 0 {
			return -1
		}
	default:
		return -1
	}
	// After a value: the end, a comma or the close of its container.
	for len(stack) > 0 {
		i = SkipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		top := stack[len(stack)-1]
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
			if top == '{' {
				if i = member(b, i); i < 0 {
					return -1
				}
			}
			goto value
		case top + 2:
			stack = stack[:len(stack)-1]
			i++
		default:
			return -1
		}
	}
	return i
}

// member checks an object member's name and colon at b[i] and returns the
// index of its value, or -1.
func member(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = String(b, i); i < 0 {
		return -1
	}
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return SkipSpace(b, i+1)
}

// String checks the string whose opening quote is b[i] and returns the
// index just past its closing quote, or -1 if it is not a JSON string.
func String(b []byte, i int) int {
	for i = nextSpecial(b, i+1); i < len(b); i = nextSpecial(b, i) {
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || hex4(b[i+2:i+6]) < 0 {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
	return -1
}

// nextSpecial returns the index of the first quote, backslash or control
// character in b at or after i, or len(b): eight bytes at a time, then
// one by one.
func nextSpecial(b []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lo * '"')
		bs := x ^ (lo * '\\')
		// The high bit of each byte that is a quote, a backslash or
		// below 0x20, and perhaps of bytes after the first such one
		// (a borrow), never before it.
		if m := ((q-lo)&^q | (bs-lo)&^bs | (x-lo*0x20)&^x) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && plain[b[i]] {
		i++
	}
	return i
}

// number checks the number that starts at b[i] and returns the index just
// past it, or -1.
func number(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// SkipSpace returns the index of the first byte at or after i in b that
// is not JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// hex4 is the value of four hex digits, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// Unquote returns the text of q, one JSON string with its quotes, as
// encoding/json decodes it into a Go string: escapes resolved, invalid
// UTF-8 and unpaired surrogates replaced with U+FFFD. ok is false if q is
// not one JSON string.
func Unquote(q []byte) (s string, ok bool) {
	if len(q) < 2 || q[0] != '"' || String(q, 0) != len(q) {
		return "", false
	}
	return UnquoteValid(q), true
}

// UnquoteValid is Unquote of a string already checked (a string of text
// Valid accepted, or one String measured), without checking it again. On
// anything else its answer is meaningless, but it never reads out of
// bounds.
func UnquoteValid(q []byte) string {
	if len(q) < 2 {
		return ""
	}
	body := q[1 : len(q)-1]
	// Most strings need no work: no escape and well-formed UTF-8.
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body)
	}
	out := make([]byte, 0, len(body)+utf8.UTFMax)
	r := 0
	for r < len(body) {
		// Up to the next escape or non-ASCII byte in one copy.
		j := 0
		for r+j < len(body) && body[r+j] != '\\' && body[r+j] < utf8.RuneSelf {
			j++
		}
		out = append(out, body[r:r+j]...)
		if r+j < len(body) && body[r+j] >= utf8.RuneSelf {
			rr, size := utf8.DecodeRune(body[r+j:])
			out = utf8.AppendRune(out, rr)
			r += j + size
			continue
		}
		r += j
		if r+1 >= len(body) {
			break
		}
		switch e := body[r+1]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if r+6 > len(body) {
				return string(out)
			}
			rr := hex4(body[r+2:])
			r += 6
			if utf16.IsSurrogate(rr) {
				if r+6 <= len(body) && body[r] == '\\' && body[r+1] == 'u' {
					if dec := utf16.DecodeRune(rr, hex4(body[r+2:])); dec != utf8.RuneError {
						r += 6
						out = utf8.AppendRune(out, dec)
						continue
					}
				}
				rr = utf8.RuneError
			}
			out = utf8.AppendRune(out, rr)
			continue
		default: // '"', '\\', '/'
			out = append(out, e)
		}
		r += 2
	}
	return string(out)
}
