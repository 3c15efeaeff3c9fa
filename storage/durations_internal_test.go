package storage

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBinOfIsMonotoneAndNarrow: bins must be ordered like the values (the
// rank search walks them in order) and in range, and a bin is at most a
// sixteenth of its values wide (or one value wide below 16), so a
// percentile decodes few values.
func TestBinOfIsMonotoneAndNarrow(t *testing.T) {
	vals := []int64{math.MinInt64, math.MinInt64 + 1, math.MaxInt64, math.MaxInt64 - 1}
	for v := int64(-300); v <= 300; v++ {
		vals = append(vals, v)
	}
	for e := 4; e < 63; e++ {
		for _, d := range []int64{-1, 0, 1} {
			vals = append(vals, int64(1)<<e+d, -(int64(1)<<e)+d)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, rng.Int64()>>rng.IntN(63), -(rng.Int64() >> rng.IntN(63)))
	}
	slices.Sort(vals)
	first := map[int]int64{}
	for i, v := range vals {
		b := binOf(v)
		if b < -binSpan || b >= binSpan {
			t.Fatalf("binOf(%d) = %d, out of range", v, b)
		}
		if i > 0 && b < binOf(vals[i-1]) {
			t.Fatalf("binOf(%d) = %d < binOf(%d) = %d", v, b, vals[i-1], binOf(vals[i-1]))
		}
		if _, ok := first[b]; !ok {
			first[b] = v
		}
		lo := first[b]
		if lo >= 0 && lo >= 16 && float64(v-lo) > float64(lo)/16 || lo >= 0 && lo < 16 && v != lo {
			t.Fatalf("bin %d holds %d and %d", b, lo, v)
		}
	}
}

// TestSegmentRoundTrip: every segment decodes to its sorted durations, each
// bin on its own, and a damaged directory is an error, not a wrong answer.
func TestSegmentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		es := make([]durEntry, 1+rng.IntN(300))
		for i := range es {
			es[i] = durEntry{ms: int64(math.Pow(10, 7*rng.Float64())) - 50, off: rng.Int64N(3600e9)}
			if rng.IntN(5) == 0 {
				es[i].ms = es[rng.IntN(i+1)].ms
			}
		}
		e := encodeSegment(es) // sorts es
		want := make([]int64, len(es))
		var total int64
		for i, x := range es {
			want[i] = x.ms
			total += x.ms
		}
		got, err := decodeDurs(nil, e.bins, e.durs, int64(len(es)))
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("decoded %v, %v; want %v", got, err, want)
		}
		if e.lo != want[0] || e.hi != want[len(want)-1] || e.total != total {
			t.Fatalf("aggregates %d %d %d, want %d %d %d", e.lo, e.hi, e.total, want[0], want[len(want)-1], total)
		}
		var pieces []int64
		if err := readBins(e.bins, int64(len(es)), len(e.durs), func(sb segBin) {
			vals, err := decodeBin(nil, e.durs[sb.start:sb.end], sb.n)
			if err != nil {
				t.Fatal(err)
			}
			// scan_durations' step 3 decodes a bin's bytes to their end.
			if all, err := decodeAll(nil, e.durs[sb.start:sb.end]); err != nil || !slices.Equal(all, vals) {
				t.Fatalf("decodeAll: %v, %v; want %v", all, err, vals)
			}
			if _, err := decodeAll(nil, e.durs[sb.start:sb.start]); err == nil {
				t.Fatal("decodeAll: an empty bin decoded")
			}
			if b := e.durs[sb.start:sb.end]; b[len(b)-1] < 0x80 && len(b) > 1 && b[len(b)-2] >= 0x80 {
				if _, err := decodeAll(nil, b[:len(b)-1]); err == nil {
					t.Fatal("decodeAll: a cut varint decoded")
				}
			}
			for _, v := range vals {
				if binOf(v) != sb.bin {
					t.Fatalf("value %d in bin %d, binOf says %d", v, sb.bin, binOf(v))
				}
			}
			pieces = append(pieces, vals...)
		}); err != nil || !slices.Equal(pieces, want) {
			t.Fatalf("bin by bin: %v, %v; want %v", pieces, err, want)
		}
		if _, err := decodeDurs(nil, e.bins, e.durs, int64(len(es))+1); err == nil {
			t.Fatal("a wrong run count decoded")
		}
		if _, err := decodeDurs(nil, e.bins[:len(e.bins)-1], e.durs, int64(len(es))); err == nil {
			t.Fatal("a truncated directory decoded")
		}
	}
}

// TestNthIsWhatASortPutsThere checks the selection summarize uses against
// a sort, on inputs made to be hard for it: sorted, reversed, all equal,
// few distinct values, organ pipes, random; every rank of each.
func TestNthIsWhatASortPutsThere(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	inputs := map[string]func(n int) []int64{
		"sorted": func(n int) []int64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(i)
			}
			return v
		},
		"reversed": func(n int) []int64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(n - i)
			}
			return v
		},
		"equal": func(n int) []int64 { return make([]int64, n) },
		"few": func(n int) []int64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = rng.Int64N(3) - 1
			}
			return v
		},
		"pipes": func(n int) []int64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(min(i, n-i))
			}
			return v
		},
		"random": func(n int) []int64 {
			v := make([]int64, n)
			for i := range v {
				v[i] = rng.Int64()
			}
			return v
		},
	}
	for name, gen := range inputs {
		for _, n := range []int{1, 2, 3, 16, 17, 100, 1000} {
			want := gen(n)
			slices.Sort(want)
			for k := range n {
				vs := gen(n)
				if name == "random" || name == "few" {
					vs = slices.Clone(want)
					rng.Shuffle(n, func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
				}
				if got := nth(vs, k); got != want[k] {
					t.Fatalf("%s, n=%d: nth(%d) = %d, want %d", name, n, k, got, want[k])
				}
				for i := range k {
					if vs[i] > vs[k] {
						t.Fatalf("%s, n=%d, k=%d: vs[%d] = %d > vs[k] = %d", name, n, k, i, vs[i], vs[k])
					}
				}
				for i := k + 1; i < n; i++ {
					if vs[i] < vs[k] {
						t.Fatalf("%s, n=%d, k=%d: vs[%d] = %d < vs[k] = %d", name, n, k, i, vs[i], vs[k])
					}
				}
			}
		}
	}
}

// TestAddHistIsReadBins checks scan_durations' directory loop against
// readBins: the same histogram for every segment, with entries past one
// byte (bins of over 127 runs, steps over 127 bins, over 127 bytes), and
// the same verdict on every truncation and every one-byte change of a
// directory.
func TestAddHistIsReadBins(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	viaReadBins := func(b []byte, runs int64) ([]int64, error) {
		hist := make([]int64, 2*binSpan)
		bad := false
		err := readBins(b, runs, -1, func(sb segBin) {
			if sb.bin < -binSpan || sb.bin >= binSpan {
				bad = true
				return
			}
			hist[sb.bin+binSpan] += sb.n
		})
		if err == nil && bad {
			err = errCorruptSegment
		}
		return hist, err
	}
	check := func(b []byte, runs int64) {
		t.Helper()
		want, werr := viaReadBins(b, runs)
		got := make([]int64, 2*binSpan)
		gerr := addHist(got, b, runs)
		if (werr == nil) != (gerr == nil) || werr == nil && !slices.Equal(got, want) {
			t.Fatalf("directory %x, %d runs: addHist %v, readBins %v (histograms equal: %v)", b, runs, gerr, werr, slices.Equal(got, want))
		}
	}
	for round := range 300 {
		es := make([]durEntry, 1+rng.IntN(600))
		for i := range es {
			es[i] = durEntry{ms: int64(math.Pow(10, 9*rng.Float64())) - 50, off: rng.Int64N(3600e9)}
			if round%3 == 0 && rng.IntN(2) == 0 {
				es[i].ms = 1 << 40 // one bin of hundreds of runs and bytes
			}
		}
		e := encodeSegment(es)
		runs := int64(len(es))
		check(e.bins, runs)
		check(e.bins, runs+1)
		for i := range e.bins {
			check(e.bins[:i], runs)
			c := slices.Clone(e.bins)
			c[i] ^= byte(1 + rng.IntN(255))
			check(c, runs)
		}
	}
}

// TestFirstHourKeepsTheWindowsRuns checks scan_durations' reading of the
// hour the window starts in against the entries it was encoded from: the
// runs at or after the window's offset, their count, sum, min, max and
// bins, and each bin's values; that every truncation of its three blobs,
// and a byte past the offsets, is an error; and that a one-byte change is
// an error or an answer, never a panic.
func TestFirstHourKeepsTheWindowsRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var w *durWindow
	read := func(es []durEntry, off0 int64, e encodedSegment) (*jobAcc, error) {
		w = &durWindow{h0: 5, off0: off0, jobs: map[string]*jobAcc{}}
		err := w.add(5, "job", int64(len(es)), e.lo, e.hi, e.total, e.bins, e.durs, e.offs)
		return w.jobs["job"], err
	}
	for round := range 200 {
		es := make([]durEntry, 1+rng.IntN(400))
		for i := range es {
			es[i] = durEntry{ms: int64(math.Pow(10, 6*rng.Float64())) - 20, off: rng.Int64N(3600e9)}
			if rng.IntN(4) == 0 {
				es[i] = es[rng.IntN(i+1)] // equal durations, equal offsets
			}
		}
		e := encodeSegment(es) // sorts es by (duration, offset)
		off0 := es[rng.IntN(len(es))].off + int64(rng.IntN(3)) - 1
		if round%10 == 0 {
			off0 = 0 // every run kept
		}
		j, err := read(es, off0, e)
		if err != nil {
			t.Fatal(err)
		}
		var n, sum int64
		hist := make([]int64, 2*binSpan)
		byBin := map[int][]int64{}
		for _, x := range es {
			if x.off >= off0 {
				n++
				sum += x.ms
				hist[binOf(x.ms)+binSpan]++
				byBin[binOf(x.ms)] = append(byBin[binOf(x.ms)], x.ms)
			}
		}
		if j.n != n || j.total != sum || !slices.Equal(j.hist, hist) {
			t.Fatalf("off0 %d: kept %d (sum %d), want %d (sum %d); histograms equal: %v", off0, j.n, j.total, n, sum, slices.Equal(j.hist, hist))
		}
		if n > 0 {
			var lo, hi int64 = math.MaxInt64, math.MinInt64
			for _, vs := range byBin {
				lo, hi = min(lo, slices.Min(vs)), max(hi, slices.Max(vs))
			}
			if j.lo != lo || j.hi != hi {
				t.Fatalf("min, max %d, %d; want %d, %d", j.lo, j.hi, lo, hi)
			}
		}
		got := map[int][]int64{}
		for _, f := range j.firstBins {
			got[int(f.bin)] = append(got[int(f.bin)], w.first[f.start:f.end]...)
		}
		for b, vs := range byBin {
			if !slices.Equal(got[b], vs) {
				t.Fatalf("bin %d: %v, want %v", b, got[b], vs)
			}
		}
		if len(got) != len(byBin) {
			t.Fatalf("%d bins kept, want %d", len(got), len(byBin))
		}
		if round%20 != 0 {
			continue
		}
		for _, blob := range []*[]byte{&e.bins, &e.durs, &e.offs} {
			orig := *blob
			for i := range orig {
				*blob = orig[:i]
				if _, err := read(es, off0, e); err == nil {
					t.Fatalf("a blob cut to %d of %d bytes read", i, len(orig))
				}
				c := slices.Clone(orig)
				c[i] ^= byte(1 + rng.IntN(255))
				*blob = c
				_, _ = read(es, off0, e)
			}
			*blob = orig
		}
		w := &durWindow{h0: 5, off0: off0, jobs: map[string]*jobAcc{}}
		for _, runs := range []int64{int64(len(es)) + 1, 1 << 40, 0, -1} { // a corrupt runs column
			if err := w.add(5, "job", runs, e.lo, e.hi, e.total, e.bins, e.durs, e.offs); err == nil {
				t.Fatalf("a segment of %d runs said to hold %d read", len(es), runs)
			}
		}
		e.offs = append(e.offs, 1)
		if _, err := read(es, off0, e); err == nil {
			t.Fatal("an offset past the segment's runs read")
		}
	}
}
