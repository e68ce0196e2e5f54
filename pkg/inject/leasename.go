package inject

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-election/leader-election/pkg/contract"
)

// rolloutsHashLabel is the label Argo Rollouts puts on the pods of a Rollout's ReplicaSets, in place of the
// Deployment controller's pod-template-hash; the ReplicaSet is named "<rollout>-<hash>".
const rolloutsHashLabel = "rollouts-pod-template-hash"

// leaseNameFromOwner derives the Lease name from the pod's owner, so that every replica of one workload competes
// for the same Lease without configuration, across revisions:
//   - a ReplicaSet made by a Deployment (label pod-template-hash) or by an Argo Rollout (label
//     rollouts-pod-template-hash) gives the Deployment's or Rollout's name: the ReplicaSet's name less the
//     "-<hash>" suffix, so old and new revisions (a rolling update, a canary) share one Lease;
//   - a Job is refused: each Job, and each run of a CronJob (a Job named "<cronjob>-<minutes>"), would get a
//     Lease of its own that nothing deletes, and overlapping runs would not exclude each other;
//   - any other owner (StatefulSet, DaemonSet, a ReplicaSet of its own, a custom controller) gives its own name.
//
// The pod itself has no name yet at admission, so a pod without an owner must name its Lease.
func leaseNameFromOwner(pod *corev1.Pod) (string, error) {
	owner := controllerOf(pod)
	if owner == nil {
		return "", fmt.Errorf("annotation %s: required for a pod without an owner (a Deployment, StatefulSet or other controller); set it to the Lease name the replicas share", contract.AnnotationLeaseName)
	}
	switch owner.Kind {
	case "ReplicaSet":
		for _, label := range []string{appsv1.DefaultDeploymentUniqueLabelKey, rolloutsHashLabel} {
			if hash := pod.Labels[label]; hash != "" {
				if name, ok := strings.CutSuffix(owner.Name, "-"+hash); ok && name != "" {
					return name, nil
				}
			}
		}
	case "Job":
		return "", fmt.Errorf("annotation %s: required for a pod of Job %q: every Job, and every run of a CronJob, is a new Job with a new name, so a Lease named after it would be left behind by each run and would not keep overlapping runs apart; set %s in the pod template (the CronJob's jobTemplate) to the Lease the runs share",
			contract.AnnotationLeaseName, owner.Name, contract.AnnotationLeaseName)
	}
	return owner.Name, nil
}

// controllerOf returns the pod's controlling owner, or its first owner when none is marked as the controller.
func controllerOf(pod *corev1.Pod) *metav1.OwnerReference {
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		return ref
	}
	if len(pod.OwnerReferences) > 0 {
		return &pod.OwnerReferences[0]
	}
	return nil
}

// ownedByWorkload reports whether the pod is a replica of a Deployment (through a ReplicaSet with a
// pod-template-hash) or of a StatefulSet: the pods a namespace's enforce policy applies to.
func ownedByWorkload(pod *corev1.Pod) bool {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil {
		return false
	}
	switch owner.Kind {
	case "ReplicaSet":
		return pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != ""
	case "StatefulSet":
		return true
	}
	return false
}
