package policy

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

func TestCompactSet(t *testing.T) {
	a, err := readPiece(configMap("ns", "a", nil, map[string]string{
		"k2": "  u1  \n# comment\n\n\tu2\u00a0\r\nu3",
		"k1": "u1\nu4\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := readPiece(configMap("ns", "b", nil, map[string]string{"k": "u5\nu1"}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := newCompactSet([]*listPiece{inlinePiece([]string{"inline", "u2"}), a, b}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"inline", "u1", "u2", "u3", "u4", "u5"} {
		if !s.contains(id) {
			t.Errorf("%q is missing", id)
		}
	}
	for _, id := range []string{"", "u", "u11", "# comment", "inline\nu2", "u2\u00a0", strings.Repeat("x", 200)} {
		if s.contains(id) {
			t.Errorf("%q is in the set", id)
		}
	}
	if s.len() != 6 {
		t.Errorf("len %d, want 6 distinct IDs", s.len())
	}
	if _, err := newCompactSet([]*listPiece{a, b}, 4); err == nil || err.Error() != `the list has more than 4 user IDs (ConfigMap b key "k" line 1)` {
		t.Errorf("got error %v", err)
	}
}

// TestCompactSetLongData checks a value longer than a slot's offset reaches: it is split
// into several strings, and every ID is still found.
func TestCompactSetLongData(t *testing.T) {
	var b strings.Builder
	n := 0
	for b.Len() <= maxPieceString+1000 {
		b.WriteString("user_" + strconv.Itoa(n) + "\n")
		n++
	}
	p, err := readPiece(configMap("ns", "long", nil, map[string]string{"k": b.String()}))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.strs) < 2 {
		t.Fatalf("the value is %d bytes in %d string(s)", b.Len(), len(p.strs))
	}
	s, err := newCompactSet([]*listPiece{p}, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, n / 2, n - 2, n - 1} {
		if id := "user_" + strconv.Itoa(i); !s.contains(id) {
			t.Errorf("%s is missing", id)
		}
	}
	if s.len() != n {
		t.Errorf("len %d, want %d", s.len(), n)
	}
	// The error names the line in the whole value, not in the string it was split into.
	want := `the list has more than ` + strconv.Itoa(n-1) + ` user IDs (ConfigMap long key "k" line ` + strconv.Itoa(n) + `)`
	if _, err := newCompactSet([]*listPiece{p}, n-1); err == nil || err.Error() != want {
		t.Errorf("got error %v, want %s", err, want)
	}
}

// TestListReadOncePerResourceVersion checks that recompiling a policy reads again only the
// ConfigMaps that changed.
func TestListReadOncePerResourceVersion(t *testing.T) {
	cm := func(name, rv, data string) *corev1.ConfigMap {
		c := configMap("ns", name, map[string]string{v1alpha1.LabelList: "big"}, map[string]string{"ids": data})
		c.ResourceVersion = rv
		return c
	}
	p := fp("ns", "p", spec{Blocklists: []v1alpha1.Blocklist{{
		Name: "l", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelList: "big"}},
	}}})
	compile := func(cms ...*corev1.ConfigMap) []*listPiece {
		c, err := Compile(p, cms, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c.blocklists[0].set.list.pieces
	}
	first := compile(cm("a", "1", "u1"), cm("b", "1", "u2"))
	second := compile(cm("a", "1", "u1"), cm("b", "2", "u3"))
	if first[0] != second[0] {
		t.Error("the unchanged ConfigMap was read again")
	}
	if first[1] == second[1] {
		t.Error("the changed ConfigMap was not read again")
	}
}
