package policy

import (
	"fmt"
	"hash/maphash"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"

	"github.com/friendgate/friendgate/internal/text"
)

// A list fed by ConfigMaps can hold millions of user IDs, so its set does not copy them:
// it points into the ConfigMaps' own data strings (which the informer holds anyway) with
// one 8-byte slot per entry in an open-addressing table, at most 70 % full. Each ConfigMap
// is read once into a listPiece (the offsets of its valid lines, 4 bytes an entry), shared
// through a cache keyed by the ConfigMap's resourceVersion: recompiling after one
// ConfigMap of a list changed reads that one only, and merges the others' pieces.
//
// A slot packs the string index (16 bits), the entry's offset in it (24 bits), its length
// (7 bits) and 17 bits of its hash, so most probes of other entries end without reading
// the string.

const (
	slotStrBits = 16
	slotOffBits = 24
	slotLenBits = 7
	slotTagBits = 64 - slotStrBits - slotOffBits - slotLenBits

	// maxPieceString bounds one string a piece points into (a ConfigMap holds at most
	// 1 MiB, a file-fed one may hold more: it is split into several strings).
	maxPieceString = 1<<slotOffBits - 1
)

var listSeed = maphash.MakeSeed()

// listPiece is the valid user IDs of one ConfigMap (or of a policy's inline users): the
// strings they are in and, per string, the offsets of the IDs.
type listPiece struct {
	name string
	keys []string
	strs []string
	offs [][]uint32
	// lines are the line numbers, in their key's value, of the strings' first lines.
	lines []int
}

// entryAt returns the ID at offset off of s: the line starting there, white space trimmed.
func entryAt(s string, off uint32) string {
	line := s[off:]
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	return strings.TrimRightFunc(line, unicode.IsSpace)
}

// readPiece reads the user IDs of every value of a ConfigMap's data: one per line,
// surrounding white space trimmed, blank lines and lines starting with # ignored. Values
// are read in key order; an invalid ID is an error naming the ConfigMap, key and line.
func readPiece(cm *corev1.ConfigMap) (*listPiece, error) {
	p := &listPiece{name: cm.Name}
	for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
		data := cm.Data[key]
		var offs []uint32
		base, first := 0, 1
		for n := 1; base < len(data); n++ {
			end := strings.IndexByte(data[base:], '\n')
			if end < 0 {
				end = len(data)
			} else {
				end += base
			}
			raw := data[base:end]
			line := strings.TrimSpace(raw)
			if line != "" && line[0] != '#' {
				if msg := ValidateUserID(line); msg != "" {
					return nil, fmt.Errorf("ConfigMap %s key %q line %d: user ID %q %s", cm.Name, key, n, text.Truncate(line, 80), msg)
				}
				off := base + len(raw) - len(strings.TrimLeftFunc(raw, unicode.IsSpace))
				if off > maxPieceString {
					// Start a new string at this line; the offsets stay small.
					p.add(key, data[:base], offs, first)
					data, end, off, offs, first = data[base:], end-base, off-base, nil, n
				}
				offs = append(offs, uint32(off))
			}
			base = end + 1
		}
		p.add(key, data, offs, first)
	}
	return p, nil
}

func (p *listPiece) add(key, s string, offs []uint32, firstLine int) {
	if len(offs) == 0 {
		return
	}
	p.keys = append(p.keys, key)
	p.strs = append(p.strs, s)
	p.offs = append(p.offs, offs)
	p.lines = append(p.lines, firstLine)
}

// inlinePiece holds a blocklist's inline users, joined into one string.
func inlinePiece(users []string) *listPiece {
	if len(users) == 0 {
		return nil
	}
	s := strings.Join(users, "\n")
	offs := make([]uint32, 0, len(users))
	off := 0
	for _, u := range users {
		offs = append(offs, uint32(off))
		off += len(u) + 1
	}
	return &listPiece{strs: []string{s}, offs: [][]uint32{offs}, keys: []string{""}, lines: []int{1}}
}

// compactSet is an immutable set of user IDs pointing into its pieces' strings.
type compactSet struct {
	pieces []*listPiece
	strs   []string
	slots  []uint64
	n      int
}

// newCompactSet merges pieces, in order, into one set of at most maxEntries distinct IDs.
func newCompactSet(pieces []*listPiece, maxEntries int) (*compactSet, error) {
	s := &compactSet{pieces: pieces}
	total := 0
	for _, p := range pieces {
		for _, offs := range p.offs {
			total += len(offs)
		}
		s.strs = append(s.strs, p.strs...)
	}
	if len(s.strs) >= 1<<slotStrBits {
		return nil, fmt.Errorf("the list is spread over more than %d ConfigMap values", 1<<slotStrBits-1)
	}
	s.slots = make([]uint64, max(8, total+total*3/7))
	si := 0
	for _, p := range pieces {
		for vi, str := range p.strs {
			for _, off := range p.offs[vi] {
				id := entryAt(str, off)
				if !s.insert(id, uint64(si), uint64(off)) {
					continue
				}
				if s.n > maxEntries {
					line := p.lines[vi] + strings.Count(str[:off], "\n")
					return nil, fmt.Errorf("the list has more than %d user IDs (ConfigMap %s key %q line %d)", maxEntries, p.name, p.keys[vi], line)
				}
			}
			si++
		}
	}
	return s, nil
}

func (s *compactSet) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(s.slots)))
	return int(hi)
}

// insert adds id, found at offset off of string si; false when it is there already.
func (s *compactSet) insert(id string, si, off uint64) bool {
	h := maphash.String(listSeed, id)
	if s.find(id, h) {
		return false
	}
	slot := si | off<<slotStrBits | uint64(len(id))<<(slotStrBits+slotOffBits) | (h>>(64-slotTagBits))<<(64-slotTagBits)
	for i := s.home(h); ; i++ {
		if i == len(s.slots) {
			i = 0
		}
		if s.slots[i] == 0 {
			s.slots[i] = slot
			s.n++
			return true
		}
	}
}

func (s *compactSet) find(id string, h uint64) bool {
	tag := h >> (64 - slotTagBits)
	for i := s.home(h); ; i++ {
		if i == len(s.slots) {
			i = 0
		}
		slot := s.slots[i]
		if slot == 0 {
			return false
		}
		if slot>>(64-slotTagBits) != tag || int(slot>>(slotStrBits+slotOffBits)&(1<<slotLenBits-1)) != len(id) {
			continue
		}
		str := s.strs[slot&(1<<slotStrBits-1)]
		off := int(slot >> slotStrBits & (1<<slotOffBits - 1))
		if str[off:off+len(id)] == id {
			return true
		}
	}
}

func (s *compactSet) contains(id string) bool {
	if s == nil || len(id) >= 1<<slotLenBits {
		return false
	}
	return s.find(id, maphash.String(listSeed, id))
}

// len is the number of distinct IDs.
func (s *compactSet) len() int {
	if s == nil {
		return 0
	}
	return s.n
}

var pieceCache internCache[listPiece]

// configMapPiece reads a ConfigMap's list once per resourceVersion; ConfigMaps without
// one (read from files) are read every time.
func configMapPiece(cm *corev1.ConfigMap) (*listPiece, error) {
	if cm.ResourceVersion == "" {
		return readPiece(cm)
	}
	key := cm.Namespace + "/" + cm.Name + "/" + string(cm.UID) + "/" + cm.ResourceVersion
	return pieceCache.get(key, func() (*listPiece, error) { return readPiece(cm) })
}
