package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"sigs.k8s.io/yaml"

	"github.com/friendgate/friendgate/internal/policytest"
)

// The examples of docs/gitops.md are run too.

// friendPolicyStates are FriendPolicies as the controller leaves them, by Ready reason.
var friendPolicyStates = map[string]map[string]any{
	"Enforced":    policyWithReady("True", "Enforced"),
	"Propagating": policyWithReady("False", "Propagating"),
	"NoReplicas":  policyWithReady("False", "NoReplicas"),
	"Invalid":     policyWithReady("False", "Invalid"),
	"ListError":   policyWithReady("False", "ListError"),
}

func policyWithReady(status, reason string) map[string]any {
	return map[string]any{
		"apiVersion": "friendgate.io/v1alpha1",
		"kind":       "FriendPolicy",
		"metadata":   map[string]any{"name": "anti-spam", "namespace": "im-prod", "generation": int64(3)},
		"spec":       map[string]any{},
		"status": map[string]any{
			"observedGeneration": int64(3),
			"conditions": []any{map[string]any{
				"type": "Ready", "status": status, "reason": reason, "message": "m", "observedGeneration": int64(3),
			}},
		},
	}
}

// TestFluxHealthCheckExprs evaluates the healthCheckExprs of docs/gitops.md with CEL the
// way Flux does (the object's top-level fields are the variables; inProgress, failed,
// current in that order, the first true one wins, none means InProgress): Enforced is
// Current, Invalid and ListError are Failed, the rest InProgress, and a policy without
// status yet evaluates without error.
func TestFluxHealthCheckExprs(t *testing.T) {
	var spec struct {
		HealthCheckExprs []struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			InProgress string `json:"inProgress"`
			Failed     string `json:"failed"`
			Current    string `json:"current"`
		} `json:"healthCheckExprs"`
	}
	if err := yaml.UnmarshalStrict([]byte(docBlock(t, "docs/gitops.md", "  healthCheckExprs:")), &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.HealthCheckExprs) != 1 || spec.HealthCheckExprs[0].Kind != "FriendPolicy" || spec.HealthCheckExprs[0].APIVersion != "friendgate.io/v1alpha1" {
		t.Fatalf("want one health check for friendgate.io/v1alpha1 FriendPolicy, got %+v", spec.HealthCheckExprs)
	}
	hc := spec.HealthCheckExprs[0]
	env, err := cel.NewEnv(
		cel.Variable("apiVersion", cel.StringType), cel.Variable("kind", cel.StringType),
		cel.Variable("metadata", cel.DynType), cel.Variable("spec", cel.DynType), cel.Variable("status", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	eval := func(expr string, obj map[string]any) bool {
		t.Helper()
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%q: %v", expr, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := prg.Eval(obj)
		if err != nil {
			t.Fatalf("%q on %v: %v (Flux fails the health check on an evaluation error)", expr, obj["status"], err)
		}
		b, ok := out.Value().(bool)
		if !ok {
			t.Fatalf("%q is not a boolean expression", expr)
		}
		return b
	}
	flux := func(obj map[string]any) string {
		for _, e := range []struct{ expr, status string }{{hc.InProgress, "InProgress"}, {hc.Failed, "Failed"}, {hc.Current, "Current"}} {
			if e.expr != "" && eval(e.expr, obj) {
				return e.status
			}
		}
		return "InProgress"
	}
	want := map[string]string{"Enforced": "Current", "Propagating": "InProgress", "NoReplicas": "InProgress", "Invalid": "Failed", "ListError": "Failed"}
	for reason, obj := range friendPolicyStates {
		if got := flux(obj); got != want[reason] {
			t.Errorf("Ready reason %s reads as %s, want %s", reason, got, want[reason])
		}
	}
	noStatus := policyWithReady("True", "Enforced")
	noStatus["status"] = map[string]any{}
	if got := flux(noStatus); got != "InProgress" {
		t.Errorf("a policy the controller has not reported on reads as %s, want InProgress", got)
	}
}

// TestGitOpsPolicyRepository lays out the policy repository of docs/gitops.md and runs
// what its CI runs: `friendgate test` (through the same package) passes every case, and
// the production overlay builds; the API server accepts what it builds.
func TestGitOpsPolicyRepository(t *testing.T) {
	repo := filepath.Join(repoRoot(t), "bin")
	dir, err := os.MkdirTemp(repo, "docs-policy-repo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	doc := readFile(t, "docs/gitops.md")
	files := regexp.MustCompile("(?m)^```yaml\n# ((?:base|clusters|\\.github)/\\S+)\n").FindAllStringSubmatch(doc, -1)
	if len(files) < 6 {
		t.Fatalf("docs/gitops.md: found %d example files, want the repository's 6", len(files))
	}
	for _, f := range files {
		path := filepath.Join(dir, f[1])
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(docBlock(t, "docs/gitops.md", "# "+f[1])), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	suites, err := policytest.FindSuites(dir)
	if err != nil || len(suites) != 1 {
		t.Fatalf("friendgate test finds %v (%v), want the example's one suite", suites, err)
	}
	res := policytest.RunFile(suites[0])
	if res.Err != nil {
		t.Fatalf("friendgate test: %v", res.Err)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("friendgate test warns: %v", res.Warnings)
	}
	for _, c := range res.Cases {
		if !c.Passed() {
			t.Errorf("friendgate test: case %q: got %s: %s", c.Name, c.Got, strings.Join(c.Problems, "; "))
		}
	}

	rel, _ := filepath.Rel(repoRoot(t), filepath.Join(dir, "clusters", "prod"))
	built := kustomize(t, rel)
	for _, o := range decode(t, built) {
		if o.GetNamespace() != "im-prod" {
			t.Errorf("clusters/prod puts %s outside im-prod", id(o))
		}
	}
	dryRun(t, built)
}
