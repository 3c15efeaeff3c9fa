package kanade_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "600s", want: 600 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1h 30m", want: 90 * time.Minute},
		{in: " 1d  12h ", want: 36 * time.Hour},
		{in: "1d", want: 24 * time.Hour},
		{in: "1.5d", want: 36 * time.Hour},
		{in: "2d12h", want: 60 * time.Hour},
		{in: "1d30m15s", want: 24*time.Hour + 30*time.Minute + 15*time.Second},
		{in: " 90s ", want: 90 * time.Second},
		{in: "0s", want: 0},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "", wantErr: true},
		{in: "d", wantErr: true},
		{in: "5", wantErr: true},
		{in: "-5m", wantErr: true},
		{in: "1dd", wantErr: true},
		{in: "1d-5m", wantErr: true},
		{in: "xd", wantErr: true},
		{in: "1e3d", wantErr: true},
		{in: "999999999d", wantErr: true},
		{in: "5 minutes", wantErr: true},
	}
	for _, tt := range tests {
		got, err := kanade.ParseDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDuration(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
