package kanade_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
)

// ruleCase is one input of an identifier rule and whether the rule accepts it.
type ruleCase struct {
	name string
	in   string
	want bool
}

// checkRule runs every case through rule and reports all disagreements in
// one diff, named by case.
func checkRule(t *testing.T, rule func(string) bool, cases []ruleCase) {
	t.Helper()
	want, got := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		if _, dup := want[c.name]; dup {
			t.Fatalf("duplicate case name %q", c.name)
		}
		want[c.name], got[c.name] = c.want, rule(c.in)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accepted (-want +got):\n%s", diff)
	}
}

func TestValidToken(t *testing.T) {
	checkRule(t, kanade.ValidToken, []ruleCase{
		{"a plain group", "canary", true},
		{"a pc_id", "PC-0123", true},
		{"a UUID", "6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44", true},
		{"a Japanese group name", "東京本社", true},
		{"exactly 128 bytes", strings.Repeat("a", 128), true},
		{"42 three-byte runes (126 bytes)", strings.Repeat("あ", 42), true},
		{"empty", "", false},
		{"129 bytes", strings.Repeat("a", 129), false},
		{"43 three-byte runes (129 bytes)", strings.Repeat("あ", 43), false},
		{"3,100 bytes", strings.Repeat("a", 3100), false},
		{"a dot splits the token", "a.b", false},
		{"a star is a wildcard", "a*", false},
		{"a greater-than is a wildcard", ">", false},
		{"a space ends the subject", "a b", false},
		{"a tab", "a\tb", false},
		{"a newline", "a\nb", false},
		{"an ideographic space", "東京\u3000本社", false},
		{"a no-break space", "a\u00a0b", false},
		{"a NUL", "a\x00b", false},
		{"an escape", "\x1b[31m", false},
		{"DEL", "a\x7fb", false},
		{"a C1 control", "a\u0085b", false},
		{"invalid UTF-8", "a\xffb", false},
		{"a lone continuation byte", "\x80", false},
	})
}

func TestValidPCID(t *testing.T) {
	checkRule(t, kanade.ValidPCID, []ruleCase{
		{"the wire.md example", "PC-0123", true},
		{"a Windows default name", "DESKTOP-ABC12", true},
		{"a simulator name", "SIM-000001", true},
		{"a single character", "x", true},
		{"every allowed punctuation", "a_b=c/d-e", true},
		{"exactly 128 bytes", strings.Repeat("P", 128), true},
		{"empty", "", false},
		{"129 bytes", strings.Repeat("P", 129), false},
		{"a very long heartbeat pc_id", strings.Repeat("P", 5000), false},
		{"a dot (KV allows it, a subject token does not)", "PC.1", false},
		{"a space", "PC 1", false},
		{"a hash", "PC#1", false},
		{"a wildcard", "PC*", false},
		{"a colon", "PC:1", false},
		{"non-ASCII letters", "ＰＣ１", false},
		{"a newline", "PC-1\n", false},
		{"invalid UTF-8", "PC\xff", false},
	})
}

func TestValidKVKey(t *testing.T) {
	checkRule(t, kanade.ValidKVKey, []ruleCase{
		{"a manifest id", "inventory-hw", true},
		{"a scoped config key", "groups.canary", true},
		{"every allowed character", "a-b/c_d=e.F9", true},
		{"exactly 255 bytes", strings.Repeat("k", 255), true},
		{"empty", "", false},
		{"256 bytes", strings.Repeat("k", 256), false},
		{"a 5,000-byte manifest_id", strings.Repeat("k", 5000), false},
		{"a leading dot", ".a", false},
		{"a trailing dot", "a.", false},
		{"two dots in a row (an empty subject token)", "a..b", false},
		{"a single dot", ".", false},
		{"a space", "a b", false},
		{"a wildcard", "a*", false},
		{"a greater-than", "a>", false},
		{"non-ASCII", "東京", false},
		{"a control character", "a\x01", false},
	})
}

func TestValidObjectName(t *testing.T) {
	checkRule(t, kanade.ValidObjectName, []ruleCase{
		{"a stdout key", "6f1c9e2a-8d4b-4c1e-b1a3-2f0e9d7c5b44/stdout", true},
		{"any printable characters", "名前 with spaces.and.dots*>", true},
		{"exactly 255 bytes", strings.Repeat("o", 255), true},
		{"empty", "", false},
		{"256 bytes", strings.Repeat("o", 256), false},
		{"a 3,100-byte stdout_object", strings.Repeat("o", 3100), false},
		{"a newline", "a\nb", false},
		{"DEL", "a\x7f", false},
		{"invalid UTF-8", "\xfe\xff", false},
	})
}

func TestValidID(t *testing.T) {
	checkRule(t, kanade.ValidID, []ruleCase{
		{"a UUID", "0b6c2a4e-3c0d-4a55-9a0e-6e2d7f1b9c11", true},
		{"dots and spaces are fine where no subject is built", "schedule.update by me", true},
		{"exactly 128 bytes", strings.Repeat("i", 128), true},
		{"empty", "", false},
		{"129 bytes", strings.Repeat("i", 129), false},
		{"a 3,100-byte id", strings.Repeat("i", 3100), false},
		{"a newline", "a\nb", false},
		{"a C1 control", "\u009b", false},
		{"invalid UTF-8", "\xc3", false},
	})
}

func TestValidText(t *testing.T) {
	within := func(max int) func(string) bool {
		return func(s string) bool { return kanade.ValidText(s, max) }
	}
	checkRule(t, within(kanade.MaxTextBytes), []ruleCase{
		{"empty is allowed", "", true},
		{"a Windows logon", `CORP\taro`, true},
		{"a display name", "山田 太郎", true},
		{"exactly 1024 bytes", strings.Repeat("h", 1024), true},
		{"1025 bytes", strings.Repeat("h", 1025), false},
		{"a tab", "a\tb", false},
		{"a carriage return", "a\rb", false},
		{"invalid UTF-8", "\xff", false},
	})
}
