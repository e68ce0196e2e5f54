package inject

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// leaseNameFromOwner derives the Lease name from the pod's owner, so that every replica of one workload competes
// for the same Lease without configuration: a ReplicaSet made by a Deployment gives the Deployment's name (its
// own name less the "-<pod-template-hash>" suffix), anything else its own name. The pod itself has no name yet
// at admission, so a pod without an owner must name its Lease.
func leaseNameFromOwner(pod *corev1.Pod) (string, error) {
	owner := controllerOf(pod)
	if owner == nil {
		return "", fmt.Errorf("annotation %s: required for a pod without an owner (a Deployment, StatefulSet or other controller); set it to the Lease name the replicas share", AnnotationLeaseName)
	}
	if owner.Kind == "ReplicaSet" {
		if hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; hash != "" {
			if name, ok := strings.CutSuffix(owner.Name, "-"+hash); ok && name != "" {
				return name, nil
			}
		}
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
