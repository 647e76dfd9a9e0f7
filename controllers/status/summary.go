package status

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/friendgate/friendgate/internal/propagation"
)

// SummaryName names the ConfigMap, in the namespace of the replica Leases, in which the
// controller says which webhook replicas serve. It is the one place replica counts live:
// FriendPolicy statuses name counts only while a generation propagates, so that replicas
// joining and leaving cost one write here instead of one per policy.
const SummaryName = "friendgate-webhook-replicas"

// Keys of the summary ConfigMap's data.
const (
	// SummaryKeyReplicas is the number of serving replicas, in decimal.
	SummaryKeyReplicas = "replicas"
	// SummaryKeyServing lists the serving replicas' IDs, one a line, sorted.
	SummaryKeyServing = "serving"
	// SummaryKeyCountingLimitsAlone lists, like SummaryKeyServing, the serving replicas
	// that count limits alone: in memory (no Redis, or Redis failing), or not saying how.
	SummaryKeyCountingLimitsAlone = "counting-limits-alone"
)

// +kubebuilder:rbac:groups="",namespace=friendgate-system,resources=configmaps,verbs=create
// +kubebuilder:rbac:groups="",namespace=friendgate-system,resources=configmaps,resourceNames=friendgate-webhook-replicas,verbs=get;patch

// summaryRetry is how long a failed write of the summary waits before the next try.
const summaryRetry = 5 * time.Second

var (
	servingReplicas = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "friendgate_webhook_replicas_serving",
		Help: "Webhook replicas whose Lease is live, as the status controller (leader) counts them.",
	})
	countingLimitsLocally = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "friendgate_webhook_replicas_counting_limits_locally",
		Help: "Serving webhook replicas that count limits in their own memory (no Redis, or Redis failing) " +
			"or do not say how (older versions), as the status controller (leader) counts them.",
	})
)

// registerMetrics registers the controller's own metrics once per process, only where the
// controller runs (webhook replicas share the binary and the registry).
var registerMetrics = sync.OnceFunc(func() { metrics.Registry.MustRegister(servingReplicas, countingLimitsLocally) })

// summary writes the summary ConfigMap whenever the serving replicas, or how they count
// limits, change, with server-side apply (one request, no read), retrying a failed write.
// It is a manager Runnable that runs on the leader only, like the controller that feeds it.
type summary struct {
	client    client.Client
	namespace string
	clock     clock.Clock
	log       logr.Logger

	mu      sync.Mutex
	desired *replicaSummary // nil until the Tracker's first announcement
	poke    chan struct{}
}

// replicaSummary is what the summary ConfigMap says: replica IDs, sorted.
type replicaSummary struct {
	serving, countingAlone []string
}

func (a *replicaSummary) equal(b *replicaSummary) bool {
	return a != nil && b != nil && slices.Equal(a.serving, b.serving) && slices.Equal(a.countingAlone, b.countingAlone)
}

func newSummary(c client.Client, namespace string, clk clock.Clock, log logr.Logger) *summary {
	return &summary{client: c, namespace: namespace, clock: clk, log: log, poke: make(chan struct{}, 1)}
}

// set records the serving replicas from a Tracker announcement.
func (s *summary) set(c Change) {
	sum := &replicaSummary{serving: make([]string, 0, len(c.Now))}
	for name, served := range c.Now {
		id := strings.TrimPrefix(name, propagation.LeasePrefix)
		sum.serving = append(sum.serving, id)
		if served.LimitsCounting.Alone() {
			sum.countingAlone = append(sum.countingAlone, id)
		}
	}
	slices.Sort(sum.serving)
	slices.Sort(sum.countingAlone)
	servingReplicas.Set(float64(len(sum.serving)))
	countingLimitsLocally.Set(float64(len(sum.countingAlone)))
	s.mu.Lock()
	s.desired = sum
	s.mu.Unlock()
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Start writes the summary until ctx ends.
func (s *summary) Start(ctx context.Context) error {
	var (
		written *replicaSummary
		retry   <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.poke:
		case <-retry:
		}
		retry = nil
		s.mu.Lock()
		sum := s.desired
		s.mu.Unlock()
		if sum == nil || sum.equal(written) {
			continue
		}
		if err := s.write(ctx, sum); err != nil {
			s.log.Error(err, "writing the webhook replica summary failed; retrying", "configMap", s.namespace+"/"+SummaryName)
			retry = s.clock.After(summaryRetry)
			continue
		}
		written = sum
	}
}

func (s *summary) write(ctx context.Context, sum *replicaSummary) error {
	cm := corev1ac.ConfigMap(SummaryName, s.namespace).
		WithLabels(map[string]string{propagation.ComponentLabel: "replica-summary"}).
		WithData(map[string]string{
			SummaryKeyReplicas:            strconv.Itoa(len(sum.serving)),
			SummaryKeyServing:             lines(sum.serving),
			SummaryKeyCountingLimitsAlone: lines(sum.countingAlone),
		})
	return s.client.Apply(ctx, cm, client.FieldOwner("friendgate-controller"), client.ForceOwnership)
}

// lines puts one ID a line.
func lines(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return strings.Join(ids, "\n") + "\n"
}
