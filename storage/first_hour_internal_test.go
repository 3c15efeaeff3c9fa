package storage

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// BenchmarkFirstHour decodes one closed hour of a busy job (2,000 runs,
// as at 10M runs a day over 200 jobs) with the window starting mid-hour:
// the per-run work of scan_durations' first hour.
func BenchmarkFirstHour(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	es := make([]durEntry, 2000)
	for i := range es {
		es[i] = durEntry{ms: int64(math.Pow(10, 1+4*rng.Float64())), off: rng.Int64N(3600e9)}
	}
	e := encodeSegment(es)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := &durWindow{h0: 5, off0: 1800e9, jobs: map[string]*jobAcc{}}
		if err := w.add(5, "job", int64(len(es)), e.lo, e.hi, e.total, e.bins, e.durs, e.offs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(es)), "ns/run")
}

// TestUvarintWordIsUvarint: the loop-free decoder agrees with
// binary.Uvarint on every uvarint of up to 8 bytes, followed by other bytes
// or not, and says "longer" exactly when binary.Uvarint needs more than 8.
func TestUvarintWordIsUvarint(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		v := rng.Uint64() >> rng.IntN(64)
		b := binary.AppendUvarint(nil, v)
		switch i % 4 {
		case 1: // followed by more bytes, as in a blob
			for range rng.IntN(10) {
				b = append(b, byte(rng.Uint32()))
			}
		case 2: // cut short
			b = b[:rng.IntN(len(b)+1)]
		case 3: // random bytes
			b = make([]byte, rng.IntN(12))
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
		}
		wv, wn := binary.Uvarint(b)
		if len(b) < 8 {
			continue // add reads a word only where 8 bytes remain
		}
		v, n := uvarintWord(binary.LittleEndian.Uint64(b))
		if wn > 0 && wn <= 8 && (v != wv || n != wn) || n <= 8 && (wn <= 0 || wn > 8) {
			t.Fatalf("% x: uvarintWord %d, %d; binary.Uvarint %d, %d", b, v, n, wv, wn)
		}
	}
}

// TestDecodeRawIsDecodeJoined holds binsRawSQL's decoding to binsSQL's over
// the same rows (the SQL side of both is checked by the scan's brute-force
// tests, on SQLite the raw one and on sqld the hex one): equal values, and
// every cut of the raw column that is not between two rows is an error.
func TestDecodeRawIsDecodeJoined(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 100 {
		var hexed, raw []byte
		var bounds []int
		for i := range 1 + rng.IntN(6) {
			vs := make([]int64, 1+rng.IntN(100))
			for k := range vs {
				vs[k] = rng.Int64N(1 << uint(1+rng.IntN(40)))
			}
			slices.Sort(vs)
			b := binary.AppendUvarint(nil, zigzag(vs[0]))
			for k := 1; k < len(vs); k++ {
				b = binary.AppendUvarint(b, uint64(vs[k]-vs[k-1]))
			}
			if i > 0 {
				hexed = append(hexed, ',')
			}
			hexed = append(hexed, strings.ToUpper(hex.EncodeToString(b))...) // as SQLite's hex()
			raw = fmt.Appendf(raw, "%x:", len(b))
			raw = append(raw, b...)
			bounds = append(bounds, len(raw))
		}
		want, err := decodeJoined(nil, hexed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRaw(nil, raw)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("round %d: %v (%v), want %v", round, got, err, want)
		}
		for cut := 1; cut < len(raw); cut++ {
			_, err := decodeRaw(nil, raw[:cut])
			if between := slices.Contains(bounds, cut); between != (err == nil) {
				t.Fatalf("round %d, cut at %d of %d (between rows: %v): %v", round, cut, len(raw), between, err)
			}
		}
	}
}
