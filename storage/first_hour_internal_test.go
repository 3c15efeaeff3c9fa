package storage

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
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
