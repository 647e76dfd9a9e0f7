package chart

import (
	"strings"
	"testing"
)

// TestBadValuesAreRejected: values.schema.json (types, ranges, enums, unknown keys) and
// the chart's cross-field checks make `helm template` (and so `helm install` and
// `helm upgrade`) fail with a message naming the problem, before anything reaches the
// cluster.
func TestBadValuesAreRejected(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		// want are substrings of helm's error.
		want []string
	}{
		{"negative webhook replicas", []string{"--set", "webhook.replicas=-1"}, []string{"webhook", "replicas", "minimum"}},
		{"zero controller replicas", []string{"--set", "controller.replicas=0"}, []string{"controller", "replicas"}},
		{"unknown admission failure policy", []string{"--set", "admission.failurePolicy=Maybe"}, []string{"failurePolicy", "Ignore", "Fail"}},
		{"unknown callback failure policy", []string{"--set", "webhook.failurePolicy=Maybe"}, []string{"failurePolicy", "Allow", "Deny"}},
		{"misspelt top-level key", []string{"--set", "webook.replicas=3"}, []string{"webook"}},
		{"misspelt nested key", []string{"--set", "webhook.autoscaling.enable=true"}, []string{"enable"}},
		{"unknown log level", []string{"--set", "logging.level=loud"}, []string{"level"}},
		{"unknown TLS mode", []string{"--set", "webhook.tls.mode=mtls"}, []string{"mode", "certManager"}},
		{"bad OpenIM CIDR", []string{"--set", "openim.allowedCIDRs={10.0.0.0/33}"}, []string{"allowedCIDRs"}},
		{"IP instead of CIDR", []string{"--set", "openim.allowedCIDRs={10.1.2.3}"}, []string{"allowedCIDRs"}},
		{"Tencent app that is not an SdkAppid", []string{"--set", "tencent.tokens.myapp=x"}, []string{"myapp", "^[0-9]+$"}},
		{"bad duration", []string{"--set", "webhook.replicaLeaseDuration=30"}, []string{"replicaLeaseDuration"}},
		{"admission timeout above 30s", []string{"--set", "admission.timeoutSeconds=31"}, []string{"timeoutSeconds"}},
		{"image digest without algorithm", []string{"--set", "image.digest=0123abcd"}, []string{"digest"}},
		{"string where a number belongs", []string{"--set-string", "webhook.maxBodyBytes=big"}, []string{"maxBodyBytes"}},
		{"no connection allowed", []string{"--set", "webhook.maxConnections=0"}, []string{"maxConnections", "minimum"}},
		{"in-flight budget below one batch", []string{"--set", "webhook.maxInflightBodyBytes=4096"}, []string{"webhook.maxInflightBodyBytes must be at least webhook.maxBatchBodyBytes"}},
		{"batch limit below the body limit", []string{"--set", "webhook.maxBatchBodyBytes=2048"}, []string{"webhook.maxBatchBodyBytes must be at least webhook.maxBodyBytes"}},
		{"client CA without TLS", []string{"--set", "webhook.tls.clientCA.existingSecret=im-ca"}, []string{"webhook.tls.clientCA needs webhook.tls.mode"}},
		{"upstream that is no URL", []string{"--set", "openim.upstream.url=backend:10008"}, []string{"upstream", "url"}},
		{"unknown upstream failure policy", []string{"--set", "openim.upstream.url=http://b", "--set", "openim.upstream.failurePolicy=Maybe"}, []string{"failurePolicy", "Allow", "Deny"}},
		{"unknown client detail", []string{"--set", "webhook.clientDetail=Policy"}, []string{"clientDetail", "Reference"}},
		{"unknown too-large policy", []string{"--set", "webhook.tooLargePolicy=Maybe"}, []string{"tooLargePolicy", "Allow", "Deny"}},
		{"Tencent tokens twice", []string{"--set", "tencent.existingSecret=tokens", "--set", "tencent.tokens.1400000001=x"}, []string{"tencent.existingSecret or tencent.tokens"}},
		{"existing TLS Secret without a name", []string{"--set", "webhook.tls.mode=existingSecret"}, []string{"webhook.tls.existingSecret"}},
		{"cert-manager callback TLS without an issuer", []string{"--set", "webhook.tls.mode=certManager"}, []string{"issuerRef.name"}},
		{"NetworkPolicy admitting no IM server", []string{"--set", "networkPolicy.enabled=true"}, []string{"networkPolicy.callbacks"}},
		{"several controllers without leader election", []string{"--set", "controller.leaderElection=false"}, []string{"leaderElection"}},
		{"autoscaling range upside down", []string{"--set", "webhook.autoscaling.enabled=true", "--set", "webhook.autoscaling.minReplicas=5", "--set", "webhook.autoscaling.maxReplicas=2"}, []string{"maxReplicas"}},
		{"negative Redis db", []string{"--set", "limits.redis.address=redis:6379", "--set", "limits.redis.db=-1"}, []string{"/limits/redis/db", "minimum"}},
		{"Redis address without a port", []string{"--set", "limits.redis.address=redis"}, []string{"/limits/redis/address"}},
		{"Redis URL instead of an address", []string{"--set", "limits.redis.address=redis://redis:6379"}, []string{"/limits/redis/address"}},
		{"empty Redis key prefix", []string{"--set", "limits.redis.address=redis:6379", "--set", "limits.redis.keyPrefix="}, []string{"/limits/redis/keyPrefix"}},
		{"Redis key prefix over 64 characters", []string{"--set", "limits.redis.keyPrefix=" + strings.Repeat("p", 65)}, []string{"/limits/redis/keyPrefix", "maxLength"}},
		{"Redis budget that is no duration", []string{"--set-string", "limits.redis.budget=5"}, []string{"/limits/redis/budget"}},
		{"Redis password Secret key with a slash", []string{"--set", "limits.redis.password.key=a/b"}, []string{"/limits/redis/password/key"}},
		{"unknown Redis key", []string{"--set", "limits.redis.addr=redis:6379"}, []string{"addr"}},
		{"Redis password without an address", []string{"--set", "limits.redis.password.existingSecret=redis"}, []string{"limits.redis.password.existingSecret needs limits.redis.address"}},
		{"Redis TLS without an address", []string{"--set", "limits.redis.tls.enabled=true"}, []string{"limits.redis.tls.enabled needs limits.redis.address"}},
		{"Redis CA without TLS", []string{"--set", "limits.redis.address=redis:6379", "--set", "limits.redis.tls.caSecret=redis-ca"}, []string{"need limits.redis.tls.enabled"}},
		{"autoscaling on nothing", []string{"--set", "webhook.autoscaling.enabled=true", "--set", "webhook.autoscaling.targetCPUUtilizationPercentage=null"}, []string{"targetCPUUtilizationPercentage"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", "friendgate", chartDir, "--namespace", "friendgate-system"}, c.args...)
			out, errOut, err := run(t, "", helmBinary(t), args...)
			if err == nil {
				t.Fatalf("helm %s succeeded, want an error mentioning %q; it rendered %d bytes", strings.Join(c.args, " "), c.want, len(out))
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("helm's error does not mention %q:\n%s", w, errOut)
				}
			}
		})
	}
}
