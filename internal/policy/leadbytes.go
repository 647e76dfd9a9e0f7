package policy

import (
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// A pattern anchored at the start of the text whose matches all begin with one of a few
// bytes is not run on a text beginning with another: a whole-ID pattern without a literal
// (say ^[0-9]{11}$, phone numbers) rules out most IDs by their first byte. This is the
// start-byte prefilter of Hyperscan and regex-automata for patterns that have no literal
// for the multi-literal pass.

// byteSet is a set of bytes.
type byteSet [4]uint64

func (s *byteSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) union(o *byteSet) {
	s[0], s[1], s[2], s[3] = s[0]|o[0], s[1]|o[1], s[2]|o[2], s[3]|o[3]
}
func (s *byteSet) addRange(lo, hi byte) {
	for b := int(lo); b <= int(hi); b++ {
		s.add(byte(b))
	}
}

// leadBytes returns the bytes a text must begin with for the pattern re (see parseSimple)
// to match it, or nil when there is no such bound: the pattern is not anchored at the
// start of the text, can match the empty string there, or can begin with any byte.
func leadBytes(re *syntax.Regexp) *byteSet {
	if !anchoredAtStart(re) {
		return nil
	}
	set, nullable, ok := firstBytes(re)
	if !ok || nullable {
		return nil
	}
	return &set
}

func anchoredAtStart(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return true
	case syntax.OpConcat, syntax.OpCapture:
		return len(re.Sub) > 0 && anchoredAtStart(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !anchoredAtStart(sub) {
				return false
			}
		}
		return true
	}
	return false
}

// firstBytes returns the bytes a match of re can begin with, whether re can match the
// empty string, and false when any byte can begin a match (or re is beyond this
// analysis). Empty-width assertions only narrow matches, so they are read as empty.
func firstBytes(re *syntax.Regexp) (set byteSet, nullable, ok bool) {
	switch re.Op {
	case syntax.OpNoMatch:
		return set, false, true
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return set, true, true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return set, true, true
		}
		r := re.Rune[0]
		if !addRune(&set, r) {
			return set, false, false
		}
		if re.Flags&syntax.FoldCase != 0 {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				if !addRune(&set, f) {
					return set, false, false
				}
			}
		}
		return set, false, true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if !addRuneRange(&set, re.Rune[i], re.Rune[i+1]) {
				return set, false, false
			}
		}
		return set, false, true
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		set, _, ok = firstBytes(re.Sub[0])
		return set, true, ok
	case syntax.OpRepeat:
		set, nullable, ok = firstBytes(re.Sub[0])
		return set, nullable || re.Min == 0, ok
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			s, n, ok := firstBytes(sub)
			if !ok {
				return set, false, false
			}
			set.union(&s)
			if !n {
				return set, false, true
			}
		}
		return set, true, true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			s, n, ok := firstBytes(sub)
			if !ok {
				return set, false, false
			}
			set.union(&s)
			nullable = nullable || n
		}
		return set, nullable, true
	}
	return set, false, false
}

// addRune adds the first byte of r's UTF-8 form. U+FFFD is refused: the regexp matches it
// on any invalid byte.
func addRune(set *byteSet, r rune) bool { return addRuneRange(set, r, r) }

// addRuneRange adds the first bytes of the UTF-8 forms of lo..hi: the first byte grows
// with the rune, so those of the range's ends bound them. Surrogates, which have no
// UTF-8 form, are left out of the ends.
func addRuneRange(set *byteSet, lo, hi rune) bool {
	if lo <= utf8.RuneError && utf8.RuneError <= hi {
		return false
	}
	if lo < utf8.RuneSelf {
		set.addRange(byte(lo), byte(min(hi, utf8.RuneSelf-1)))
		lo = utf8.RuneSelf
	}
	if surrogateMin <= lo && lo <= surrogateMax {
		lo = surrogateMax + 1
	}
	if surrogateMin <= hi && hi <= surrogateMax {
		hi = surrogateMin - 1
	}
	if lo <= hi {
		set.addRange(leadByte(lo), leadByte(hi))
	}
	return true
}

const surrogateMin, surrogateMax = 0xD800, 0xDFFF

func leadByte(r rune) byte {
	var b [utf8.UTFMax]byte
	utf8.EncodeRune(b[:], r)
	return b[0]
}
