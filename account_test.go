package kanade_test

import (
	"strings"
	"testing"

	"github.com/kanade-fleet/backend"
)

func TestValidUsername(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"j.doe@example.com", true},
		{"svc_ci-01", true},
		{strings.Repeat("a", kanade.MaxUsernameBytes), true},
		{"", false},
		{strings.Repeat("a", kanade.MaxUsernameBytes+1), false},
		{"j doe", false},
		{"alice\n", false},
		{"ålice", false},
		{"a/b", false},
		{"a*", false},
	} {
		if got := kanade.ValidUsername(tt.name); got != tt.ok {
			t.Errorf("ValidUsername(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}
