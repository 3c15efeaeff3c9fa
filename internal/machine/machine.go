// Package machine describes the machine a benchmark or the fault suite runs
// on, for the line recorded beside their figures: on a shared 2-core machine
// a figure means little without the load it was measured under.
package machine

import (
	"os"
	"strings"
)

// LoadAvg is the load average over 1, 5 and 15 minutes ("2.10 2.26 1.85"),
// or "unknown" where /proc/loadavg cannot be read (not Linux).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
