package jsonscan_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/internal/jsonscan"
)

// seeds are texts at the edges of the grammar: every escape, numbers of
// every shape, nesting, white space, invalid UTF-8 and surrogates.
var seeds = []string{
	``, ` `, `null`, `true`, `false`, `nul`, `truex`, `0`, `-0`, `-`, `01`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `-1.25e+10`, `.5`,
	`""`, `"a"`, `"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\u12"`, `"\x"`, `"\'"`, "\"\x01\"", "\"\x7f\"",
	`"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, `"\ude00\ud83d"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`,
	"\"\xff\"", "\"a\xc3\"", "\"\xe2\x82\xac\"", "\"\xed\xa0\x80\"", `"abc`, `"abc\`,
	`[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `{}`, `{ }`, `{"a":1}`, `{"a" : [1, {"b": null}] }`, `{"a"}`, `{"a":}`,
	`{"a":1,}`, `{1:2}`, `{"a":1 "b":2}`, `]`, `}`, `[}`, `{]`, " \t\r\n[1]\n", `[1] [2]`, `{"a":"b"}x`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

func FuzzValid(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := jsonscan.Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func FuzzUnquote(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.Trim(b, " \t\r\n") // Unquote takes the token alone
		var want string
		err := json.Unmarshal(b, &want)
		isString := err == nil && len(b) > 0 && b[0] == '"'
		got, ok := jsonscan.Unquote(b)
		if ok != isString || got != want {
			t.Fatalf("Unquote(%q) = %q, %v; encoding/json: %q, %v", b, got, ok, want, err)
		}
		if ok && jsonscan.String(b, 0) != len(b) {
			t.Fatalf("String(%q, 0) = %d, want %d", b, jsonscan.String(b, 0), len(b))
		}
	})
}

// TestValidAgreesOnTheSeeds runs the seeds in a plain `go test` with the
// answers spelled out for a few, so a change that breaks both sides of
// the fuzz comparison the same way is still caught.
func TestValidAgreesOnTheSeeds(t *testing.T) {
	for _, s := range seeds {
		if got, want := jsonscan.Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid says %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{`{"a":[1,-2.5e3,"x\u00e9",true,null]}`: true, `[1,]`: false, "\"\x01\"": false,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000): true, strings.Repeat("[", 10001) + strings.Repeat("]", 10001): false} {
		if got := jsonscan.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.40q) = %v, want %v", s, got, want)
		}
	}
	for q, want := range map[string]string{`"a\"b"`: `a"b`, `"\ud83d\ude00"`: "😀", `"\ud83dx"`: "\ufffdx", "\"\xff\"": "\ufffd", `"\u00e9\n"`: "é\n"} {
		if got, ok := jsonscan.Unquote([]byte(q)); !ok || got != want {
			t.Errorf("Unquote(%s) = %q, %v; want %q", q, got, ok, want)
		}
	}
}

func BenchmarkValid(b *testing.B) {
	doc := []byte(report(150))
	b.SetBytes(int64(len(doc)))
	b.Run("jsonscan", func(b *testing.B) {
		for b.Loop() {
			if !jsonscan.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
}

// report is an inventory report of n apps, about 140 bytes each, quoted
// as it travels inside a result.
func report(n int) string {
	var sb strings.Builder
	sb.WriteString(`{"hostname":"pc-0001","os":"Windows 11 Pro","apps":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"name":"Application Number ` + strings.Repeat("x", i%7) + `","version":"12.4.` + string(rune('0'+i%10)) + `","publisher":"Some Vendor Inc.","installed":"2026-11-0` + string(rune('1'+i%9)) + `"}`)
	}
	sb.WriteString(`]}`)
	q, _ := json.Marshal(sb.String())
	return `{"stdout":` + string(q) + `}`
}
