package policy

import (
	"regexp"
	"runtime"
	"strings"
	"sync"
	"weak"
)

// Identical regular expressions and `when` expressions across policies (and across
// recompilations of one policy) are compiled once and shared. The caches hold their values
// weakly: an entry goes when no compiled policy uses it any more.

type internCache[T any] struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[T]
}

// get returns the value cached under key, building it when there is none. Errors are not
// cached.
func (c *internCache[T]) get(key string, build func() (*T, error)) (*T, error) {
	c.mu.Lock()
	wp, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		if v := wp.Value(); v != nil {
			return v, nil
		}
	}
	v, err := build()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if wp, ok := c.m[key]; ok {
		if old := wp.Value(); old != nil {
			return old, nil
		}
	}
	if c.m == nil {
		c.m = map[string]weak.Pointer[T]{}
	}
	wp = weak.Make(v)
	c.m[key] = wp
	runtime.AddCleanup(v, func(key string) {
		c.mu.Lock()
		if c.m[key] == wp {
			delete(c.m, key)
		}
		c.mu.Unlock()
	}, key)
	return v, nil
}

// has reports whether a value is cached under key.
func (c *internCache[T]) has(key string) bool {
	c.mu.Lock()
	wp, ok := c.m[key]
	c.mu.Unlock()
	return ok && wp.Value() != nil
}

// pattern is a compiled regular expression with the literals its matches require.
type pattern struct {
	re *regexp.Regexp
	// literals, ASCII-lower-cased: every match contains one; nil when there is no such set.
	literals []string
	// lead holds the bytes every matched text begins with; nil when there is no such set.
	lead *byteSet
}

// match runs the pattern on text, unless text's first byte rules a match out.
func (p *pattern) match(text string) bool {
	if p.lead != nil && (text == "" || !p.lead.has(text[0])) {
		return false
	}
	return p.re.MatchString(text)
}

var (
	patternCache internCache[pattern]
	whenCache    internCache[whenProgram]
	restCache    internCache[restProgram]
	acCache      internCache[acMatcher]
)

// compilePattern compiles expr (already validated) through the cache.
func compilePattern(expr string) (*pattern, error) {
	return patternCache.get(expr, func() (*pattern, error) {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, err
		}
		tree, err := parseSimple(expr)
		if err != nil {
			return nil, err
		}
		return &pattern{re: re, literals: requiredLiterals(tree), lead: leadBytes(tree)}, nil
	})
}

// internWhen compiles a `when` through the cache.
func internWhen(expr string) (*whenProgram, error) {
	return whenCache.get(expr, func() (*whenProgram, error) { return compileWhenProgram(expr) })
}

// sharedACMatcher returns the automaton of literals through the cache: scopes written from
// one template look for the same literals.
func sharedACMatcher(literals []string) *acMatcher {
	m, _ := acCache.get(strings.Join(literals, "\x00"), func() (*acMatcher, error) { return newACMatcher(literals), nil })
	return m
}
