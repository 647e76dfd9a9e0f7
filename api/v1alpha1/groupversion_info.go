// Package v1alpha1 contains the friendgate.io/v1alpha1 API: the FriendPolicy resource.
// It depends on k8s.io/apimachinery only, so clients can import it cheaply.
// +kubebuilder:object:generate=true
// +groupName=friendgate.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the FriendPolicy API.
	GroupVersion = schema.GroupVersion{Group: "friendgate.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API's Go types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &FriendPolicy{}, &FriendPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
