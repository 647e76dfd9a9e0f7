// Package v1alpha1 contains the friendgate.io/v1alpha1 API: the FriendPolicy resource.
// +kubebuilder:object:generate=true
// +groupName=friendgate.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the FriendPolicy API.
	GroupVersion = schema.GroupVersion{Group: "friendgate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API's Go types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
