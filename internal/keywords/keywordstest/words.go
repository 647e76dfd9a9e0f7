// Package keywordstest makes dictionaries for the benchmarks of the keyword matcher and of
// the engine, so both measure the same words.
package keywordstest

import (
	"math/rand/v2"
	"strings"
)

// Words makes n distinct dictionary entries, seeded (the same n gives the same words): 85% Latin words of 4 to 10
// letters, 5% two-word phrases, 10% Han words of 2 or 3 characters.
func Words(n int) []string {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	const letters = "bcdfghjklmnpqrstvwxzaeiouy"
	latin := func() string {
		var b strings.Builder
		for range 4 + rng.IntN(7) {
			b.WriteByte(letters[rng.IntN(len(letters))])
		}
		return b.String()
	}
	seen := make(map[string]bool, n)
	words := make([]string, 0, n)
	for len(words) < n {
		var w string
		switch p := rng.IntN(100); {
		case p < 85:
			w = latin()
		case p < 90:
			w = latin() + " " + latin()
		default:
			var b strings.Builder
			for range 2 + rng.IntN(2) {
				b.WriteRune(rune(0x4E00 + rng.IntN(0x5000)))
			}
			w = b.String()
		}
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}
