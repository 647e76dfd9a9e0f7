package keywords

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// refChar is one character of text normalised the straightforward way.
type refChar struct {
	r        rune
	boundary bool // a word boundary precedes it
}

// refNormalize normalises a whole text at once: NFKC over the whole string, then the
// per-rune mapping (shared with the package, and covered by TestMatch's cases), then
// separators. It shares none of Match's streaming, offsets, ring or automaton.
func refNormalize(text string, opts Options) []refChar {
	m := newMapper(opts)
	if opts.FoldCompatibility {
		// Each invalid byte reads as U+FFFD first, as in Match: after an invalid byte,
		// x/text's NFKC leaves the rest of the text as it is ("\xf0ͺ" stays, where "ͺ"
		// alone becomes " ͅ").
		var valid strings.Builder
		for _, r := range text {
			valid.WriteRune(r)
		}
		text = norm.NFKC.String(valid.String())
	}
	var out []refChar
	sep, space, joins := false, false, false
	for _, r := range text {
		r, k := m.mapRune(r)
		switch k {
		case kindInvisible:
			continue
		case kindSpace, kindPunct:
			if opts.IgnoreSeparators {
				sep = true
				continue
			}
			if k == kindSpace {
				if space {
					continue
				}
				r = ' '
			}
		}
		out = append(out, refChar{r: r, boundary: len(out) == 0 || sep || !joins || k != kindWord})
		sep, space, joins = false, k == kindSpace, k == kindWord
	}
	return out
}

func runesOf(cs []refChar) []rune {
	rs := make([]rune, len(cs))
	for i, c := range cs {
		rs[i] = c.r
	}
	return rs
}

// refMatch tries every entry at every end position, earliest end first, longest first.
func refMatch(words []string, opts Options, text string) (entry string, form []rune, ok bool) {
	type ent struct {
		word string
		form []rune
	}
	var ents []ent
	seen := map[string]bool{}
	for _, w := range words {
		w = strings.TrimSpace(w)
		f := runesOf(refNormalize(w, opts))
		if len(f) == 0 || seen[string(f)] {
			continue
		}
		seen[string(f)] = true
		ents = append(ents, ent{w, f})
	}
	slices.SortStableFunc(ents, func(a, b ent) int { return len(b.form) - len(a.form) })
	t := refNormalize(text, opts)
	rs := runesOf(t)
	for end := 1; end <= len(t); end++ {
		for _, e := range ents {
			start := end - len(e.form)
			if start < 0 || !slices.Equal(rs[start:end], e.form) {
				continue
			}
			if opts.WholeWords && (!t[start].boundary || (end < len(t) && !t[end].boundary)) {
				continue
			}
			return e.word, e.form, true
		}
	}
	return "", nil, false
}

func refMatchEntry(words []string, opts Options, text string) string {
	e, _, _ := refMatch(words, opts, text)
	return e
}

func FuzzMatch(f *testing.F) {
	f.Add("via\nbuy now\n微信", "Buy ｖ.1.а now, 加我微信", uint8(0x1f))
	f.Add("a b\nb\nab", "za b ab", uint8(0x10))
	f.Add("café\nfi", "cafe\u0301 ﬁ \xff\xe4\xb8", uint8(0x02))
	f.Add("❤\n👨👩", "I ❤️ 👨\u200d👩", uint8(0x0c))
	f.Add("가\n각", "가\u11a8 \u1100\u1161", uint8(0x02))
	f.Add("ｶﾞ\nガ", "ｶﾞｶ\u3099", uint8(0x13))
	f.Fuzz(func(t *testing.T, wordList, text string, flags uint8) {
		opts := Options{
			FoldCase:          flags&0x01 != 0,
			FoldCompatibility: flags&0x02 != 0,
			IgnoreSeparators:  flags&0x04 != 0,
			FoldConfusables:   flags&0x08 != 0,
			WholeWords:        flags&0x10 != 0,
		}
		var words []string
		for _, w := range strings.Split(wordList, "\n") {
			if _, err := Compile(opts, w); err == nil && len(words) < 50 {
				words = append(words, w)
			}
		}
		d, err := Compile(opts, words...)
		if err != nil {
			t.Fatalf("entries that compile alone fail together: %v", err)
		}
		m, ok := d.Match(text)
		want, form, wantOK := refMatch(words, opts, text)
		if ok != wantOK || m.Entry != want {
			t.Fatalf("opts %+v words %q text %q: Match = %q, %v; reference = %q, %v", opts, words, text, m.Entry, ok, want, wantOK)
		}
		// A dictionary this small has a full transition table; large ones walk failure
		// links instead, and must find the same.
		walk := *d
		walk.ac.next = nil
		if wm, wok := walk.Match(text); wok != ok || wm != m {
			t.Fatalf("opts %+v words %q text %q: Match = %+v, %v with the table, %+v, %v without", opts, words, text, m, ok, wm, wok)
		}
		if !ok {
			return
		}
		if m.Start < 0 || m.Start > m.End || m.End > len(text) {
			t.Fatalf("text %q: range %d..%d out of bounds", text, m.Start, m.End)
		}
		// The matched range, normalised alone, holds the entry's normalised form.
		if got := runesOf(refNormalize(text[m.Start:m.End], opts)); !containsRunes(got, form) {
			t.Fatalf("opts %+v text %q: range %d..%d = %q normalises to %q, without %q",
				opts, text, m.Start, m.End, text[m.Start:m.End], string(got), string(form))
		}
		if !utf8.ValidString(m.Entry) {
			t.Fatalf("entry %q is not valid UTF-8", m.Entry)
		}
	})
}

func containsRunes(s, sub []rune) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if slices.Equal(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
