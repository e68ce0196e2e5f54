package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/leader-election/leader-election/pkg/contract"
)

// PodBinder gives the ServiceAccount of every injected pod the API server has stored the elector's permissions
// for the pod's Lease. It binds from stored pods, not from admission reviews: anyone who reaches the webhook's
// port can send a review naming any ServiceAccount and Lease, while a stored member pod passed the API server's
// authorization and the policy that lets only injected pods carry leader-election/member. Every webhook replica
// runs it; Bind is safe side by side.
type PodBinder struct {
	// Reader holds the member pods (the manager's cache, labelled leader-election/member=true).
	Reader client.Reader
	Binder AccountBinder
	// Excluded are the namespaces the installation keeps away from the webhook: nothing is bound there.
	Excluded NamespaceSet
}

// AccountBinder grants a ServiceAccount the elector's permissions for a Lease (binding.Binder).
type AccountBinder interface {
	Bind(ctx context.Context, namespace, serviceAccount, lease string) error
}

// SetupWithManager watches member pods as they are created (and, at start, every existing one).
func (r *PodBinder) SetupWithManager(mgr ctrl.Manager) error {
	created := predicate.Funcs{
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	return ctrl.NewControllerManagedBy(mgr).Named("elector-binding").
		For(&corev1.Pod{}, builder.WithPredicates(created)).
		Complete(r)
}

// Reconcile binds the pod's ServiceAccount for the pod's Lease.
func (r *PodBinder) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.Excluded[req.Namespace] {
		return ctrl.Result{}, nil
	}
	pod := &corev1.Pod{}
	if err := r.Reader.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	lease := pod.Annotations[contract.AnnotationLeaseName]
	if pod.Labels[contract.LabelMember] != "true" || lease == "" || pod.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return ctrl.Result{}, r.Binder.Bind(ctx, req.Namespace, sa, lease)
}
