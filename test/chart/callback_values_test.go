package chart

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
