package admission

import (
	"context"
	"regexp"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// The API server calls the webhook through the configuration generated from the marker
// (config/webhook/manifests.yaml), with the certificate already in the cert dir, as with
// cert-manager. The configuration fails open, so every refusal below shows that the API
// server did reach the validator at the path it serves.
func TestAPIServerRefusesPoliciesTheEngineDoesNotCompile(t *testing.T) {
	wh := env.Webhooks
	startManager(t, webhook.Options{Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir},
		func(mgr manager.Manager) error { return Setup(mgr, Options{CertDir: wh.LocalServingCertDir}) })
	ctx := context.Background()
	ns := env.NewNamespace(t, "admission")

	tests := []struct {
		name string
		spec v1alpha1.FriendPolicySpec
		// want is the API server's error message after `denied the request: `; "" means
		// the policy is created.
		want string
	}{
		{name: "valid", spec: validSpec()},
		{name: "invalid-re2", spec: blocklist(v1alpha1.Blocklist{Patterns: []string{`^[0-9]{11}$`, `(unclosed`}}),
			want: `FriendPolicy.friendgate.io "invalid-re2" is invalid: spec.blocklists[0].patterns[1]: Invalid value: "(unclosed": not a valid RE2 regular expression: ` + re2Error("(unclosed")},
		{name: "cel-not-bool", spec: rule(v1alpha1.Rule{When: "request.from"}),
			want: `FriendPolicy.friendgate.io "cel-not-bool" is invalid: spec.rules[0].when: Invalid value: "request.from": must evaluate to a bool, not string`},
		{name: "two-errors", spec: v1alpha1.FriendPolicySpec{Rules: []v1alpha1.Rule{
			{Name: "a", WordingPatterns: []string{`(?i)free money`, `(?<=x)`}},
			{Name: "b", When: "request.eventTime"},
		}},
			want: `FriendPolicy.friendgate.io "two-errors" is invalid: [spec.rules[0].wordingPatterns[1]: Invalid value: "(?<=x)": not a valid RE2 regular expression: ` + re2Error("(?<=x)") +
				`, spec.rules[1].when: Invalid value: "request.eventTime": must evaluate to a bool, not int]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tt.name}, Spec: tt.spec}
			err := env.Client.Create(ctx, fp)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid policy refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: got %v, want an Invalid error from the webhook", err)
			}
			const prefix = `admission webhook "vfriendpolicy.friendgate.io" denied the request: `
			if got := err.Error(); got != prefix+tt.want {
				t.Errorf("create refused with\n  %s\nwant\n  %s", got, prefix+tt.want)
			}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), fp); !apierrors.IsNotFound(err) {
				t.Errorf("refused policy: get = %v, want NotFound", err)
			}
		})
	}

	t.Run("update", func(t *testing.T) {
		fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "update"}, Spec: validSpec()}
		if err := env.Client.Create(ctx, fp); err != nil {
			t.Fatal(err)
		}
		fp.Spec.Rules[0].When = "request.from + '!'"
		err := env.Client.Update(ctx, fp)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `spec.rules[0].when: Invalid value: "request.from + '!'": must evaluate to a bool, not string`) {
			t.Fatalf("update to a non-bool when: got %v, want it refused with the field path", err)
		}
		stored := &v1alpha1.FriendPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fp), stored); err != nil {
			t.Fatal(err)
		}
		if stored.Spec.Rules[0].When != validSpec().Rules[0].When || stored.Generation != 1 {
			t.Errorf("stored policy changed: generation %d, when %q", stored.Generation, stored.Spec.Rules[0].When)
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		// sideEffects=None lets `kubectl apply --dry-run=server` reach the webhook.
		fp := &v1alpha1.FriendPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dry-run"}, Spec: rule(v1alpha1.Rule{When: "'x'"})}
		if err := env.Client.Create(ctx, fp, client.DryRunAll); !apierrors.IsInvalid(err) {
			t.Errorf("server-side dry run: got %v, want Invalid", err)
		}
	})
}

// re2Error is Go's error for an invalid pattern, whose wording is the regexp package's.
func re2Error(pattern string) string {
	_, err := regexp.Compile(pattern)
	return err.Error()
}
