package policy

import (
	"regexp"
	"regexp/syntax"
	"testing"
)

func (s *byteSet) String() string {
	var b []byte
	for c := range 256 {
		if s.has(byte(c)) {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

func mustParseSimple(t *testing.T, expr string) *syntax.Regexp {
	t.Helper()
	re, err := parseSimple(expr)
	if err != nil {
		t.Fatalf("parsing %q: %v", expr, err)
	}
	return re
}

func TestLeadBytes(t *testing.T) {
	tests := []struct {
		pattern string
		want    string // "" for no bound
	}{
		{`^[0-9]{11}$`, "0123456789"},
		{anchorPattern(`[0-9]{11}`), "0123456789"},
		{anchorPattern(`^[0-9]{11}$`), "0123456789"},
		{`^(?i)bot_`, "Bb"},
		{`^(?i)k`, "Kk\xe2"}, // the Kelvin sign, U+212A, folds to k
		{`^é|^\x{4E00}`, "\xc3\xe4"},
		{`^a*b`, "ab"},
		{`^(a|b*)c`, "abc"},
		{`^[a-c]|^[0-9]`, "0123456789abc"},
		{`^\bab`, "a"},
		{`^[\x{D000}-\x{E000}]`, "\xed\xee"}, // surrogates have no UTF-8 form
		{`^a*`, ""},                          // matches the empty string
		{`^$`, ""},
		{`[0-9]+`, ""}, // not anchored
		{`(?m)^a`, ""}, // anchored at a line, not the text
		{`^a|b`, ""},   // one branch is not anchored
		{`^.x`, ""},    // any character
		{`^[^a]`, ""},  // includes U+FFFD, which matches any invalid byte
		{`^\x{FFFD}`, ""},
	}
	for _, tt := range tests {
		got := ""
		if s := leadBytes(mustParseSimple(t, tt.pattern)); s != nil {
			got = s.String()
			if got == "" {
				t.Errorf("leadBytes(%q) is empty, want nil for no bound", tt.pattern)
			}
		}
		if got != tt.want {
			t.Errorf("leadBytes(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

// FuzzLeadBytes: a text the pattern matches begins with one of its lead bytes.
func FuzzLeadBytes(f *testing.F) {
	f.Add(`[0-9]{11}`, "13800138000")
	f.Add(`(?i)k.*`, "\u212aelvin")
	f.Add(`[^a]x`, "\xffx")
	f.Add(`(a|b*)c`, "c")
	f.Add(`[\x{D000}-\x{E000}]`, "\ue000")
	f.Fuzz(func(t *testing.T, pattern, text string) {
		for _, expr := range []string{pattern, anchorPattern(pattern), "^" + pattern} {
			re, err := regexp.Compile(expr)
			if err != nil {
				continue
			}
			set := leadBytes(mustParseSimple(t, expr))
			if set == nil || !re.MatchString(text) {
				continue
			}
			if text == "" || !set.has(text[0]) {
				t.Fatalf("%q matches %q, which its lead bytes %q rule out", expr, text, set.String())
			}
		}
	})
}
