package testkit_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/internal/testkit"
)

func TestPatchJSONReplacesAddsAndRemovesTopLevelMembers(t *testing.T) {
	got := string(testkit.PatchJSON(t, `{"a":1,"b":{"c":2},"d":3}`, `{"b":{"e":4},"d":null,"f":"g"}`))
	if diff := cmp.Diff(`{"a":1,"b":{"e":4},"f":"g"}`, got); diff != "" {
		t.Errorf("patched (-want +got):\n%s", diff)
	}
}

func TestSyncBufferKeepsEveryWrite(t *testing.T) {
	var b testkit.SyncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			b.Write([]byte("x"))
		}
	}()
	_ = b.String() // concurrently with the writes: the race detector watches
	<-done
	if got := b.String(); got != strings.Repeat("x", 100) {
		t.Errorf("String() = %q", got)
	}
}

// TestOnlyTestsImportTestkit: the helpers are for tests; a package's own
// code importing them would ship test scaffolding. Test helper packages
// (storagetest, bustest) count as tests.
func TestOnlyTestsImportTestkit(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/kanade-fleet/backend/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const self = "github.com/kanade-fleet/backend/internal/testkit"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg == self || strings.HasSuffix(pkg, "test") {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if imp == self {
				t.Errorf("%s imports %s outside its tests", pkg, self)
			}
		}
	}
}
