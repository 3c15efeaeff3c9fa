package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiffIDs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want, got []string
		missing   []string
		blocks    [][2]int
		extra     []string
		dups      []string
	}{
		{name: "an exact match has no differences", want: []string{"a", "b"}, got: []string{"b", "a"}},
		{name: "missing ids are grouped into contiguous blocks of positions",
			want: []string{"a", "b", "c", "d", "e", "f"}, got: []string{"a", "d", "f"},
			missing: []string{"b", "c", "e"}, blocks: [][2]int{{1, 2}, {4, 4}}},
		{name: "ids nobody published are extra", want: []string{"a"}, got: []string{"a", "z", "y"}, extra: []string{"y", "z"}},
		{name: "an id found twice is a duplicate", want: []string{"a", "b"}, got: []string{"a", "b", "b"}, dups: []string{"b"}},
		{name: "nothing landed", want: []string{"a", "b"}, missing: []string{"a", "b"}, blocks: [][2]int{{0, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DiffIDs(tc.want, tc.got)
			if diff := cmp.Diff(tc.missing, d.Missing); diff != "" {
				t.Errorf("missing (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.blocks, d.MissingBlocks); diff != "" {
				t.Errorf("blocks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.extra, d.Extra); diff != "" {
				t.Errorf("extra (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.dups, d.Dups); diff != "" {
				t.Errorf("dups (-want +got):\n%s", diff)
			}
			if ok := tc.missing == nil && tc.extra == nil && tc.dups == nil; d.OK() != ok {
				t.Errorf("OK() = %v, want %v", d.OK(), ok)
			}
		})
	}
}

func TestDiffStringNamesTheBlocks(t *testing.T) {
	want := make([]string, 10)
	for i := range want {
		want[i] = string(rune('a' + i))
	}
	d := DiffIDs(want, []string{"a", "b", "c", "g", "h", "i", "j"})
	s := d.String()
	for _, part := range []string{"10 acked, 7 rows", "3 missing", "missing positions 3-5", "e.g. missing d"} {
		if !strings.Contains(s, part) {
			t.Errorf("String() = %q, lacks %q", s, part)
		}
	}
}

func TestDiffDumps(t *testing.T) {
	a := TableDump{Rows: []string{"1", "2", "4", "5"}}
	b := TableDump{Rows: []string{"1", "3", "4", "6", "7"}}
	onlyA, onlyB, nA, nB := DiffDumps(a, b, 10)
	if diff := cmp.Diff([]string{"2", "5"}, onlyA); diff != "" {
		t.Errorf("only in a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"3", "6", "7"}, onlyB); diff != "" {
		t.Errorf("only in b (-want +got):\n%s", diff)
	}
	if nA != 2 || nB != 3 {
		t.Errorf("counts %d, %d; want 2, 3", nA, nB)
	}
	if _, onlyB, _, nB := DiffDumps(a, b, 1); len(onlyB) != 1 || nB != 3 {
		t.Errorf("max 1: got %d rows listed, %d counted; want 1, 3", len(onlyB), nB)
	}
}

func TestDumpTableAndResultIDsReadARealSQLiteFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	db, err := openDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE execution_results (result_id TEXT PRIMARY KEY, finished_at TEXT, updated_at TEXT)`,
		`INSERT INTO execution_results VALUES ('b', 'x', 'now'), ('a', NULL, 'later')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	d, err := dumpTable(ctx, db, "execution_results", "updated_at")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"result_id=a|finished_at=NULL|", "result_id=b|finished_at=x|"}, d.Rows); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
	n, err := finishedRows(ctx, path)
	if err != nil || n != 1 {
		t.Errorf("finishedRows = %d, %v; want 1", n, err)
	}
	ids, err := resultIDs(ctx, path)
	if err != nil || len(ids) != 2 {
		t.Errorf("resultIDs = %v, %v", ids, err)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP x y
# TYPE kanade_projector_decode_failures_total counter
kanade_projector_decode_failures_total{stream="RESULTS"} 7
kanade_projector_decode_failures_total{stream="EVENTS"} 2
kanade_projector_decode_failures_total{stream="heartbeat"} 100
kanade_projector_apply_errors_total{consumer="a,b",other="x\"y"} 3
go_goroutines 12
`))
	js := func(l map[string]string) bool { return l["stream"] == "RESULTS" || l["stream"] == "EVENTS" }
	if got := m.Sum("kanade_projector_decode_failures_total", js); got != 9 {
		t.Errorf("decode failures over JetStream streams = %v, want 9", got)
	}
	if got := m.Sum("kanade_projector_apply_errors_total", func(l map[string]string) bool { return l["consumer"] == "a,b" && l["other"] == `x"y` }); got != 3 {
		t.Errorf("labels with a comma and a quote: got %v, want 3", got)
	}
	if got := m.Sum("go_goroutines", nil); got != 12 {
		t.Errorf("unlabelled sample = %v, want 12", got)
	}
	if m.Has("absent") {
		t.Error("Has(absent) = true")
	}
}

func TestKeyedDiffsNamesOnlyTheDifferingColumns(t *testing.T) {
	a := []string{"id=1|x=a|y=b|", "id=2|x=a|y=b|"}
	b := []string{"id=1|x=a|y=c|", "id=3|x=a|y=b|"}
	got := KeyedDiffs(a, b, 10)
	want := []string{"id=1: y b vs c", "id=2: only in the first", "id=3: only in the second"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
