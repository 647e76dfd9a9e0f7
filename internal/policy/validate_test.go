package policy

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TestIsDNS1123Label: the quick check agrees with apimachinery's on the edges of the form.
func TestIsDNS1123Label(t *testing.T) {
	for _, s := range []string{
		"", "a", "0", "-", "a-", "-a", "a-b", "a--b", "abc123", "A", "aBc", "a_b", "a.b", "a b", "é",
		"ab\x00", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 62) + "-",
	} {
		want := len(validation.IsDNS1123Label(s)) == 0
		if got := isDNS1123Label(s); got != want {
			t.Errorf("isDNS1123Label(%q) = %v, want %v", s, got, want)
		}
	}
}
