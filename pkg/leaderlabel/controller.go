// Package leaderlabel keeps the label leader-election/role=leader on exactly the pod that holds its Lease, so that
// a Service selecting that label routes to the leader while every replica stays Ready (traffic mode "label").
// It runs in the webhook's manager: the label is written with the webhook's credentials, never the elector's,
// so an elector cannot change anything on any pod.
//
// Every webhook replica runs it side by side, without leader election, so a replica that dies during a failover
// costs nothing. That is safe because of how it writes: it decides from its caches only whether something may
// need doing; before it writes it reads the Lease and the labelled pods from the API server itself, it removes
// the label before it adds one, every write carries the pod's resourceVersion (a replica acting on an older
// state gets a conflict, not a second label), and after adding it checks again.
//
// The same writes keep the leader last in a rollout: the holder's patch also sets a high
// controller.kubernetes.io/pod-deletion-cost, and the patch that removes the label removes it (deletioncost.go).
package leaderlabel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
)

// leaseIndex indexes member pods by "<namespace>/<lease name>".
const leaseIndex = "leader-election.lease"

// maxPasses bounds the read-decide-write passes of one reconcile; a Lease that keeps changing is requeued.
const maxPasses = 3

// Reconciler moves the leader label when a Lease changes hands. Reader is the manager's cache (member pods and
// Leases), used only to decide whether anything may need doing; Live reads the API server before every write;
// Writer patches pods.
type Reconciler struct {
	Reader client.Reader
	Live   client.Reader
	Writer client.Writer
	// Events, when set, records an Event on the new leader's owner each time the label moves (events.go).
	Events EventRecorder
}

// SetupWithManager registers the controller, its pod index, and the controller that removes stray labels.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, leaseIndex, func(o client.Object) []string {
		if name := o.GetAnnotations()[contract.AnnotationLeaseName]; name != "" {
			return []string{o.GetNamespace() + "/" + name}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing pods by lease: %w", err)
	}
	podToLease := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		name := o.GetAnnotations()[contract.AnnotationLeaseName]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("leader-label").
		// Node heartbeats are Leases too; they never have member pods.
		For(&coordinationv1.Lease{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() != corev1.NamespaceNodeLease
		}))).
		Watches(&corev1.Pod{}, podToLease).
		Complete(r)
	if err != nil {
		return err
	}
	return setupStrays(mgr, &StrayReconciler{Live: r.Live, Writer: r.Writer})
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
		return reconcile.Result{}, nil // not a Lease of ours: no API calls for other controllers' Leases
	}
	lease := &coordinationv1.Lease{}
	if err := r.Reader.Get(ctx, req.NamespacedName, lease); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	} else if err != nil {
		lease = nil
	}
	if settled(members.Items, lease) {
		return reconcile.Result{}, nil // the renewals of a settled group cost nothing
	}
	for range maxPasses {
		added, err := r.pass(ctx, req.NamespacedName, members.Items)
		if err != nil || !added {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, fmt.Errorf("the Lease %s changed during %d passes; retrying", req.NamespacedName, maxPasses)
}

// pass reads the Lease and the group's labelled pods from the API server and makes one round of writes:
// removals first, then the holder's label. It reports whether it added the label, so that the caller checks
// again: another replica that read an older Lease may have labelled its holder meanwhile. members (from the
// cache) name the pods that may still carry the controller's deletion cost without the label.
func (r *Reconciler) pass(ctx context.Context, lease types.NamespacedName, members []corev1.Pod) (added bool, err error) {
	current := &coordinationv1.Lease{}
	if err := r.Live.Get(ctx, lease, current); apierrors.IsNotFound(err) {
		current = nil
	} else if err != nil {
		return false, fmt.Errorf("reading Lease %s: %w", lease, err)
	}
	labelled := &corev1.PodList{}
	if err := r.Live.List(ctx, labelled, client.InNamespace(lease.Namespace), client.HasLabels{contract.LabelRole}); err != nil {
		return false, fmt.Errorf("listing labelled pods in %s: %w", lease.Namespace, err)
	}
	holderLabelled := false
	seen := map[string]bool{}
	for i := range labelled.Items {
		pod := &labelled.Items[i]
		if pod.Annotations[contract.AnnotationLeaseName] != lease.Name {
			continue // another group's leader (strays are the StrayReconciler's)
		}
		seen[pod.Name] = true
		if isHolder(pod, current) && pod.Labels[contract.LabelRole] == contract.RoleLeader {
			holderLabelled = true
			if costChange(pod, true) != nil { // labelled by a version that did not set the cost
				role := contract.RoleLeader
				if err := setRole(ctx, r.Writer, pod, &role); err != nil {
					return false, err
				}
			}
			continue
		}
		if err := setRole(ctx, r.Writer, pod, nil); err != nil {
			return false, err
		}
	}
	if err := r.removeStaleCosts(ctx, current, members, seen); err != nil {
		return false, err
	}
	holder := holderOf(current)
	if holderLabelled || holder == "" {
		return false, nil
	}
	pod := &corev1.Pod{}
	if err := r.Live.Get(ctx, types.NamespacedName{Namespace: lease.Namespace, Name: holder}, pod); apierrors.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading pod %s/%s: %w", lease.Namespace, holder, err)
	}
	if pod.Labels[contract.LabelMember] != "true" || pod.Annotations[contract.AnnotationLeaseName] != lease.Name || !isHolder(pod, current) {
		return false, nil // the holder is not an injected member of this group: label nobody
	}
	role := contract.RoleLeader
	if err := setRole(ctx, r.Writer, pod, &role); err != nil {
		return false, err
	}
	// Only the replica whose guarded write succeeded gets here, so one Event is recorded per change of leader.
	r.recordLeader(pod, current)
	return true, nil
}

// removeStaleCosts removes the controller's deletion cost from member pods that carry it without the label
// (the label and the cost travel in one patch, so only a patch refused half-way, or an older controller, leaves
// one): each is read from the API server first, and left alone if it holds the Lease.
func (r *Reconciler) removeStaleCosts(ctx context.Context, lease *coordinationv1.Lease, members []corev1.Pod, seen map[string]bool) error {
	for i := range members {
		if seen[members[i].Name] || costChange(&members[i], isHolder(&members[i], lease)) == nil {
			continue
		}
		pod := &corev1.Pod{}
		if err := r.Live.Get(ctx, client.ObjectKeyFromObject(&members[i]), pod); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("reading pod %s/%s: %w", members[i].Namespace, members[i].Name, err)
		}
		if isHolder(pod, lease) || costChange(pod, false) == nil {
			continue
		}
		if err := setRole(ctx, r.Writer, pod, nil); err != nil {
			return err
		}
	}
	return nil
}

// settled reports whether the cache shows exactly the holder labelled (or nobody, when nobody holds the Lease),
// and the controller's deletion cost on the holder only.
func settled(members []corev1.Pod, lease *coordinationv1.Lease) bool {
	for i := range members {
		pod := &members[i]
		_, labelled := pod.Labels[contract.LabelRole]
		want := isHolder(pod, lease)
		if labelled != want || (labelled && pod.Labels[contract.LabelRole] != contract.RoleLeader) {
			return false
		}
		if costChange(pod, want) != nil {
			return false
		}
	}
	return true
}

// isHolder reports whether pod holds the Lease: its name is the holder, it is not being deleted, and, when the
// Lease carries the holder's UID, it is that pod and not an earlier one of the same name.
func isHolder(pod *corev1.Pod, lease *coordinationv1.Lease) bool {
	holder := holderOf(lease)
	if holder == "" || pod.Name != holder || pod.DeletionTimestamp != nil {
		return false
	}
	uid, set := lease.Annotations[elector.HolderUIDAnnotation]
	return !set || types.UID(uid) == pod.UID
}

func holderOf(lease *coordinationv1.Lease) string {
	if lease == nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// errConflict says a pod changed between the read and the write; the request is retried from a fresh read.
var errConflict = errors.New("the pod changed since it was read")

// setRole sets or (role == nil) removes the role label, and in the same write sets or removes the controller's
// deletion cost (costChange), with a merge patch that touches nothing else and carries the pod's
// resourceVersion, so the API server refuses it if the pod changed since it was read.
func setRole(ctx context.Context, w client.Writer, pod *corev1.Pod, role *string) error {
	meta := map[string]any{
		"resourceVersion": pod.GetResourceVersion(),
		"labels":          map[string]*string{contract.LabelRole: role},
	}
	if cost := costChange(pod, role != nil); cost != nil {
		meta["annotations"] = cost
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	err = w.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("labelling pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), errConflict)
	default:
		return fmt.Errorf("labelling pod %s/%s: %w", pod.GetNamespace(), pod.GetName(), err)
	}
}

// StraySelector selects pods that carry the role label without being injected members: nobody may create
// them (policy leader-election-pod-labels), but one labelled before the policies were installed would be a
// Service endpoint without an elector behind it.
func StraySelector() labels.Selector {
	role, _ := labels.NewRequirement(contract.LabelRole, selection.Exists, nil)
	notMember, _ := labels.NewRequirement(contract.LabelMember, selection.NotEquals, []string{"true"})
	return labels.NewSelector().Add(*role, *notMember)
}

// StrayReconciler removes the role label from pods that are not members.
type StrayReconciler struct {
	Live   client.Reader
	Writer client.Writer
}

// Reconcile removes the role label from one pod if, read from the API server, it is still a stray.
func (s *StrayReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := &corev1.Pod{}
	if err := s.Live.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !StraySelector().Matches(labels.Set(pod.Labels)) {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, setRole(ctx, s.Writer, pod, nil)
}

// setupStrays watches stray pods through a cache of their own: the manager's pod cache holds members only.
func setupStrays(mgr ctrl.Manager, s *StrayReconciler) error {
	strays, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: StraySelector(), Transform: func(obj any) (any, error) {
				if pod, ok := obj.(*corev1.Pod); ok {
					pod.Spec, pod.Status, pod.ManagedFields = corev1.PodSpec{}, corev1.PodStatus{}, nil
				}
				return obj, nil
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the stray-label cache: %w", err)
	}
	if err := mgr.Add(strays); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("stray-role-label").
		WatchesRawSource(source.Kind(strays, &corev1.Pod{}, &handler.TypedEnqueueRequestForObject[*corev1.Pod]{})).
		Complete(s)
}
