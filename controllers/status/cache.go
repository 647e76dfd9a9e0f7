package status

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/propagation"
)

// CacheByObject restricts the manager's cache (cache.Options.ByObject) to the objects this
// package reads: ConfigMaps carrying the friendgate.io/list label, and the replica Leases in
// leaseNamespace. Without it the cache would hold every ConfigMap and Lease of the cluster,
// and need RBAC to list them all.
func CacheByObject(leaseNamespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Label: v1alpha1.ListSelector()},
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{leaseNamespace: {}},
			Label:      propagation.LeaseSelector(),
		},
	}
}
