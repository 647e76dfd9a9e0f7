package policytest

import (
	"strings"
	"testing"
)

// TestRunFileNotesUnguardedWhen checks that a suite reports the `when` expressions the
// index cannot skip: the samples have two, and the guarded one is not reported.
func TestRunFileNotesUnguardedWhen(t *testing.T) {
	res := RunFile("../../config/samples/samples.friendgate-test.yaml")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, policy := range []string{"default/audit-empty-greetings: spec.rules[0].when", "default/clean-remarks: spec.rules[0].when"} {
		if !strings.Contains(notes, policy+": when has no indexable guard") {
			t.Errorf("no note for %s in:\n%s", policy, notes)
		}
	}
	if strings.Contains(notes, "default/anti-spam") {
		t.Errorf("a guarded when is reported:\n%s", notes)
	}
}
