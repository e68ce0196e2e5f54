package cluster

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// RolledOut is what `kubectl rollout status` waits for, plus the Available condition: the controller has seen
// the latest spec, and want replicas exist, all updated and available.
func RolledOut(d *appsv1.Deployment, want int32) bool {
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
		return false
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != corev1.ConditionTrue {
			return false
		}
	}
	return true
}
