package text

import (
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		s    string
		max  int
		want string
	}{
		{"short enough", "alice", 5, "alice"},
		{"empty", "", 3, ""},
		{"cut with a mark", "abcdefgh", 6, "abc..."},
		{"cut before a two-byte rune", "abcdé", 5, "ab..."},
		{"two-byte rune kept whole", "aé_xyz", 6, "aé..."},
		{"three-byte runes never split", "日本語テキスト", 10, "日本..."},
		{"four-byte rune dropped rather than split", "a😀bcdef", 7, "a..."},
		{"no room for the mark after a first character", "abcdef", 3, "abc"},
		{"no room for the mark, rune kept whole", "a€bc", 3, "a"},
		{"no room for even one rune", "日本", 2, ""},
		{"zero", "abc", 0, ""},
		{"negative", "abc", -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.s, tt.max)
			if got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
			}
			if len(got) > max(tt.max, 0) {
				t.Errorf("Truncate(%q, %d) = %q is %d bytes, more than %d", tt.s, tt.max, got, len(got), tt.max)
			}
			if utf8.ValidString(tt.s) && !utf8.ValidString(got) {
				t.Errorf("Truncate(%q, %d) = %q split a UTF-8 sequence", tt.s, tt.max, got)
			}
		})
	}
}

// TestIsASCII: a byte of 0x80 or above anywhere, in the eight-byte words or the tail,
// makes a string non-ASCII.
func TestIsASCII(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{"a", true},
		{"hello, we met at the conference", true},
		{"\x7f\x00\x01abcdefgh", true},
		{"é", false},
		{"abcdefg\x80", false},
		{"abcdefgh\xff", false},
		{"abcdefghijklmno你", false},
		{"\x80bcdefghijklmnop", false},
	} {
		if got := IsASCII(tc.s); got != tc.want {
			t.Errorf("IsASCII(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
