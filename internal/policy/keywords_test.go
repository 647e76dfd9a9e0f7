package policy

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

func kwRule(name string, k v1alpha1.Keywords) v1alpha1.Rule {
	return v1alpha1.Rule{Name: name, Keywords: &k}
}

func off() *bool { b := false; return &b }

var (
	inRemark = []v1alpha1.KeywordInput{v1alpha1.KeywordInputRemark}
	inBoth   = []v1alpha1.KeywordInput{v1alpha1.KeywordInputWording, v1alpha1.KeywordInputRemark}
	wordsSel = &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam-words"}}
)

func TestDecideKeywords(t *testing.T) {
	fr := string(v1alpha1.EventFriendRequest)
	words := []string{"via", "buy now", "加微信", "🍆"}
	tests := []struct {
		name    string
		k       v1alpha1.Keywords
		cms     []*corev1.ConfigMap
		wording string
		remark  string
		// keyword is the entry expected to match, "" for allow; text is what it matched.
		keyword, text string
	}{
		{name: "plain substring", k: v1alpha1.Keywords{Words: words}, wording: "trivial", keyword: "via", text: "via"},
		{name: "phrase", k: v1alpha1.Keywords{Words: words}, wording: "hey, buy now!", keyword: "buy now", text: "buy now"},
		{name: "runs of white space are one space", k: v1alpha1.Keywords{Words: words}, wording: "buy \t now", keyword: "buy now", text: "buy \t now"},
		{name: "Chinese", k: v1alpha1.Keywords{Words: words}, wording: "你好请加微信好友", keyword: "加微信", text: "加微信"},
		{name: "emoji", k: v1alpha1.Keywords{Words: words}, wording: "hot 🍆", keyword: "🍆", text: "🍆"},
		{name: "nothing", k: v1alpha1.Keywords{Words: words}, wording: "hello there"},
		{name: "case folded by default", k: v1alpha1.Keywords{Words: words}, wording: "VIA me", keyword: "via", text: "VIA"},
		{name: "case kept when foldCase is false", k: v1alpha1.Keywords{Words: words, FoldCase: off()}, wording: "VIA me"},
		{name: "fullwidth folded by default", k: v1alpha1.Keywords{Words: words}, wording: "ｖｉａ", keyword: "via", text: "ｖｉａ"},
		{name: "fullwidth kept when foldCompatibility is false", k: v1alpha1.Keywords{Words: words, FoldCompatibility: off()}, wording: "ｖｉａ"},
		{name: "separators count by default", k: v1alpha1.Keywords{Words: words}, wording: "V.I.A"},
		{name: "separators ignored", k: v1alpha1.Keywords{Words: words, IgnoreSeparators: true}, wording: "V.I.A", keyword: "via", text: "V.I.A"},
		{name: "phrase without its space when separators are ignored", k: v1alpha1.Keywords{Words: words, IgnoreSeparators: true}, wording: "buynow", keyword: "buy now", text: "buynow"},
		{name: "leetspeak kept by default", k: v1alpha1.Keywords{Words: words}, wording: "v1a"},
		{name: "leetspeak folded", k: v1alpha1.Keywords{Words: words, FoldConfusables: true}, wording: "v1a", keyword: "via", text: "v1a"},
		{name: "Cyrillic look-alikes folded", k: v1alpha1.Keywords{Words: words, FoldConfusables: true}, wording: "vіа", keyword: "via", text: "vіа"},
		{name: "every normalisation", k: v1alpha1.Keywords{Words: words, IgnoreSeparators: true, FoldConfusables: true}, wording: "Ｖ.1-Ａ", keyword: "via", text: "Ｖ.1-Ａ"},
		{name: "whole words: inside a word", k: v1alpha1.Keywords{Words: words, WholeWords: true}, wording: "trivial"},
		{name: "whole words: a word", k: v1alpha1.Keywords{Words: words, WholeWords: true}, wording: "go (via) me", keyword: "via", text: "via"},
		{name: "whole words: Chinese matches inside text", k: v1alpha1.Keywords{Words: words, WholeWords: true}, wording: "请加微信好友", keyword: "加微信", text: "加微信"},
		{name: "wording by default, not the remark", k: v1alpha1.Keywords{Words: words}, wording: "hi", remark: "via"},
		{name: "remark only", k: v1alpha1.Keywords{Words: words, In: inRemark}, wording: "via", remark: "friend"},
		{name: "remark", k: v1alpha1.Keywords{Words: words, In: inRemark}, wording: "hi", remark: "buy now", keyword: "buy now", text: "buy now"},
		{name: "both: wording first", k: v1alpha1.Keywords{Words: words, In: inBoth}, wording: "via", remark: "buy now", keyword: "via", text: "via"},
		{name: "both: remark", k: v1alpha1.Keywords{Words: words, In: inBoth}, wording: "hi", remark: "buy now", keyword: "buy now", text: "buy now"},
		{
			name: "ConfigMap words, with the inline ones",
			k:    v1alpha1.Keywords{Words: []string{"via"}, ConfigMapSelector: wordsSel},
			cms: []*corev1.ConfigMap{
				configMap("ns", "words-a", map[string]string{v1alpha1.LabelList: "spam-words"}, map[string]string{"list": "# drugs\n  viagra  \n\ncialis\n"}),
				configMap("ns", "words-b", map[string]string{v1alpha1.LabelList: "spam-words"}, map[string]string{"x": "skype"}),
				configMap("ns", "other", map[string]string{v1alpha1.LabelList: "other"}, map[string]string{"x": "hello"}),
			},
			wording: "my SKYPE: x", keyword: "skype", text: "SKYPE",
		},
		{
			name:    "ConfigMap of another list is not read",
			k:       v1alpha1.Keywords{ConfigMapSelector: wordsSel},
			cms:     []*corev1.ConfigMap{configMap("ns", "other", map[string]string{v1alpha1.LabelList: "other"}, map[string]string{"x": "hello"})},
			wording: "hello",
		},
		{
			name:    "ConfigMap comment lines are not words",
			k:       v1alpha1.Keywords{ConfigMapSelector: wordsSel},
			cms:     []*corev1.ConfigMap{configMap("ns", "w", map[string]string{v1alpha1.LabelList: "spam-words"}, map[string]string{"x": "# hello\nviagra"})},
			wording: "hello",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustBuild(t, []*v1alpha1.FriendPolicy{fp("ns", "p", spec{Rules: []v1alpha1.Rule{kwRule("words", tt.k)}})}, tt.cms...)
			r := Request{Event: fr, From: "a", To: "b", Wording: tt.wording, Remark: tt.remark}
			d := s.Decide(&r)
			if tt.keyword == "" {
				if d.Deny != nil {
					m, _ := d.Keyword(d.Deny)
					t.Fatalf("denied by %s (%s), want allow", d.Deny.Detail, m.String())
				}
				return
			}
			if d.Deny == nil {
				t.Fatalf("allowed, want deny by keyword %q", tt.keyword)
			}
			m, ok := d.Keyword(d.Deny)
			if !ok {
				t.Fatal("the deny verdict has no keyword match")
			}
			text := keywordInputText(&r, m.Input)
			if m.Entry != tt.keyword || text[m.Start:m.End] != tt.text {
				t.Errorf("matched %q at %q, want %q at %q", m.Entry, text[m.Start:m.End], tt.keyword, tt.text)
			}
			traces := s.Explain(&r)
			if tr := traces[0]; tr.Keyword == nil || tr.Keyword.Entry != tt.keyword || !strings.Contains(tr.Reason, `keyword "`+tt.keyword+`"`) {
				t.Errorf("Explain: %+v, want the keyword %q", tr, tt.keyword)
			}
		})
	}
}

func TestKeywordRuleWithOtherConditions(t *testing.T) {
	s := mustBuild(t, []*v1alpha1.FriendPolicy{
		fp("ns", "dry", spec{EnforcementAction: v1alpha1.EnforcementDryRun, Rules: []v1alpha1.Rule{
			{Name: "search-words", AddSources: []string{"AddSource_Type_Search"}, Keywords: &v1alpha1.Keywords{Words: []string{"via"}}},
		}}),
		fp("ns", "deny", spec{Rules: []v1alpha1.Rule{
			{Name: "guests", When: "request.from.startsWith('guest_')", Keywords: &v1alpha1.Keywords{Words: []string{"via"}}},
		}}),
	})
	tests := []struct {
		req  Request
		want string
	}{
		{Request{Event: "FriendRequest", From: "guest_1", Wording: "via", AddSource: "AddSource_Type_Search"}, "deny ns/deny/rule/guests 38000 +dry ns/dry/rule/search-words"},
		{Request{Event: "FriendRequest", From: "user_1", Wording: "via", AddSource: "AddSource_Type_Search"}, "allow +dry ns/dry/rule/search-words"},
		{Request{Event: "FriendRequest", From: "guest_1", Wording: "hi", AddSource: "AddSource_Type_Search"}, "allow"},
		{Request{Event: "FriendRequest", From: "user_1", Wording: "via", AddSource: "AddSource_Type_QR"}, "allow"},
	}
	for _, tt := range tests {
		d := s.Decide(&tt.req)
		if got := outcome(d); got != tt.want {
			t.Errorf("%+v: got %s, want %s", tt.req, got, tt.want)
		}
		for _, v := range append(d.WouldDeny, d.Deny) {
			if m, ok := d.Keyword(v); v != nil && (!ok || m.Entry != "via") {
				t.Errorf("%+v: verdict %s has keyword %+v, want via", tt.req, v.Detail, m)
			}
		}
	}
}

func TestKeywordErrors(t *testing.T) {
	list := func(data string) *corev1.ConfigMap {
		return configMap("ns", "words", map[string]string{v1alpha1.LabelList: "spam-words"}, map[string]string{"list": data})
	}
	tests := []struct {
		name   string
		k      v1alpha1.Keywords
		cms    []*corev1.ConfigMap
		reason string
		want   []string
	}{
		{name: "neither words nor configMapSelector", k: v1alpha1.Keywords{In: inRemark}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords: Required value: keywords need words or a configMapSelector"}},
		{name: "word empty after normalisation", k: v1alpha1.Keywords{Words: []string{"a", "b", "c", "d", "e", "...", "f"}, IgnoreSeparators: true}, reason: v1alpha1.ReasonInvalid,
			want: []string{`spec.rules[0].keywords.words[5]: Invalid value: "...": entry "..." is empty after normalisation`}},
		{name: "word only invisible characters", k: v1alpha1.Keywords{Words: []string{"\u200b"}}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords.words[0]: Invalid value"}},
		{name: "word empty", k: v1alpha1.Keywords{Words: []string{"via", ""}}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords.words[1]: Required value"}},
		{name: "word too long", k: v1alpha1.Keywords{Words: []string{strings.Repeat("x", v1alpha1.MaxKeywordLength+1)}}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords.words[0]: Too long"}},
		{name: "duplicate word", k: v1alpha1.Keywords{Words: []string{"via", "via"}}, reason: v1alpha1.ReasonInvalid,
			want: []string{`spec.rules[0].keywords.words[1]: Duplicate value: "via"`}},
		{name: "too many words", k: v1alpha1.Keywords{Words: manyWords(v1alpha1.MaxKeywordWords + 1)}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords.words: Too many"}},
		{name: "unknown input", k: v1alpha1.Keywords{Words: []string{"via"}, In: []v1alpha1.KeywordInput{"GroupName"}}, reason: v1alpha1.ReasonInvalid,
			want: []string{`spec.rules[0].keywords.in[0]: Unsupported value: "GroupName"`}},
		{name: "duplicate input", k: v1alpha1.Keywords{Words: []string{"via"}, In: []v1alpha1.KeywordInput{"Remark", "Remark"}}, reason: v1alpha1.ReasonInvalid,
			want: []string{`spec.rules[0].keywords.in[1]: Duplicate value: "Remark"`}},
		{name: "selector without the list label", k: v1alpha1.Keywords{ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}}, reason: v1alpha1.ReasonInvalid,
			want: []string{"spec.rules[0].keywords.configMapSelector: Invalid value: \"team=x\": configMapSelector must select on the label friendgate.io/list"}},
		{name: "ConfigMap line empty after normalisation", k: v1alpha1.Keywords{ConfigMapSelector: wordsSel, IgnoreSeparators: true}, cms: []*corev1.ConfigMap{list("via\n# note\n...\n")},
			reason: v1alpha1.ReasonListError,
			want:   []string{`spec.rules[0].keywords.configMapSelector: Invalid value: "friendgate.io/list=spam-words"`, `ConfigMap words key list line 3: entry "..." is empty after normalisation`}},
		{name: "ConfigMap line too long", k: v1alpha1.Keywords{ConfigMapSelector: wordsSel}, cms: []*corev1.ConfigMap{list("via\n" + strings.Repeat("x", 300))},
			reason: v1alpha1.ReasonListError,
			want:   []string{"ConfigMap words key list line 2: entry", "is longer than 256 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(fp("ns", "p", spec{Rules: []v1alpha1.Rule{kwRule("words", tt.k)}}), tt.cms, Options{})
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CompileError", err)
			}
			if ce.Reason != tt.reason {
				t.Errorf("reason %s, want %s", ce.Reason, tt.reason)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func manyWords(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "w" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	return out
}

func TestKeywordSelectorWithoutConfigMapWarns(t *testing.T) {
	c, err := Compile(fp("ns", "p", spec{Rules: []v1alpha1.Rule{kwRule("words", v1alpha1.Keywords{ConfigMapSelector: wordsSel})}}), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "spec.rules[0].keywords.configMapSelector: selects no ConfigMap") {
		t.Errorf("warnings %q", c.Warnings)
	}
}

func TestKeywordDictionariesShared(t *testing.T) {
	k := v1alpha1.Keywords{Words: []string{"via", "skype"}, IgnoreSeparators: true}
	other := k
	other.WholeWords = true
	s, compiled, err := Build([]*v1alpha1.FriendPolicy{
		fp("ns", "a", spec{Rules: []v1alpha1.Rule{kwRule("words", k)}}),
		fp("ns", "b", spec{AppIDs: []string{"app"}, Rules: []v1alpha1.Rule{{Name: "x", When: "true"}, kwRule("same", k)}}),
		fp("ns", "c", spec{Rules: []v1alpha1.Rule{kwRule("whole", other)}}),
	}, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if compiled[0].rules[0].keywords.dict != compiled[1].rules[1].keywords.dict {
		t.Error("the same keywords compiled twice")
	}
	if compiled[0].rules[0].keywords.dict == compiled[2].rules[0].keywords.dict {
		t.Error("keywords with other options share a dictionary")
	}
	glued, err := Compile(fp("ns", "d", spec{Rules: []v1alpha1.Rule{kwRule("glued", v1alpha1.Keywords{Words: []string{"via\x00skype"}, IgnoreSeparators: true})}}), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if glued.rules[0].keywords.dict == compiled[0].rules[0].keywords.dict {
		t.Error("a word holding a NUL shares the dictionary of the two words it joins")
	}
	// One id per distinct dictionary: it runs once per request, whatever rules use it.
	if len(s.dicts) != 2 {
		t.Errorf("%d dictionaries in the snapshot, want 2", len(s.dicts))
	}
}

func TestKeywordDictionaryReadOncePerResourceVersion(t *testing.T) {
	cm := func(name, rv, data string) *corev1.ConfigMap {
		c := configMap("ns", name, map[string]string{v1alpha1.LabelList: "spam-words"}, map[string]string{"list": data})
		c.UID, c.ResourceVersion = types.UID("uid-"+name), rv
		return c
	}
	p := fp("ns", "p", spec{Rules: []v1alpha1.Rule{kwRule("words", v1alpha1.Keywords{ConfigMapSelector: wordsSel})}})
	compile := func(cms ...*corev1.ConfigMap) *keywordCond {
		c, err := Compile(p, cms, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c.ConfigMaps[0] != "a" {
			t.Errorf("ConfigMaps %v, want a first", c.ConfigMaps)
		}
		return c.rules[0].keywords
	}
	first := compile(cm("a", "1", "via"), cm("b", "1", "skype"))
	again := compile(cm("a", "1", "via"), cm("b", "1", "skype"))
	changed := compile(cm("a", "1", "via"), cm("b", "2", "cialis"))
	if first.dict != again.dict {
		t.Error("the dictionary was built again though no ConfigMap changed")
	}
	if first.dict == changed.dict {
		t.Error("the dictionary was not rebuilt after a ConfigMap changed")
	}
	if m, ok := changed.dict.Match("cialis"); !ok || m.Source != "ConfigMap b key list" {
		t.Errorf("match %+v %v, want cialis from ConfigMap b key list", m, ok)
	}
}
