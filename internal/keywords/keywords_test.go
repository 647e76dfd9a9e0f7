package keywords

import (
	"strings"
	"testing"
)

var all = Options{FoldCase: true, FoldCompatibility: true, IgnoreSeparators: true, FoldConfusables: true, WholeWords: true}

func TestMatch(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		words []string
		text  string
		want  string // entry matched, "" for none
	}{
		{"plain substring", Options{}, []string{"via"}, "trivial", "via"},
		{"case kept", Options{}, []string{"via"}, "VIA", ""},
		{"case folded", Options{FoldCase: true}, []string{"via"}, "buy ViA now", "via"},
		{"case folded in the entry", Options{FoldCase: true}, []string{"VIA"}, "via", "VIA"},
		{"greek final sigma", Options{FoldCase: true}, []string{"ΟΔΟΣ"}, "οδος", "ΟΔΟΣ"},

		{"fullwidth without NFKC", Options{}, []string{"via"}, "ｖｉａ", ""},
		{"fullwidth", Options{FoldCompatibility: true}, []string{"via"}, "ｖｉａ", "via"},
		{"fullwidth upper case", Options{FoldCompatibility: true, FoldCase: true}, []string{"via"}, "ＶＩＡ", "via"},
		{"mathematical bold", Options{FoldCompatibility: true}, []string{"via"}, "𝐯𝐢𝐚", "via"},
		{"circled", Options{FoldCompatibility: true}, []string{"via"}, "ⓥⓘⓐ", "via"},
		{"ligature", Options{FoldCompatibility: true}, []string{"find"}, "ﬁnd", "find"},
		{"decomposed accent", Options{FoldCompatibility: true}, []string{"café"}, "cafe\u0301!", "café"},
		{"composed accent is not the bare letter", Options{FoldCompatibility: true}, []string{"cafe"}, "cafe\u0301", ""},
		{"decomposed accent without NFKC", Options{}, []string{"cafe"}, "cafe\u0301", "cafe"},
		{"combining mark continues a word", Options{WholeWords: true}, []string{"cafe"}, "cafe\u0301", ""},
		{"halfwidth katakana", Options{FoldCompatibility: true}, []string{"ガ"}, "ｶﾞ", "ガ"},

		{"dots kept", Options{}, []string{"via"}, "V.I.A", ""},
		{"dots", Options{FoldCase: true, IgnoreSeparators: true}, []string{"via"}, "V.I.A", "via"},
		{"hyphens", Options{IgnoreSeparators: true}, []string{"via"}, "v-i-a", "via"},
		{"spaces", Options{IgnoreSeparators: true}, []string{"via"}, "v i  a", "via"},
		{"symbols", Options{IgnoreSeparators: true}, []string{"via"}, "v+i|a~", "via"},
		{"phrase without spaces", Options{IgnoreSeparators: true}, []string{"buy now"}, "buynow", "buy now"},
		{"zero width always dropped", Options{}, []string{"via"}, "v\u200bi\u2060a\u00ad", "via"},
		{"white space collapsed", Options{}, []string{"buy now"}, "buy \t\n now", "buy now"},
		{"white space kept apart", Options{}, []string{"buy now"}, "buynow", ""},
		{"ideographic space", Options{FoldCompatibility: true}, []string{"buy now"}, "buy\u3000now", "buy now"},

		{"leet", Options{FoldConfusables: true}, []string{"via"}, "v1a", "via"},
		{"leet in the entry", Options{FoldConfusables: true}, []string{"v14"}, "via", "v14"},
		{"leet signs", Options{FoldConfusables: true, FoldCase: true}, []string{"spam"}, "$P@M", "spam"},
		{"cyrillic homoglyphs", Options{FoldConfusables: true}, []string{"via"}, "vіа", "via"},
		{"cyrillic capitals", Options{FoldConfusables: true, FoldCase: true}, []string{"taxi"}, "ТАХІ", "taxi"},
		{"greek capital eta is H", Options{FoldConfusables: true, FoldCase: true}, []string{"hello"}, "ΗΕLLΟ", "hello"},
		{"greek small nu is v", Options{FoldConfusables: true}, []string{"via"}, "νια", "via"},
		{"no confusables", Options{}, []string{"via"}, "vіа", ""},
		{"all at once", all, []string{"viagra"}, "Buy ｖ.1.а.g.r.@ today", "viagra"},

		{"whole word inside a word", Options{WholeWords: true}, []string{"via"}, "trivial", ""},
		{"whole word", Options{WholeWords: true}, []string{"via"}, "send via mail", "via"},
		{"whole word at the ends", Options{WholeWords: true}, []string{"via"}, "via", "via"},
		{"whole word before punctuation", Options{WholeWords: true}, []string{"via"}, "(via)", "via"},
		{"whole word next to a digit", Options{WholeWords: true}, []string{"vx"}, "vx123", ""},
		{"whole word, separators dropped", Options{WholeWords: true, IgnoreSeparators: true}, []string{"via"}, "buy v.i.a now", "via"},
		{"whole word, separators dropped, inside", Options{WholeWords: true, IgnoreSeparators: true}, []string{"via"}, "trivial", ""},
		{"whole word, shorter entry behind a longer one", Options{WholeWords: true}, []string{"a b", "b"}, "za b", "b"},
		{"whole word, longest first", Options{WholeWords: true}, []string{"now", "buy now"}, "buy now", "buy now"},
		{"whole word, first to end wins", Options{WholeWords: true}, []string{"buy now", "buy"}, "buy now", "buy"},

		{"CJK substring", Options{WholeWords: true}, []string{"微信"}, "加我微信好友", "微信"},
		{"Latin word next to CJK", Options{WholeWords: true}, []string{"vx"}, "加我vx好吗", "vx"},
		{"kana", Options{WholeWords: true}, []string{"ライン"}, "ラインでね", "ライン"},
		{"hangul", Options{WholeWords: true}, []string{"카톡"}, "카톡으로", "카톡"},
		{"thai", Options{WholeWords: true}, []string{"ไลน์"}, "แอดไลน์นะ", "ไลน์"},
		{"CJK fullwidth punctuation", all, []string{"加微信"}, "加，微。信", "加微信"},

		{"emoji entry", Options{WholeWords: true}, []string{"🍆"}, "nice🍆!", "🍆"},
		{"emoji kept by separators", Options{IgnoreSeparators: true}, []string{"🍆"}, "🍆", "🍆"},
		{"emoji breaks a word", Options{IgnoreSeparators: true}, []string{"via"}, "v🔥ia", ""},
		{"variation selector", Options{}, []string{"❤"}, "I ❤️ you", "❤"},
		{"emoji with joiner", Options{}, []string{"👨👩"}, "👨\u200d👩", "👨👩"},

		{"invalid UTF-8 splits", Options{}, []string{"via"}, "v\xffia", ""},
		{"invalid UTF-8 is a separator", Options{IgnoreSeparators: true}, []string{"via"}, "v\xffi\xc3a", "via"},
		{"invalid UTF-8 with NFKC", Options{FoldCompatibility: true, IgnoreSeparators: true}, []string{"via"}, "ｖ\xe4\xb8ia", "via"},
		{"only invalid UTF-8", all, []string{"via"}, "\xff\xfe\xfd", ""},
		{"empty text", all, []string{"via"}, "", ""},
		{"truncated rune at the end", all, []string{"via"}, "via\xe4", "via"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Compile(tt.opts, tt.words...)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := d.Match(tt.text)
			if got := map[bool]string{true: m.Entry}[ok]; got != tt.want {
				t.Fatalf("Match(%q) = %q, %v; want %q", tt.text, m.Entry, ok, tt.want)
			}
			if ok && (m.Start < 0 || m.Start > m.End || m.End > len(tt.text) || m.Source != "words") {
				t.Fatalf("Match(%q) = %+v: bad range or source", tt.text, m)
			}
			if got, want := refMatchEntry(tt.words, tt.opts, tt.text), tt.want; got != want {
				t.Fatalf("reference matcher disagrees with the table: %q, want %q", got, want)
			}
		})
	}
}

func TestMatchRange(t *testing.T) {
	tests := []struct {
		opts       Options
		word, text string
		matched    string // text[Start:End]
	}{
		{Options{}, "via", "go via mail", "via"},
		{all, "via", "go V.1.А! mail", "V.1.А"},
		{all, "via", "ｖｉａ", "ｖｉａ"},
		{all, "微信", "加我微信", "微信"},
		{Options{FoldCompatibility: true}, "i", "ﬁ", "ﬁ"},
		{Options{FoldCompatibility: true}, "café", "a cafe\u0301", "cafe\u0301"},
		{Options{}, "buy now", "buy   now", "buy   now"},
	}
	for _, tt := range tests {
		d, err := Compile(tt.opts, tt.word)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := d.Match(tt.text)
		if !ok || tt.text[m.Start:m.End] != tt.matched {
			t.Errorf("Match(%q) = %+v, %v; want the range of %q", tt.text, m, ok, tt.matched)
		}
	}
}

func TestBuilder(t *testing.T) {
	b := NewBuilder(Options{FoldCase: true})
	b.AddWords("spec.words", "Via", " spam ")
	b.AddLines("ConfigMap ns/words key list", "# spam words\n\n  VIA  \nviagra\r\n   \n#via2\npills")
	b.AddLines("ConfigMap ns/more key list", "via\nSPAM\ncasino")
	d, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 5 { // Via, spam, viagra, pills, casino
		t.Errorf("Len = %d, want 5", d.Len())
	}
	for text, want := range map[string]Match{
		"via":    {Entry: "Via", Source: "spec.words", Start: 0, End: 3},
		"spam":   {Entry: "spam", Source: "spec.words", Start: 0, End: 4},
		"VIAGRA": {Entry: "Via", Source: "spec.words", Start: 0, End: 3},
		"#via2":  {Entry: "Via", Source: "spec.words", Start: 1, End: 4},
		"pills":  {Entry: "pills", Source: "ConfigMap ns/words key list", Start: 0, End: 5},
		"casino": {Entry: "casino", Source: "ConfigMap ns/more key list", Start: 0, End: 6},
	} {
		if m, ok := d.Match(text); !ok || m != want {
			t.Errorf("Match(%q) = %+v, %v; want %+v", text, m, ok, want)
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		add   func(*Builder)
		wants []string // substrings of the error
	}{
		{"empty after normalisation", Options{IgnoreSeparators: true}, func(b *Builder) {
			b.AddLines("ConfigMap ns/w key k", "ok\n...\n- -")
		}, []string{`ConfigMap ns/w key k line 2: entry "..." is empty after normalisation`, `line 3: entry "- -"`}},
		{"invisible only", Options{}, func(b *Builder) {
			b.AddWords("spec.words", "ok", "\u200b")
		}, []string{`spec.words[1]: entry "\u200b" is empty`}},
		{"too long", Options{}, func(b *Builder) {
			b.AddWords("spec.words", strings.Repeat("a", MaxEntryBytes+1))
		}, []string{"spec.words[0]", "longer than 256 bytes"}},
		{"too long after NFKC", Options{FoldCompatibility: true}, func(b *Builder) {
			b.AddWords("spec.words", strings.Repeat("ﷺ", 10)) // 18 letters each
		}, []string{"spec.words[0]", "longer than 128 characters after normalisation"}},
		{"invalid UTF-8", Options{}, func(b *Builder) {
			b.AddWords("spec.words", "a\xffb", "\ufffd")
		}, []string{`spec.words[0]: entry "a\xffb" is not valid UTF-8`, `spec.words[1]`}},
		{"many errors", Options{}, func(b *Builder) {
			b.AddLines("cm", strings.Repeat("\u200b\n", 25))
		}, []string{"cm line 10:", "and 15 more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(tt.opts)
			tt.add(b)
			_, err := b.Build()
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestEmptyDictionary(t *testing.T) {
	d, err := Compile(all)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := d.Match("anything"); ok {
		t.Fatalf("empty dictionary matched %+v", m)
	}
	var nilDict *Dictionary
	if _, ok := nilDict.Match("anything"); ok {
		t.Fatal("nil dictionary matched")
	}
}

// TestMatchAllocs pins the hot path at zero allocations, for ASCII text and for text that
// goes through the NFKC iterator.
func TestMatchAllocs(t *testing.T) {
	d, err := Compile(all, "viagra", "微信", "buy now")
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"hello there, add me", "ｖｉａｇｒａ", "加我微信", "cafe\u0301 ﬁ \xff"} {
		if n := testing.AllocsPerRun(100, func() { d.Match(text) }); n != 0 {
			t.Errorf("Match(%q): %v allocations", text, n)
		}
	}
}

// TestMatchAfterAbandonedSegment: a match inside a ligature stops the scan with part of an
// NFKC segment unread; the pooled iterator must not hand that part to the next Match.
func TestMatchAfterAbandonedSegment(t *testing.T) {
	opts := Options{FoldCompatibility: true}
	f, err := Compile(opts, "f")
	if err != nil {
		t.Fatal(err)
	}
	cafe, err := Compile(opts, "café")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, ok := f.Match("\ufb03"); !ok { // ﬃ
			t.Fatal("f not found in ﬃ")
		}
		if m, ok := cafe.Match("cafe\u0301"); !ok {
			t.Fatalf("café not found after an abandoned segment: %+v", m)
		}
	}
}

// TestMapRuneTables: the table-driven fast path of mapRune agrees with the plain one.
func TestMapRuneTables(t *testing.T) {
	for _, opts := range []Options{{}, {FoldCase: true}, {FoldConfusables: true}, {FoldCase: true, FoldConfusables: true}} {
		m := newMapper(opts)
		for r := range rune(0x10000) {
			gr, gk := m.mapRune(r)
			wr, wk := m.mapSlow(r)
			if gr != wr || gk != wk {
				t.Fatalf("%+v: mapRune(%U) = %U, %d; want %U, %d", opts, r, gr, gk, wr, wk)
			}
		}
	}
}
