package policytest

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/friendgate/friendgate/internal/manifest"
	"github.com/friendgate/friendgate/internal/policy"
	"github.com/friendgate/friendgate/internal/velocity"
)

// FindSuites lists the suite files under paths: a file is taken as it is, a directory is
// searched recursively for files whose name ends in friendgate-test.yaml.
func FindSuites(paths ...string) ([]string, error) {
	return manifest.Find(manifest.IsTestFile, paths...)
}

// SuiteResult is the outcome of one suite.
type SuiteResult struct {
	// Path is the suite file.
	Path string
	// Name is the suite's metadata.name.
	Name string
	// Err is set when the suite or its policies could not be loaded or compiled; its cases
	// were not run.
	Err error
	// Warnings are compile warnings of the suite's policies.
	Warnings []string
	// Notes say what makes a policy cost more to evaluate, such as a `when` without an
	// indexable guard.
	Notes []string
	// Cases hold one result per case, in order.
	Cases []CaseResult
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Name string
	// Got describes the decision, e.g. "deny 38001 by im-prod/anti-spam blocklist spammers".
	Got string
	// Problems say how the decision differs from the expectation; empty means the case passed.
	Problems []string
	// Trace says what every policy made of the request.
	Trace []policy.Trace
}

// Passed reports whether the case met its expectation.
func (c *CaseResult) Passed() bool { return len(c.Problems) == 0 }

// Failed counts the failed cases, plus one when the suite itself could not run.
func (r *SuiteResult) Failed() int {
	n := 0
	if r.Err != nil {
		n++
	}
	for i := range r.Cases {
		if !r.Cases[i].Passed() {
			n++
		}
	}
	return n
}

// RunFile loads a suite and its policies and runs its cases.
func RunFile(path string) SuiteResult {
	res := SuiteResult{Path: path}
	suite, err := LoadSuite(path)
	if err != nil {
		res.Err = err
		return res
	}
	res.Name = suite.Metadata.Name
	set, err := manifest.Load(suite.policyPaths()...)
	if err != nil {
		res.Err = fmt.Errorf("loading policies: %w", err)
		return res
	}
	if len(set.Policies) == 0 {
		res.Err = fmt.Errorf("no FriendPolicy found in %s", strings.Join(suite.policyPaths(), ", "))
		return res
	}
	snap, compiled, err := policy.Build(set.Policies, set.ConfigMaps, policy.Options{})
	if err != nil {
		res.Err = fmt.Errorf("invalid policies:\n%w", err)
		return res
	}
	for _, c := range compiled {
		for _, w := range c.Warnings {
			res.Warnings = append(res.Warnings, c.Key+": "+w)
		}
		for _, n := range c.Notes {
			res.Notes = append(res.Notes, c.Key+": "+n)
		}
	}
	// Limits count across the cases, in memory, on the suite's own clock.
	counter := velocity.NewLocal(velocity.LocalOptions{})
	now := suiteEpoch
	for i := range suite.Cases {
		c := &suite.Cases[i]
		if c.After != nil {
			now = now.Add(c.After.Duration)
		}
		res.Cases = append(res.Cases, runRepeated(snap, c, counter, now))
	}
	return res
}

// suiteEpoch is when a suite's clock starts.
var suiteEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// runRepeated sends a case's request Repeat times; the first that misses the
// expectation, or else the last, is the case's result.
func runRepeated(snap *policy.Snapshot, c *Case, counter velocity.Counter, now time.Time) CaseResult {
	n := max(c.Repeat, 1)
	for i := 1; ; i++ {
		res := runCase(snap, c, counter, now)
		if i == n || !res.Passed() {
			r := c.Request
			res.Trace = snap.Explain(&r)
			if n > 1 {
				for j, p := range res.Problems {
					res.Problems[j] = fmt.Sprintf("request %d of %d: %s", i, n, p)
				}
			}
			return res
		}
	}
}

func runCase(snap *policy.Snapshot, c *Case, counter velocity.Counter, now time.Time) CaseResult {
	r := c.Request
	d := snap.Decide(&r)
	d.CountLimits(&r, counter, now, nil)
	res := CaseResult{Name: c.Name, Got: describe(&d)}
	want := c.Expect
	var problems []string
	switch {
	case want.Result == resultAllow && d.Deny != nil:
		problems = append(problems, "expected allow, got "+res.Got)
	case want.Result == resultDeny && d.Deny == nil:
		problems = append(problems, "expected deny, got allow")
	case want.Result == resultDeny:
		v := d.Deny
		if want.Code != 0 && want.Code != v.Code {
			problems = append(problems, fmt.Sprintf("expected code %d, got %d", want.Code, v.Code))
		}
		if want.Message != "" && want.Message != v.Message {
			problems = append(problems, fmt.Sprintf("expected message %q, got %q", want.Message, v.Message))
		}
		if want.Policy != "" && want.Policy != v.Policy {
			problems = append(problems, fmt.Sprintf("expected policy %s, got %s", want.Policy, v.Policy))
		}
		if want.Entry != "" && want.Entry != v.Name {
			problems = append(problems, fmt.Sprintf("expected entry %s, got %s %s", want.Entry, v.Kind, v.Name))
		}
		if m, _ := d.Keyword(v); want.Keyword != "" && want.Keyword != m.Entry {
			problems = append(problems, fmt.Sprintf("expected keyword %q, got %q", want.Keyword, m.Entry))
		}
	}
	if want.WouldDeny != nil {
		got := make([]string, 0, len(d.WouldDeny))
		for _, v := range d.WouldDeny {
			got = append(got, v.Policy)
		}
		exp := append([]string(nil), (*want.WouldDeny)...)
		sort.Strings(got)
		sort.Strings(exp)
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			problems = append(problems, fmt.Sprintf("expected would-deny by [%s], got [%s]", strings.Join(exp, ", "), strings.Join(got, ", ")))
		}
	}
	for _, err := range d.Errors {
		problems = append(problems, "evaluation error: "+err.Error())
	}
	res.Problems = problems
	return res
}

func describe(d *policy.Decision) string {
	var b strings.Builder
	if v := d.Deny; v != nil {
		fmt.Fprintf(&b, "deny %d by %s %s %s", v.Code, v.Policy, v.Kind, v.Name)
		if m, ok := d.Keyword(v); ok {
			fmt.Fprintf(&b, " (keyword %q)", m.Entry)
		}
	} else {
		b.WriteString("allow")
	}
	for _, v := range d.WouldDeny {
		fmt.Fprintf(&b, "; would deny by %s %s %s", v.Policy, v.Kind, v.Name)
		if m, ok := d.Keyword(v); ok {
			fmt.Fprintf(&b, " (keyword %q)", m.Entry)
		}
	}
	return b.String()
}
