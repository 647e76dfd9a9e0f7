package policy

import (
	"regexp"
	"sort"
	"strings"
)

// userSet matches user IDs against exact IDs (hash lookup), prefixes (binary search over a
// prefix-free sorted slice) and whole-ID patterns (one combined RE2 program).
type userSet struct {
	users    map[string]struct{}
	prefixes []string
	pattern  *regexp.Regexp
}

// newUserSet builds a set, compiling patterns into one program. Check them one by one
// first (checkPatterns), so an error can name the pattern at fault.
func newUserSet(users []string, prefixes []string, patterns []string) (userSet, error) {
	s := userSet{prefixes: prefixFree(prefixes)}
	if len(users) > 0 {
		s.users = make(map[string]struct{}, len(users))
		for _, u := range users {
			s.users[u] = struct{}{}
		}
	}
	if len(patterns) > 0 {
		re, err := regexp.Compile(`^(?:` + joinGroups(patterns) + `)$`)
		if err != nil {
			return userSet{}, err
		}
		s.pattern = re
	}
	return s, nil
}

// joinGroups joins RE2 patterns as alternatives, each in its own group so flags and
// alternations stay scoped to it.
func joinGroups(patterns []string) string {
	var b strings.Builder
	for i, p := range patterns {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString("(?:")
		b.WriteString(p)
		b.WriteByte(')')
	}
	return b.String()
}

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
	if _, ok := s.users[id]; ok {
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
	return s.pattern != nil && s.pattern.MatchString(id)
}

// describe says which part of the set matches id, for explanations.
func (s *userSet) describe(id string) string {
	if _, ok := s.users[id]; ok {
		return "user " + id
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(id, p) {
			return "prefix " + p
		}
	}
	if s.pattern != nil && s.pattern.MatchString(id) {
		return "pattern"
	}
	return ""
}
