// Package keywords matches a text against a dictionary of words and phrases in one pass,
// whatever the dictionary's size, after normalising both the way a moderator chooses
// (case, Unicode compatibility forms, separators, leetspeak and look-alike letters).
//
// A Dictionary is an Aho–Corasick automaton over runes, stored as a double array, fed by a
// normaliser that works on the fly: Match allocates nothing and reads the text once.
//
// Why not a library: the Go Aho–Corasick packages we looked at match bytes, not
// normalised runes, and cost too much per pattern or per call for 100,000 words checked on
// every friend request. cloudflare/ahocorasick keeps two [256]*node arrays per trie node
// (about 4 KiB a node) and returns a fresh slice per match; BobuSumisu/aho-corasick keeps a
// full 256-entry transition row per state (1 KiB a state) and allocates a *Match for its
// first match; petar-dambovaliev/aho-corasick allocates an iterator and a *Match per call
// and checks word boundaries on single bytes, which breaks on UTF-8. None can take a rune
// stream with the positions we need for whole-word checks on normalised text.
package keywords

import (
	"fmt"
	"strings"
	"unicode/utf8"

	fgtext "github.com/friendgate/friendgate/internal/text"
)

// Options are a dictionary's normalisation and matching switches. Each normalisation is
// applied in the same way to the dictionary's entries and to the text they are matched
// against.
type Options struct {
	// FoldCase ignores case: "VIA" and "Via" match "via". Simple Unicode case folding, so
	// Greek final sigma matches sigma and dotless ı matches i.
	FoldCase bool
	// FoldCompatibility applies Unicode NFKC: fullwidth and halfwidth forms, ligatures,
	// circled, superscript and mathematical letters and digits become their plain forms,
	// so "ｖｉａ" and "𝐯𝐢𝐚" match "via"; composed and decomposed accents match each other.
	FoldCompatibility bool
	// IgnoreSeparators drops white space, punctuation and mathematical and modifier
	// symbols, so "V.I.A", "v-i-a" and "v i a" match "via", and "buy now" matches
	// "buynow". Emoji and other symbols are kept.
	IgnoreSeparators bool
	// FoldConfusables maps what spammers write for Latin letters to those letters:
	// leetspeak (0→o, 1→i, 3→e, 4→a, 5→s, 7→t, @→a, $→s) and Cyrillic and Greek letters
	// that look like Latin ones (Cyrillic а, е, о, р, с, у, х; Greek ο, ν, ι; ...).
	FoldConfusables bool
	// WholeWords matches an entry only where it does not start or end inside a word of the
	// normalised text: "via" matches "buy via me" but not "trivial". Letters of scripts
	// written without spaces (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar) never join
	// their neighbours into a word, so entries in those scripts match wherever they occur,
	// and a Latin entry next to them ("加我vx") still matches as a whole word.
	WholeWords bool
}

// Limits on what a dictionary holds.
const (
	// MaxEntryBytes is the longest entry, as written.
	MaxEntryBytes = 256
	// MaxEntryRunes is the longest entry after normalisation, in characters.
	MaxEntryRunes = 128
	// MaxEntries is the most distinct entries (after normalisation) in one dictionary.
	MaxEntries = 1_000_000
)

// maxErrors is how many faulty entries an error lists by name.
const maxErrors = 10

// Match is a dictionary entry found in a text.
type Match struct {
	// Entry is the dictionary entry as written.
	Entry string
	// Source is where the entry came from, as given to the Builder.
	Source string
	// Start and End are the byte range of the text the entry matched.
	Start, End int
}

// Dictionary is a compiled keyword dictionary. It is safe for concurrent use.
type Dictionary struct {
	opts   Options
	mapper *mapper
	ac     automaton
	// ascii is mapper and automaton in one lookup for an ASCII byte: its kind, and the
	// class of what it maps to (white space maps to a space), or -1 when the
	// normalisation drops the byte (invisible characters, and separators when they are
	// ignored), so that occursASCII needs no branch on the kind.
	ascii [utf8.RuneSelf]struct {
		class int32
		k     kind
	}

	// Entries as written, one string for all of them: entry i is
	// entries[entryEnd[i-1]:entryEnd[i]].
	entries     string
	entryEnd    []uint32
	entryRunes  []uint8 // length of the normalised entry
	entrySource []uint32
	sources     []string
}

// Len is the number of distinct entries.
func (d *Dictionary) Len() int { return len(d.entryEnd) }

// Options are the dictionary's options.
func (d *Dictionary) Options() Options { return d.opts }

func (d *Dictionary) entry(i int32) string {
	start := uint32(0)
	if i > 0 {
		start = d.entryEnd[i-1]
	}
	return d.entries[start:d.entryEnd[i]]
}

// Builder collects a dictionary's entries. Entries that normalise to the same form are
// kept once, as first written.
type Builder struct {
	mapper *mapper
	opts   Options

	index   map[string]int32 // normalised form → entry
	forms   []string         // normalised form of each entry
	entries strings.Builder
	d       Dictionary

	runes  []rune // scratch for normalising one entry
	errs   []string
	nerrs  int
	source uint32
}

// NewBuilder starts a dictionary with the given options.
func NewBuilder(opts Options) *Builder {
	return &Builder{
		mapper: newMapper(opts),
		opts:   opts,
		index:  make(map[string]int32),
	}
}

// AddWords adds entries given one by one, such as a policy's inline list. source names the
// list in errors and matches; entries are named source[i].
func (b *Builder) AddWords(source string, words ...string) {
	b.addSource(source)
	for i, w := range words {
		b.add(strings.TrimSpace(w), func() string { return fmt.Sprintf("%s[%d]", source, i) })
	}
}

// AddLines adds the entries of a text with one entry per line, such as one value of a
// ConfigMap: white space around an entry is trimmed, blank lines and lines starting with #
// are skipped. Call it once per value; nothing needs concatenating. source names the text
// in errors and matches; entries are named "source line n".
func (b *Builder) AddLines(source, data string) {
	b.addSource(source)
	for n := 1; data != ""; n++ {
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		b.add(line, func() string { return fmt.Sprintf("%s line %d", source, n) })
	}
}

func (b *Builder) addSource(source string) {
	if n := len(b.d.sources); n > 0 && b.d.sources[n-1] == source {
		return
	}
	b.d.sources = append(b.d.sources, source)
	b.source = uint32(len(b.d.sources) - 1)
}

func (b *Builder) fail(where func() string, entry, msg string) {
	b.nerrs++
	if len(b.errs) < maxErrors {
		if len(entry) > 80 {
			entry = entry[:80] + "..."
		}
		b.errs = append(b.errs, fmt.Sprintf("%s: entry %q %s", where(), entry, msg))
	}
}

func (b *Builder) add(word string, where func() string) {
	if len(word) > MaxEntryBytes {
		b.fail(where, word, fmt.Sprintf("is longer than %d bytes", MaxEntryBytes))
		return
	}
	if !utf8.ValidString(word) || strings.ContainsRune(word, utf8.RuneError) {
		b.fail(where, word, "is not valid UTF-8 or contains U+FFFD")
		return
	}
	b.runes = normalizeEntry(b.runes[:0], word, b.mapper)
	switch {
	case len(b.runes) == 0:
		b.fail(where, word, "is empty after normalisation")
		return
	case len(b.runes) > MaxEntryRunes:
		b.fail(where, word, fmt.Sprintf("is longer than %d characters after normalisation", MaxEntryRunes))
		return
	}
	form := string(b.runes)
	if _, dup := b.index[form]; dup {
		return
	}
	if len(b.forms) == MaxEntries {
		b.fail(where, word, fmt.Sprintf("is one more than the %d entries a dictionary holds", MaxEntries))
		return
	}
	b.index[form] = int32(len(b.forms))
	b.forms = append(b.forms, form)
	b.entries.WriteString(word)
	b.d.entryEnd = append(b.d.entryEnd, uint32(b.entries.Len()))
	b.d.entryRunes = append(b.d.entryRunes, uint8(len(b.runes)))
	b.d.entrySource = append(b.d.entrySource, b.source)
}

// Build compiles the dictionary. The error names every faulty entry (the first ten of
// them); a dictionary without entries is valid and matches nothing.
func (b *Builder) Build() (*Dictionary, error) {
	if b.nerrs > 0 {
		msg := strings.Join(b.errs, "; ")
		if more := b.nerrs - len(b.errs); more > 0 {
			msg += fmt.Sprintf("; and %d more", more)
		}
		return nil, fmt.Errorf("keyword dictionary: %s", msg)
	}
	d := b.d
	d.opts, d.mapper = b.opts, b.mapper
	d.entries = b.entries.String()
	d.ac = buildAutomaton(b.forms)
	for c := range d.ascii {
		r, k := d.mapper.mapRune(rune(c))
		if k == kindSpace {
			r = ' '
		}
		class := d.ac.class(r)
		if k == kindInvisible || d.opts.IgnoreSeparators && (k == kindSpace || k == kindPunct) {
			class = -1 // every pass skips the byte before it would read the class
		}
		d.ascii[c].class, d.ascii[c].k = class, k
	}
	return &d, nil
}

// Compile builds a dictionary from inline entries.
func Compile(opts Options, words ...string) (*Dictionary, error) {
	b := NewBuilder(opts)
	b.AddWords("words", words...)
	return b.Build()
}

// normalizeEntry appends the normalised form of an entry, read the way Match reads text.
func normalizeEntry(dst []rune, word string, m *mapper) []rune {
	src := source{text: word, compat: m.opts.FoldCompatibility, propsAt: -1}
	defer src.release()
	space := false
	for {
		r, _, _, ok := src.next()
		if !ok {
			return dst
		}
		r, k := m.mapRune(r)
		switch k {
		case kindInvisible:
			continue
		case kindSpace, kindPunct:
			if m.opts.IgnoreSeparators {
				continue
			}
			if k == kindSpace {
				if space {
					continue
				}
				r = ' '
			}
		}
		space = k == kindSpace
		dst = append(dst, r)
	}
}

// ring holds, for the last ringSize characters of normalised text, where each came from
// and whether a word boundary precedes it: enough to place any match (MaxEntryRunes <
// ringSize) and check the boundary before it.
const ringSize = 256

// Match reports the first dictionary entry found in text: the one whose match ends first
// in the normalised text, the longest of those ending at the same place. It allocates
// nothing. Invalid UTF-8 in text reads as U+FFFD, which no entry contains: a separator.
//
//nolint:gocyclo // one loop over the text: split into calls, it would pay a call per rune.
func (d *Dictionary) Match(text string) (Match, bool) {
	if d == nil || len(d.entryEnd) == 0 {
		return Match{}, false
	}
	if d.ac.next != nil && fgtext.IsASCII(text) {
		// Most texts hold no entry: the bare automaton rules them out before the pass
		// that places a match and checks its word boundaries.
		if !d.occursASCII(text) {
			return Match{}, false
		}
		return d.matchASCII(text)
	}
	src := source{text: text, compat: d.opts.FoldCompatibility, propsAt: -1}
	defer src.release()

	var (
		starts  [ringSize]int32       // byte offset in text of each normalised character
		bounds  [ringSize / 64]uint64 // word boundary before each normalised character
		state   int32
		pos     int  // normalised characters so far
		sep     bool // a separator was dropped since the previous character
		joins   bool // the previous character can join the next into one word
		space   bool // the previous character was white space
		prevEnd int
	)
	whole, ignoreSep, compat := d.opts.WholeWords, d.opts.IgnoreSeparators, d.opts.FoldCompatibility
	nodes := d.ac.nodes
	for {
		var (
			c          int32 // class of the mapped rune
			k          kind
			start, end int
		)
		// ASCII that NFKC leaves alone (the next byte is ASCII too) goes through one table
		// lookup; the rest through the source and the mapper.
		if i := src.i; i < len(text) && text[i] < utf8.RuneSelf && len(src.seg) == 0 && !src.itBusy &&
			(!compat || i+1 == len(text) || text[i+1] < utf8.RuneSelf) {
			e := &d.ascii[text[i]]
			c, k, start, end = e.class, e.k, i, i+1
			src.i++
		} else {
			var r rune
			var ok bool
			if r, start, end, ok = src.next(); !ok {
				break
			}
			r, k = d.mapper.mapRune(r)
			if k == kindSpace {
				r = ' '
			}
			c = d.ac.class(r)
		}
		switch k {
		case kindInvisible:
			continue
		case kindSpace, kindPunct:
			if ignoreSep {
				sep = true
				continue
			}
			if k == kindSpace && space {
				continue
			}
		}
		word := k == kindWord
		boundary := pos == 0 || sep || !joins || !word
		if whole && boundary && pos > 0 && nodes[state].out != 0 {
			if m, ok := d.wholeWord(state, pos, &starts, &bounds, prevEnd); ok {
				return m, true
			}
		}
		slot := pos & (ringSize - 1)
		starts[slot] = int32(start)
		if boundary {
			bounds[slot/64] |= 1 << (slot % 64)
		} else {
			bounds[slot/64] &^= 1 << (slot % 64)
		}
		// The direct transition inline; failure links in step.
		if c == 0 {
			state = 0
		} else if t := nodes[state].base + c; uint32(t) < uint32(len(nodes)) && nodes[t].check == state {
			state = t
		} else {
			state = d.ac.step(state, c)
		}
		pos++
		if o := nodes[state].out; !whole && o != 0 {
			e := d.ac.outs[o-1].entry
			return d.match(e, starts[(pos-int(d.entryRunes[e]))&(ringSize-1)], end), true
		}
		sep, joins, space, prevEnd = false, word, k == kindSpace, end
	}
	if whole && pos > 0 && nodes[state].out != 0 {
		return d.wholeWord(state, pos, &starts, &bounds, prevEnd)
	}
	return Match{}, false
}

// matchASCII is Match for an ASCII text (which NFKC leaves as it is) and a dictionary
// with a full transition table: each byte is one lookup in the byte table and one in the
// transition table. The steps after those lookups are Match's; it is a loop of its own so
// that Match's, which reads any text, keeps its registers.
func (d *Dictionary) matchASCII(text string) (Match, bool) {
	var (
		starts  [ringSize]int32
		bounds  [ringSize / 64]uint64
		state   int32 // the state's row in d.ac.next, with nextOut when an entry ends at it
		pos     int
		sep     bool
		joins   bool
		space   bool
		prevEnd int
	)
	whole, ignoreSep := d.opts.WholeWords, d.opts.IgnoreSeparators
	next := d.ac.next
	for i := 0; i < len(text); i++ {
		e := &d.ascii[text[i]]
		k := e.k
		switch k {
		case kindInvisible:
			continue
		case kindSpace, kindPunct:
			if ignoreSep {
				sep = true
				continue
			}
			if k == kindSpace && space {
				continue
			}
		}
		word := k == kindWord
		boundary := pos == 0 || sep || !joins || !word
		if whole && boundary && state&nextOut != 0 {
			if m, ok := d.wholeWord(d.ac.rowState(state), pos, &starts, &bounds, prevEnd); ok {
				return m, true
			}
		}
		slot := pos & (ringSize - 1)
		starts[slot] = int32(i)
		if boundary {
			bounds[slot/64] |= 1 << (slot % 64)
		} else {
			bounds[slot/64] &^= 1 << (slot % 64)
		}
		state = next[int(state&nextState)+int(e.class)]
		pos++
		if !whole && state&nextOut != 0 {
			e := d.ac.outs[d.ac.nodes[d.ac.rowState(state)].out-1].entry
			return d.match(e, starts[(pos-int(d.entryRunes[e]))&(ringSize-1)], i+1), true
		}
		sep, joins, space, prevEnd = false, word, k == kindSpace, i+1
	}
	if whole && state&nextOut != 0 {
		return d.wholeWord(d.ac.rowState(state), pos, &starts, &bounds, prevEnd)
	}
	return Match{}, false
}

// occursASCII reports whether an entry occurs in the normalised ASCII text, word
// boundaries aside: matchASCII's loop without them or the record of where each character
// came from. Every match is such an occurrence, and most texts hold none, so it rules
// them out at a fraction of the cost.
func (d *Dictionary) occursASCII(text string) bool {
	next := d.ac.next
	var state int32
	if d.opts.IgnoreSeparators {
		for i := 0; i < len(text); i++ {
			c := d.ascii[text[i]].class
			if c < 0 {
				continue
			}
			state = next[int(state&nextState)+int(c)]
			if state&nextOut != 0 {
				return true
			}
		}
		return false
	}
	space := false
	for i := 0; i < len(text); i++ {
		e := &d.ascii[text[i]]
		switch e.k {
		case kindInvisible:
			continue
		case kindSpace:
			if space {
				continue
			}
		}
		space = e.k == kindSpace
		state = next[int(state&nextState)+int(e.class)]
		if state&nextOut != 0 {
			return true
		}
	}
	return false
}

// wholeWord looks, among the entries ending at the last of pos characters (followed by a
// word boundary), for the longest one that starts at a word boundary.
func (d *Dictionary) wholeWord(state int32, pos int, starts *[ringSize]int32, bounds *[ringSize / 64]uint64, end int) (Match, bool) {
	for o := d.ac.nodes[state].out; o != 0; o = d.ac.outs[o-1].next {
		e := d.ac.outs[o-1].entry
		slot := (pos - int(d.entryRunes[e])) & (ringSize - 1)
		if bounds[slot/64]&(1<<(slot%64)) != 0 {
			return d.match(e, starts[slot], end), true
		}
	}
	return Match{}, false
}

func (d *Dictionary) match(e int32, start int32, end int) Match {
	return Match{
		Entry:  d.entry(e),
		Source: d.sources[d.entrySource[e]],
		Start:  int(start),
		End:    end,
	}
}
