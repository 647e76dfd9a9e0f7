package chart

import (
	"strings"
	"testing"
)

// TestHelmInstallUpgradeUninstall goes through a release's life against the API server
// as a user would (no pods run: envtest has no kubelet):
//
//  1. `helm install` with the default values prints NOTES naming the OpenIM and Tencent
//     callback URLs, and saying that limits are counted per replica;
//  2. the controller's built-in rotator fills the certificate Secret and the webhook
//     configuration's caBundle (simulated here); a `helm upgrade` that changes the
//     failure policy keeps both;
//  3. `helm upgrade` to the fully-featured values switches to cert-manager and TLS: the
//     NOTES name the https URL and the Redis limits are counted in, the webhook
//     configuration asks cert-manager's CA injector for its caBundle, the rotator's
//     Secret is gone;
//  4. `helm uninstall` removes everything but the CRD (crds/ is never deleted by Helm).
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	const release, ns = "install", "fg-install"
	const fullname = release + "-friendgate"
	ensureNamespaces(t, []string{ns, "monitoring"}) // full-values puts the dashboard in monitoring
	kc := []string{"--namespace", ns, "--kubeconfig", adminKubeconfig}

	notes := helm(t, append([]string{"install", release, chartDir}, kc...)...)
	for _, want := range []string{
		"url: http://" + fullname + "." + ns + ".svc:8080/openim",
		"http://<public host routed to service " + fullname + ">/tencent",
		"beforeAddFriend:", "beforeAddFriendAgree:", "beforeImportFriends:", "beforeAddBlack:", "beforeSetFriendRemark:",
		"kubectl wait --for=condition=Ready friendpolicy/",
		"kubectl apply --server-side --force-conflicts -f charts/friendgate/crds/",
		"Limits: each callback replica counts policies' limits in its own memory",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("helm install's NOTES lack %q:\n%s", want, notes)
		}
	}

	// What the controller's rotator does once it runs.
	secret, vwc := fullname+"-webhook-server-cert", fullname+"-validating-webhook-configuration"
	mustKubectl(t, "-n", ns, "patch", "secret", secret, "--type=merge", "-p",
		`{"data":{"ca.crt":"Y2E=","ca.key":"a2V5","tls.crt":"Y2VydA==","tls.key":"a2V5"}}`)
	mustKubectl(t, "patch", "validatingwebhookconfiguration", vwc, "--type=json", "-p",
		`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"Y2E="}]`)

	helm(t, append([]string{"upgrade", release, chartDir, "--set", "admission.failurePolicy=Fail"}, kc...)...)
	if got := jsonpath(t, "", "validatingwebhookconfiguration", vwc, "{.webhooks[0].failurePolicy} {.webhooks[0].clientConfig.caBundle}"); got != "Fail Y2E=" {
		t.Errorf("after helm upgrade the webhook configuration has failurePolicy and caBundle %q, want \"Fail Y2E=\" (the upgrade's value, the rotator's CA)", got)
	}
	if got := jsonpath(t, ns, "secret", secret, "{.data.tls\\.crt}"); got != "Y2VydA==" {
		t.Errorf("after helm upgrade the certificate Secret has tls.crt %q, want the rotator's", got)
	}

	notes = helm(t, append([]string{"upgrade", release, chartDir, "-f", "test/chart/testdata/full-values.yaml", "--set", "fullnameOverride="}, kc...)...)
	for _, want := range []string{
		"url: https://" + fullname + "." + ns + ".svc:443/openim",
		"counted across the callback replicas in Redis redis-master.openim.svc.cluster.local:6379",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("helm upgrade's NOTES lack %q:\n%s", want, notes)
		}
	}
	if got := jsonpath(t, "", "validatingwebhookconfiguration", vwc, `{.metadata.annotations.cert-manager\.io/inject-ca-from}`); got != ns+"/"+fullname+"-admission" {
		t.Errorf("with cert-manager the webhook configuration's inject-ca-from is %q, want %s/%s-admission", got, ns, fullname)
	}
	if _, _, err := kubectl(t, "", "-n", ns, "get", "secret", secret); err == nil {
		t.Errorf("Secret %s, which only the built-in rotator uses, is still there after switching to cert-manager", secret)
	}
	for _, kind := range []string{"certificate.cert-manager.io/" + fullname + "-admission", "certificate.cert-manager.io/" + fullname + "-callback",
		"servicemonitor.monitoring.coreos.com/" + fullname + "-webhook", "horizontalpodautoscaler/" + fullname + "-webhook", "networkpolicy/" + fullname + "-webhook"} {
		mustKubectl(t, "-n", ns, "get", kind)
	}

	helm(t, append([]string{"uninstall", release}, kc...)...)
	out := mustKubectl(t, "get", "clusterroles,clusterrolebindings,validatingwebhookconfigurations", "-o", "name",
		"-l", "app.kubernetes.io/instance="+release)
	out += mustKubectl(t, "-n", ns, "get", "all,secrets,configmaps,leases,roles,rolebindings,serviceaccounts,poddisruptionbudgets,networkpolicies", "-o", "name",
		"-l", "app.kubernetes.io/instance="+release)
	if strings.TrimSpace(out) != "" {
		t.Errorf("helm uninstall left:\n%s", out)
	}
	mustKubectl(t, "get", "crd", "friendpolicies.friendgate.io")
}

// jsonpath returns `kubectl get KIND NAME -o jsonpath=TEMPLATE`.
func jsonpath(t *testing.T, namespace, kind, name, template string) string {
	t.Helper()
	args := []string{"get", kind, name, "-o", "jsonpath=" + template}
	if namespace != "" {
		args = append(args, "--namespace", namespace)
	}
	return mustKubectl(t, args...)
}
