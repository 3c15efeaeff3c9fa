package kanade_test

import (
	"strings"
	"testing"

	"github.com/kanade-fleet/backend"
)

func TestObjectSegments(t *testing.T) {
	for _, ok := range []string{"webex", "0.41.0-beta.2", "2025.03", "a_b", "x y", "...", strings.Repeat("x", 128)} {
		if !kanade.ValidObjectSegment(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a"b`, `a\b`, "a\x00", "a\x7f", "東京", "é", strings.Repeat("x", 129)} {
		if kanade.ValidObjectSegment(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	for key, want := range map[string]bool{"inv/1.0": true, "inv": false, "a/b/c": false, "/1": false, "a/": false, "../1": false, "a/..": false} {
		if kanade.ValidScriptObjectKey(key) != want {
			t.Errorf("ValidScriptObjectKey(%q) = %v", key, !want)
		}
	}
}

// The job write path holds script_object and check.name to observe.md
// §5.7 and §3.1.
func TestManifestContentRules(t *testing.T) {
	base := func(extra string) string {
		return `{"id":"j","version":"1","execute":{"shell":"sh","timeout":"1m"` + extra
	}
	for _, c := range []struct {
		name, doc, field string
	}{
		{"a dot segment", base(`,"script_object":"../1"}}`), "execute.script_object"},
		{"a quote", base(`,"script_object":"a\"b/1"}}`), "execute.script_object"},
		{"non-ASCII", base(`,"script_object":"東京/1"}}`), "execute.script_object"},
		{"a long segment", base(`,"script_object":"` + strings.Repeat("x", 129) + `/1"}}`), "execute.script_object"},
		{"a check name with a slash", base(`,"script":"x"},"check":{"name":"a/b"}}`), "check.name"},
		{"a check name with a control character", base(`,"script":"x"},"check":{"name":"a\u0001"}}`), "check.name"},
	} {
		_, err := kanade.ParseManifest("j", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.field)
		}
	}
	m, err := kanade.ParseManifest("j", []byte(base(`,"script":"x"},"check":{"name":"bitlocker","fleet":false}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := m.FleetCheck(); ok || h.Name != "bitlocker" || h.StatusField != "status" || h.DetailField != "detail" {
		t.Errorf("fleet:false check = %+v %v", h, ok)
	}
}

func TestNotificationAckBounds(t *testing.T) {
	ok := kanade.NotificationAcked{NotificationID: "n", PcID: "PC-1", UserSID: "S-1", AckedAt: kanade.Timestamp{}}
	if err := ok.Validate(); err == nil {
		t.Error("an ack without acked_at validated")
	}
}
