package cmd

import "testing"

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name           string
		live, headroom uint64
		want           int
	}{
		{"a few policies get the headroom", 4 * mib, 32 * mib, 800},
		{"live data as large as the headroom keeps Go's default", 32 * mib, 32 * mib, 100},
		{"large policy sets keep Go's default", 300 * mib, 32 * mib, 100},
		{"unknown live data keeps Go's default", 0, 32 * mib, 100},
		{"a tiny heap is capped", 1, 1 << 40, 100_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcPercent(tt.live, tt.headroom); got != tt.want {
				t.Errorf("gcPercent(%d, %d) = %d, want %d", tt.live, tt.headroom, got, tt.want)
			}
		})
	}
}
