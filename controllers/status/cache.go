package status

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/replica"
)

// CacheByObject restricts the manager's cache (cache.Options.ByObject) to the objects this
// package reads: ConfigMaps carrying the friendgate.io/list label, and the replica Leases in
// leaseNamespace. Without it the cache would hold every ConfigMap and Lease of the cluster,
// and need RBAC to list them all.
func CacheByObject(leaseNamespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Label: listLabelSelector()},
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{leaseNamespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{replica.ComponentLabel: replica.ComponentWebhookReplica}),
		},
	}
}

// listLabelSelector selects objects that carry the friendgate.io/list label, whatever its value.
func listLabelSelector() labels.Selector {
	req, err := labels.NewRequirement(v1alpha1.LabelList, selection.Exists, nil)
	if err != nil {
		panic(err) // LabelList is a valid label key
	}
	return labels.NewSelector().Add(*req)
}
