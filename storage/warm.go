package storage

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
)

// WarmOldResults reads, through the read pool and outside any write
// transaction, every page the next DeleteOldResults(cutoff, limit) will
// read: the rows of the batch (and their overflow pages), and each row's
// entry in every index of execution_results. It returns how many entries it
// found, by index ("" for the table rows), and does nothing on a libSQL
// server, whose pages are not this process's to warm.
//
// Why: a delete reads what it changes, and at 10M runs in a file larger
// than the page cache most of those pages are cold. A retention row sits in
// fifteen indexes, most of them keyed by PC, job or execution, so its
// entries are scattered over the file; read inside the transaction, each
// cold page is a disk read under the writer's turn, while the projector's
// batches wait. On a disk busy writing back what the checkpointer copied,
// one such read took 0.86 s (bench/scale's retention run, the seventeenth
// session's sampling). Read here first, they are in the kernel's cache when
// the delete runs a moment later; a cold read then stalls housekeeping, not
// ingest.
//
// The lookups are derived from the schema (each index's key columns and,
// for a partial index, its WHERE), so an index a migration adds is warmed
// without a change here.
func (db *DB) WarmOldResults(ctx context.Context, cutoff time.Time, limit int) (map[string]int, error) {
	if db.remote {
		return nil, nil
	}
	q, names, err := db.warmResultsQuery(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := db.cached(ctx, q, kanade.FormatTime(cutoff), limit)
	if err != nil {
		return nil, fmt.Errorf("warm old results: %w", err)
	}
	defer rows.Close()
	found := make(map[string]int, len(names))
	for rows.Next() {
		var i, n int
		if err := rows.Scan(&i, &n); err != nil {
			return nil, fmt.Errorf("warm old results: %w", err)
		}
		found[names[i]] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("warm old results: %w", err)
	}
	return found, nil
}

// warmResultsQuery builds WarmOldResults' statement once per DB: the
// schema it is derived from changes only by migration, before any worker
// runs.
func (db *DB) warmResultsQuery(ctx context.Context) (string, []string, error) {
	db.warmMu.Lock()
	defer db.warmMu.Unlock()
	if db.warmQuery != "" {
		return db.warmQuery, db.warmNames, nil
	}
	idx, err := tableIndexes(ctx, db, "execution_results")
	if err != nil {
		return "", nil, fmt.Errorf("warm old results: %w", err)
	}
	db.warmQuery, db.warmNames = warmQuery("execution_results", `SELECT rowid `+oldResults,
		[]string{"stdout", "stderr"}, idx)
	return db.warmQuery, db.warmNames, nil
}

// index is what warmQuery needs of one index: its key columns in order
// (up to the first expression, which is not a column to copy) and, for a
// partial index, the WHERE that decides which rows it holds.
type index struct {
	name    string
	columns []string
	where   string
}

// partialWhere finds a partial index's predicate in its CREATE INDEX text.
var partialWhere = regexp.MustCompile(`(?is)\bWHERE\b(.*)$`)

// tableIndexes reads the indexes of table from the schema, in one query:
// each index's key columns in order, its WHERE when it is partial.
func tableIndexes(ctx context.Context, db *DB, table string) ([]index, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT l.name, l.partial, coalesce(s.sql, ''), i.name
		FROM pragma_index_list(?1) AS l
		JOIN pragma_index_info(l.name) AS i
		LEFT JOIN sqlite_schema AS s ON s.type = 'index' AND s.name = l.name
		ORDER BY l.name, i.seqno`, table)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	defer rows.Close()
	var out []index
	var expr bool // the current index's key reached an expression
	for rows.Next() {
		var name, text string
		var partial bool
		var col *string
		if err := rows.Scan(&name, &partial, &text, &col); err != nil {
			return nil, fmt.Errorf("list indexes of %s: %w", table, err)
		}
		if len(out) == 0 || out[len(out)-1].name != name {
			ix := index{name: name}
			if partial {
				m := partialWhere.FindStringSubmatch(text)
				if m == nil {
					return nil, fmt.Errorf("partial index %s: no WHERE in %q", name, text)
				}
				ix.where = strings.TrimSpace(m[1])
			}
			out = append(out, ix)
			expr = false
		}
		if expr = expr || col == nil; !expr {
			out[len(out)-1].columns = append(out[len(out)-1].columns, *col)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	return out, nil
}

// warmQuery builds one statement that materializes the batch (batch selects
// its rowids, bound with the delete's own two arguments), reading each
// row and the whole of the columns in wide (so their overflow pages too),
// then looks every row up in every index through the index itself (INDEXED
// BY; IS, so NULL keys match; the rowid last, as the index stores it). It
// answers one row per lookup set: its position in names and the entries
// found.
func warmQuery(table, batch string, wide []string, idx []index) (string, []string) {
	alias := map[string]string{}
	var cols []string
	for _, ix := range idx {
		for _, c := range ix.columns {
			if _, ok := alias[c]; !ok {
				alias[c] = fmt.Sprintf("c%d", len(alias))
				cols = append(cols, fmt.Sprintf(", t.%s AS %s", quoteName(c), alias[c]))
			}
		}
	}
	size := "0"
	for _, c := range wide {
		size += fmt.Sprintf(" + coalesce(length(t.%s), 0)", quoteName(c))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "WITH b(id) AS MATERIALIZED (%s),\n", batch)
	fmt.Fprintf(&b, "r AS MATERIALIZED (SELECT t.rowid AS id, %s AS size%s FROM b JOIN %s AS t ON t.rowid = b.id)\n",
		size, strings.Join(cols, ""), quoteName(table))
	names := []string{""}
	// sum(size) only makes r's wide columns be read in full (length of
	// text counts its characters); the row counts the batch's rows.
	b.WriteString("SELECT 0, count(*) + 0 * coalesce(sum(size), 0) FROM r")
	for _, ix := range idx {
		var terms []string
		if ix.where != "" {
			terms = append(terms, "("+ix.where+")")
		}
		for _, c := range ix.columns {
			terms = append(terms, fmt.Sprintf("%s IS r.%s", quoteName(c), alias[c]))
		}
		terms = append(terms, "rowid = r.id")
		fmt.Fprintf(&b, "\nUNION ALL SELECT %d, (SELECT count(*) FROM r WHERE EXISTS (SELECT 1 FROM %s INDEXED BY %s WHERE %s))",
			len(names), quoteName(table), quoteName(ix.name), strings.Join(terms, " AND "))
		names = append(names, ix.name)
	}
	return b.String(), names
}
