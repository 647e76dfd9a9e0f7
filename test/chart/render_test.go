package chart

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// chartCase is one set of values the chart is rendered with.
type chartCase struct {
	name, release, namespace string
	flags                    []string
}

var chartCases = []chartCase{
	{name: "default", release: "friendgate", namespace: "friendgate-system"},
	{name: "full-values", release: "fg", namespace: "friendgate-system", flags: []string{"-f", "test/chart/testdata/full-values.yaml"}},
	{name: "alt-values", release: "alt", namespace: "alt", flags: []string{"-f", "test/chart/testdata/alt-values.yaml"}},
}

// TestHelmLint: `helm lint --strict` passes with each values file.
func TestHelmLint(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			helm(t, append([]string{"lint", "--strict", chartDir, "--namespace", c.namespace}, c.flags...)...)
		})
	}
}

// TestChartDryRun: every object `helm template --include-crds` renders is accepted by the
// API server in a server-side dry run, without Pod Security "restricted" warnings.
func TestChartDryRun(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			dryRun(t, helmTemplate(t, c.release, c.namespace, c.flags...))
		})
	}
}

// TestKustomizeDryRun: the same for `kubectl apply -k config/default`, and for an overlay
// of it with the config/certmanager Component.
func TestKustomizeDryRun(t *testing.T) {
	for _, dir := range []string{"config/default", "test/chart/testdata/kustomize-certmanager"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			dryRun(t, kustomize(t, dir))
		})
	}
}

// TestDryRunCatchesPodSecurityViolations shows the Pod Security check of dryRun is not
// vacuous: the API server warns about a Deployment that runs as root.
func TestDryRunCatchesPodSecurityViolations(t *testing.T) {
	ensureNamespaces(t, []string{"pss-check"})
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata: {name: root, namespace: pss-check}
spec:
  selector: {matchLabels: {app: root}}
  template:
    metadata: {labels: {app: root}}
    spec:
      containers: [{name: c, image: busybox}]
`
	_, errOut, err := kubectl(t, deployment, "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, `would violate PodSecurity "restricted`) {
		t.Fatalf("the API server gave no Pod Security warning for a root container; kubectl said:\n%s", errOut)
	}
}

// dryRun creates the namespaces the manifests use (warning on Pod Security "restricted"
// violations) and applies every object with `kubectl apply --server-side
// --dry-run=server`, failing the test with the API server's words for each object it
// refuses, and for any Pod Security warning.
func dryRun(t *testing.T, manifests string) {
	t.Helper()
	objs := decode(t, manifests)
	if len(objs) == 0 {
		t.Fatal("nothing rendered")
	}
	var namespaces []string
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	ensureNamespaces(t, namespaces)
	// --force-conflicts: objects envtest created (the FriendPolicy CRD) have another
	// field manager; this test is about validity, not ownership.
	out, errOut, err := kubectl(t, manifests, "apply", "--server-side", "--dry-run=server", "--force-conflicts",
		"--field-manager=friendgate-chart-test", "-o", "name", "-f", "-")
	if err != nil {
		t.Fatalf("the API server refused objects (kubectl apply --server-side --dry-run=server):\n%s", errOut)
	}
	if strings.Contains(errOut, "PodSecurity") {
		t.Errorf("Pod Security \"restricted\" warnings:\n%s", errOut)
	}
	applied := strings.Fields(out)
	if len(applied) != len(objs) {
		var rendered []string
		for _, o := range objs {
			rendered = append(rendered, id(o))
		}
		t.Errorf("rendered %d objects, the dry run applied %d:\nrendered:\n  %s\napplied:\n  %s",
			len(objs), len(applied), strings.Join(rendered, "\n  "), strings.Join(applied, "\n  "))
	}
}

// ensureNamespaces creates the namespaces (for real: a dry run cannot put objects in a
// namespace that does not exist), labelled so the API server warns about pods that
// violate the "restricted" Pod Security Standard.
func ensureNamespaces(t *testing.T, names []string) {
	t.Helper()
	e := apiServer(t)
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"pod-security.kubernetes.io/warn":         "restricted",
			"pod-security.kubernetes.io/warn-version": "latest",
		}}}
		if err := e.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", name, err)
		}
	}
}

// TestWorkloadsAreHardened: in every rendering (chart with each values file, kustomize),
// both Deployments run non-root with a read-only root filesystem, no privilege
// escalation, no capabilities and the RuntimeDefault seccomp profile, have resource
// requests and a memory limit, liveness and readiness probes on the right endpoints,
// spread over nodes, and the webhook replicas get POD_NAME, POD_NAMESPACE and POD_UID
// from the downward API.
func TestWorkloadsAreHardened(t *testing.T) {
	renders := map[string]string{"kustomize": kustomize(t, "config/default")}
	for _, c := range chartCases {
		renders["chart/"+c.name] = helmTemplate(t, c.release, c.namespace, c.flags...)
	}
	for _, name := range slices.Sorted(maps.Keys(renders)) {
		t.Run(name, func(t *testing.T) {
			deployments := ofKind(decode(t, renders[name]), "Deployment")
			if len(deployments) != 2 {
				t.Fatalf("%d Deployments, want the controller and the webhook replicas", len(deployments))
			}
			for _, u := range deployments {
				var d appsv1.Deployment
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
					t.Fatal(err)
				}
				checkDeployment(t, &d, strings.Contains(name, "alt-values"))
			}
		})
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, spreadOptional bool) {
	t.Helper()
	spec := d.Spec.Template.Spec
	component := d.Spec.Template.Labels["app.kubernetes.io/component"]
	errorf := func(format string, args ...any) { t.Errorf("Deployment %s: %s", d.Name, fmt.Sprintf(format, args...)) }

	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errorf("pod securityContext must set runAsNonRoot and seccompProfile RuntimeDefault, got %+v", psc)
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o004 != 0 {
			continue
		}
		// Not world-readable: the non-root user reads it through the group fsGroup sets.
		if psc == nil || psc.FSGroup == nil || *v.Secret.DefaultMode&0o040 == 0 {
			errorf("Secret volume %s has mode %#o, which the non-root user cannot read without fsGroup and group read", v.Name, *v.Secret.DefaultMode)
		}
	}
	if len(spec.Containers) != 1 {
		errorf("%d containers, want 1", len(spec.Containers))
		return
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		errorf("no container securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		errorf("allowPrivilegeEscalation must be false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		errorf("readOnlyRootFilesystem must be true")
	case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		errorf("capabilities must drop ALL and add none, got %+v", sc.Capabilities)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		errorf("resources must request CPU and memory and limit memory, got %+v", c.Resources)
	}
	if !spreadOptional && len(spec.TopologySpreadConstraints) == 0 {
		errorf("no topologySpreadConstraints")
	}
	for _, tsc := range spec.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if err != nil || tsc.LabelSelector == nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			errorf("topology spread constraint %s does not select the Deployment's pods (%v)", tsc.TopologyKey, tsc.LabelSelector)
		}
	}

	wantPort := map[string]int32{"controller": 8081, "webhook": 8080}[component]
	if wantPort == 0 {
		errorf("pods labelled app.kubernetes.io/component=%q, want controller or webhook", component)
		return
	}
	for probe, want := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if want == nil || want.HTTPGet == nil {
			errorf("no HTTP probe for %s", probe)
			continue
		}
		if want.HTTPGet.Path != probe || containerPort(c, want.HTTPGet.Port.String()) != wantPort {
			errorf("probe %s on port %s, want %s on %d", want.HTTPGet.Path, want.HTTPGet.Port.String(), probe, wantPort)
		}
	}
	if component == "webhook" {
		for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid"} {
			if !hasFieldRefEnv(c, name, field) {
				errorf("env %s must come from the downward API (%s)", name, field)
			}
		}
	}
}

// containerPort resolves a probe's port (a name or a number) to a container port.
func containerPort(c corev1.Container, port string) int32 {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	return -1
}

func hasFieldRefEnv(c corev1.Container, name, field string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == field {
			return true
		}
	}
	return false
}

// TestKustomizeAndChartAgree: `kubectl apply -k config/default` and the chart with its
// default values (release friendgate in friendgate-system) install the same objects
// under the same names, with the same RBAC rules, the same admission webhooks, the
// same command-line settings and the same image version.
func TestKustomizeAndChartAgree(t *testing.T) {
	kust := decode(t, kustomize(t, "config/default"))
	chart := decode(t, helmTemplate(t, "friendgate", "friendgate-system"))

	ids := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			if o.GetKind() != "Namespace" { // Helm's --namespace/--create-namespace
				out = append(out, id(o))
			}
		}
		slices.Sort(out)
		return out
	}
	if k, c := ids(kust), ids(chart); !slices.Equal(k, c) {
		t.Fatalf("config/default and the chart install different objects:\nkustomize:\n  %s\nchart:\n  %s", strings.Join(k, "\n  "), strings.Join(c, "\n  "))
	}

	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, k := range ofKind(kust, kind) {
			c := find(t, chart, kind, k.GetName())
			if !reflect.DeepEqual(rules(t, k), rules(t, c)) {
				t.Errorf("%s %s: config/rbac's rules differ from the chart's:\nkustomize: %v\nchart:     %v", kind, k.GetName(), rules(t, k), rules(t, c))
			}
		}
	}

	kw, cw := find(t, kust, "ValidatingWebhookConfiguration", "friendgate-validating-webhook-configuration"), find(t, chart, "ValidatingWebhookConfiguration", "friendgate-validating-webhook-configuration")
	for _, field := range [][]string{{"name"}, {"rules"}, {"failurePolicy"}, {"sideEffects"}, {"admissionReviewVersions"}, {"clientConfig", "service", "name"}, {"clientConfig", "service", "namespace"}, {"clientConfig", "service", "path"}} {
		k, _, _ := unstructured.NestedFieldNoCopy(webhooks(t, kw)[0], field...)
		c, _, _ := unstructured.NestedFieldNoCopy(webhooks(t, cw)[0], field...)
		if !reflect.DeepEqual(k, c) {
			t.Errorf("admission webhook %s: kustomize has %v, the chart %v", strings.Join(field, "."), k, c)
		}
	}

	for _, name := range []string{"friendgate-controller", "friendgate-webhook"} {
		kd, cd := container(t, find(t, kust, "Deployment", name)), container(t, find(t, chart, "Deployment", name))
		kf, cf := flags(kd.Args), flags(cd.Args)
		for flag, v := range kf {
			if cf[flag] != v {
				t.Errorf("Deployment %s: config/default runs %s=%s, the chart %s=%s", name, flag, v, flag, cf[flag])
			}
		}
		chartImage := "ghcr.io/friendgate/friendgate:" + chartAppVersion(t)
		if kd.Image != chartImage || cd.Image != chartImage {
			t.Errorf("Deployment %s: image %s in config/default, %s in the chart, want %s (Chart.yaml appVersion)", name, kd.Image, cd.Image, chartImage)
		}
	}
}

func rules(t *testing.T, role *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var r rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rules
}

func webhooks(t *testing.T, vwc *unstructured.Unstructured) []map[string]any {
	t.Helper()
	list, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
	var out []map[string]any
	for _, w := range list {
		out = append(out, w.(map[string]any))
	}
	if len(out) != 1 {
		t.Fatalf("%s has %d webhooks, want 1", id(vwc), len(out))
	}
	return out
}

func container(t *testing.T, u *unstructured.Unstructured) corev1.Container {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0]
}

// flags maps each --flag=value argument to its value.
func flags(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		if name, value, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "--") {
			out[name] = value
		}
	}
	return out
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(chartDir, "Chart.yaml"))), &chart); err != nil {
		t.Fatal(err)
	}
	return chart.AppVersion
}
