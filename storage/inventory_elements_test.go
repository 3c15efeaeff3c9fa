package storage_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestInventoryElementDiffMatchesBruteForce: PCs whose app lists evolve a
// little from report to report, as real ones do (a version bumped, an app
// added or removed, the list reordered, an element respelled with spaces,
// a duplicate key, an element without a key, a number sent as text), with
// stale reports and redeliveries. Most changed sets are diffed by element
// (replaceChanged), the rest whole; the history and the rows equal a
// brute-force model computed from the payloads alone.
func TestInventoryElementDiffMatchesBruteForce(t *testing.T) {
	db := storagetest.Open(t, nil)
	spec := mustHint(t, `{"display":[],"explode":[{"field":"apps","table":"ev","primary_key":["name","arch"],
		"columns":[{"field":"name","index":true},{"field":"arch"},{"field":"ver"},{"field":"kb","type":"integer"}],
		"track_history":true}]}`)
	rng := rand.New(rand.NewPCG(7, 8))
	type elem struct {
		name, arch, ver string
		kb              int64
		spaced, noKey   bool
		kbText          bool
	}
	render := func(e elem) string {
		kb := fmt.Sprint(e.kb)
		if e.kbText {
			kb = `"` + kb + `"`
		}
		switch {
		case e.noKey:
			return fmt.Sprintf(`{"name":%q,"ver":%q}`, e.name, e.ver)
		case e.spaced:
			return fmt.Sprintf(`{ "name" : %q, "arch": %q, "ver": %q, "kb": %s }`, e.name, e.arch, e.ver, kb)
		}
		return fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%s}`, e.name, e.arch, e.ver, kb)
	}
	apps := 0
	newElem := func() elem { // a key not used before
		apps++
		return elem{name: fmt.Sprintf("app%03d", apps/2), arch: []string{"x64", "x86"}[apps%2], ver: fmt.Sprint(rng.IntN(9)), kb: int64(rng.IntN(5))}
	}
	type pcState struct {
		elems    []elem
		recorded int
		rows     map[string]string // identity → value, the model's
	}
	pcs := map[string]*pcState{}
	var want []invEvent
	var byElement, whole int
	seq := 0
	for round := range 120 {
		var batch []storage.Result
		for range 1 + rng.IntN(3) {
			pc := fmt.Sprintf("PC-%d", rng.IntN(3))
			s := pcs[pc]
			if s == nil {
				s = &pcState{recorded: -1 << 30, rows: map[string]string{}}
				for range 12 {
					s.elems = append(s.elems, newElem())
				}
				pcs[pc] = s
			}
			// Mutate the PC's list as real reports do; now and then one
			// report only also carries a duplicate key, an element
			// without a key or a number sent as text.
			es := slices.Clone(s.elems)
			for range 1 + rng.IntN(2) {
				i := rng.IntN(max(1, len(es)))
				switch rng.IntN(8) {
				case 0, 1, 2:
					if len(es) > 0 {
						es[i].ver = fmt.Sprint(rng.IntN(9))
					}
				case 3, 4:
					es = append(es, newElem())
				case 5:
					if len(es) > 0 {
						es = slices.Delete(es, i, i+1)
					}
				case 6:
					rng.Shuffle(len(es), func(a, b int) { es[a], es[b] = es[b], es[a] })
				case 7:
					if len(es) > 0 {
						es[i].spaced = !es[i].spaced
					}
				}
			}
			// Mostly newer reports, sometimes one older than the stored.
			min := round*10 + rng.IntN(10)
			stale := rng.IntN(8) == 0
			if stale {
				min -= 25
			} else {
				s.elems = es
			}
			if i := rng.IntN(max(1, len(es))); len(es) > 0 && rng.IntN(5) == 0 {
				es = slices.Clone(es)
				switch rng.IntN(3) {
				case 0:
					d := es[i]
					d.ver = "dup"
					es = append(es, d)
				case 1:
					es[i].noKey = true
				case 2:
					es[i].kbText = true
				}
			}
			parts := make([]string, len(es))
			for i, e := range es {
				parts[i] = render(e)
			}
			seq++
			r := invResult(fmt.Sprintf("r%d", seq), pc, min, `{"apps":[`+strings.Join(parts, ",")+`]}`, spec)
			batch = append(batch, r)

			if min < s.recorded {
				continue
			}
			s.recorded = min
			observed := kanade.FormatTime(r.RecordedAt)
			next := map[string]string{}
			for _, e := range es {
				id := fmt.Sprintf(`{"name":%q,"arch":%q}`, e.name, e.arch)
				if _, dup := next[id]; dup || e.noKey {
					continue
				}
				next[id] = fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%d}`, e.name, e.arch, e.ver, e.kb)
			}
			want = append(want, setEvents(pc, "apps", observed, s.rows, next)...)
			s.rows = next
		}
		st := applyInv(t, db, batch...)
		byElement += st.Inventory.ByElement
		whole += st.Inventory.Whole
		if rng.IntN(4) == 0 {
			applyInv(t, db, batch...) // a redelivery changes nothing
		}
	}
	if diff := cmp.Diff(want, invHistory(t, db)); diff != "" {
		t.Errorf("history (-brute force +projection):\n%s", diff)
	}
	for pc, s := range pcs {
		got := map[string]string{}
		for _, r := range invRows(t, db, `SELECT name, arch, ver, kb FROM ev WHERE pc_id = ?`, pc) {
			got[fmt.Sprintf(`{"name":%q,"arch":%q}`, r[0], r[1])] = fmt.Sprintf(`{"name":%q,"arch":%q,"ver":%q,"kb":%d}`, r[0], r[1], r[2], r[3])
		}
		if diff := cmp.Diff(s.rows, got); diff != "" {
			t.Errorf("%s rows (-model +db):\n%s", pc, diff)
		}
	}
	// Both ways were taken, the element diff most often.
	if byElement < 100 || whole < 30 || byElement < whole {
		t.Errorf("%d sets diffed by element, %d whole: the test exercises too little of one", byElement, whole)
	}
	t.Logf("%d events; %d sets diffed by element, %d whole", len(want), byElement, whole)
}
