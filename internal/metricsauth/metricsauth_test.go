package metricsauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// TestGuard runs the reviews against a real API server: a ServiceAccount bound to a
// ClusterRole that may GET /metrics is let through; no token, a token the API server does
// not know, another ServiceAccount, another verb or another path are refused. Outcomes
// are kept for their lifetime, so a revoked binding takes effect once it runs out.
func TestGuard(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.NewNamespace(t, "metricsauth")
	for _, name := range []string{"scraper", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("a token for %s: %v", sa, err)
		}
		return tr.Status.Token
	}
	scraper, stranger := token("scraper"), token("stranger")

	clk := testingclock.NewFakeClock(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	g := New(cs.AuthenticationV1().TokenReviews(), cs.AuthorizationV1().SubjectAccessReviews(), clk)
	srv := httptest.NewServer(g.Wrap(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "metrics\n")
	})))
	t.Cleanup(srv.Close)
	do := func(method, path, authorization string) int {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, c := range []struct {
		name, method, path, authorization string
		want                              int
	}{
		{"no token", "GET", "/metrics", "", http.StatusUnauthorized},
		{"not a bearer token", "GET", "/metrics", "Basic c2NyYXBlcjpzZWNyZXQ=", http.StatusUnauthorized},
		{"empty bearer token", "GET", "/metrics", "Bearer ", http.StatusUnauthorized},
		{"a token the API server does not know", "GET", "/metrics", "Bearer not-a-token", http.StatusUnauthorized},
		{"a ServiceAccount without the role", "GET", "/metrics", "Bearer " + stranger, http.StatusForbidden},
		{"the reader", "GET", "/metrics", "Bearer " + scraper, http.StatusOK},
		{"the reader, scheme in lower case", "GET", "/metrics", "bearer " + scraper, http.StatusOK},
		{"the reader, another verb", "POST", "/metrics", "Bearer " + scraper, http.StatusForbidden},
		{"the reader, another path", "GET", "/debug/pprof/", "Bearer " + scraper, http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := do(c.method, c.path, c.authorization); got != c.want {
				t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
			}
		})
	}

	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := do("GET", "/metrics", "Bearer "+scraper); got != http.StatusOK {
		t.Fatalf("right after the binding was deleted: %d, want 200 (the outcome is kept for %s)", got, allowTTL)
	}
	testenv.Eventually(t, 30*time.Second, "the revoked reader is refused", func() (bool, string) {
		clk.Step(allowTTL + time.Second)
		got := do("GET", "/metrics", "Bearer "+scraper)
		return got == http.StatusForbidden, fmt.Sprint(got)
	})
}

// TestCacheBounded: tokens are the caller's to choose, so the cache of outcomes never
// holds more than maxCached of them.
func TestCacheBounded(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	g := New(unknownTokens{}, nil, clk)
	h := g.Wrap(logr.Discard(), http.NotFoundHandler())
	for i := range 3 * maxCached {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", i))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("token %d: %d, want 401", i, rec.Code)
		}
		if n := len(g.cache); n > maxCached {
			t.Fatalf("after %d tokens the cache holds %d outcomes, more than %d", i+1, n, maxCached)
		}
	}
}

// unknownTokens authenticates no token, as the API server answers for a made-up one.
type unknownTokens struct{}

func (unknownTokens) Create(_ context.Context, r *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	out := r.DeepCopy()
	out.Status.Authenticated = false
	return out, nil
}
