// Package leaderlabel keeps the label leader-election/role=leader on exactly the pod that holds its Lease, so that
// a Service selecting that label routes to the leader while every replica stays Ready (traffic mode "label").
// It runs in the webhook's manager: the label is written with the webhook's credentials, never the elector's,
// so an elector cannot change anything on any pod.
package leaderlabel

import (
	"context"
	"encoding/json"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leader-election/leader-election/pkg/inject"
)

// leaseIndex indexes member pods by "<namespace>/<lease name>".
const leaseIndex = "leader-election.lease"

// Reconciler moves the leader label when a Lease changes hands. Reader is the manager's cache (pods labelled
// leader-election/member and Leases); Writer patches pods.
type Reconciler struct {
	Reader client.Reader
	Writer client.Writer
	// Events, when set, records an Event on the new leader's owner each time the label moves (events.go).
	Events EventRecorder
}

// SetupWithManager registers the controller and its pod index.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, leaseIndex, func(o client.Object) []string {
		if name := o.GetAnnotations()[inject.AnnotationLeaseName]; name != "" {
			return []string{o.GetNamespace() + "/" + name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing pods by lease: %w", err)
	}
	podToLease := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetAnnotations()[inject.AnnotationLeaseName]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("leader-label").
		// Node heartbeats are Leases too; they never have member pods.
		For(&coordinationv1.Lease{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() != corev1.NamespaceNodeLease
		}))).
		Watches(&corev1.Pod{}, podToLease).
		Complete(r)
}

// Reconcile labels the holder of one Lease and unlabels every other member pod. Removals go first, so that a
// Service never selects two pods of one group, not even between two patches.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	members := &corev1.PodList{}
	if err := r.Reader.List(ctx, members, client.InNamespace(req.Namespace),
		client.MatchingFields{leaseIndex: req.Namespace + "/" + req.Name}); err != nil {
		return reconcile.Result{}, err
	}
	if len(members.Items) == 0 {
		return reconcile.Result{}, nil
	}
	holder := ""
	lease := &coordinationv1.Lease{}
	switch err := r.Reader.Get(ctx, req.NamespacedName, lease); {
	case err == nil:
		if lease.Spec.HolderIdentity != nil {
			holder = *lease.Spec.HolderIdentity
		}
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, err
	}

	var leader *corev1.Pod
	for i := range members.Items {
		pod := &members.Items[i]
		labelled := pod.Labels[inject.LabelRole] == inject.RoleLeader
		isHolder := pod.Name == holder && pod.DeletionTimestamp == nil
		if isHolder {
			leader = pod
		}
		if labelled && !isHolder {
			if err := r.setRole(ctx, pod, nil); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	if leader != nil && leader.Labels[inject.LabelRole] != inject.RoleLeader {
		role := inject.RoleLeader
		if err := r.setRole(ctx, leader, &role); err != nil {
			return reconcile.Result{}, err
		}
		r.recordLeader(leader, lease)
	}
	return reconcile.Result{}, nil
}

// setRole sets or (role == nil) removes the role label with a merge patch that touches nothing else.
func (r *Reconciler) setRole(ctx context.Context, pod *corev1.Pod, role *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{inject.LabelRole: role}}})
	if err != nil {
		return err
	}
	err = r.Writer.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("labelling pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
