package chart

import (
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestRedisValues: limits.redis reaches `friendgate webhook` as the --redis-* flags only
// when an address is set, and the password and CA Secrets are mounted, read-only and
// 0440, where those flags point. Without Redis the replicas get no --redis-* flag and no
// volume of their own, so the default Deployment is unchanged.
func TestRedisValues(t *testing.T) {
	for _, c := range []struct {
		name   string
		deploy string
		flags  []string
		want   map[string]string // every --redis-* flag
		mounts map[string]string // volume -> Secret, of the Redis volumes
	}{
		{name: "default", deploy: "friendgate-webhook", want: map[string]string{}},
		{name: "settings without an address", deploy: "friendgate-webhook",
			flags: []string{"--set", "limits.redis.db=4", "--set", "limits.redis.keyPrefix=x:", "--set", "limits.redis.budget=1ms"},
			want:  map[string]string{}},
		{name: "address only", deploy: "friendgate-webhook",
			flags: []string{"--set", "limits.redis.address=redis-master.openim.svc.cluster.local:6379"},
			want: map[string]string{
				"--redis-addr": "redis-master.openim.svc.cluster.local:6379", "--redis-db": "0",
				"--redis-key-prefix": "friendgate:", "--redis-budget": "5ms",
			}},
		// The password alone must open the Deployment's volumes, which the default
		// values leave out.
		{name: "password only", deploy: "friendgate-webhook",
			flags: []string{"--set", "limits.redis.address=redis:6379", "--set", "limits.redis.password.existingSecret=redis-auth"},
			want: map[string]string{
				"--redis-addr": "redis:6379", "--redis-password-file": "/etc/friendgate/redis-password/password",
				"--redis-db": "0", "--redis-key-prefix": "friendgate:", "--redis-budget": "5ms",
			},
			mounts: map[string]string{"redis-password": "redis-auth"}},
		{name: "every setting", deploy: "friendgate-webhook", flags: []string{
			"--set", "limits.redis.address=10.0.0.7:6380", "--set", "limits.redis.username=fg",
			"--set", "limits.redis.password.existingSecret=redis-auth", "--set", "limits.redis.password.key=pw",
			"--set", "limits.redis.db=3", "--set", "limits.redis.keyPrefix=fg #1: ", "--set", "limits.redis.budget=250us",
			"--set", "limits.redis.tls.enabled=true", "--set", "limits.redis.tls.caSecret=redis-ca-bundle",
			"--set", "limits.redis.tls.caKey=bundle.pem", "--set", "limits.redis.tls.serverName=redis.example.com",
		}, want: map[string]string{
			"--redis-addr": "10.0.0.7:6380", "--redis-username": "fg", "--redis-password-file": "/etc/friendgate/redis-password/pw",
			// A prefix YAML would otherwise read as a mapping or a comment arrives whole.
			"--redis-db": "3", "--redis-key-prefix": "fg #1: ", "--redis-budget": "250us", "--redis-tls": "true",
			"--redis-tls-ca-file": "/etc/friendgate/redis-ca/bundle.pem", "--redis-tls-server-name": "redis.example.com",
		}, mounts: map[string]string{"redis-password": "redis-auth", "redis-ca": "redis-ca-bundle"}},
		{name: "full-values", deploy: "fg-webhook", flags: []string{"-f", "test/chart/testdata/full-values.yaml"}, want: map[string]string{
			"--redis-addr": "redis-master.openim.svc.cluster.local:6379", "--redis-username": "friendgate",
			"--redis-password-file": "/etc/friendgate/redis-password/redis-password", "--redis-db": "2",
			"--redis-key-prefix": "fg:prod:", "--redis-budget": "3ms", "--redis-tls": "true",
			"--redis-tls-ca-file": "/etc/friendgate/redis-ca/ca.pem", "--redis-tls-server-name": "redis.openim.example.com",
		}, mounts: map[string]string{"redis-password": "openim-redis", "redis-ca": "openim-redis-ca"}},
		{name: "alt-values: TLS with the system roots", deploy: "friendgate-webhook", flags: []string{"-f", "test/chart/testdata/alt-values.yaml"},
			want: map[string]string{
				"--redis-addr": "[fd00::6]:6380", "--redis-db": "0", "--redis-key-prefix": "friendgate:",
				"--redis-budget": "5ms", "--redis-tls": "true",
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := decode(t, helmTemplate(t, "friendgate", "friendgate-system", c.flags...))
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, objs, "Deployment", c.deploy).Object, &d); err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			got := map[string]string{}
			for flag, v := range flags(pod.Containers[0].Args) {
				if strings.HasPrefix(flag, "--redis-") {
					got[flag] = v
				}
			}
			if !maps.Equal(got, c.want) {
				t.Errorf("--redis-* flags:\n got %v\nwant %v", got, c.want)
			}
			if len(c.flags) == 0 && (len(pod.Volumes) > 0 || len(pod.Containers[0].VolumeMounts) > 0) {
				t.Errorf("the default values give the replicas volumes %v, mounts %v; want none", pod.Volumes, pod.Containers[0].VolumeMounts)
			}
			for _, v := range pod.Volumes {
				if _, want := c.mounts[v.Name]; strings.HasPrefix(v.Name, "redis-") && !want {
					t.Errorf("unexpected volume %s", v.Name)
				}
			}
			for volume, secret := range c.mounts {
				i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == volume })
				if i < 0 || pod.Volumes[i].Secret == nil || pod.Volumes[i].Secret.SecretName != secret {
					t.Errorf("no volume %s of Secret %s", volume, secret)
					continue
				}
				if mode := pod.Volumes[i].Secret.DefaultMode; mode == nil || *mode != 0o440 {
					t.Errorf("volume %s has defaultMode %v, want 0440", volume, mode)
				}
				j := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume })
				if j < 0 || !pod.Containers[0].VolumeMounts[j].ReadOnly {
					t.Errorf("volume %s is not mounted read-only", volume)
					continue
				}
				// The flag naming a file of this Secret points into its mount.
				file := map[string]string{"redis-password": "--redis-password-file", "redis-ca": "--redis-tls-ca-file"}[volume]
				if dir := pod.Containers[0].VolumeMounts[j].MountPath; path.Dir(got[file]) != dir {
					t.Errorf("%s=%s is not in the mount of volume %s, %s", file, got[file], volume, dir)
				}
			}
		})
	}
}
