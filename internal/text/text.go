// Package text holds small string helpers shared by friendgate's packages.
package text

import "unicode/utf8"

// ellipsis marks where Truncate cut a string.
const ellipsis = "..."

// Truncate shortens s to at most max bytes, ending in "..." when it cuts, and never splits
// a UTF-8 sequence: what it returns stays valid wherever s was. When max leaves no room for
// the mark after a first character, the cut is made without it.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	if cut := runeCut(s, max-len(ellipsis)); cut > 0 {
		return s[:cut] + ellipsis
	}
	return s[:runeCut(s, max)]
}

// runeCut is the largest n <= max at which s can be cut without splitting a rune; max must
// be below len(s).
func runeCut(s string, max int) int {
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return max
}
