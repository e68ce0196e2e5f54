package leaderlabel

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/leader-election/leader-election/pkg/contract"
)

// ReasonLeaderElected is the reason of the Event recorded on a workload when its leader label moves.
const ReasonLeaderElected = "LeaderElected"

// EventRecorder is the part of controller-runtime's events.k8s.io recorder the controller uses.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// recordLeader tells the story of a change of leader on the workload, so that `kubectl describe` of its
// ReplicaSet or StatefulSet shows it beside the electors' Events on the Lease. The Event goes on the pod's
// controlling owner, named with the UID its ownerReference carries (nothing more is read), or on the pod itself
// when it has no owner. The new leader is the related object: client-go folds Events with the same regarding,
// related, reason and action into one series that keeps its first note, so each leader gets a series of its
// own, and the note says only what stays true for every Event of the series.
func (r *Reconciler) recordLeader(pod *corev1.Pod, lease *coordinationv1.Lease) {
	if r.Events == nil {
		return
	}
	podRef := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	r.Events.Eventf(regardingOf(pod), podRef, corev1.EventTypeNormal, ReasonLeaderElected, "Label",
		"pod %s leads Lease %s and carries %s=%s", pod.Name, lease.Name, contract.LabelRole, contract.RoleLeader)
}

// regardingOf is the pod's controlling owner (else its first owner), else the pod.
func regardingOf(pod *corev1.Pod) *corev1.ObjectReference {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil && len(pod.OwnerReferences) > 0 {
		owner = &pod.OwnerReferences[0]
	}
	if owner == nil {
		return &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	}
	return &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Namespace: pod.Namespace, Name: owner.Name, UID: owner.UID}
}
