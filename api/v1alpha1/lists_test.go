package v1alpha1_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

func TestListSelection(t *testing.T) {
	team := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": name}}
	}
	spec := v1alpha1.FriendPolicySpec{Blocklists: []v1alpha1.Blocklist{
		{Name: "inline", Users: []string{"spam_1"}},
		{Name: "trust-safety", ConfigMapSelector: team("trust-safety")},
		{Name: "invalid", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}},
		{Name: "every-list", ConfigMapSelector: &metav1.LabelSelector{}},
	}}
	if _, err := spec.Blocklists[2].ListSelector(); err == nil {
		t.Error("an invalid configMapSelector gave no error")
	}
	if sel, err := spec.Blocklists[0].ListSelector(); sel != nil || err != nil {
		t.Errorf("a blocklist without configMapSelector selects %v, %v; want nil, nil", sel, err)
	}
	selectors := spec.ListSelectors()
	if len(selectors) != 2 {
		t.Fatalf("%d selectors, want 2 (trust-safety and every-list; the invalid one reads nothing)", len(selectors))
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		// want: selected by trust-safety's selector, then by the spec's.
		trustSafety, spec bool
	}{
		{"a list of the team", map[string]string{v1alpha1.LabelList: "x", "team": "trust-safety"}, true, true},
		{"a list with an empty label value", map[string]string{v1alpha1.LabelList: "", "team": "trust-safety"}, true, true},
		{"a list of another team", map[string]string{v1alpha1.LabelList: "x", "team": "growth"}, false, true},
		{"not a list", map[string]string{"team": "trust-safety"}, false, false},
		{"no labels", nil, false, false},
	} {
		if got := selectors[0].Matches(labels.Set(tc.labels)); got != tc.trustSafety {
			t.Errorf("%s: trust-safety's selector matches = %v, want %v", tc.name, got, tc.trustSafety)
		}
		if got := v1alpha1.SelectsList(selectors, tc.labels); got != tc.spec {
			t.Errorf("%s: SelectsList = %v, want %v", tc.name, got, tc.spec)
		}
		_, isList := tc.labels[v1alpha1.LabelList]
		if got := v1alpha1.ListSelector().Matches(labels.Set(tc.labels)); got != isList {
			t.Errorf("%s: ListSelector matches = %v, want %v", tc.name, got, isList)
		}
	}
}

func TestListSelectorsIncludeKeywordDictionaries(t *testing.T) {
	words := &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "spam-words"}}
	spec := v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{
		{Name: "inline", Keywords: &v1alpha1.Keywords{Words: []string{"via"}}},
		{Name: "no-keywords", When: "true"},
		{Name: "words", Keywords: &v1alpha1.Keywords{ConfigMapSelector: words}},
	}}
	selectors := spec.ListSelectors()
	if len(selectors) != 1 {
		t.Fatalf("%d selectors, want 1 (the words rule's)", len(selectors))
	}
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{v1alpha1.LabelList: "spam-words"}, true},
		{map[string]string{v1alpha1.LabelList: "other"}, false},
	} {
		if got := v1alpha1.SelectsList(selectors, tc.labels); got != tc.want {
			t.Errorf("SelectsList(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}
