package httpload

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunEndToEnd builds the HTTP shell and runs the whole suite at a tiny
// size: the real binary, a real socket, every check.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./shells/http and runs it for ~15 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		WorkDir: t.TempDir(), Agents: 200, Runs: 2000, Conns: 4, Duration: 2 * time.Second,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	md := rep.Markdown()
	if !rep.Pass() {
		t.Fatalf("report fails:\n%s", md)
	}
	if len(rep.Endpoints) != 3 || len(rep.Checks) < 9 {
		t.Fatalf("%d endpoints, %d checks:\n%s", len(rep.Endpoints), len(rep.Checks), md)
	}
	for _, want := range []string{"| `GET /api/health/fleet` |", "| slow headers (1 byte/s) | PASS |", "| auth on every /api route | PASS |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestRunRefusesEmptySizes(t *testing.T) {
	if _, err := Run(context.Background(), Options{Agents: 1, Runs: 1, Conns: 0, Duration: time.Second}); err == nil {
		t.Fatal("Conns 0: no error")
	}
}
