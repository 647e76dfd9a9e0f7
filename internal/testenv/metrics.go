package testenv

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MetricsReaderRole creates a ClusterRole, <prefix>-metrics-reader, that may GET /metrics
// as config/rbac's friendgate-metrics-reader does, deletes it when the test ends, and
// returns its name.
func (e *Env) MetricsReaderRole(tb testing.TB, prefix string) string {
	tb.Helper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: prefix + "-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	e.create(tb, role)
	return role.Name
}

// ServiceAccountToken creates the ServiceAccount namespace/name, binds it to each of
// clusterRoles, and returns a token of it, as a pod's Prometheus would present, and a
// function that deletes the bindings. What it creates is deleted when the test ends.
func (e *Env) ServiceAccountToken(tb testing.TB, namespace, name string, clusterRoles ...string) (token string, revoke func()) {
	tb.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	e.create(tb, sa)
	var bindings []client.Object
	for _, role := range clusterRoles {
		b := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: namespace + "." + name + "." + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}},
		}
		e.create(tb, b)
		bindings = append(bindings, b)
	}
	tr := &authenticationv1.TokenRequest{}
	if err := e.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		tb.Fatalf("testenv: a token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token, func() {
		tb.Helper()
		for _, b := range bindings {
			if err := e.Client.Delete(ctx, b); err != nil {
				tb.Fatalf("testenv: deleting %s: %v", b.GetName(), err)
			}
		}
	}
}

// create creates obj and deletes it when the test ends.
func (e *Env) create(tb testing.TB, obj client.Object) {
	tb.Helper()
	if err := e.Client.Create(context.Background(), obj); err != nil {
		tb.Fatalf("testenv: creating %s: %v", obj.GetName(), err)
	}
	tb.Cleanup(func() { _ = e.Client.Delete(context.Background(), obj) })
}

// metricsClient trusts any certificate: friendgate's /metrics certificates are
// self-signed, and what the tests check is who may read.
var metricsClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// GetWithToken GETs url, presenting token as a bearer token unless it is empty, and
// returns the status and body; a failed request gives status 0 and the error as body.
func GetWithToken(url, token string) (status int, body string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(data)
}
