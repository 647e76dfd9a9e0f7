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

// IsASCII reports whether s is all ASCII, eight bytes at a time.
func IsASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
