package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite"
)

// openDB opens a SQLite file of the projection for checking (its own pool,
// never the workers').
func openDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(20000)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(2)
	return db, nil
}

// queryInt runs a one-number query on the file at path.
func queryInt(ctx context.Context, path, q string, args ...any) (int64, error) {
	db, err := openDB(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n sql.NullInt64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", firstLine(q), err)
	}
	return n.Int64, nil
}

// finishedRows counts the finished runs in execution_results.
func finishedRows(ctx context.Context, path string) (int64, error) {
	return queryInt(ctx, path, `SELECT COUNT(*) FROM execution_results WHERE finished_at IS NOT NULL`)
}

// resultIDs lists every result_id in execution_results.
func resultIDs(ctx context.Context, path string) ([]string, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT result_id FROM execution_results`)
	if err != nil {
		return nil, fmt.Errorf("list result ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list result ids: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Diff compares the ids that should have landed (every acknowledged
// message's row) with the ids found.
type Diff struct {
	Want, Got int
	// Missing are wanted ids not found, in want order; MissingBlocks groups
	// their positions in want into contiguous ranges [from, to].
	Missing       []string
	MissingBlocks [][2]int
	// Extra are ids found but not wanted (only when extras matter).
	Extra []string
	// Dups are ids found more than once.
	Dups []string
}

// DiffIDs compares want (in publish order, each once) with got.
func DiffIDs(want, got []string) Diff {
	d := Diff{Want: len(want), Got: len(got)}
	seen := make(map[string]int, len(got))
	for _, id := range got {
		seen[id]++
	}
	wanted := make(map[string]bool, len(want))
	for i, id := range want {
		wanted[id] = true
		if seen[id] == 0 {
			d.Missing = append(d.Missing, id)
			if n := len(d.MissingBlocks); n > 0 && d.MissingBlocks[n-1][1] == i-1 {
				d.MissingBlocks[n-1][1] = i
			} else {
				d.MissingBlocks = append(d.MissingBlocks, [2]int{i, i})
			}
		}
	}
	for id, n := range seen {
		if n > 1 {
			d.Dups = append(d.Dups, id)
		}
		if !wanted[id] {
			d.Extra = append(d.Extra, id)
		}
	}
	sort.Strings(d.Dups)
	sort.Strings(d.Extra)
	return d
}

// OK reports an exact match.
func (d Diff) OK() bool { return len(d.Missing) == 0 && len(d.Extra) == 0 && len(d.Dups) == 0 }

// String is the one-line verdict used in reports.
func (d Diff) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d acked, %d rows: %d missing, %d extra, %d duplicated", d.Want, d.Got, len(d.Missing), len(d.Extra), len(d.Dups))
	if len(d.MissingBlocks) > 0 {
		b.WriteString("; missing positions ")
		for i, r := range d.MissingBlocks {
			if i == 5 {
				fmt.Fprintf(&b, " … (%d blocks)", len(d.MissingBlocks))
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			if r[0] == r[1] {
				fmt.Fprintf(&b, "%d", r[0])
			} else {
				fmt.Fprintf(&b, "%d-%d", r[0], r[1])
			}
		}
	}
	if len(d.Missing) > 0 {
		fmt.Fprintf(&b, "; e.g. missing %s", d.Missing[0])
	}
	if len(d.Extra) > 0 {
		fmt.Fprintf(&b, "; e.g. extra %q", d.Extra[0])
	}
	return b.String()
}

// waitRows polls count until it reaches want, or until it makes no progress
// for stall, or ctx ends. It returns the last count.
func waitRows(ctx context.Context, want int64, stall time.Duration, count func(context.Context) (int64, error)) (int64, error) {
	var last int64 = -1
	lastChange := time.Now()
	for {
		n, err := count(ctx)
		if err == nil {
			if n >= want {
				return n, nil
			}
			if n != last {
				last, lastChange = n, time.Now()
			}
		}
		if time.Since(lastChange) > stall {
			if err != nil {
				return last, fmt.Errorf("%w for %v (at %d of %d): %v", errNoProgress, stall, last, want, err)
			}
			return last, fmt.Errorf("%w for %v (at %d of %d)", errNoProgress, stall, last, want)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return last, err
		}
	}
}

// TableDump is a table's rows rendered as sorted text lines.
type TableDump struct {
	Table string
	Rows  []string
}

// dumpTable renders every row of table (columns in ignore left out), sorted.
func dumpTable(ctx context.Context, db *sql.DB, table string, ignore ...string) (TableDump, error) {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return TableDump{}, fmt.Errorf("dump %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return TableDump{}, fmt.Errorf("dump %s: %w", table, err)
	}
	skip := map[int]bool{}
	for i, c := range cols {
		for _, ig := range ignore {
			if c == ig {
				skip[i] = true
			}
		}
	}
	d := TableDump{Table: table}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return TableDump{}, fmt.Errorf("dump %s: %w", table, err)
		}
		var b strings.Builder
		for i, v := range vals {
			if skip[i] {
				continue
			}
			switch x := v.(type) {
			case nil:
				fmt.Fprintf(&b, "%s=NULL|", cols[i])
			case []byte:
				fmt.Fprintf(&b, "%s=x'%x'|", cols[i], x)
			default:
				fmt.Fprintf(&b, "%s=%v|", cols[i], x)
			}
		}
		d.Rows = append(d.Rows, b.String())
	}
	sort.Strings(d.Rows)
	return d, rows.Err()
}

// DiffDumps lists the rows only in a and only in b (at most max of each).
func DiffDumps(a, b TableDump, max int) (onlyA, onlyB []string, nA, nB int) {
	i, j := 0, 0
	for i < len(a.Rows) || j < len(b.Rows) {
		switch {
		case j >= len(b.Rows) || (i < len(a.Rows) && a.Rows[i] < b.Rows[j]):
			if len(onlyA) < max {
				onlyA = append(onlyA, a.Rows[i])
			}
			nA++
			i++
		case i >= len(a.Rows) || b.Rows[j] < a.Rows[i]:
			if len(onlyB) < max {
				onlyB = append(onlyB, b.Rows[j])
			}
			nB++
			j++
		default:
			i++
			j++
		}
	}
	return onlyA, onlyB, nA, nB
}

// KeyedDiffs explains rows that differ between two dumps by their first
// column (the key): for keys on both sides, only the columns that differ;
// for the others, which side has them. At most max lines.
func KeyedDiffs(onlyA, onlyB []string, max int) []string {
	split := func(row string) (string, map[string]string, []string) {
		parts := strings.Split(strings.TrimSuffix(row, "|"), "|")
		m := map[string]string{}
		var order []string
		for _, p := range parts {
			k, v, _ := strings.Cut(p, "=")
			m[k] = v
			order = append(order, k)
		}
		return parts[0], m, order
	}
	bs := map[string]map[string]string{}
	for _, r := range onlyB {
		k, m, _ := split(r)
		bs[k] = m
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range onlyA {
		if len(out) >= max {
			return out
		}
		k, ma, order := split(r)
		seen[k] = true
		mb, ok := bs[k]
		if !ok {
			out = append(out, k+": only in the first")
			continue
		}
		var cols []string
		for _, c := range order {
			if ma[c] != mb[c] {
				cols = append(cols, fmt.Sprintf("%s %s vs %s", c, oneLine(ma[c], 40), oneLine(mb[c], 40)))
			}
		}
		out = append(out, k+": "+strings.Join(cols, "; "))
	}
	for _, r := range onlyB {
		if len(out) >= max {
			break
		}
		if k, _, _ := split(r); !seen[k] {
			out = append(out, k+": only in the second")
		}
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
