package main

import "testing"

func TestMedianCI(t *testing.T) {
	// The ranks are those of the usual tables of distribution-free intervals for a median
	// at 95 %: none below six values, then the extremes, then inward.
	tests := []struct {
		n      int
		ok     bool
		lo, hi int // 1-based ranks
	}{
		{n: 1},
		{n: 5},
		{n: 6, ok: true, lo: 1, hi: 6},
		{n: 8, ok: true, lo: 1, hi: 8},
		{n: 9, ok: true, lo: 2, hi: 8},
		{n: 10, ok: true, lo: 2, hi: 9},
		{n: 21, ok: true, lo: 6, hi: 16},
		{n: 50, ok: true, lo: 18, hi: 33},
		// Where 2^-n underflows: the normal approximation, n/2 ± (1.96·√n/2 + 1/2), gives
		// 955.7–1044.3.
		{n: 2000, ok: true, lo: 956, hi: 1045},
	}
	for _, tt := range tests {
		sorted := make([]float64, tt.n)
		for i := range sorted {
			sorted[i] = float64(i + 1)
		}
		lo, hi, ok := medianCI(sorted)
		if ok != tt.ok || ok && (lo != float64(tt.lo) || hi != float64(tt.hi)) {
			t.Errorf("n=%d: got ranks %v–%v ok=%v, want %d–%d ok=%v", tt.n, lo, hi, ok, tt.lo, tt.hi, tt.ok)
		}
	}
}
