package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/keywords"
)

// Request texts a keyword dictionary reads, as bits of keywordCond.inputs and positions
// in v1alpha1.KeywordInputs.
const (
	kwWording = iota
	kwRemark
	numKeywordInputs
)

// keywordCond is a rule's keyword condition: its dictionary and the texts it reads.
type keywordCond struct {
	dict     *keywords.Dictionary
	inputs   uint8
	opts     keywords.Options
	words    []string
	selector labels.Selector
}

// KeywordMatch says which dictionary entry made a rule's keyword condition hold. It is for
// logs and `friendgate test`, never for the user who sent the request.
type KeywordMatch struct {
	// Verdict is the verdict of the rule whose condition held.
	Verdict *Verdict
	// Input is the text the entry was found in: Wording or Remark.
	Input v1alpha1.KeywordInput
	// Entry is the dictionary entry as written.
	Entry string
	// Source is where the entry came from: "words" (inline) or "ConfigMap <name> key <key>".
	Source string
	// Start and End are the byte range of the text the entry matched.
	Start, End int
}

// String describes the match for people: keyword "via" (words) in Wording "v.i.a".
func (m *KeywordMatch) String() string {
	return fmt.Sprintf("keyword %q (%s) in %s [%d:%d]", m.Entry, m.Source, m.Input, m.Start, m.End)
}

// Keyword returns the keyword match that made v hold, if v is the verdict of a rule with a
// keyword condition in this decision.
func (d *Decision) Keyword(v *Verdict) (KeywordMatch, bool) {
	for _, m := range d.Keywords {
		if m.Verdict == v {
			return m, true
		}
	}
	return KeywordMatch{}, false
}

func (c *keywordCond) text(r *Request, input int) string {
	if input == kwRemark {
		return r.Remark
	}
	return r.Wording
}

// keywordInputText is the text of r an input names.
func keywordInputText(r *Request, in v1alpha1.KeywordInput) string {
	if in == v1alpha1.KeywordInputRemark {
		return r.Remark
	}
	return r.Wording
}

// match runs the dictionary over the texts it reads, in order, without memo: for Explain.
func (c *keywordCond) match(r *Request, v *Verdict) (*KeywordMatch, bool) {
	for input := range numKeywordInputs {
		if c.inputs&(1<<input) == 0 {
			continue
		}
		if m, ok := c.dict.Match(c.text(r, input)); ok {
			return newKeywordMatch(v, input, m), true
		}
	}
	return nil, false
}

func newKeywordMatch(v *Verdict, input int, m keywords.Match) *KeywordMatch {
	return &KeywordMatch{Verdict: v, Input: v1alpha1.KeywordInputs[input], Entry: m.Entry, Source: m.Source, Start: m.Start, End: m.End}
}

// keywordOptions are the matcher's options for a spec, with the API's defaults for the
// switches left unset (policies read from files are not defaulted by an API server).
func keywordOptions(k *v1alpha1.Keywords) keywords.Options {
	orDefault := func(b *bool, def bool) bool {
		if b == nil {
			return def
		}
		return *b
	}
	return keywords.Options{
		FoldCase:          orDefault(k.FoldCase, v1alpha1.DefaultKeywordFoldCase),
		FoldCompatibility: orDefault(k.FoldCompatibility, v1alpha1.DefaultKeywordFoldCompatibility),
		IgnoreSeparators:  k.IgnoreSeparators,
		FoldConfusables:   k.FoldConfusables,
		WholeWords:        k.WholeWords,
	}
}

// keywordInputs is the bit set of the texts a dictionary reads.
func keywordInputs(in []v1alpha1.KeywordInput) uint8 {
	if len(in) == 0 {
		in = v1alpha1.DefaultKeywordInputs
	}
	var m uint8
	for _, x := range in {
		if i := slices.Index(v1alpha1.KeywordInputs[:], x); i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

// inlineWordsSource names inline words in matches and errors.
const inlineWordsSource = "words"

var dictCache internCache[keywords.Dictionary]

// dictKey identifies a dictionary's content: its options and inline words (ConfigMap
// versions are appended by the caller). Policies with the same keywords share one
// dictionary, and recompiling a policy whose dictionary did not change reuses it.
func dictKey(opts keywords.Options, words []string) string {
	var b strings.Builder
	for _, on := range []bool{opts.FoldCase, opts.FoldCompatibility, opts.IgnoreSeparators, opts.FoldConfusables, opts.WholeWords} {
		if on {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	// Length-prefixed, so that no word's content can make two lists look alike.
	for _, w := range words {
		b.WriteString(strconv.Itoa(len(w)))
		b.WriteByte(':')
		b.WriteString(w)
	}
	return b.String()
}

// compileKeywords compiles a rule's inline dictionary. An error names each faulty word.
func compileKeywords(k *v1alpha1.Keywords, path *field.Path) (*keywordCond, field.ErrorList) {
	c := &keywordCond{inputs: keywordInputs(k.In), opts: keywordOptions(k), words: k.Words}
	// validateSpec reports an invalid selector; such a dictionary reads no ConfigMap.
	c.selector, _ = k.ListSelector()
	dict, err := dictCache.get(dictKey(c.opts, k.Words), func() (*keywords.Dictionary, error) {
		b := keywords.NewBuilder(c.opts)
		b.AddWords(inlineWordsSource, k.Words...)
		return b.Build()
	})
	if err == nil {
		c.dict = dict
		return c, nil
	}
	// Compile the words one by one to name the faulty ones by their field.
	var errs field.ErrorList
	prefix := "keyword dictionary: " + inlineWordsSource + "[0]: "
	for i, w := range k.Words {
		if _, err := keywords.Compile(c.opts, w); err != nil {
			errs = append(errs, field.Invalid(path.Child("words").Index(i), w, strings.TrimPrefix(err.Error(), prefix)))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, field.Invalid(path.Child("words"), len(k.Words), err.Error()))
	}
	return nil, errs
}

// withConfigMaps compiles the dictionary with the entries of the selected ConfigMaps, one
// AddLines per value. The result is cached by the ConfigMaps' UIDs and resourceVersions,
// so a recompilation that changes none of them builds nothing.
func (c *keywordCond) withConfigMaps(cms []*corev1.ConfigMap) (*keywords.Dictionary, error) {
	if len(cms) == 0 {
		return c.dict, nil
	}
	build := func() (*keywords.Dictionary, error) {
		b := keywords.NewBuilder(c.opts)
		b.AddWords(inlineWordsSource, c.words...)
		for _, cm := range cms {
			for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
				b.AddLines("ConfigMap "+cm.Name+" key "+key, cm.Data[key])
			}
		}
		return b.Build()
	}
	var key strings.Builder
	key.WriteString(dictKey(c.opts, c.words))
	for _, cm := range cms {
		if cm.ResourceVersion == "" {
			// Read from files: no version to cache by.
			return build()
		}
		key.WriteString("\x01" + cm.Namespace + "/" + cm.Name + "/" + string(cm.UID) + "/" + cm.ResourceVersion)
	}
	return dictCache.get(key.String(), build)
}
