package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/kanade-fleet/backend"
)

// Element digests (migration 0026). A set whose text changed since the
// stored report (setSigs) usually changed one app of 150. Diffing it from
// all its rows meant typing 150 elements, reading the PC's 150 rows and
// comparing them: two thirds of what an inventory report cost the writer
// (bench/ingest -inventory 0.1). So beside the rows, inventory_elements
// keeps a digest of each element's JSON text and of its key as stored, and
// a changed set is diffed by element (replaceChanged): an element whose
// text is stored is left alone untyped; only the new texts are typed, and
// only their keys' stored rows read.
//
// The digests vouch for the rows as setSigs' signature does, so the same
// writes clear them: a failed write of the PC's rows, and a rebuilt table.
// They are kept only for a clean set (every element a row, the keys
// certain and distinct), where element and row correspond one to one.
// Two texts or keys with one 64-bit digest (a chance of about 1 in 10^15
// per report) would leave a changed app's row as it was until its next
// change; every other case takes the whole diff.

// elemDigest is one element's: of its JSON text, and of its key.
type elemDigest struct{ elem, key uint64 }

// elementDigest is the digest of an element's JSON text.
func elementDigest(e []byte) uint64 { return xxhash.Sum64(e) }

// specDigest ties stored digests to the spec their rows were typed by.
func specDigest(spec *kanade.ExplodeSpec) []byte {
	b, _ := json.Marshal(spec) // plain structs always marshal
	h := sha256.Sum256(b)
	return h[:16]
}

// readDigests is the stored digests of the PC's rows of spec's table,
// nil when none are kept or they are of another spec.
func (tx *Tx) readDigests(ctx context.Context, spec *kanade.ExplodeSpec, pc, job string) ([]elemDigest, error) {
	read, err := tx.prepared(ctx, `SELECT digests FROM inventory_elements WHERE pc_id = ? AND job_id = ? AND tbl = ?`)
	if err != nil {
		return nil, fmt.Errorf("read element digests: %w", err)
	}
	var b []byte
	switch err := read.QueryRowContext(ctx, pc, job, strings.ToLower(spec.Table)).Scan(&b); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read element digests: %w", err)
	}
	head := specDigest(spec)
	if len(b) < len(head) || (len(b)-len(head))%16 != 0 || string(b[:len(head)]) != string(head) {
		return nil, nil
	}
	b = b[len(head):]
	out := make([]elemDigest, len(b)/16)
	for i := range out {
		out[i] = elemDigest{binary.LittleEndian.Uint64(b[16*i:]), binary.LittleEndian.Uint64(b[16*i+8:])}
	}
	return out, nil
}

// writeDigests stores ds as the digests of the PC's rows of spec's table,
// or, when the set was not clean, forgets them.
func (tx *Tx) writeDigests(ctx context.Context, spec *kanade.ExplodeSpec, pc, job string, ds []elemDigest, clean bool) error {
	tbl := strings.ToLower(spec.Table)
	if !clean {
		if _, err := tx.execPrepared(ctx, `DELETE FROM inventory_elements WHERE pc_id = ? AND job_id = ? AND tbl = ?`, pc, job, tbl); err != nil {
			return fmt.Errorf("forget element digests: %w", err)
		}
		return nil
	}
	b := append(make([]byte, 0, 16+16*len(ds)), specDigest(spec)...)
	for _, d := range ds {
		b = binary.LittleEndian.AppendUint64(b, d.elem)
		b = binary.LittleEndian.AppendUint64(b, d.key)
	}
	if _, err := tx.execPrepared(ctx, `INSERT INTO inventory_elements (pc_id, job_id, tbl, digests) VALUES (?, ?, ?, ?)
		ON CONFLICT (pc_id, job_id, tbl) DO UPDATE SET digests = excluded.digests`, pc, job, tbl, b); err != nil {
		return fmt.Errorf("write element digests: %w", err)
	}
	return nil
}

// replaceChanged is replaceRows by element, against old, the stored
// digests. done is false, with nothing written, when the set needs the
// whole diff: it is not clean, or a new element's values may be converted
// by affinity, or the stored rows of the changed or removed keys are not
// all there.
func (tx *Tx) replaceChanged(ctx context.Context, set *explodeSet, old []elemDigest, pc, job, collected, observed string) (int, bool, error) {
	spec := set.spec
	if set.missing {
		return 0, false, nil
	}
	stored := make(map[uint64]uint64, len(old)) // element → key
	oldKeys := make(map[uint64]bool, len(old))
	for _, d := range old {
		stored[d.elem] = d.key
		oldKeys[d.key] = true
	}
	if len(stored) != len(old) || len(oldKeys) != len(old) {
		return 0, false, nil
	}
	t := newElementTyper(spec)
	kept := make(map[uint64]bool, len(old)) // elements whose text is stored
	keys := make(map[uint64]bool, len(old))
	digests := make([]elemDigest, 0, len(old)+4)
	var added, changed [][]any
	clean := true
	eachElement(set.raw, func(e []byte) {
		if !clean {
			return
		}
		h := elementDigest(e)
		if k, ok := stored[h]; ok && !kept[h] {
			kept[h], keys[k] = true, true
			digests = append(digests, elemDigest{h, k})
			return
		}
		row, ok := t.row(e)
		if !ok {
			clean = false
			return
		}
		k, ok := t.keyDigest(row)
		if !ok || keys[k] {
			clean = false
			return
		}
		keys[k] = true
		digests = append(digests, elemDigest{h, k})
		if oldKeys[k] {
			changed = append(changed, row)
		} else {
			added = append(added, row)
		}
	})
	if !clean {
		return 0, false, nil
	}
	if !allCertain(spec, added) || !allCertain(spec, changed) {
		return 0, false, nil
	}
	removed := make(map[uint64]bool)
	for _, d := range old {
		if !keys[d.key] {
			removed[d.key] = true
		}
	}
	keyAt := keyColumns(spec)
	var before [][]any
	var err error
	if len(removed) == 0 {
		// Only the changed keys' stored rows are read.
		before, err = tx.selectKeys(ctx, spec, keyAt, pc, job, changed)
	} else {
		// A key no element has any more: only its stored row holds its
		// values, and the digest names it. The PC's rows are read (a
		// read, where the whole diff also types every element and
		// rewrites what it finds changed) and the removed ones picked
		// below by the digest of their stored key.
		before, err = tx.selectRows(ctx, spec, pc, job)
	}
	if err != nil {
		return 0, false, err
	}
	if len(removed) == 0 && len(before) != len(changed) {
		return 0, false, nil
	}
	var gone [][]any
	prev := make(map[string][]any, len(before))
	for _, r := range before {
		k := storedKey(keyAt, r)
		prev[k] = r
		if len(removed) > 0 && removed[xxhash.Sum64String(k)] {
			gone = append(gone, r)
		}
	}
	if len(gone) != len(removed) {
		return 0, false, nil
	}
	writes := added
	for _, r := range changed {
		if o := prev[storedKey(keyAt, r)]; o == nil {
			return 0, false, nil
		} else if !sameStored(spec, o, r) {
			writes = append(writes, r)
		}
	}
	if err := tx.deleteKeys(ctx, spec, keyAt, pc, job, gone); err != nil {
		return 0, false, err
	}
	if _, err := tx.writeRows(ctx, spec, pc, job, collected, writes, true); err != nil {
		return 0, false, err
	}
	if err := tx.writeDigests(ctx, spec, pc, job, digests, true); err != nil {
		return 0, false, err
	}
	if !spec.TrackHistory || len(writes) == 0 && len(gone) == 0 {
		return 0, true, nil
	}
	n, err := tx.insertHistory(ctx, pc, job, observed, diffRows(spec, keyAt, touchedRows(keyAt, before, writes, gone), writes))
	return n, true, err
}

// sameStored says whether row (certain values) is what stored holds.
func sameStored(spec *kanade.ExplodeSpec, stored, row []any) bool {
	for j, c := range spec.Columns {
		if f, ok := certain(c.Kind(), row[j]); !ok || f != storedForm(stored[j]) {
			return false
		}
	}
	return true
}

// selectKeys reads the PC's stored rows with the keys of rows (whose key
// values are certain, so bound as stored).
func (tx *Tx) selectKeys(ctx context.Context, spec *kanade.ExplodeSpec, keyAt []int, pc, job string, rows [][]any) ([][]any, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	cols := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		cols[i] = kanade.QuoteIdent(c.Field)
	}
	var out [][]any
	err := byKeys(spec, keyAt, pc, job, rows, func(_ int, where string, args []any) error {
		got, err := tx.queryRows(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+kanade.QuoteIdent(spec.Table)+where, len(cols), args...)
		out = append(out, got...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read changed rows: %w", err)
	}
	return out, nil
}
