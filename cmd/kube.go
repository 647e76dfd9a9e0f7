package cmd

import (
	"os"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/friendgate/friendgate/api/v1alpha1"
)

// kubeScheme holds the types the cluster roles read and write.
func kubeScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(coordinationv1.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// listConfigMapsSelector selects the ConfigMaps blocklists may read: those labelled
// friendgate.io/list, whatever the value. The API server filters, so replicas neither
// hold nor need RBAC beyond them in practice.
func listConfigMapsSelector() labels.Selector {
	req, err := labels.NewRequirement(v1alpha1.LabelList, selection.Exists, nil)
	utilruntime.Must(err)
	return labels.NewSelector().Add(*req)
}

// replicaCacheOptions configure a webhook replica's cache: FriendPolicies, and only the
// labelled ConfigMaps, without managedFields.
func replicaCacheOptions() cache.Options {
	return cache.Options{
		ByObject:         map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {Label: listConfigMapsSelector()}},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// inClusterNamespaceFile holds the namespace of the pod's ServiceAccount.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// defaultNamespace is where the roles keep their Leases: POD_NAMESPACE (downward API),
// else the pod's ServiceAccount namespace, else friendgate-system.
func defaultNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if data, err := os.ReadFile(inClusterNamespaceFile); err == nil {
		if ns := strings.TrimSpace(string(data)); ns != "" {
			return ns
		}
	}
	return "friendgate-system"
}
