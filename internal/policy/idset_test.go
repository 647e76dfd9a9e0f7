package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestPrefixTrieWalk checks the trie against the definition: walk reports the values of
// every stored key that is a prefix of the string, shortest key first, and the values of
// one key in the order they were added.
func TestPrefixTrieWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, rng.IntN(5))
		for i := range b {
			b[i] = "abc"[rng.IntN(3)]
		}
		return string(b)
	}
	for round := range 500 {
		var k keyed[int]
		for v := range rng.IntN(12) {
			k.add(word(), v)
		}
		trie := newPrefixTrie(&k)
		for range 20 {
			s := word() + word()
			var got []int
			trie.walk(s, func(vals []int) { got = append(got, vals...) })
			var want []int
			for n := 0; n <= len(s); n++ {
				for i, key := range k.keys {
					if key == s[:n] {
						want = append(want, k.vals[i])
					}
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d: keys %q values %v: walk(%q) = %v, want %v", round, k.keys, k.vals, s, got, want)
			}
		}
	}
	var empty keyed[int]
	tr := newPrefixTrie(&empty)
	tr.walk(strings.Repeat("a", 3), func([]int) { t.Error("an empty trie reported a value") })
}
