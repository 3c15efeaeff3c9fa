package kanade_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"a short id is unchanged", "PC-0123", "PC-0123"},
		{"empty", "", ""},
		{"non-ASCII printable text is kept", "東京 本社", "東京 本社"},
		{"a backslash is kept", `CORP\taro`, `CORP\taro`},
		{"a newline is escaped", "a\nb", `a\x0ab`},
		{"a terminal escape is escaped", "\x1b[31mred", `\x1b[31mred`},
		{"DEL is escaped", "\x7f", `\x7f`},
		{"a C1 control is escaped", "\u0085", `\u0085`},
		{"a right-to-left override is escaped", "a\u202eb", `a\u202eb`},
		{"a line separator is escaped", "a\u2028b", `a\u2028b`},
		{"an astral format character is escaped", "\U000e0001", `\U000e0001`},
		{"invalid UTF-8 is escaped byte by byte", "a\xff\xfeb", `a\xff\xfeb`},
		{"a truncated rune is escaped", "a\xe3\x81", `a\xe3\x81`},
		{"exactly 96 bytes are kept whole", strings.Repeat("a", 96), strings.Repeat("a", 96)},
		{"97 bytes are cut with the length", strings.Repeat("a", 97), strings.Repeat("a", 96) + "…(97 bytes)"},
		{"a 3,100-byte id", strings.Repeat("x", 3100), strings.Repeat("x", 96) + "…(3100 bytes)"},
		{"the cut falls on a rune boundary", strings.Repeat("a", 95) + "あい", strings.Repeat("a", 95) + "…(101 bytes)"},
		{"32 three-byte runes fill the 96 bytes", strings.Repeat("あ", 40), strings.Repeat("あ", 32) + "…(120 bytes)"},
		{"escapes count towards the 96 bytes", strings.Repeat("\n", 30), strings.Repeat(`\x0a`, 24) + "…(30 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, kanade.Clip(tt.in)); diff != "" {
				t.Errorf("Clip(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
