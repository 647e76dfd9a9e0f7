package policy

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

func TestRequiredLiterals(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string
	}{
		{`https?://`, []string{"http"}}, // the longest literal of a concatenation
		{`(?i)www\.`, []string{"www."}},
		{`^[0-9]{11}$`, nil},
		{`^bot_[0-9]+$`, []string{"bot_"}},
		{`viagra|cialis`, []string{"cialis", "viagra"}},
		{`v[i1]a`, []string{"v"}},
		{`(?i)skype`, []string{"ype"}},  // k folds with the Kelvin sign, s with ſ
		{`(?i)kk`, nil},                 // no rune that folds within ASCII only
		{`Promo`, []string{"promo"}},    // case-sensitive literals are looked for lower-cased
		{`a(bc)+d`, []string{"bc"}},     // a repeated group still needs one occurrence
		{`a(bcd)*e`, []string{"a"}},     // an optional group needs nothing
		{`微信|vx`, []string{"vx", "微信"}}, // non-ASCII literals are matched as bytes
		{`(?i)加微信`, []string{"加微信"}},    // no case: found as it is under (?i) too
		{`(?i)café`, []string{"caf"}},   // é has a case outside ASCII
		{`x\x{FFFD}y`, []string{"x"}},   // U+FFFD also matches invalid UTF-8
		{`a|b*`, nil},
	}
	for _, tt := range tests {
		if got := requiredLiterals(mustParseSimple(t, tt.pattern)); !slices.Equal(got, tt.want) {
			t.Errorf("requiredLiterals(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

func TestACMatcher(t *testing.T) {
	lits := []string{"he", "she", "his", "hers", "http", "://"}
	for _, dense := range []bool{true, false} {
		m := newACMatcher(lits)
		if !dense {
			m = buildAC(lits, 0)
		}
		if (m.dfa != nil) != dense {
			t.Fatalf("dense=%v: built with DFA %v", dense, m.dfa != nil)
		}
		var got []string
		m.scan("UsHErs see HTTP://x", func(id uint32) { got = append(got, lits[id]) })
		want := []string{"she", "he", "hers", "http", "://"}
		if !slices.Equal(got, want) {
			t.Errorf("dense=%v: got %q, want %q", dense, got, want)
		}
	}
}

func TestWhenGuard(t *testing.T) {
	tests := []struct {
		when string
		want string // the guard described, "" for none
	}{
		{"request.from == 'a'", `request.from is one of ["a"]`},
		{"'a' == request.to && request.forceAdd", `request.to is one of ["a"]`},
		{"request.from.startsWith('guest_') && !request.forceAdd", `request.from starts with one of ["guest_"]`},
		{"request.from.startsWith('g') && request.appID in ['1', '2']", `request.appID is one of ["1" "2"]`},
		{"request.from == 'a' || request.to == 'b'", ""},
		{"!(request.from == 'a')", ""},
		{"request.wording.contains('x')", ""},
		{"request.eventTime == 5", ""},
		{"request.from == request.to", ""},
	}
	for _, tt := range tests {
		w, err := compileWhenProgram(tt.when)
		if err != nil {
			t.Fatalf("%s: %v", tt.when, err)
		}
		got := ""
		if w.guard != nil {
			got = w.guard.describe()
		}
		if got != tt.want {
			t.Errorf("%s: guard %q, want %q", tt.when, got, tt.want)
		}
	}
}

func TestNoteForUnguardedWhen(t *testing.T) {
	_, compiled, err := Build([]*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{
		{Name: "guarded", When: "request.from == 'a'"},
		{Name: "unguarded", When: "request.wording.size() > 100"},
	}})}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	notes := compiled[0].Notes
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "spec.rules[1].when: when has no indexable guard") {
		t.Errorf("notes %q, want one for spec.rules[1].when", notes)
	}
}

// TestFastCELMatchesTracked checks that an expression runs without the cost tracker only
// when the checker bounds it, and that a request longer than the bound takes the tracked
// program, which stops a hostile expression.
func TestFastCELMatchesTracked(t *testing.T) {
	for _, tt := range []struct {
		when      string
		fast      bool
		guardOnly bool
		rest      bool
	}{
		{"request.from.startsWith('guest_') && request.wording.matches('x')", true, false, true},
		{"request.to in ['a', 'b']", true, true, false},
		{"request.wording.lowerAscii().contains('x') && request.eventTime > 3", true, false, false},
		{"has(request.from)", false, false, false}, // reads the request other than field by field
		{"request.wording" + strings.Repeat(".replace('a', 'aa')", 20) + ".size() > 0", false, false, false},
		// The rest has no bound of its own: the guard's term is not one either.
		{"request.from == 'x' && request.wording" + strings.Repeat(".replace('a', 'aa')", 20) + ".size() > 0", false, false, false},
	} {
		w, err := compileWhenProgram(tt.when)
		if err != nil {
			t.Fatalf("%s: %v", tt.when, err)
		}
		if w.native != nil {
			t.Errorf("%s: compiled without CEL", tt.when)
		}
		if fast := w.fast != nil || w.rest != nil || w.guardOnly; fast != tt.fast {
			t.Errorf("%s: untracked evaluation %v, want %v", tt.when, fast, tt.fast)
		}
		if w.guardOnly != tt.guardOnly || (w.rest != nil) != tt.rest {
			t.Errorf("%s: guard only %v, rest %v; want %v, %v", tt.when, w.guardOnly, w.rest != nil, tt.guardOnly, tt.rest)
		}
	}
	long := Request{Wording: strings.Repeat("x", fastCELMaxString+1), EventTime: 4}
	if fitsFastCEL(&long) {
		t.Error("a wording longer than the bound fits the fast programs")
	}
	// The tracked program of an expression with a fast one waits for the first request
	// that needs it, and then decides as the fast one would.
	w, err := compileWhenProgram("request.wording.lowerAscii().contains('x') && request.eventTime > 3")
	if err != nil {
		t.Fatal(err)
	}
	if w.tracked != nil {
		t.Error("the tracked program was compiled before a request needed it")
	}
	var act celActivation
	act.reset(&long)
	if got, err := w.eval(&act, fitsFastCEL(&long)); err != nil || !got {
		t.Errorf("long request: got %v, %v; want true", got, err)
	}
	if w.tracked == nil {
		t.Error("a request over the bound did not run the tracked program")
	}
}

// TestNativeWhen checks which `when`s run without CEL, and that they decide as the
// tracked CEL program does.
func TestNativeWhen(t *testing.T) {
	requests := []Request{
		{},
		{From: "guest_1", To: "bob", Wording: "  hi  ", Remark: "héllo", EventTime: 7, ForceAdd: true},
		{From: "guest", To: "b1", Wording: "\t\n", Remark: "\xffab", EventTime: -3},
		{From: "alice", To: "vip_1", Wording: "call me", Remark: "ab", EventTime: 5},
	}
	for _, tt := range []struct {
		when   string
		native bool
	}{
		{"request.from.startsWith('guest_') && !request.forceAdd", true},
		{"request.wording.trim() == ''", true},
		{"request.remark.size() > 2 || size(request.wording) <= 2", true},
		{"request.to.endsWith('1') != request.forceAdd", true},
		{"request.wording.contains('me') && request.eventTime >= 5 && request.eventTime < 7", true},
		{"request.from != 'alice' || false == request.forceAdd", true},
		{"true", true},
		{"request.remark.lowerAscii() == 'ab'", false},
		{"request.to in ['bob', 'b1']", false},
		{"request.wording.matches('^c')", false},
		{"int(request.eventTime) == 5", false},
	} {
		w, err := compileWhenProgram(tt.when)
		if err != nil {
			t.Fatalf("%s: %v", tt.when, err)
		}
		if (w.native != nil) != tt.native {
			t.Errorf("%s: native %v, want %v", tt.when, w.native != nil, tt.native)
		}
		tracked, err := w.trackedProgram()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range requests {
			var act celActivation
			act.reset(&r)
			got, err := w.eval(&act, true)
			want, wantErr := evalWhen(tracked, &r)
			if got != want || (err != nil) != (wantErr != nil) {
				t.Errorf("%s on %+v: got %v, %v; CEL gives %v, %v", tt.when, r, got, err, want, wantErr)
			}
		}
	}
}

// TestWhenSharesRest checks that `when`s differing only in their guards share the program
// of the rest, and decide as the whole expression does on both sides of the guard.
func TestWhenSharesRest(t *testing.T) {
	a, err := compileWhenProgram("request.from.startsWith('guest1_') && !request.forceAdd && request.wording.lowerAscii() != ''")
	if err != nil {
		t.Fatal(err)
	}
	b, err := compileWhenProgram("!request.forceAdd && request.from.startsWith('guest2_') && request.wording.lowerAscii() != ''")
	if err != nil {
		t.Fatal(err)
	}
	if a.rest == nil || a.rest != b.rest {
		t.Fatalf("rests %p and %p, want one shared program", a.rest, b.rest)
	}
	for _, tt := range []struct {
		r    Request
		want bool
	}{
		{Request{From: "guest1_x", Wording: "hi"}, true},
		{Request{From: "guest1_x", Wording: "hi", ForceAdd: true}, false},
		{Request{From: "guest1_x"}, false},
		{Request{From: "guest2_x", Wording: "hi"}, false},
		{Request{From: "alice", Wording: "hi"}, false},
	} {
		var act celActivation
		act.reset(&tt.r)
		got, err := a.eval(&act, true)
		if err != nil || got != tt.want {
			t.Errorf("%+v: got %v, %v; want %v", tt.r, got, err, tt.want)
		}
		act.reset(&tt.r)
		if tracked, err := a.eval(&act, false); err != nil || tracked != got {
			t.Errorf("%+v: the tracked program gives %v, %v; the untracked %v", tt.r, tracked, err, got)
		}
	}
}

// TestDecideAllocatesNothing checks that an allowed request that meets every kind of
// condition (exemptions, users, prefixes, patterns with and without a literal, wording,
// a guarded `when` whose guard fails, add sources, platforms, client CIDRs) allocates
// nothing, and neither does one refused by a blocklist.
func TestDecideAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "p", spec{
			Exemptions: &v1alpha1.Exemptions{Users: []string{"support"}, Prefixes: []string{"staff_"}},
			Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"spam"}, Prefixes: []string{"bot_"}, Patterns: []string{`[0-9]{11}`, `camp_[0-9]+`}}},
			Rules: []v1alpha1.Rule{
				{Name: "links", WordingPatterns: []string{`https?://`}},
				{Name: "guests", When: "request.from.startsWith('guest_') && !request.forceAdd"},
				{Name: "search", AddSources: []string{"AddSource_Type_Search"}},
				{Name: "web", Platforms: []string{"Web"}},
				{Name: "net", ClientCIDRs: []string{"203.0.113.0/24", "2001:db8::/32"}},
				{Name: "words", Keywords: &v1alpha1.Keywords{Words: []string{"via", "加微信"}, In: []v1alpha1.KeywordInput{"Wording", "Remark"}, IgnoreSeparators: true, FoldConfusables: true}},
			},
		}),
		fp("ns", "scoped", spec{AppIDs: []string{"app"}, Rules: []v1alpha1.Rule{{Name: "net", ClientCIDRs: []string{"10.0.0.0/8"}}}}),
	})
	allowed := Request{Event: "FriendRequest", AppID: "app", From: "alice", To: "bob", Wording: "hello there", Remark: "ｆｒｉｅｎｄ",
		AddSource: "AddSource_Type_QR", Platform: "Android", ClientIP: "198.51.100.7"}
	denied := allowed
	denied.To = "spam"
	for _, r := range []Request{allowed, denied} {
		if n := testing.AllocsPerRun(100, func() { s.Decide(&r) }); n != 0 {
			t.Errorf("%+v: %v allocations per decision", r, n)
		}
	}
}

// TestDecideConcurrently decides from several goroutines at once, for the race detector:
// the snapshot is shared, each decision has its own scratch.
func TestDecideConcurrently(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{
		Blocklists: []v1alpha1.Blocklist{{Name: "l", Users: []string{"spam"}}},
		Rules:      []v1alpha1.Rule{{Name: "guests", When: "request.from.startsWith('guest_')"}},
	})})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				from := []string{"alice", "spam", "guest_" + strconv.Itoa(g)}[i%3]
				d := s.Decide(&Request{Event: "FriendRequest", From: from, To: "bob"})
				if (d.Deny != nil) != (from != "alice") {
					t.Errorf("from %s: got %+v", from, d.Deny)
					return
				}
			}
		})
	}
	wg.Wait()
}
