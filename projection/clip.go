package projection

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// clip makes a value from the wire safe for one log line: at most 96 bytes,
// control characters and invalid UTF-8 escaped.
func clip(s string) string { return clipN(s, 96) }

func clipN(s string, n int) string {
	cut := len(s) > n
	if cut {
		s = s[:n]
		for i := 0; i < utf8.UTFMax-1 && len(s) > 0; i++ {
			if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1] // a rune cut in two
		}
	}
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if cut {
		return fmt.Sprintf("%s…(cut)", q)
	}
	return q
}
