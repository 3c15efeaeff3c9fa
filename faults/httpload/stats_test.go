package httpload

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	oneToTen := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		pct    int
		want   time.Duration
	}{
		{"an empty sample is 0", nil, 50, 0},
		{"one value is every percentile", []time.Duration{7}, 99, 7},
		{"p50 of 1..10 is 5 (api.md)", oneToTen, 50, 5},
		{"p90 of 1..10 is 9 (api.md)", oneToTen, 90, 9},
		{"p99 of 1..10 is 10 (api.md)", oneToTen, 99, 10},
		{"p99 of 1..100 is 99, where ceil(0.99·100) in floats is 100", hundred, 99, 99},
		{"p100 is the maximum", hundred, 100, 100},
		{"p0 is the minimum", hundred, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.pct); got != tt.want {
				t.Fatalf("percentile(%d) = %d, want %d", tt.pct, got, tt.want)
			}
		})
	}
}

// The fast rank formula against the definition: the smallest sample value
// at or below which at least pct% of the sample lies.
func TestPercentileMatchesTheDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + rng.IntN(300)
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(rng.IntN(50)) // duplicates on purpose
		}
		slices.Sort(s)
		pct := rng.IntN(101)
		want := s[n-1]
		for _, v := range s {
			atOrBelow := 0
			for _, w := range s {
				if w <= v {
					atOrBelow++
				}
			}
			if 100*atOrBelow >= pct*n && atOrBelow > 0 {
				want = v
				break
			}
		}
		if got := percentile(s, pct); got != want {
			t.Fatalf("n=%d pct=%d: got %d, want %d (sample %v)", n, pct, got, want, s)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := EndpointStats{Requests: 4}
	summarize(&s, []time.Duration{40 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond}, 2*time.Second)
	if s.P50 != 20*time.Millisecond || s.P99 != 40*time.Millisecond || s.Max != 40*time.Millisecond || s.PerSecond != 2 {
		t.Fatalf("got p50 %v p99 %v max %v rate %v", s.P50, s.P99, s.Max, s.PerSecond)
	}
}
