package v1alpha1_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/friendgate/friendgate/api/v1alpha1"
)

// basePolicy is a valid policy the table cases start from: one blocklist and one rule.
func basePolicy(namespace, name string) *v1alpha1.FriendPolicy {
	return &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1alpha1.FriendPolicySpec{
			Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: []string{"spam_1"}}},
			Rules:      []v1alpha1.Rule{{Name: "no-links", WordingPatterns: []string{`https?://`}}},
		},
	}
}

// sample is one FriendPolicy document of config/samples.
type sample struct {
	file string
	doc  int // 1-based index of the document in file
	obj  *unstructured.Unstructured
}

// loadSamples reads every FriendPolicy document of root/config/samples/*.yaml (multi-document
// files included), skipping other kinds.
func loadSamples(t *testing.T, root string) []sample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for doc := 1; ; doc++ {
			data, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s: document %d: %v", file, doc, err)
			}
			var m map[string]any
			if err := yaml.Unmarshal(data, &m); err != nil {
				f.Close()
				t.Fatalf("%s: document %d: %v", file, doc, err)
			}
			if m == nil { // empty or comment-only document
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if u.GetKind() != "FriendPolicy" || u.GroupVersionKind().Group != v1alpha1.GroupVersion.Group {
				continue
			}
			out = append(out, sample{file: file, doc: doc, obj: u})
		}
		f.Close()
	}
	return out
}

// TestSamplesAccepted creates every FriendPolicy of config/samples with strict field validation.
func TestSamplesAccepted(t *testing.T) {
	ctx := context.Background()
	samples := loadSamples(t, env.Root)
	if len(samples) == 0 {
		t.Fatalf("no FriendPolicy documents found in %s; the samples must include at least one FriendPolicy",
			filepath.Join(env.Root, "config", "samples", "*.yaml"))
	}
	for _, s := range samples {
		rel, _ := filepath.Rel(env.Root, s.file)
		t.Run(fmt.Sprintf("%s#%d/%s", rel, s.doc, s.obj.GetName()), func(t *testing.T) {
			obj := s.obj.DeepCopy()
			if s.obj.GroupVersionKind().Version != v1alpha1.GroupVersion.Version {
				t.Fatalf("apiVersion %s, want %s", obj.GetAPIVersion(), v1alpha1.GroupVersion)
			}
			if obj.GetNamespace() == "" {
				obj.SetNamespace("default")
			}
			if err := env.EnsureNamespace(ctx, obj.GetNamespace()); err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
				t.Fatalf("%s document %d (%s/%s) refused: %v", rel, s.doc, obj.GetNamespace(), obj.GetName(), err)
			}
			// The stored object must read back as the Go type the controller uses.
			var fp v1alpha1.FriendPolicy
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), &fp); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDefaults checks the defaults the API server fills in.
func TestDefaults(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "defaults")
	fp := &v1alpha1.FriendPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "minimal"},
		Spec: v1alpha1.FriendPolicySpec{
			Blocklists: []v1alpha1.Blocklist{{Name: "spammers", Users: []string{"spam_1"}}},
			Rules: []v1alpha1.Rule{
				{Name: "guests", When: "request.from.startsWith('guest_')"},
				{Name: "bait", Keywords: &v1alpha1.Keywords{Words: []string{"via"}}},
			},
			Limits: []v1alpha1.Limit{{Name: "per-sender", Key: v1alpha1.LimitKeyFrom, Limit: 20, Window: metav1.Duration{Duration: time.Hour}}},
		},
	}
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}

	// Read it back unstructured: the typed struct can't tell a defaulted 0 from a missing field.
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("FriendPolicy"))
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), u); err != nil {
		t.Fatal(err)
	}
	blocklist := u.Object["spec"].(map[string]any)["blocklists"].([]any)[0].(map[string]any)
	rule := u.Object["spec"].(map[string]any)["rules"].([]any)[0].(map[string]any)
	keywords := u.Object["spec"].(map[string]any)["rules"].([]any)[1].(map[string]any)["keywords"].(map[string]any)
	limit := u.Object["spec"].(map[string]any)["limits"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		field string
		obj   map[string]any
		path  []string
		want  any
	}{
		{"spec.enforcementAction", u.Object, []string{"spec", "enforcementAction"}, "Deny"},
		{"spec.priority", u.Object, []string{"spec", "priority"}, int64(0)},
		{"spec.blocklists[0].subject", blocklist, []string{"subject"}, "Either"},
		{"spec.blocklists[0].code", blocklist, []string{"code"}, int64(v1alpha1.DefaultCode)},
		{"spec.rules[0].code", rule, []string{"code"}, int64(v1alpha1.DefaultCode)},
		{"spec.rules[1].keywords.in", keywords, []string{"in"}, []any{string(v1alpha1.DefaultKeywordInputs[0])}},
		{"spec.rules[1].keywords.foldCase", keywords, []string{"foldCase"}, v1alpha1.DefaultKeywordFoldCase},
		{"spec.rules[1].keywords.foldCompatibility", keywords, []string{"foldCompatibility"}, v1alpha1.DefaultKeywordFoldCompatibility},
		{"spec.limits[0].events", limit, []string{"events"}, []any{string(v1alpha1.DefaultLimitEvents[0])}},
		{"spec.limits[0].code", limit, []string{"code"}, int64(v1alpha1.DefaultCode)},
		{"spec.limits[0].window", limit, []string{"window"}, "1h0m0s"},
	} {
		got, found, err := unstructured.NestedFieldNoCopy(c.obj, c.path...)
		if err != nil || !found {
			t.Errorf("%s: not set by the API server (found %v, err %v)", c.field, found, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.field, got, c.want)
		}
	}

	var typed v1alpha1.FriendPolicy
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), &typed); err != nil {
		t.Fatal(err)
	}
	if typed.Spec.EnforcementAction != v1alpha1.EnforcementDeny {
		t.Errorf("typed enforcementAction = %q, want Deny", typed.Spec.EnforcementAction)
	}
	if got := typed.Spec.Blocklists[0].Subject; got != v1alpha1.SubjectEither {
		t.Errorf("typed blocklist subject = %q, want Either", got)
	}
	if got := typed.Spec.Blocklists[0].Code; got != v1alpha1.DefaultCode {
		t.Errorf("typed blocklist code = %d, want %d", got, v1alpha1.DefaultCode)
	}
	if got := typed.Spec.Rules[0].Code; got != v1alpha1.DefaultCode {
		t.Errorf("typed rule code = %d, want %d", got, v1alpha1.DefaultCode)
	}
	// Defaults must not touch what was not written.
	if typed.Spec.Events != nil || typed.Spec.AppIDs != nil || typed.Spec.Exemptions != nil || typed.Spec.Limits[0].Penalty != nil {
		t.Errorf("unexpected defaults: events %v, appIDs %v, exemptions %v, penalty %v", typed.Spec.Events, typed.Spec.AppIDs, typed.Spec.Exemptions, typed.Spec.Limits[0].Penalty)
	}
}

// TestValidation checks what the API server refuses and what it accepts.
func TestValidation(t *testing.T) {
	long := strings.Repeat("a", 65)
	cases := []struct {
		name string
		// mutate edits a copy of basePolicy's spec. yaml replaces the spec instead, for what
		// the Go types cannot send: omitempty drops empty lists and strings a user can write.
		mutate func(*v1alpha1.FriendPolicySpec)
		yaml   string
		// field is the path of the offending field as the API server reports it, msg a part of
		// its message; both empty for a policy that must be accepted.
		field, msg string
	}{
		// Refused.
		{
			name:   "rule with only a name",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules = []v1alpha1.Rule{{Name: "empty"}} },
			field:  "spec.rules[0]", msg: "a rule needs at least one condition",
		},
		{
			name: "rule with only name and events",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules = []v1alpha1.Rule{{Name: "empty", Events: []v1alpha1.Event{v1alpha1.EventFriendRequest}}}
			},
			field: "spec.rules[0]", msg: "a rule needs at least one condition",
		},
		{
			name: "rule with only name, code and message",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules = []v1alpha1.Rule{{Name: "empty", Code: 38001, Message: "no"}}
			},
			field: "spec.rules[0]", msg: "a rule needs at least one condition",
		},
		{
			name:  "rule with explicitly empty conditions",
			yaml:  `rules: [{name: empty, platforms: [], addSources: [], clientCIDRs: [], wordingPatterns: [], when: ""}]`,
			field: "spec.rules[0]", msg: "a rule needs at least one condition",
		},
		{
			name:   "blocklist with no source",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists = []v1alpha1.Blocklist{{Name: "nobody", Code: 38001}} },
			field:  "spec.blocklists[0]", msg: "a blocklist needs at least one of users, prefixes, patterns or configMapSelector",
		},
		{
			name:  "blocklist with explicitly empty sources",
			yaml:  `blocklists: [{name: nobody, users: [], prefixes: [], patterns: []}]`,
			field: "spec.blocklists[0]", msg: "a blocklist needs at least one of users, prefixes, patterns or configMapSelector",
		},
		{
			name:  "configMapSelector not on the list label",
			yaml:  `blocklists: [{name: reported, configMapSelector: {matchLabels: {list: spammers}}}]`,
			field: "spec.blocklists[0].configMapSelector", msg: "configMapSelector must select on the label friendgate.io/list",
		},
		{
			name: "configMapSelector on the list label by expression",
			yaml: `blocklists: [{name: reported, configMapSelector: {matchLabels: {team: growth}, matchExpressions: [{key: friendgate.io/list, operator: Exists}]}}]`,
		},
		{
			name: "duplicate rule names",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules = append(s.Rules, v1alpha1.Rule{Name: "no-links", When: "true"})
			},
			field: "spec.rules[1]", msg: "Duplicate value",
		},
		{
			name: "duplicate blocklist names",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Blocklists = append(s.Blocklists, v1alpha1.Blocklist{Name: "spammers", Prefixes: []string{"bot_"}})
			},
			field: "spec.blocklists[1]", msg: "Duplicate value",
		},
		{
			name:   "blocklist code 37999",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Code = 37999 },
			field:  "spec.blocklists[0].code", msg: "greater than or equal to 38000",
		},
		{
			name:   "blocklist code 39001",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Code = 39001 },
			field:  "spec.blocklists[0].code", msg: "less than or equal to 39000",
		},
		{
			name:   "rule code 37999",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Code = 37999 },
			field:  "spec.rules[0].code", msg: "greater than or equal to 38000",
		},
		{
			name:   "rule code 39001",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Code = 39001 },
			field:  "spec.rules[0].code", msg: "less than or equal to 39000",
		},
		{
			name:   "priority -1",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Priority = -1 },
			field:  "spec.priority", msg: "greater than or equal to 0",
		},
		{
			name:   "priority 10001",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Priority = 10001 },
			field:  "spec.priority", msg: "less than or equal to 10000",
		},
		{
			name:   "unknown enforcementAction",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.EnforcementAction = "Warn" },
			field:  "spec.enforcementAction", msg: "Unsupported value",
		},
		{
			name:   "unknown policy event",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Events = []v1alpha1.Event{"DeleteFriend"} },
			field:  "spec.events[0]", msg: "Unsupported value",
		},
		{
			name:   "unknown rule event",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Events = []v1alpha1.Event{"friendrequest"} },
			field:  "spec.rules[0].events[0]", msg: "Unsupported value",
		},
		{
			name: "duplicate policy events",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Events = []v1alpha1.Event{v1alpha1.EventFriendRequest, v1alpha1.EventFriendRequest}
			},
			field: "spec.events[1]", msg: "Duplicate value",
		},
		{
			name:   "unknown subject",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Subject = "Both" },
			field:  "spec.blocklists[0].subject", msg: "Unsupported value",
		},
		{
			name:   "unknown platform",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Platforms = []string{"iOS", "BlackBerry"} },
			field:  "spec.rules[0].platforms", msg: "platforms must be RESTAPI, Web, Android, iOS, Windows, Mac, macOS, iPad or Unknown",
		},
		{
			name:   "bad CIDR",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].ClientCIDRs = []string{"203.0.113.0/24", "300.0.0.0/8"} },
			field:  "spec.rules[0].clientCIDRs", msg: "clientCIDRs must be CIDR ranges",
		},
		{
			name:   "address without prefix length in clientCIDRs",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].ClientCIDRs = []string{"203.0.113.7"} },
			field:  "spec.rules[0].clientCIDRs", msg: "clientCIDRs must be CIDR ranges",
		},
		{
			name: "rule event not among the policy's events",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Events = []v1alpha1.Event{v1alpha1.EventFriendRequest}
				s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventFriendResponse}
			},
			field: "spec.rules", msg: "every event of a rule must be one of the policy's events",
		},
		{
			name:   "rule event AddBlack when the policy lists no events",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventAddBlack} },
			field:  "spec.rules", msg: "every event of a rule must be one of the policy's events",
		},
		{
			name:   "rule event SetRemark when the policy lists no events",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventSetRemark} },
			field:  "spec.rules", msg: "every event of a rule must be one of the policy's events",
		},
		{
			name:   "blocklist name with upper case and underscore",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Name = "Known_Spammers" },
			field:  "spec.blocklists[0].name", msg: "should match",
		},
		{
			name:   "blocklist name starting with a dash",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Name = "-spammers" },
			field:  "spec.blocklists[0].name", msg: "should match",
		},
		{
			name:   "rule name with a dot",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Name = "no.links" },
			field:  "spec.rules[0].name", msg: "should match",
		},
		{
			name:   "rule name longer than 63",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].Name = strings.Repeat("r", 64) },
			field:  "spec.rules[0].name", msg: "Too long",
		},
		{
			name:   "blocklist user ID longer than 64",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Users = []string{long} },
			field:  "spec.blocklists[0].users[0]", msg: "Too long",
		},
		{
			name:   "blocklist prefix longer than 64",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Prefixes = []string{long} },
			field:  "spec.blocklists[0].prefixes[0]", msg: "Too long",
		},
		{
			name:   "exempt user ID longer than 64",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Exemptions = &v1alpha1.Exemptions{Users: []string{long}} },
			field:  "spec.exemptions.users[0]", msg: "Too long",
		},
		{
			name:   "blocklist user ID with a space",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Users = []string{"spam 1"} },
			field:  "spec.blocklists[0].users[0]", msg: "should match",
		},
		{
			name:   "empty blocklist user ID",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Blocklists[0].Users = []string{""} },
			field:  "spec.blocklists[0].users[0]", msg: "at least 1 chars long",
		},
		{
			name:   "addSource without the AddSource_Type_ prefix",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].AddSources = []string{"Search"} },
			field:  "spec.rules[0].addSources[0]", msg: "should match",
		},
		{
			name:   "addSource with a bad character",
			mutate: func(s *v1alpha1.FriendPolicySpec) { s.Rules[0].AddSources = []string{"AddSource_Type_QR-Code"} },
			field:  "spec.rules[0].addSources[0]", msg: "should match",
		},
		{
			name:  "keywords without words or configMapSelector",
			yaml:  `rules: [{name: bait, keywords: {in: [Remark]}}]`,
			field: "spec.rules[0].keywords", msg: "keywords need words or a configMapSelector",
		},
		{
			name:  "keywords with an explicitly empty word list",
			yaml:  `rules: [{name: bait, keywords: {words: []}}]`,
			field: "spec.rules[0].keywords", msg: "keywords need words or a configMapSelector",
		},
		{
			name:  "keywords configMapSelector not on the list label",
			yaml:  `rules: [{name: bait, keywords: {configMapSelector: {matchLabels: {list: words}}}}]`,
			field: "spec.rules[0].keywords.configMapSelector", msg: "configMapSelector must select on the label friendgate.io/list",
		},
		{
			name:  "keywords reading an unknown text",
			yaml:  `rules: [{name: bait, keywords: {words: [via], in: [GroupName]}}]`,
			field: "spec.rules[0].keywords.in[0]", msg: "Unsupported value",
		},
		{
			name:  "empty keyword",
			yaml:  `rules: [{name: bait, keywords: {words: [via, ""]}}]`,
			field: "spec.rules[0].keywords.words[1]", msg: "at least 1 chars long",
		},
		{
			name: "keyword longer than 256",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules[0].Keywords = &v1alpha1.Keywords{Words: []string{strings.Repeat("w", 257)}}
			},
			field: "spec.rules[0].keywords.words[0]", msg: "Too long",
		},
		{
			name: "more than 1000 inline keywords",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				words := make([]string, v1alpha1.MaxKeywordWords+1)
				for i := range words {
					words[i] = fmt.Sprintf("w%d", i)
				}
				s.Rules[0].Keywords = &v1alpha1.Keywords{Words: words}
			},
			field: "spec.rules[0].keywords.words", msg: "Too many",
		},
		{
			name:  "limit without key, limit or window",
			yaml:  `limits: [{name: per-sender}]`,
			field: "spec.limits[0].key", msg: "Required value",
		},
		{
			name:  "unknown limit key",
			yaml:  `limits: [{name: per-device, key: Device, limit: 5, window: 1h}]`,
			field: "spec.limits[0].key", msg: "Unsupported value",
		},
		{
			name:  "limit 0",
			yaml:  `limits: [{name: per-sender, key: From, limit: 0, window: 1h}]`,
			field: "spec.limits[0].limit", msg: "should be greater than or equal to 1",
		},
		{
			name:  "limit above 1,000,000",
			yaml:  `limits: [{name: per-sender, key: From, limit: 1000001, window: 1h}]`,
			field: "spec.limits[0].limit", msg: "should be less than or equal to 1000000",
		},
		{
			name:  "window below 1s",
			yaml:  `limits: [{name: per-sender, key: From, limit: 5, window: 500ms}]`,
			field: "spec.limits[0].window", msg: "window must be between 1s and 720h",
		},
		{
			name:  "window above 720h",
			yaml:  `limits: [{name: per-sender, key: From, limit: 5, window: 721h}]`,
			field: "spec.limits[0].window", msg: "window must be between 1s and 720h",
		},
		{
			name:  "window not a duration",
			yaml:  `limits: [{name: per-sender, key: From, limit: 5, window: 1d}]`,
			field: "spec.limits[0].window", msg: "type conversion error",
		},
		{
			name:  "penalty above 720h",
			yaml:  `limits: [{name: per-sender, key: From, limit: 5, window: 1h, penalty: 1000h}]`,
			field: "spec.limits[0].penalty", msg: "penalty must be between 1s and 720h",
		},
		{
			name:  "limit code 39001",
			yaml:  `limits: [{name: per-sender, key: From, limit: 5, window: 1h, code: 39001}]`,
			field: "spec.limits[0].code", msg: "should be less than or equal to 39000",
		},
		{
			name:  "limit name with upper case",
			yaml:  `limits: [{name: PerSender, key: From, limit: 5, window: 1h}]`,
			field: "spec.limits[0].name", msg: "should match",
		},
		{
			name:  "duplicate limit names",
			yaml:  `limits: [{name: l, key: From, limit: 5, window: 1h}, {name: l, key: To, limit: 5, window: 1h}]`,
			field: "spec.limits[1]", msg: "Duplicate value",
		},
		{
			name:  "limit event not among the policy's events",
			yaml:  `{events: [FriendRequest], limits: [{name: l, events: [FriendResponse], key: From, limit: 5, window: 1h}]}`,
			field: "spec.limits", msg: "every event of a limit must be one of the policy's events",
		},
		{
			name:  "limit's default event not among the policy's events",
			yaml:  `{events: [AddBlack], limits: [{name: l, key: From, limit: 5, window: 1h}]}`,
			field: "spec.limits", msg: "a limit's events default to FriendRequest",
		},
		{
			name:  "limit's explicitly empty events not among the policy's events",
			yaml:  `{events: [AddBlack], limits: [{name: l, events: [], key: From, limit: 5, window: 1h}]}`,
			field: "spec.limits", msg: "every event of a limit must be one of the policy's events",
		},
		{
			name: "more than 16 limits",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				for i := range v1alpha1.MaxLimits + 1 {
					s.Limits = append(s.Limits, v1alpha1.Limit{Name: fmt.Sprintf("l%d", i), Key: v1alpha1.LimitKeyFrom, Limit: 1, Window: metav1.Duration{Duration: time.Hour}})
				}
			},
			field: "spec.limits", msg: "Too many",
		},

		// Accepted.
		{
			name: "limits at the bounds, every key",
			yaml: `{events: [FriendRequest, AddBlack], limits: [
  {name: per-sender, key: From, limit: 1, window: 1s, penalty: 720h, code: 38000},
  {name: per-recipient, events: [AddBlack], key: To, limit: 1000000, window: 720h, penalty: 1s, code: 39000, message: "slow down"},
  {name: per-address, events: [FriendRequest, AddBlack], key: ClientIP, limit: 100, window: 1h30m},
  {name: per-pair, key: FromTo, limit: 3, window: 24h}]}`,
		},
		{
			name: "ClientIP limit on an event only OpenIM sends",
			yaml: `{events: [ImportFriends], limits: [{name: per-address, events: [ImportFriends], key: ClientIP, limit: 5, window: 1h}]}`,
		},
		{
			name: "limit named like a rule",
			yaml: `{rules: [{name: l, when: "true"}], limits: [{name: l, key: From, limit: 5, window: 1h}]}`,
		},
		{
			name: "platforms in mixed case",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules[0].Platforms = []string{"ios", "MACOS", "Mac", "iPad", "RESTAPI"}
			},
		},
		{
			name: "rule with only keywords",
			yaml: `rules: [{name: bait, keywords: {words: [via, "加微信"], in: [Wording, Remark], foldCase: false, ignoreSeparators: true, foldConfusables: true, wholeWords: true}}]`,
		},
		{
			name: "keywords from ConfigMaps only",
			yaml: `rules: [{name: bait, keywords: {configMapSelector: {matchLabels: {friendgate.io/list: spam-words}}}}]`,
		},
		{
			name: "rule with only when",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules = []v1alpha1.Rule{{Name: "guests", When: "request.forceAdd"}}
			},
		},
		{
			name: "AddBlack rule in a policy listing AddBlack",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Events = []v1alpha1.Event{v1alpha1.EventAddBlack, v1alpha1.EventSetRemark}
				s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventAddBlack}
			},
		},
		{
			name: "rule events among the default three when the policy lists none",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventFriendResponse, v1alpha1.EventImportFriends}
			},
		},
		{
			name: "every event",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Events = []v1alpha1.Event{v1alpha1.EventFriendRequest, v1alpha1.EventFriendResponse, v1alpha1.EventImportFriends, v1alpha1.EventAddBlack, v1alpha1.EventSetRemark}
				s.Rules[0].Events = []v1alpha1.Event{v1alpha1.EventSetRemark, v1alpha1.EventFriendRequest}
			},
		},
		{
			name: "DryRun with the highest priority",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.EnforcementAction = v1alpha1.EnforcementDryRun
				s.Priority = v1alpha1.MaxPriority
			},
		},
		{
			name: "codes at the bounds",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Blocklists[0].Code = v1alpha1.MinCode
				s.Rules[0].Code = v1alpha1.MaxCode
			},
		},
		{
			name: "IPv4 and IPv6 CIDRs",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules[0].ClientCIDRs = []string{"203.0.113.0/24", "10.0.0.1/32", "2001:db8::/32", "::/0"}
			},
		},
		{
			name: "addSources",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Rules[0].AddSources = []string{"AddSource_Type_Search", "AddSource_Type_QRCode2"}
			},
		},
		{
			name: "names of 63 characters and a user ID of 64",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Blocklists[0].Name = strings.Repeat("b", 63)
				s.Blocklists[0].Users = []string{strings.Repeat("u", v1alpha1.MaxUserIDLength)}
				s.Rules[0].Name = "r" + strings.Repeat("-", 61) + "1"
			},
		},
		{
			name: "blocklists by prefix, pattern or ConfigMap selector only",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Blocklists = []v1alpha1.Blocklist{
					{Name: "by-prefix", Prefixes: []string{"bot_"}, Subject: v1alpha1.SubjectFrom},
					{Name: "by-pattern", Patterns: []string{`^[0-9]{11}$`}, Subject: v1alpha1.SubjectTo},
					{Name: "by-configmap", ConfigMapSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"friendgate.io/list": "spammers"}}},
				}
			},
		},
		{
			name: "no blocklists and no rules",
			mutate: func(s *v1alpha1.FriendPolicySpec) {
				s.Blocklists = nil
				s.Rules = nil
				s.Exemptions = &v1alpha1.Exemptions{Users: []string{"support_001"}, Prefixes: []string{"staff_"}}
			},
		},
	}

	ctx := context.Background()
	ns := env.NewNamespace(t, "validation")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var obj client.Object
			if c.yaml != "" {
				obj = unstructuredPolicy(t, ns, fmt.Sprintf("case-%d", i), c.yaml)
			} else {
				fp := basePolicy(ns, fmt.Sprintf("case-%d", i))
				c.mutate(&fp.Spec)
				obj = fp
			}
			err := env.Client.Create(ctx, obj)
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %s refused with %q", c.field, c.msg)
			}
			wantInvalid(t, err, c.field, c.msg)
		})
	}
}

// unstructuredPolicy returns a FriendPolicy whose spec is specYAML, sent as written.
func unstructuredPolicy(t *testing.T, namespace, name, specYAML string) *unstructured.Unstructured {
	t.Helper()
	spec, err := yaml.YAMLToJSON([]byte(specYAML))
	if err != nil {
		t.Fatalf("spec %s: %v", specYAML, err)
	}
	u := &unstructured.Unstructured{}
	doc := fmt.Sprintf(`{"apiVersion": %q, "kind": "FriendPolicy", "metadata": {"namespace": %q, "name": %q}, "spec": %s}`,
		v1alpha1.GroupVersion, namespace, name, spec)
	if err := u.UnmarshalJSON([]byte(doc)); err != nil {
		t.Fatalf("spec %s: %v", specYAML, err)
	}
	return u
}

// wantInvalid checks that err is an Invalid error with a cause for field whose message
// contains msg.
func wantInvalid(t *testing.T, err error, field, msg string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error is not Invalid (reason %q): %v", apierrors.ReasonForError(err), err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("error does not mention %s: %v", field, err)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		t.Fatalf("error has no details: %v", err)
	}
	for _, cause := range status.Status().Details.Causes {
		if cause.Field == field && strings.Contains(cause.Message, msg) {
			return
		}
	}
	t.Errorf("no cause for field %s with message containing %q; causes: %+v", field, msg, status.Status().Details.Causes)
}

// TestStatusSubresource checks that status is written through /status only, and that the
// printer columns show it.
func TestStatusSubresource(t *testing.T) {
	ctx := context.Background()
	ns := env.NewNamespace(t, "status")
	fp := basePolicy(ns, "with-status")
	if err := env.Client.Create(ctx, fp); err != nil {
		t.Fatal(err)
	}
	generation := fp.Generation
	if generation == 0 {
		t.Fatal("created object has no generation")
	}

	// The main resource ignores status.
	fp.Status.Rules = 99
	if err := env.Client.Update(ctx, fp); err != nil {
		t.Fatal(err)
	}
	if fp.Status.Rules != 0 {
		t.Errorf("status.rules = %d after an update of the main resource, want 0 (status must be a subresource)", fp.Status.Rules)
	}

	fp.Status = v1alpha1.FriendPolicyStatus{ObservedGeneration: fp.Generation, Rules: 1, Limits: 2, BlocklistEntries: 1,
		Enforced: v1alpha1.EnforcedAll, LimitsCounting: v1alpha1.LimitsCountingPerReplica}
	meta.SetStatusCondition(&fp.Status.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             v1alpha1.ReasonEnforced,
		Message:            "every serving webhook replica enforces generation 1",
		ObservedGeneration: fp.Generation,
	})
	fp.Spec.Priority = 42 // must be ignored by the status subresource
	if err := env.Client.Status().Update(ctx, fp); err != nil {
		t.Fatalf("status update: %v", err)
	}

	var got v1alpha1.FriendPolicy
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), &got); err != nil {
		t.Fatal(err)
	}
	if got.Generation != generation {
		t.Errorf("generation = %d after a status update, want %d", got.Generation, generation)
	}
	if got.Spec.Priority != 0 {
		t.Errorf("spec.priority = %d after a status update, want 0", got.Spec.Priority)
	}
	if got.Status.ObservedGeneration != generation {
		t.Errorf("status.observedGeneration = %d, want %d", got.Status.ObservedGeneration, generation)
	}
	if got.Status.Rules != 1 || got.Status.Limits != 2 || got.Status.BlocklistEntries != 1 {
		t.Errorf("status counts = %d rules, %d limits, %d entries; want 1, 2, 1", got.Status.Rules, got.Status.Limits, got.Status.BlocklistEntries)
	}
	ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || ready.Reason != v1alpha1.ReasonEnforced || ready.LastTransitionTime.IsZero() {
		t.Errorf("Ready condition = %+v, want True/Enforced with a transition time", ready)
	}
	if got.Status.LimitsCounting != v1alpha1.LimitsCountingPerReplica {
		t.Errorf("status.limitsCounting = %q, want %q", got.Status.LimitsCounting, v1alpha1.LimitsCountingPerReplica)
	}

	// An invalid condition is refused by the metav1.Condition schema.
	bad := got.DeepCopy()
	bad.Status.Conditions[0].Reason = "not a reason"
	if err := env.Client.Status().Update(ctx, bad); err == nil {
		t.Error("status update with an invalid condition reason accepted")
	} else if !apierrors.IsInvalid(err) {
		t.Errorf("status update with an invalid condition reason: %v, want Invalid", err)
	}

	// What kubectl get shows: the server-side table for the namespace.
	table := getTable(t, env.Config, fmt.Sprintf("/apis/%s/namespaces/%s/friendpolicies", v1alpha1.GroupVersion, ns))
	var columns []string
	for _, c := range table.ColumnDefinitions {
		columns = append(columns, c.Name)
	}
	wantColumns := []string{"Name", "Action", "Priority", "Rules", "Limits", "Counting", "Entries", "Enforced", "Ready", "Reason", "Age"}
	if !slices.Equal(columns, wantColumns) {
		t.Fatalf("table columns = %v, want %v", columns, wantColumns)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("table has %d rows, want 1", len(table.Rows))
	}
	cells := map[string]any{}
	for i, c := range columns {
		cells[c] = table.Rows[0].Cells[i]
	}
	for col, want := range map[string]any{
		"Name": "with-status", "Action": "Deny", "Priority": float64(0), "Rules": float64(1), "Limits": float64(2),
		"Counting": v1alpha1.LimitsCountingPerReplica, "Entries": float64(1), "Enforced": v1alpha1.EnforcedAll, "Ready": "True", "Reason": v1alpha1.ReasonEnforced,
	} {
		if cells[col] != want {
			t.Errorf("column %s = %#v, want %#v", col, cells[col], want)
		}
	}
}

// getTable GETs path as a meta.k8s.io/v1 Table, the way kubectl get does.
func getTable(t *testing.T, cfg *rest.Config, path string) *metav1.Table {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return &table
}

// TestPrinterColumns checks the CRD the API server serves: printer columns, short name,
// category and the status subresource.
func TestPrinterColumns(t *testing.T) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "friendpolicies.friendgate.io"}, &crd); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(crd.Spec.Names.ShortNames, "fp") || !slices.Contains(crd.Spec.Names.Categories, "friendgate") {
		t.Errorf("names = %+v, want short name fp and category friendgate", crd.Spec.Names)
	}
	established := false
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			established = true
		}
	}
	if !established {
		t.Error("CRD is not Established")
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != v1alpha1.GroupVersion.Version {
		t.Fatalf("versions = %+v, want only %s", crd.Spec.Versions, v1alpha1.GroupVersion.Version)
	}
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("status subresource not enabled")
	}
	type column struct {
		name, typ, jsonPath string
		priority            int32
	}
	var got []column
	for _, c := range v.AdditionalPrinterColumns {
		got = append(got, column{c.Name, c.Type, c.JSONPath, c.Priority})
	}
	want := []column{
		{"Action", "string", ".spec.enforcementAction", 0},
		{"Priority", "integer", ".spec.priority", 1},
		{"Rules", "integer", ".status.rules", 0},
		{"Limits", "integer", ".status.limits", 0},
		{"Counting", "string", ".status.limitsCounting", 1},
		{"Entries", "integer", ".status.blocklistEntries", 0},
		{"Enforced", "string", ".status.enforced", 0},
		{"Ready", "string", `.status.conditions[?(@.type=="Ready")].status`, 0},
		{"Reason", "string", `.status.conditions[?(@.type=="Ready")].reason`, 1},
		{"Age", "date", ".metadata.creationTimestamp", 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("additionalPrinterColumns =\n%+v\nwant\n%+v", got, want)
	}
}
