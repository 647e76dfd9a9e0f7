package chart

import (
	"fmt"
	"strings"
	"testing"
)

// accessCheck is one `kubectl auth can-i` question and the answer the chart's RBAC must give.
type accessCheck struct {
	// resource as kubectl auth can-i takes it: resource.group, optionally /name; a
	// subresource follows in brackets: friendpolicies.friendgate.io[status].
	verb, resource string
	// namespace to ask in; "" asks across all namespaces (cluster-wide permission).
	namespace string
	want      bool
}

// TestRBAC installs the chart for real (with a Tencent token Secret, so the webhook
// replicas have a Secret of their own) and asks the API server, impersonating each
// ServiceAccount with the groups a real ServiceAccount token carries, what it may do:
//
//   - the webhook replicas read FriendPolicies and ConfigMaps everywhere, write only
//     Leases in their namespace and review who scrapes their /metrics; they cannot write FriendPolicies (spec or status) and
//     cannot read any Secret, their own token Secret included (the kubelet mounts it);
//   - the controller writes FriendPolicy status but not FriendPolicies, and with the
//     built-in rotator updates exactly this release's certificate Secret and webhook
//     configuration; with cert-manager it gets no access to Secrets or webhook
//     configurations at all;
//   - the ServiceAccount the ServiceMonitors scrape with may GET /metrics and nothing
//     else.
func TestRBAC(t *testing.T) {
	const release, ns = "rbac", "fg-rbac"
	const fullname = release + "-friendgate"
	ensureNamespaces(t, []string{ns})
	for _, secret := range []string{"tencent-tokens", "unrelated"} {
		mustKubectl(t, "-n", ns, "create", "secret", "generic", secret, "--from-literal=1400000001=token")
	}
	helm(t, "install", release, chartDir, "--namespace", ns, "--kubeconfig", adminKubeconfig,
		"--set", "tencent.existingSecret=tencent-tokens")

	webhookSA, controllerSA := fullname+"-webhook", fullname+"-controller"
	t.Run("webhook", func(t *testing.T) {
		checkAccess(t, ns, webhookSA, []accessCheck{
			{"list", "friendpolicies.friendgate.io", "", true},
			{"watch", "friendpolicies.friendgate.io", "", true},
			{"get", "friendpolicies.friendgate.io", "default", true},
			{"list", "configmaps", "", true},
			{"watch", "configmaps", "", true},
			{"create", "leases.coordination.k8s.io", ns, true},
			{"update", "leases.coordination.k8s.io", ns, true},
			{"delete", "leases.coordination.k8s.io", ns, true},
			// For --metrics-secure: who is scraping, and may they.
			{"create", "tokenreviews.authentication.k8s.io", "", true},
			{"create", "subjectaccessreviews.authorization.k8s.io", "", true},

			{"create", "friendpolicies.friendgate.io", "", false},
			{"update", "friendpolicies.friendgate.io", "", false},
			{"patch", "friendpolicies.friendgate.io", "", false},
			{"delete", "friendpolicies.friendgate.io", "", false},
			{"deletecollection", "friendpolicies.friendgate.io", "", false},
			{"create", "friendpolicies.friendgate.io", ns, false},
			{"update", "friendpolicies.friendgate.io[status]", "", false},
			{"patch", "friendpolicies.friendgate.io[status]", "", false},
			{"get", "secrets", "", false},
			{"list", "secrets", "", false},
			{"watch", "secrets", "", false},
			{"get", "secrets", ns, false},
			{"list", "secrets", ns, false},
			{"get", "secrets/tencent-tokens", ns, false},
			{"get", "secrets/unrelated", ns, false},
			{"create", "configmaps", "", false},
			{"update", "configmaps", "", false},
			{"create", "leases.coordination.k8s.io", "default", false},
			{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io", "", false},
			{"create", "pods", ns, false},
			{"get", "/metrics", "", false},
		})
	})
	t.Run("controller", func(t *testing.T) {
		checkAccess(t, ns, controllerSA, []accessCheck{
			{"list", "friendpolicies.friendgate.io", "", true},
			{"watch", "friendpolicies.friendgate.io", "", true},
			{"update", "friendpolicies.friendgate.io[status]", "", true},
			{"patch", "friendpolicies.friendgate.io[status]", "", true},
			{"list", "configmaps", "", true},
			{"list", "leases.coordination.k8s.io", ns, true},
			{"create", "leases.coordination.k8s.io", ns, true},
			{"update", "leases.coordination.k8s.io/friendgate-controller", ns, true},
			{"create", "events", "", true},
			{"update", "secrets/" + fullname + "-webhook-server-cert", ns, true},
			{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/" + fullname + "-validating-webhook-configuration", "", true},
			// For --metrics-secure: who is scraping, and may they.
			{"create", "tokenreviews.authentication.k8s.io", "", true},
			{"create", "subjectaccessreviews.authorization.k8s.io", "", true},

			{"create", "friendpolicies.friendgate.io", "", false},
			{"update", "friendpolicies.friendgate.io", "", false},
			{"patch", "friendpolicies.friendgate.io", "", false},
			{"delete", "friendpolicies.friendgate.io", "", false},
			{"update", "configmaps", "", false},
			{"update", "leases.coordination.k8s.io/friendgate-webhook-x", ns, false},
			{"list", "leases.coordination.k8s.io", "default", false},
			{"create", "secrets", ns, false},
			{"get", "secrets", "", false},
			{"update", "secrets/tencent-tokens", ns, false},
			{"update", "secrets/unrelated", ns, false},
			{"update", "secrets/friendgate-webhook-server-cert", ns, false},
			{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/other", "", false},
			{"create", "validatingwebhookconfigurations.admissionregistration.k8s.io", "", false},
		})
	})

	// With cert-manager issuing the admission certificate, the rules only the built-in
	// rotator needs are gone.
	helm(t, "upgrade", release, chartDir, "--namespace", ns, "--kubeconfig", adminKubeconfig, "--reuse-values",
		"--set", "admission.certManager.enabled=true")
	t.Run("controller with cert-manager", func(t *testing.T) {
		checkAccess(t, ns, controllerSA, []accessCheck{
			{"update", "friendpolicies.friendgate.io[status]", "", true},
			{"list", "secrets", ns, false},
			{"update", "secrets/" + fullname + "-webhook-server-cert", ns, false},
			{"update", "secrets/" + fullname + "-admission-tls", ns, false},
			{"list", "validatingwebhookconfigurations.admissionregistration.k8s.io", "", false},
			{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/" + fullname + "-validating-webhook-configuration", "", false},
		})
	})

	// With ServiceMonitors, they scrape the secured /metrics as a ServiceAccount of their
	// own, which may do that and nothing else.
	helm(t, "upgrade", release, chartDir, "--namespace", ns, "--kubeconfig", adminKubeconfig, "--reuse-values",
		"--set", "metrics.serviceMonitor.enabled=true")
	t.Run("metrics reader", func(t *testing.T) {
		checkAccess(t, ns, fullname+"-metrics-reader", []accessCheck{
			{"get", "/metrics", "", true},
			{"list", "configmaps", "", false},
			{"list", "friendpolicies.friendgate.io", "", false},
			{"get", "secrets", ns, false},
		})
	})
	helm(t, "uninstall", release, "--namespace", ns, "--kubeconfig", adminKubeconfig)
}

// checkAccess asks `kubectl auth can-i` each question as the ServiceAccount (with the
// groups of its token) and reports every answer that is not the wanted one.
func checkAccess(t *testing.T, namespace, serviceAccount string, checks []accessCheck) {
	t.Helper()
	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, serviceAccount)
	for _, c := range checks {
		resource, sub, _ := strings.Cut(strings.TrimSuffix(c.resource, "]"), "[")
		args := []string{"auth", "can-i", c.verb, resource, "--as", user,
			"--as-group", "system:serviceaccounts", "--as-group", "system:serviceaccounts:" + namespace, "--as-group", "system:authenticated"}
		if sub != "" {
			args = append(args, "--subresource", sub)
		}
		where := "in every namespace"
		if c.namespace == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "--namespace", c.namespace)
			where = "in namespace " + c.namespace
		}
		out, errOut, _ := kubectl(t, "", args...) // exit status 1 means "no"
		var got bool
		switch strings.TrimSpace(out) {
		case "yes":
			got = true
		case "no":
		default:
			t.Fatalf("kubectl %s: unexpected answer %q\n%s", strings.Join(args, " "), out, errOut)
		}
		if got != c.want {
			may := map[bool]string{true: "may", false: "must not"}[c.want]
			t.Errorf("%s %s %s %s, but can-i says %s", serviceAccount, may, c.verb, c.resource+" "+where, strings.TrimSpace(out))
		}
	}
}
