// Package admission is the validating admission webhook for FriendPolicy, served by
// `friendgate controller`. It runs the engine's compile step on every create and update, so
// a policy the CRD schema lets through but the engine cannot compile (an RE2 pattern that
// does not parse, a `when` that is not a boolean CEL expression over `request`) is refused
// by kubectl apply with its field path, instead of only being reported Ready=False,
// Invalid on its status afterwards.
//
// The webhook's failurePolicy is Ignore (docs/operator.md, "Admission"): the CRD schema
// still refuses structurally invalid policies while the controller is down, the status
// still reports the rest, and a controller outage never blocks applies.
package admission

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/policy"
)

// Path is the URL path of the webhook: the one controller-runtime derives for
// friendgate.io/v1alpha1 FriendPolicy, which the marker below must repeat.
const Path = "/validate-friendgate-io-v1alpha1-friendpolicy"

// +kubebuilder:webhook:path=/validate-friendgate-io-v1alpha1-friendpolicy,mutating=false,failurePolicy=ignore,sideEffects=None,groups=friendgate.io,resources=friendpolicies,verbs=create;update,versions=v1alpha1,name=vfriendpolicy.friendgate.io,admissionReviewVersions=v1

var groupKind = schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "FriendPolicy"}

// Validator refuses FriendPolicies whose spec the engine does not compile.
type Validator struct{}

var _ admission.Validator[*v1alpha1.FriendPolicy] = Validator{}

// SetupWithManager serves the Validator at Path on mgr's webhook server.
func SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.FriendPolicy{}).WithValidator(Validator{}).Complete()
}

// ValidateCreate refuses a policy that does not compile.
func (Validator) ValidateCreate(_ context.Context, fp *v1alpha1.FriendPolicy) (admission.Warnings, error) {
	return nil, invalid(fp, policy.Validate(fp))
}

// ValidateUpdate refuses a spec change to a policy that does not compile. An update that
// leaves the spec as it is (labels, annotations, finalizers) is allowed even when the spec
// does not compile, with a warning: the spec may predate the webhook (it ignores failures,
// and it can be installed after the policy), and refusing would leave such a policy
// impossible to relabel or finalize.
func (Validator) ValidateUpdate(_ context.Context, old, fp *v1alpha1.FriendPolicy) (admission.Warnings, error) {
	errs := policy.Validate(fp)
	if len(errs) > 0 && equality.Semantic.DeepEqual(old.Spec, fp.Spec) {
		return admission.Warnings{fmt.Sprintf("the spec does not compile, so the policy is not enforced: %v", errs.ToAggregate())}, nil
	}
	return nil, invalid(fp, errs)
}

// ValidateDelete allows every deletion; the webhook is not registered for it anyway.
func (Validator) ValidateDelete(context.Context, *v1alpha1.FriendPolicy) (admission.Warnings, error) {
	return nil, nil
}

// invalid returns errs as the API server's own Invalid error for the policy, so kubectl
// shows them as it shows schema errors: `FriendPolicy.friendgate.io "name" is invalid:
// spec.rules[0].when: Invalid value: ...`.
//
// Compile warnings are not passed on: the only ones the engine has are about ConfigMap
// lists, which admission does not read (the controller reports them as Events).
func invalid(fp *v1alpha1.FriendPolicy, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(groupKind, fp.Name, errs)
}
