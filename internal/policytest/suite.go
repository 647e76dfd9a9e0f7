// Package policytest runs `friendgate test` suites: request cases with expected decisions,
// evaluated offline against policy manifests, for the CI of GitOps repositories.
package policytest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// SuiteKind is the kind of a test suite document.
const SuiteKind = "FriendPolicyTest"

// maxSuiteSize bounds a suite file.
const maxSuiteSize = 16 << 20

// Suite is one test file:
//
//	apiVersion: friendgate.io/v1alpha1
//	kind: FriendPolicyTest
//	metadata: {name: anti-spam}
//	policies: [.]              # files or directories, relative to this file
//	cases:
//	  - name: known spammer is refused
//	    request: {event: FriendRequest, appID: "1400000001", from: spam_1, to: alice}
//	    expect: {result: deny, code: 38001, policy: im-prod/anti-spam, entry: known-spammers}
//	  - name: 20 requests an hour pass
//	    request: {event: FriendRequest, appID: "1400000001", from: bob, to: carol}
//	    repeat: 20
//	    expect: {result: allow}
//	  - name: the 21st is refused by the limit
//	    request: {event: FriendRequest, appID: "1400000001", from: bob, to: dave}
//	    expect: {result: deny, entry: requests-per-sender}
//	  - name: an hour later bob may send again
//	    after: 1h
//	    request: {event: FriendRequest, appID: "1400000001", from: bob, to: dave}
//	    expect: {result: allow}
type Suite struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	// Policies are manifest files or directories, relative to the suite file. Empty means
	// the suite's own directory.
	Policies []string `json:"policies,omitempty"`
	// Cases are the requests to decide and what to expect of each.
	Cases []Case `json:"cases"`

	// path is the file the suite was read from.
	path string
}

// Case is one request and its expected decision.
type Case struct {
	Name    string         `json:"name"`
	Request policy.Request `json:"request"`
	Expect  Expect         `json:"expect"`
	// Repeat sends the request this many times (default once), each expected to meet
	// Expect: against limits they count as that many requests.
	Repeat int `json:"repeat,omitempty"`
	// After moves the suite's clock on by this much before the case is sent, to reach
	// the end of a limit's window or penalty. The clock starts at suiteEpoch; limits
	// count across the cases of a suite, in order.
	After *metav1.Duration `json:"after,omitempty"`
}

// maxRepeat bounds a case's repeat: a limit allows at most 1,000,000 per window.
const maxRepeat = 1_000_000

// Expect is what a case expects. Only result is required; every other field that is set
// must match too.
type Expect struct {
	// Result is allow or deny.
	Result string `json:"result"`
	// Code and Message are the deny answer's.
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Policy is the deciding policy as namespace/name.
	Policy string `json:"policy,omitempty"`
	// Entry is the deciding blocklist's or rule's name (policy.Verdict.Name).
	Entry string `json:"entry,omitempty"`
	// Keyword is the dictionary entry, as written, that made the deciding rule's keyword
	// condition hold.
	Keyword string `json:"keyword,omitempty"`
	// WouldDeny lists, as namespace/name, every DryRun policy expected to flag the request;
	// an explicit empty list expects none.
	WouldDeny *[]string `json:"wouldDeny,omitempty"`
}

const (
	resultAllow = "allow"
	resultDeny  = "deny"
)

// LoadSuite reads and checks a suite file.
func LoadSuite(path string) (*Suite, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxSuiteSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSuiteSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &Suite{path: path}
	if err := yaml.UnmarshalStrict(data, s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func (s *Suite) check() error {
	if s.APIVersion != v1alpha1.GroupVersion.String() || s.Kind != SuiteKind {
		return fmt.Errorf("want apiVersion %s and kind %s, got %q and %q", v1alpha1.GroupVersion, SuiteKind, s.APIVersion, s.Kind)
	}
	if len(s.Cases) == 0 {
		return fmt.Errorf("no cases")
	}
	names := map[string]bool{}
	var problems []string
	for i, c := range s.Cases {
		where := fmt.Sprintf("cases[%d]", i)
		if c.Name == "" {
			problems = append(problems, where+".name: required")
		} else if names[c.Name] {
			problems = append(problems, fmt.Sprintf("%s.name: duplicate %q", where, c.Name))
		}
		names[c.Name] = true
		if !slices.Contains(v1alpha1.Events[:], v1alpha1.Event(c.Request.Event)) {
			problems = append(problems, fmt.Sprintf("%s.request.event: %q is not one of %s", where, c.Request.Event, knownEvents))
		}
		if c.Request.From == "" {
			problems = append(problems, where+".request.from: required")
		}
		if c.Repeat < 0 || c.Repeat > maxRepeat {
			problems = append(problems, fmt.Sprintf("%s.repeat: must be between 1 and %d, not %d", where, maxRepeat, c.Repeat))
		}
		if c.After != nil && c.After.Duration < 0 {
			problems = append(problems, fmt.Sprintf("%s.after: must not be negative, not %s", where, c.After.Duration))
		}
		switch c.Expect.Result {
		case resultAllow:
			if c.Expect.Code != 0 || c.Expect.Message != "" || c.Expect.Policy != "" || c.Expect.Entry != "" {
				problems = append(problems, where+".expect: code, message, policy and entry only go with result: deny")
			}
		case resultDeny:
		default:
			problems = append(problems, fmt.Sprintf("%s.expect.result: must be allow or deny, not %q", where, c.Expect.Result))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// knownEvents lists the events for error messages: "FriendRequest, FriendResponse, ...".
var knownEvents = func() string {
	names := make([]string, len(v1alpha1.Events))
	for i, e := range v1alpha1.Events {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}()

// policyPaths resolves the suite's policy paths against its directory.
func (s *Suite) policyPaths() []string {
	dir := filepath.Dir(s.path)
	if len(s.Policies) == 0 {
		return []string{dir}
	}
	out := make([]string, len(s.Policies))
	for i, p := range s.Policies {
		if filepath.IsAbs(p) {
			out[i] = p
		} else {
			out[i] = filepath.Join(dir, p)
		}
	}
	return out
}
