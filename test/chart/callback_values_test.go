package chart

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestCallbackServerValues: the callback server's bounds and settings reach `friendgate
// webhook` as flags, with the defaults documented in values.yaml and with the values of
// full-values.yaml, and a client CA Secret is mounted where its flag points.
func TestCallbackServerValues(t *testing.T) {
	for _, c := range []struct {
		name   string
		deploy string
		flags  []string
		want   map[string]string
		mounts map[string]string // volume -> Secret
	}{
		{"default", "friendgate-webhook", nil, map[string]string{
			"--client-detail":           "Reference",
			"--max-body-bytes":          "1048576",
			"--max-batch-body-bytes":    "16777216",
			"--max-batch-items":         "100000",
			"--too-large-policy":        "Deny",
			"--max-inflight-body-bytes": "67108864",
			"--max-connections":         "1024",
		}, nil},
		{"full-values", "fg-webhook", []string{"-f", "test/chart/testdata/full-values.yaml"}, map[string]string{
			"--client-detail":                   "None",
			"--max-body-bytes":                  "262144",
			"--max-batch-body-bytes":            "8388608",
			"--max-batch-items":                 "50000",
			"--too-large-policy":                "Allow",
			"--max-inflight-body-bytes":         "33554432",
			"--max-connections":                 "512",
			"--tls-client-ca-file":              "/etc/friendgate/client-ca/bundle.pem",
			"--openim-upstream":                 "http://backend.im.svc:10008/callbackExample",
			"--openim-upstream-timeout":         "2s",
			"--openim-upstream-friend-commands": "true",
			"--openim-upstream-failure-policy":  "Allow",
		}, map[string]string{"client-ca": "im-client-ca"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := decode(t, helmTemplate(t, "friendgate", "friendgate-system", c.flags...))
			deploy := find(t, objs, "Deployment", c.deploy)
			got := flags(container(t, deploy).Args)
			for flag, v := range c.want {
				if got[flag] != v {
					t.Errorf("%s=%q, want %q", flag, got[flag], v)
				}
			}
			if _, ok := got["--tls-client-ca-file"]; ok && c.mounts == nil {
				t.Errorf("--tls-client-ca-file set without a client CA")
			}
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(deploy.Object, &d); err != nil {
				t.Fatal(err)
			}
			for volume, secret := range c.mounts {
				i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == volume })
				if i < 0 || d.Spec.Template.Spec.Volumes[i].Secret == nil || d.Spec.Template.Spec.Volumes[i].Secret.SecretName != secret {
					t.Errorf("no volume %s of Secret %s", volume, secret)
				}
				if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume }) {
					t.Errorf("volume %s is not mounted", volume)
				}
			}
		})
	}
}

// TestMetricsApart: in both install paths the callback replicas serve /metrics on port
// 9090 through a ClusterIP Service of its own, which the ServiceMonitor scrapes and the
// NetworkPolicy opens to the monitoring namespaces only; the callback Service, which may
// face the internet, carries only the callback port.
func TestMetricsApart(t *testing.T) {
	for _, c := range []struct {
		name, manifests, prefix string
	}{
		{"chart", helmTemplate(t, "fg", "friendgate-system", "-f", "test/chart/testdata/full-values.yaml"), "fg"},
		{"kustomize", kustomize(t, "config/default"), "friendgate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := decode(t, c.manifests)
			webhook := container(t, find(t, objs, "Deployment", c.prefix+"-webhook"))
			if got := flags(webhook.Args)["--metrics-bind-address"]; got != ":9090" {
				t.Errorf("--metrics-bind-address=%q, want :9090", got)
			}
			if got := flags(webhook.Args)["--metrics-secure"]; got != "true" {
				t.Errorf("--metrics-secure=%q, want true", got)
			}
			if got := containerPort(webhook, "metrics"); got != 9090 {
				t.Errorf("container port metrics = %d, want 9090", got)
			}
			var metricsSvc corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, objs, "Service", c.prefix+"-webhook-metrics").Object, &metricsSvc); err != nil {
				t.Fatal(err)
			}
			if metricsSvc.Spec.Type != "" && metricsSvc.Spec.Type != corev1.ServiceTypeClusterIP || len(metricsSvc.Spec.Ports) != 1 ||
				metricsSvc.Spec.Ports[0].Name != "metrics" || metricsSvc.Spec.Ports[0].Port != 9090 || metricsSvc.Spec.Ports[0].TargetPort.String() != "metrics" {
				t.Errorf("metrics Service: %s %+v, want ClusterIP with port metrics 9090 -> metrics", metricsSvc.Spec.Type, metricsSvc.Spec.Ports)
			}
			for _, svc := range ofKind(objs, "Service") {
				var s corev1.Service
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(svc.Object, &s); err != nil {
					t.Fatal(err)
				}
				if s.Name == metricsSvc.Name || s.Spec.Selector["app.kubernetes.io/component"] != "webhook" {
					continue
				}
				for _, p := range s.Spec.Ports {
					if p.Port == 9090 || p.TargetPort.String() == "metrics" || p.TargetPort.IntValue() == 9090 {
						t.Errorf("callback Service %s carries the metrics port: %+v", s.Name, p)
					}
				}
			}
		})
	}

	objs := decode(t, helmTemplate(t, "fg", "friendgate-system", "-f", "test/chart/testdata/full-values.yaml"))
	for _, sm := range []string{"fg-webhook", "fg-controller"} {
		endpoints, _, _ := unstructured.NestedSlice(find(t, objs, "ServiceMonitor", sm).Object, "spec", "endpoints")
		if len(endpoints) != 1 {
			t.Fatalf("ServiceMonitor %s endpoints %v, want one", sm, endpoints)
		}
		ep := endpoints[0].(map[string]any)
		secret, _, _ := unstructured.NestedString(ep, "authorization", "credentials", "name")
		if ep["port"] != "metrics" || ep["scheme"] != "https" || secret != "fg-metrics-reader-token" {
			t.Errorf("ServiceMonitor %s endpoint %v, want port metrics over https with the token of fg-metrics-reader", sm, ep)
		}
	}
	find(t, objs, "Secret", "fg-metrics-reader-token")
	find(t, objs, "ClusterRoleBinding", "fg-metrics-reader")
	var np networkingv1.NetworkPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, objs, "NetworkPolicy", "fg-webhook").Object, &np); err != nil {
		t.Fatal(err)
	}
	opened := map[int]int{} // port -> sources that monitoring may use
	for _, rule := range np.Spec.Ingress {
		monitoring := false
		for _, from := range rule.From {
			if from.NamespaceSelector != nil && len(from.NamespaceSelector.MatchExpressions) == 1 &&
				slices.Contains(from.NamespaceSelector.MatchExpressions[0].Values, "monitoring") {
				monitoring = true
			}
		}
		for _, p := range rule.Ports {
			if monitoring {
				opened[p.Port.IntValue()]++
			} else if p.Port.IntValue() == 9090 {
				t.Errorf("the NetworkPolicy opens the metrics port to %+v", rule.From)
			}
		}
	}
	if opened[9090] != 1 || opened[8080] != 0 {
		t.Errorf("ports opened to monitoring: %v, want only 9090", opened)
	}
}
