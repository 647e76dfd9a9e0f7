package keywords

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// kind is what the matcher does with a rune once it has been mapped.
type kind uint8

const (
	// kindWord: letters, digits and marks of scripts that separate words with spaces.
	kindWord kind = iota
	// kindSpaceless: letters of scripts written without spaces between words (Han, kana,
	// Hangul, Thai, Lao, Khmer, Myanmar). They never join a neighbour into one word.
	kindSpaceless
	// kindOther: kept, but not part of a word (emoji and other symbols, currency signs).
	kindOther
	// kindSpace: white space and control characters.
	kindSpace
	// kindPunct: punctuation, maths and modifier symbols, and invalid UTF-8 (U+FFFD).
	kindPunct
	// kindInvisible: format characters (zero-width space and joiners, soft hyphen,
	// bidirectional controls, tags) and variation selectors: always dropped.
	kindInvisible
)

// mapper applies the per-rune part of a dictionary's normalisation: confusables, then case
// folding, then classification. Confusables come first so that a Greek capital eta, which
// looks like H, becomes h and not the n its lower case looks like.
type mapper struct {
	opts Options
	// ascii caches mapRune for the ASCII range, where almost all input is.
	ascii [utf8.RuneSelf]struct {
		r rune
		k kind
	}
	bmp *[0x10000]uint8
}

func newMapper(opts Options) *mapper {
	m := &mapper{opts: opts, bmp: bmpInfo()}
	for c := range rune(utf8.RuneSelf) {
		r, k := m.mapSlow(c)
		m.ascii[c].r, m.ascii[c].k = r, k
	}
	return m
}

// foldChanges marks, in bmpInfo, the runes that case folding changes.
const foldChanges = 0x80

// bmpInfo holds the kind of every rune of the Basic Multilingual Plane, and whether case
// folding changes it: the unicode.Is searches cost more than the rest of a rune's matching.
var bmpInfo = sync.OnceValue(func() *[0x10000]uint8 {
	var t [0x10000]uint8
	for r := range rune(len(t)) {
		t[r] = uint8(classify(r))
		if foldCase(r) != r {
			t[r] |= foldChanges
		}
	}
	return &t
})

func (m *mapper) mapRune(r rune) (rune, kind) {
	if r < utf8.RuneSelf {
		e := &m.ascii[r]
		return e.r, e.k
	}
	if r < 0x10000 && (r < firstHomoglyph || r > lastHomoglyph || !m.opts.FoldConfusables) {
		info := m.bmp[r]
		if info&foldChanges == 0 || !m.opts.FoldCase {
			return r, kind(info &^ foldChanges)
		}
	}
	return m.mapSlow(r)
}

func (m *mapper) mapSlow(r rune) (rune, kind) {
	if m.opts.FoldConfusables {
		r = confusable(r)
	}
	if m.opts.FoldCase {
		r = foldCase(r)
	}
	return r, classify(r)
}

func foldCase(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	// Upper then lower maps every member of a case orbit to one rune: ς and Σ to σ, ı to i.
	return unicode.ToLower(unicode.ToUpper(r))
}

// leet maps the digits and signs spammers write for letters.
var leet = [utf8.RuneSelf]rune{
	'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's',
}

// Greek and Cyrillic, where the look-alikes are.
const firstHomoglyph, lastHomoglyph = 0x370, 0x52F

// homoglyphs maps Cyrillic and Greek letters that look like Latin ones, upper case to upper
// case and lower case to lower case, so that the map also works without case folding.
var homoglyphs = func() (t [lastHomoglyph - firstHomoglyph + 1]rune) {
	for from, to := range map[rune]rune{
		// Cyrillic capitals.
		'А': 'A', 'В': 'B', 'Е': 'E', 'Ё': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O',
		'Р': 'P', 'С': 'C', 'Т': 'T', 'У': 'Y', 'Х': 'X', 'Ѕ': 'S', 'І': 'I', 'Ї': 'I',
		'Ј': 'J', 'Ԛ': 'Q', 'Ԝ': 'W', 'Һ': 'H', 'Ӏ': 'I', 'Ү': 'Y',
		// Cyrillic small letters.
		'а': 'a', 'е': 'e', 'ё': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y', 'х': 'x',
		'ѕ': 's', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'һ': 'h',
		'ӏ': 'l', 'ү': 'y', 'ь': 'b', 'к': 'k', 'м': 'm', 'н': 'h', 'т': 't', 'в': 'b',
		// Greek capitals.
		'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M',
		'Ν': 'N', 'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
		// Greek small letters.
		'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o',
		'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j', 'η': 'n',
	} {
		t[from-firstHomoglyph] = to
	}
	return t
}()

func confusable(r rune) rune {
	if r < utf8.RuneSelf {
		if l := leet[r]; l != 0 {
			return l
		}
		return r
	}
	if r >= firstHomoglyph && r <= lastHomoglyph {
		if l := homoglyphs[r-firstHomoglyph]; l != 0 {
			return l
		}
	}
	return r
}

var spacelessScripts = []*unicode.RangeTable{
	unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul, unicode.Bopomofo,
	unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar,
}

func classify(r rune) kind {
	switch {
	case r == utf8.RuneError:
		return kindPunct
	case unicode.Is(unicode.Cf, r), r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF,
		r == 0x034F /* combining grapheme joiner */, r >= 0x180B && r <= 0x180D:
		return kindInvisible
	case unicode.IsSpace(r), unicode.IsControl(r):
		return kindSpace
	case unicode.IsPunct(r), unicode.Is(unicode.Sm, r), unicode.Is(unicode.Sk, r):
		return kindPunct
	case r == 0x30FC || r == 0xFF70: // katakana prolonged sound mark (script Common)
		return kindSpaceless
	case unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r):
		if r >= 0x0E00 && unicode.IsOneOf(spacelessScripts, r) { // Thai is the first
			return kindSpaceless
		}
		return kindWord
	default:
		return kindOther
	}
}

// iterPool holds NFKC iterators: a norm.Iter escapes to the heap (it calls through a
// function value), so Match borrows one instead of allocating per call.
var iterPool = sync.Pool{New: func() any { return new(norm.Iter) }}

// source reads a text as NFKC-normalised runes (when compat is set), each with the byte
// range of the text it came from. It normalises on the fly: a rune that NFKC leaves alone
// and that does not combine with its neighbours (all of ASCII, most text) is passed through
// after a table lookup; only the segments NFKC changes go through a norm.Iter.
type source struct {
	text   string
	i      int // next byte of text to read
	compat bool

	seg              []byte // rest of the current normalised segment
	segStart, segEnd int    // byte range of text the segment came from
	it               *norm.Iter
	itBusy           bool

	// The NFKC properties of the rune at propsAt: stable looks one rune ahead, and the
	// next call starts there.
	props   norm.Properties
	propsAt int
}

func (s *source) propsOf(i int) norm.Properties {
	if i != s.propsAt {
		s.props, s.propsAt = norm.NFKC.PropertiesString(s.text[i:]), i
	}
	return s.props
}

// next returns the next rune and the byte range of the text it came from.
func (s *source) next() (r rune, start, end int, ok bool) {
	for {
		if len(s.seg) > 0 {
			r, n := utf8.DecodeRune(s.seg)
			s.seg = s.seg[n:]
			return r, s.segStart, s.segEnd, true
		}
		if s.itBusy {
			if s.it.Done() {
				s.itBusy = false
				continue
			}
			s.seg = s.it.Next()
			continue
		}
		i := s.i
		if i >= len(s.text) {
			return 0, 0, 0, false
		}
		c := s.text[i]
		if c < utf8.RuneSelf && (!s.compat || i+1 == len(s.text) || s.text[i+1] < utf8.RuneSelf) {
			s.i++
			return rune(c), i, i + 1, true
		}
		if !s.compat {
			r, n := utf8.DecodeRuneInString(s.text[i:])
			s.i += n
			return r, i, i + n, true
		}
		if c >= 0xE4 && c <= 0xE9 { // U+4000–U+9FFF
			// CJK unified ideographs: NFKC leaves them alone and nothing combines with
			// them; the commonest non-ASCII wording skips the property lookups.
			if r, n := utf8.DecodeRuneInString(s.text[i:]); r >= 0x4E00 && r <= 0x9FFF {
				s.i += n
				return r, i, i + n, true
			}
		}
		if r, n, ok := s.stable(i); ok {
			s.i += n
			return r, i, i + n, true
		}
		end := i + norm.NFKC.NextBoundaryInString(s.text[i:], true)
		if s.it == nil {
			s.it = iterPool.Get().(*norm.Iter)
		}
		s.it.InitString(norm.NFKC, s.text[i:end])
		s.itBusy = true
		s.segStart, s.segEnd = i, end
		s.i = end
	}
}

// stable reports the NFKC form of the rune at i when it is a single rune that needs no
// context: the rune starts a segment, and nothing after it can combine with it.
func (s *source) stable(i int) (rune, int, bool) {
	p := s.propsOf(i)
	n := p.Size()
	if p.BoundaryAfter() { // NFKC leaves it alone, and it combines with nothing
		r, _ := utf8.DecodeRuneInString(s.text[i:])
		return r, n, true
	}
	if !p.BoundaryBefore() {
		return 0, 0, false
	}
	if j := i + n; j < len(s.text) && s.text[j] >= utf8.RuneSelf && !s.propsOf(j).BoundaryBefore() {
		return 0, 0, false
	}
	switch d := p.Decomposition(); len(d) {
	case 0:
		r, _ := utf8.DecodeRuneInString(s.text[i:])
		return r, n, true
	case 1: // fullwidth Latin, mathematical and circled letters, digits: one ASCII byte
		return rune(d[0]), n, true
	}
	return 0, 0, false
}

// release returns the borrowed iterator, if any.
func (s *source) release() {
	if s.it != nil {
		if s.itBusy {
			// InitString does not clear a segment left half read (a match ended the scan
			// inside a ligature, say): the next user would read its rest.
			*s.it = norm.Iter{}
		}
		iterPool.Put(s.it)
		s.it = nil
	}
}
