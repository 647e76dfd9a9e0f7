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
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := env.NewNamespace(t, "metricsauth")
	scraper, revoke := env.ServiceAccountToken(t, ns, "scraper", env.MetricsReaderRole(t, ns))
	stranger, _ := env.ServiceAccountToken(t, ns, "stranger")

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

	revoke()
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
