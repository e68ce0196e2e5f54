package leaderlabel

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Leader last in a rollout. A ReplicaSet that scales down deletes the pods it ranks lowest first
// (ActivePodsWithRanks.Less in k8s.io/kubernetes pkg/controller/controller_utils.go): unscheduled before
// scheduled, pending before running, unready before ready, then lower controller.kubernetes.io/pod-deletion-cost
// before higher. The controller gives the Lease holder the highest cost there is, so in a RollingUpdate the old
// ReplicaSet deletes every ready standby before its leader, and the leader hands over once, to a new pod, instead
// of the Lease hopping from old pod to old pod. The cost is honoured while the feature gate PodDeletionCost is on:
// beta and on by default since Kubernetes 1.22, and still beta, on by default, in 1.37 (pkg/features/
// kube_features.go); with the gate off the annotation is ignored and nothing else changes.
//
// Ours or the user's: a pod template may set the cost itself, and the controller never overwrites that. It adds
// the cost only to a pod that has none, together with DeletionCostManagedAnnotation, and it removes the cost only
// from a pod that carries that marker, removing both in the same patch. The webhook-pods policy enforces exactly
// this at the API server: the webhook may add the two annotations, with these values, only to a member pod
// labelled leader in the same write, and may remove them only together, from a pod that has the marker.

const (
	// DeletionCostAnnotation is the ReplicaSet controller's ranking annotation (corev1.PodDeletionCost).
	DeletionCostAnnotation = corev1.PodDeletionCost
	// DeletionCostManagedAnnotation marks a pod whose deletion cost the leader-label controller set; a pod
	// without it has either no cost or the user's own, which the controller leaves alone.
	DeletionCostManagedAnnotation = "leader-election/deletion-cost-managed"
	// deletionCostManaged is the marker's only value.
	deletionCostManaged = "true"
)

// LeaderDeletionCost is the cost the Lease holder gets: the highest an int32 can hold, so that no pod of the
// ReplicaSet ranks above it unless the user's template asks for the same.
var LeaderDeletionCost = strconv.Itoa(1<<31 - 1)

// costChange returns the annotation changes (nil value: remove) that bring pod's deletion cost in line with
// whether it leads, or nil when there is nothing to change: a leader without any cost gets ours (with the
// marker), a pod that is not the leader loses ours, and a cost the controller did not set is never touched.
func costChange(pod *corev1.Pod, leader bool) map[string]*string {
	_, hasCost := pod.Annotations[DeletionCostAnnotation]
	ours := pod.Annotations[DeletionCostManagedAnnotation] == deletionCostManaged
	switch {
	case leader && !hasCost:
		cost, marker := LeaderDeletionCost, deletionCostManaged
		return map[string]*string{DeletionCostAnnotation: &cost, DeletionCostManagedAnnotation: &marker}
	case !leader && ours:
		return map[string]*string{DeletionCostAnnotation: nil, DeletionCostManagedAnnotation: nil}
	}
	return nil
}
