// Package metricsauth guards an HTTP endpoint such as /metrics the way the API server
// guards its own: the caller's bearer token is checked with a TokenReview, and the user it
// names with a SubjectAccessReview for the request's verb on its (non-resource) path.
// controller-runtime's filters.WithAuthenticationAndAuthorization does the same through
// the k8s.io/apiserver module, which would grow the binary by half (gRPC, OpenTelemetry)
// for two API calls.
package metricsauth

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Cache lifetimes of a review's outcome, as the API server's delegating authenticator
// keeps them: a scraper is reviewed about once a minute whatever its interval, and a
// refused caller's flood costs the API server one review pair per token every 10 s.
const (
	allowTTL = time.Minute
	denyTTL  = 10 * time.Second
	// maxCached bounds the cache: tokens are the caller's to choose.
	maxCached = 1024
	// reviewTimeout bounds the two API calls of one review.
	reviewTimeout = 10 * time.Second
)

// Both roles' RBAC (make manifests reads these markers for each) lets them make the
// reviews.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// FilterProvider is a metricsserver.Options.FilterProvider: it guards the metrics
// server's handler with the reviews, made as the process's own identity (which needs
// create on tokenreviews and subjectaccessreviews).
func FilterProvider(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authnclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	authz, err := authzclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	g := New(authn.TokenReviews(), authz.SubjectAccessReviews(), clock.RealClock{})
	return func(log logr.Logger, h http.Handler) (http.Handler, error) { return g.Wrap(log, h), nil }, nil
}

// Guard reviews requests and caches the outcomes.
type Guard struct {
	tokens TokenReviewer
	access AccessReviewer
	clock  clock.PassiveClock

	mu    sync.Mutex
	cache map[cacheKey]outcome
}

// TokenReviewer creates TokenReviews (client-go's TokenReviewInterface).
type TokenReviewer interface {
	Create(ctx context.Context, review *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// AccessReviewer creates SubjectAccessReviews (client-go's SubjectAccessReviewInterface).
type AccessReviewer interface {
	Create(ctx context.Context, review *authzv1.SubjectAccessReview, opts metav1.CreateOptions) (*authzv1.SubjectAccessReview, error)
}

// New returns a Guard making its reviews through tokens and access.
func New(tokens TokenReviewer, access AccessReviewer, clk clock.PassiveClock) *Guard {
	return &Guard{tokens: tokens, access: access, clock: clk, cache: map[cacheKey]outcome{}}
}

// cacheKey is a token's hash (never the token) with what it asked for.
type cacheKey struct {
	token      [sha256.Size]byte
	verb, path string
}

type outcome struct {
	status  int // http.StatusOK, StatusUnauthorized or StatusForbidden
	user    string
	expires time.Time
}

// Wrap answers 401 to a request without a valid bearer token, 403 to one whose user may
// not use the request's verb on its path, and hands the others to h.
func (g *Guard) Wrap(log logr.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			http.Error(w, "Unauthorized: a bearer token is required", http.StatusUnauthorized)
			return
		}
		o, err := g.review(r.Context(), token, strings.ToLower(r.Method), r.URL.Path)
		if err != nil {
			log.Error(err, "reviewing a metrics request failed", "path", r.URL.Path)
			http.Error(w, "Internal Server Error: the request could not be reviewed", http.StatusInternalServerError)
			return
		}
		switch o.status {
		case http.StatusOK:
			h.ServeHTTP(w, r)
		case http.StatusUnauthorized:
			log.V(1).Info("metrics request refused: the token is not valid", "path", r.URL.Path)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		default:
			log.V(1).Info("metrics request refused: not authorized", "user", o.user, "path", r.URL.Path)
			http.Error(w, "Forbidden", http.StatusForbidden)
		}
	})
}

func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// review returns the cached outcome of token asking for verb on path, or reviews it.
// Errors (the API server unreachable) are not cached.
func (g *Guard) review(ctx context.Context, token, verb, path string) (outcome, error) {
	key := cacheKey{token: sha256.Sum256([]byte(token)), verb: verb, path: path}
	now := g.clock.Now()
	g.mu.Lock()
	o, ok := g.cache[key]
	g.mu.Unlock()
	if ok && now.Before(o.expires) {
		return o, nil
	}

	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	tr, err := g.tokens.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return outcome{}, err
	}
	if !tr.Status.Authenticated {
		o = outcome{status: http.StatusUnauthorized}
	} else {
		u := tr.Status.User
		extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			extra[k] = authzv1.ExtraValue(v)
		}
		sar, err := g.access.Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: verb},
		}}, metav1.CreateOptions{})
		if err != nil {
			return outcome{}, err
		}
		o = outcome{status: http.StatusForbidden, user: u.Username}
		if sar.Status.Allowed {
			o.status = http.StatusOK
		}
	}
	ttl := denyTTL
	if o.status == http.StatusOK {
		ttl = allowTTL
	}
	o.expires = now.Add(ttl)
	g.mu.Lock()
	if len(g.cache) >= maxCached {
		// Tokens are the caller's to choose: start afresh rather than grow.
		clear(g.cache)
	}
	g.cache[key] = o
	g.mu.Unlock()
	return o, nil
}
