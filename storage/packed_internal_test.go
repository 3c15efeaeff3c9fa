package storage

import (
	"strings"
	"testing"

	"github.com/kanade-fleet/backend"
)

// TestPackSharesTheInventoryFrame: an inventory run's stdout is its
// report's facts, compressed once (the second compression was 0.8 s of
// the fetch loop's CPU per 10k reports).
func TestPackSharesTheInventoryFrame(t *testing.T) {
	hint := &kanade.InventoryHint{Display: []kanade.DisplayField{}}
	stdout := `{"apps":"` + strings.Repeat("x", 4000) + `"}`
	r := Result{ExecResult: kanade.ExecResult{Stdout: stdout}, Inventory: PrepareInventory(hint, stdout)}
	r.Pack()
	packed, ok := r.stdout.([]byte)
	facts, _ := r.Inventory.packedFacts.([]byte)
	if !ok || len(packed) == 0 || &packed[0] != &facts[0] {
		t.Errorf("stdout packed apart from the facts (%T)", r.stdout)
	}
	if got, err := unpack(packed); err != nil || got != stdout {
		t.Errorf("unpacked %d bytes, %v", len(got), err)
	}
}
