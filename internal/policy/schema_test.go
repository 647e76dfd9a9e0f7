package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// crdPath is the generated CRD, the schema the API server enforces.
const crdPath = "../../config/crd/bases/friendgate.io_friendpolicies.yaml"

// TestSchemaMatchesEngine holds the generated CRD to the bounds and enums of api/v1alpha1
// that the engine validates with, so `serve` and `friendgate test` accept exactly what a
// cluster accepts. Kubebuilder markers take only literals: a marker changed without its
// constant (or the reverse) fails here. Every bounded node of the schema must be listed,
// so a new marker needs its constant too.
func TestSchemaMatchesEngine(t *testing.T) {
	const nonEmpty = 1 // every engine list check refuses empty items
	want := map[string]string{
		"spec.appIDs":                              bounds(maxItems(v1alpha1.MaxAppIDs)),
		"spec.appIDs[*]":                           bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxAppIDLength)),
		"spec.events":                              bounds(maxItems(v1alpha1.MaxEvents)),
		"spec.events[*]":                           bounds(enum(v1alpha1.Events[:])),
		"spec.enforcementAction":                   bounds(enum(v1alpha1.EnforcementActions[:]), defaultValue(v1alpha1.EnforcementDeny)),
		"spec.priority":                            bounds(minimum(v1alpha1.MinPriority), maximum(v1alpha1.MaxPriority), defaultValue(v1alpha1.MinPriority)),
		"spec.exemptions.users":                    bounds(maxItems(v1alpha1.MaxUsers)),
		"spec.exemptions.users[*]":                 bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxUserIDLength)),
		"spec.exemptions.prefixes":                 bounds(maxItems(v1alpha1.MaxPrefixes)),
		"spec.exemptions.prefixes[*]":              bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxUserIDLength)),
		"spec.blocklists":                          bounds(maxItems(v1alpha1.MaxBlocklists)),
		"spec.blocklists[*].name":                  bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxNameLength)),
		"spec.blocklists[*].subject":               bounds(enum(v1alpha1.Subjects[:]), defaultValue(v1alpha1.SubjectEither)),
		"spec.blocklists[*].users":                 bounds(maxItems(v1alpha1.MaxUsers)),
		"spec.blocklists[*].users[*]":              bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxUserIDLength)),
		"spec.blocklists[*].prefixes":              bounds(maxItems(v1alpha1.MaxPrefixes)),
		"spec.blocklists[*].prefixes[*]":           bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxUserIDLength)),
		"spec.blocklists[*].patterns":              bounds(maxItems(v1alpha1.MaxPatterns)),
		"spec.blocklists[*].patterns[*]":           bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxPatternLength)),
		"spec.blocklists[*].code":                  bounds(minimum(v1alpha1.MinCode), maximum(v1alpha1.MaxCode), defaultValue(v1alpha1.DefaultCode)),
		"spec.blocklists[*].message":               bounds(maxLength(v1alpha1.MaxMessageLength)),
		"spec.rules":                               bounds(maxItems(v1alpha1.MaxRules)),
		"spec.rules[*].name":                       bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxNameLength)),
		"spec.rules[*].events":                     bounds(maxItems(v1alpha1.MaxEvents)),
		"spec.rules[*].events[*]":                  bounds(enum(v1alpha1.Events[:])),
		"spec.rules[*].platforms":                  bounds(maxItems(v1alpha1.MaxPlatforms)),
		"spec.rules[*].platforms[*]":               bounds(maxLength(v1alpha1.MaxPlatformLength)),
		"spec.rules[*].addSources":                 bounds(maxItems(v1alpha1.MaxAddSources)),
		"spec.rules[*].addSources[*]":              bounds(maxLength(v1alpha1.MaxAddSourceLength)),
		"spec.rules[*].clientCIDRs":                bounds(maxItems(v1alpha1.MaxClientCIDRs)),
		"spec.rules[*].clientCIDRs[*]":             bounds(maxLength(v1alpha1.MaxClientCIDRLength)),
		"spec.rules[*].wordingPatterns":            bounds(maxItems(v1alpha1.MaxPatterns)),
		"spec.rules[*].wordingPatterns[*]":         bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxPatternLength)),
		"spec.rules[*].keywords.words":             bounds(maxItems(v1alpha1.MaxKeywordWords)),
		"spec.rules[*].keywords.words[*]":          bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxKeywordLength)),
		"spec.rules[*].keywords.in":                bounds(maxItems(v1alpha1.MaxKeywordInputs), defaultValue(v1alpha1.DefaultKeywordInputs)),
		"spec.rules[*].keywords.in[*]":             bounds(enum(v1alpha1.KeywordInputs[:])),
		"spec.rules[*].keywords.foldCase":          bounds(defaultValue(v1alpha1.DefaultKeywordFoldCase)),
		"spec.rules[*].keywords.foldCompatibility": bounds(defaultValue(v1alpha1.DefaultKeywordFoldCompatibility)),
		"spec.rules[*].when":                       bounds(maxLength(v1alpha1.MaxWhenLength)),
		"spec.rules[*].code":                       bounds(minimum(v1alpha1.MinCode), maximum(v1alpha1.MaxCode), defaultValue(v1alpha1.DefaultCode)),
		"spec.rules[*].message":                    bounds(maxLength(v1alpha1.MaxMessageLength)),
		"spec.limits":                              bounds(maxItems(v1alpha1.MaxLimits)),
		"spec.limits[*].name":                      bounds(minLength(nonEmpty), maxLength(v1alpha1.MaxNameLength)),
		"spec.limits[*].events":                    bounds(maxItems(v1alpha1.MaxEvents), defaultValue(v1alpha1.DefaultLimitEvents)),
		"spec.limits[*].events[*]":                 bounds(enum(v1alpha1.Events[:])),
		"spec.limits[*].key":                       bounds(enum(v1alpha1.LimitKeys[:])),
		"spec.limits[*].limit":                     bounds(minimum(v1alpha1.MinLimitCount), maximum(v1alpha1.MaxLimitCount)),
		"spec.limits[*].code":                      bounds(minimum(v1alpha1.MinCode), maximum(v1alpha1.MaxCode), defaultValue(v1alpha1.DefaultCode)),
		"spec.limits[*].message":                   bounds(maxLength(v1alpha1.MaxMessageLength)),
		"status.configMaps":                        bounds(maxItems(v1alpha1.MaxStatusConfigMaps)),
	}
	schema := loadSchema(t)
	got := map[string]string{}
	walkSchema(schema, "", func(path string, s *apiextensionsv1.JSONSchemaProps) {
		if b := schemaBounds(t, s); b != "" {
			got[path] = b
		}
	})
	for _, path := range sortedKeys(want, got) {
		if got[path] != want[path] {
			t.Errorf("%s: CRD has %q, api/v1alpha1 says %q", path, got[path], want[path])
		}
	}

	// The one pattern the engine mirrors; user ID and name patterns are checked by
	// ValidateUserID and IsDNS1123Label, which TestValidate covers.
	addSource := schema.Properties["spec"].Properties["rules"].Items.Schema.Properties["addSources"].Items.Schema
	if addSource.Pattern != v1alpha1.AddSourcePattern {
		t.Errorf("spec.rules[*].addSources[*]: CRD pattern %q, api/v1alpha1 says %q", addSource.Pattern, v1alpha1.AddSourcePattern)
	}

	// Names are checked with IsDNS1123Label, whose bound the CRD must share.
	if v1alpha1.MaxNameLength != validation.DNS1123LabelMaxLength {
		t.Errorf("MaxNameLength = %d, but the engine checks names as DNS labels of at most %d", v1alpha1.MaxNameLength, validation.DNS1123LabelMaxLength)
	}
}

// TestSchemaCELListsMatchEngine checks the lists that CEL rules of the CRD spell out.
func TestSchemaCELListsMatchEngine(t *testing.T) {
	schema := loadSchema(t)
	spec := schema.Properties["spec"]
	platforms := spec.Properties["rules"].Items.Schema.Properties["platforms"]
	limit := spec.Properties["limits"].Items.Schema.Properties
	lower := make([]string, len(v1alpha1.Platforms))
	for i, p := range v1alpha1.Platforms {
		lower[i] = strings.ToLower(p)
	}
	tests := []struct {
		name  string
		rules apiextensionsv1.ValidationRules
		list  string
	}{
		{"spec: rule events default to DefaultEvents", spec.XValidations, celList(v1alpha1.DefaultEvents)},
		{"spec.rules[*].platforms: Platforms in lower case", platforms.XValidations, celList(lower)},
		{"spec: limit events default to DefaultLimitEvents", spec.XValidations, celList(v1alpha1.DefaultLimitEvents)},
		{"spec.limits[*].window: at least MinLimitWindow", limit["window"].XValidations, celDuration(v1alpha1.MinLimitWindow)},
		{"spec.limits[*].window: at most MaxLimitWindow", limit["window"].XValidations, celDuration(v1alpha1.MaxLimitWindow)},
		{"spec.limits[*].penalty: at least MinLimitWindow", limit["penalty"].XValidations, celDuration(v1alpha1.MinLimitWindow)},
		{"spec.limits[*].penalty: at most MaxLimitWindow", limit["penalty"].XValidations, celDuration(v1alpha1.MaxLimitWindow)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.ContainsFunc(tt.rules, func(r apiextensionsv1.ValidationRule) bool { return strings.Contains(r.Rule, tt.list) }) {
				t.Errorf("no CEL rule of %v contains %s", tt.rules, tt.list)
			}
		})
	}
}

func loadSchema(t *testing.T) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	data, err := os.ReadFile(crdPath)
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatalf("%s: %v", crdPath, err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != v1alpha1.GroupVersion.Version {
		t.Fatalf("%s: want the one version %s", crdPath, v1alpha1.GroupVersion.Version)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

// upstreamTypes are schema nodes generated from Kubernetes' own types, whose bounds are
// Kubernetes' and not friendgate's.
var upstreamTypes = []string{"spec.blocklists[*].configMapSelector", "spec.rules[*].keywords.configMapSelector", "status.conditions"}

// walkSchema calls visit for s and every node below it, naming each by its path ([*] for
// array items), skipping upstreamTypes.
func walkSchema(s *apiextensionsv1.JSONSchemaProps, path string, visit func(string, *apiextensionsv1.JSONSchemaProps)) {
	if slices.Contains(upstreamTypes, path) {
		return
	}
	visit(path, s)
	for name, child := range s.Properties {
		if path != "" {
			name = path + "." + name
		}
		walkSchema(&child, name, visit)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walkSchema(s.Items.Schema, path+"[*]", visit)
	}
}

// schemaBounds describes the bounds and enum of one node the way the table does.
func schemaBounds(t *testing.T, s *apiextensionsv1.JSONSchemaProps) string {
	var parts []string
	if s.MaxItems != nil {
		parts = append(parts, maxItems(*s.MaxItems))
	}
	if s.MinLength != nil {
		parts = append(parts, minLength(*s.MinLength))
	}
	if s.MaxLength != nil {
		parts = append(parts, maxLength(*s.MaxLength))
	}
	if s.Minimum != nil {
		parts = append(parts, minimum(*s.Minimum))
	}
	if s.Maximum != nil {
		parts = append(parts, maximum(*s.Maximum))
	}
	if len(s.Enum) > 0 {
		values := make([]string, len(s.Enum))
		for i, e := range s.Enum {
			if err := json.Unmarshal(e.Raw, &values[i]); err != nil {
				t.Fatalf("enum value %s: %v", e.Raw, err)
			}
		}
		parts = append(parts, enum(values))
	}
	if s.Default != nil {
		parts = append(parts, "default="+string(s.Default.Raw))
	}
	return bounds(parts...)
}

// bounds describes a node's bounds in a canonical order, for comparison.
func bounds(parts ...string) string {
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func maxItems[N int | int64](n N) string  { return fmt.Sprintf("maxItems=%d", n) }
func minLength[N int | int64](n N) string { return fmt.Sprintf("minLength=%d", n) }
func maxLength[N int | int64](n N) string { return fmt.Sprintf("maxLength=%d", n) }
func minimum[N int | float64](n N) string { return "minimum=" + number(n) }
func maximum[N int | float64](n N) string { return "maximum=" + number(n) }

// number writes n without an exponent, so that 1000000 reads the same from a constant and
// from the schema's float.
func number[N int | float64](n N) string { return strconv.FormatFloat(float64(n), 'f', -1, 64) }

func defaultValue(v any) string {
	b, _ := json.Marshal(v)
	return "default=" + string(b)
}

func enum[S ~string](values []S) string {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return "enum=" + strings.Join(names, ",")
}

// celList writes values as a CEL list literal, the way the markers do.
func celList[S ~string](values []S) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = "'" + string(v) + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// celDuration writes d as a CEL duration literal, the way the markers do.
func celDuration(d time.Duration) string { return "duration('" + shortDuration(d) + "')" }

func sortedKeys(maps ...map[string]string) []string {
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}
