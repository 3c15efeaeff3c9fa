// Package shells_test guards what each shell binary links. The split of the
// shell plumbing (app for every shell, onprem for the writing side, api for
// the HTTP API) only pays while no import slips across it: one stray import
// puts the NATS server back into the Lambda bootstrap, or huma into the
// worker, and everything still builds and passes. This test is what notices.
package shells_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/kanade-fleet/backend"

func TestEachShellLinksOnlyWhatItRuns(t *testing.T) {
	tests := []struct {
		shell string
		tags  string // as the shell is built (see README)
		// mustNot are packages or module paths the shell must never link.
		mustNot []string
		// must are ones it does link, so that a listing that sees nothing
		// cannot pass.
		must []string
	}{
		{
			shell: "lambda",
			tags:  "lambda.norpc,kanade.nosqlite,kanade.nobrotli",
			mustNot: []string{"github.com/nats-io/nats-server/v2", mod + "/bus/natsd",
				mod + "/projection", mod + "/schedule", mod + "/sim", mod + "/shells/internal/onprem",
				// Nothing persists on Lambda: a third of the binary for a
				// file nobody keeps.
				"modernc.org/sqlite",
				// The fleet gauges are served as text (handlers.Metrics):
				// the client library and protobuf were 2.3 MB of 17.6.
				"github.com/prometheus/client_golang", "google.golang.org/protobuf", mod + "/metrics",
				// The dashboard goes out gzipped (handlers/brotli.go).
				"github.com/andybalholm/brotli"},
			must: []string{mod + "/shells/internal/api", mod + "/handlers", "github.com/aws/aws-lambda-go/lambda",
				"github.com/tursodatabase/libsql-client-go"},
		},
		{
			shell: "worker",
			mustNot: []string{"github.com/danielgtaylor/huma/v2", mod + "/handlers", mod + "/spa",
				mod + "/shells/internal/api"},
			must: []string{mod + "/shells/internal/onprem", mod + "/projection", mod + "/schedule", mod + "/sim"},
		},
		{
			// The on-prem shell runs everything, so it may link everything.
			shell: "http",
			must: []string{"github.com/nats-io/nats-server/v2", mod + "/projection", mod + "/schedule", mod + "/sim",
				"github.com/danielgtaylor/huma/v2", mod + "/handlers", mod + "/spa", mod + "/metrics"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			t.Parallel()
			root := mod + "/shells/" + tt.shell
			imports := listDeps(t, root, tt.tags)
			for _, p := range tt.mustNot {
				// Of the packages under p, name the one nearest the shell:
				// its chain ends at the import to remove.
				var chain []string
				for _, dep := range sortedKeys(imports) {
					if !within(dep, p) {
						continue
					}
					if c := importPath(imports, root, dep); chain == nil || len(c) < len(chain) {
						chain = c
					}
				}
				if chain != nil {
					t.Errorf("shells/%s links %s: %s", tt.shell, p, strings.Join(chain, " -> "))
				}
			}
			for _, p := range tt.must {
				if !slices.ContainsFunc(sortedKeys(imports), func(dep string) bool { return within(dep, p) }) {
					t.Errorf("shells/%s does not link %s; is the listing broken?", tt.shell, p)
				}
			}
		})
	}
}

// listDeps runs go list -deps on pkg and returns every package it links with
// the packages each one imports.
func listDeps(t *testing.T, pkg, tags string) map[string][]string {
	t.Helper()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.CommandContext(t.Context(), "go", append(args, pkg)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	deps := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			deps[f[0]] = f[1:]
		}
	}
	return deps
}

// within says whether the package path is p or inside it.
func within(path, p string) bool { return path == p || strings.HasPrefix(path, p+"/") }

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// importPath is a shortest chain of imports from root to dep, so a failure
// names the import to remove.
func importPath(imports map[string][]string, root, dep string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == dep {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, strings.TrimPrefix(p, mod+"/"))
			}
			slices.Reverse(chain)
			return chain
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{root, "?", dep}
}
