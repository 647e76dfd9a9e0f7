package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// LabelList is the label a ConfigMap must carry for blocklists and keyword dictionaries to read it: webhook
// replicas and the controller watch only ConfigMaps that have it, whatever its value, so
// the API server filters and neither holds the cluster's other ConfigMaps. A
// configMapSelector selects among those.
const LabelList = "friendgate.io/list"

// listRequirement is LabelList's presence.
var listRequirement = func() labels.Requirement {
	req, err := labels.NewRequirement(LabelList, selection.Exists, nil)
	if err != nil {
		panic(err) // LabelList is a valid label key
	}
	return *req
}()

// ListSelector selects every ConfigMap a blocklist may read: those labelled LabelList.
func ListSelector() labels.Selector { return labels.NewSelector().Add(listRequirement) }

// ListSelector returns which ConfigMaps of its policy's namespace the blocklist reads:
// those labelled LabelList that its configMapSelector matches. It is nil when the
// blocklist reads no ConfigMap, and an error when configMapSelector is not a valid
// selector.
func (b *Blocklist) ListSelector() (labels.Selector, error) {
	return listSelector(b.ConfigMapSelector)
}

// ListSelector returns which ConfigMaps of its policy's namespace the keyword dictionary
// reads, as Blocklist.ListSelector does: nil when it reads none.
func (k *Keywords) ListSelector() (labels.Selector, error) {
	return listSelector(k.ConfigMapSelector)
}

func listSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, err
	}
	return sel.Add(listRequirement), nil
}

// ListSelectors returns the ListSelector of every blocklist and keyword dictionary that
// reads ConfigMaps. One whose configMapSelector is invalid reads none: the policy does
// not compile.
func (s *FriendPolicySpec) ListSelectors() []labels.Selector {
	var out []labels.Selector
	add := func(sel labels.Selector, err error) {
		if sel != nil && err == nil {
			out = append(out, sel)
		}
	}
	for i := range s.Blocklists {
		add(s.Blocklists[i].ListSelector())
	}
	for i := range s.Rules {
		if k := s.Rules[i].Keywords; k != nil {
			add(k.ListSelector())
		}
	}
	return out
}

// SelectsList reports whether one of the selectors (ListSelectors) selects a ConfigMap
// with these labels.
func SelectsList(selectors []labels.Selector, configMapLabels map[string]string) bool {
	set := labels.Set(configMapLabels)
	return slices.ContainsFunc(selectors, func(sel labels.Selector) bool { return sel.Matches(set) })
}
