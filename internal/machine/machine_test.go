package machine

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestLoadAvgIsThreeNumbers(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		if got := LoadAvg(); got != "unknown" {
			t.Errorf("LoadAvg() = %q without /proc/loadavg, want unknown", got)
		}
		return
	}
	f := strings.Fields(LoadAvg())
	if len(f) != 3 {
		t.Fatalf("LoadAvg() = %q, want three numbers", LoadAvg())
	}
	for _, s := range f {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			t.Errorf("LoadAvg() = %q: %v", LoadAvg(), err)
		}
	}
}
