package policy

import (
	"slices"
	"sort"
	"strings"
)

// userSet matches user IDs against exact IDs (hash lookup), prefixes (binary search over a
// prefix-free sorted slice) and whole-ID patterns. Decisions go through the snapshot's
// index; a userSet answers for one policy, for explanations.
type userSet struct {
	// users are sorted: a policy's inline users are few, and a sorted slice costs what
	// they weigh where a map would cost several times more.
	users []string
	// list holds the users of a blocklist fed by ConfigMaps, its inline ones included.
	list     *compactSet
	prefixes []string
	// patterns are anchored to the whole ID, one per pattern written.
	patterns []*pattern
}

// newUserSet builds a set, compiling each pattern anchored (shared through the pattern
// cache). Check them one by one
// first (checkPatterns), so an error can name the pattern at fault.
func newUserSet(users []string, prefixes []string, patterns []string) (userSet, error) {
	s := userSet{prefixes: prefixFree(prefixes)}
	if len(users) > 0 {
		s.users = slices.Clone(users)
		slices.Sort(s.users)
	}
	for _, p := range patterns {
		cp, err := compilePattern(anchorPattern(p))
		if err != nil {
			return userSet{}, err
		}
		s.patterns = append(s.patterns, cp)
	}
	return s, nil
}

// anchorPattern is a whole-ID pattern as it is compiled.
func anchorPattern(p string) string { return `^(?:` + p + `)$` }

// prefixFree sorts prefixes and drops those made redundant by a shorter one. In a sorted
// prefix-free slice, the only candidate prefix of an ID is the greatest element <= the ID.
func prefixFree(prefixes []string) []string {
	if len(prefixes) == 0 {
		return nil
	}
	sorted := append([]string(nil), prefixes...)
	sort.Strings(sorted)
	out := sorted[:0]
	for _, p := range sorted {
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (s *userSet) contains(id string) bool {
	if _, ok := slices.BinarySearch(s.users, id); ok || s.list.contains(id) {
		return true
	}
	if n := len(s.prefixes); n > 0 {
		i := sort.SearchStrings(s.prefixes, id)
		if i < n && s.prefixes[i] == id {
			return true
		}
		if i > 0 && strings.HasPrefix(id, s.prefixes[i-1]) {
			return true
		}
	}
	for _, p := range s.patterns {
		if p.match(id) {
			return true
		}
	}
	return false
}

// describe says which part of the set matches id, for explanations.
func (s *userSet) describe(id string) string {
	if _, ok := slices.BinarySearch(s.users, id); ok {
		return "user " + id
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(id, p) {
			return "prefix " + p
		}
	}
	for _, p := range s.patterns {
		if p.match(id) {
			return "pattern " + p.re.String()
		}
	}
	return ""
}
