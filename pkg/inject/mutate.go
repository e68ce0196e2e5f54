// Package inject decides whether a pod takes part in leader election and, if it does, returns it with the
// elector sidecar, its probes and its credentials. It is a pure function of (Pod, Config): no I/O, no clock.
package inject

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/leader-election/leader-election/pkg/contract"
)

// PolicyError refuses a pod because a namespace policy forbids what it asks for.
type PolicyError struct{ Message string }

func (e *PolicyError) Error() string { return e.Message }

// Mutate returns the pod with the elector injected and changed=true, or the pod itself and changed=false when it
// does not take part or was injected already (reinvocation; changed=true only to drop a copied role label), or
// an error that says why the pod is refused.
// enforced is true for pods of a namespace labelled leader-election/enforce="true".
func Mutate(pod *corev1.Pod, cfg Config, enforced bool) (out *corev1.Pod, changed bool, err error) {
	takesPart, err := takesPart(pod, enforced)
	if err != nil || !takesPart {
		return pod, false, err
	}
	if err := refuseUnsupported(pod, wayOut(pod)); err != nil {
		return pod, false, err
	}
	if hasContainer(pod, contract.ContainerName) {
		if pod.Annotations[contract.AnnotationInjected] == "" {
			return pod, false, fmt.Errorf("container name %q is reserved for the injected elector; rename the pod's container", contract.ContainerName)
		}
		if err := recognise(pod, cfg); err != nil {
			return pod, false, err
		}
		if _, set := pod.Labels[contract.LabelRole]; set { // a copy of the leader pod (a restore, say)
			out = pod.DeepCopy()
			delete(out.Labels, contract.LabelRole)
			return out, true, nil
		}
		return pod, false, nil
	}
	out, err = inject(pod, cfg, nil)
	if err != nil {
		return pod, false, err
	}
	return out, true, nil
}

// inject builds the injected pod. It never changes what the user wrote: it sets labels, annotations and the
// ServiceAccount name, and appends volumes and containers whose names and ports fit beside the user's. kept, when
// not nil, is the health check of an earlier injection of this pod (reinvocation), used instead of resolving it.
func inject(pod *corev1.Pod, cfg Config, kept *keptHealth) (*corev1.Pod, error) {
	s, err := settingsFor(pod, cfg, kept)
	if err != nil {
		return nil, err
	}

	out := pod.DeepCopy()
	// The ServiceAccount admission plugin sets this before webhooks run; set it where it did not run, because a
	// projected token needs a named account, and the RoleBinding names this one.
	if out.Spec.ServiceAccountName == "" {
		out.Spec.ServiceAccountName = "default"
	}
	token := existingTokenVolume(out)
	if token == "" {
		token = tokenVolumeName
		out.Spec.Volumes = append(out.Spec.Volumes, tokenVolume())
	}
	out.Spec.Volumes = append(out.Spec.Volumes, podInfoVolume())
	native := cfg.Sidecar == SidecarNative
	if native {
		out.Spec.InitContainers = append(out.Spec.InitContainers, electorContainer(s, true, token))
	} else {
		out.Spec.Containers = append(out.Spec.Containers, electorContainer(s, false, token))
	}
	if err := fitInjected(pod, out); err != nil {
		return nil, err
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[contract.LabelMember] = "true"
	// Only the leader-label controller gives the role, to the Lease holder: a new pod carrying it (a template
	// copied from the leader pod, or a forgery) would be a Service endpoint beside the leader until the controller
	// caught up. The ValidatingAdmissionPolicy leader-election-pod-labels refuses a pod that still carries it, so
	// stripping it here keeps such pods running. An injected pod sent with it again loses it the same way (Mutate).
	delete(out.Labels, contract.LabelRole)
	out.Annotations[contract.AnnotationLeaseName] = s.LeaseName
	out.Annotations[contract.AnnotationMesh] = s.Mesh
	out.Annotations[contract.AnnotationHealthGate] = s.HealthGate
	out.Annotations[contract.AnnotationInjected] = cfg.Version + "/" + settingsHash(s, cfg.Sidecar)
	return out, nil
}

// takesPart applies the opt-in annotation and the namespace policy.
func takesPart(pod *corev1.Pod, enforced bool) (bool, error) {
	v, set := pod.Annotations[contract.AnnotationEnabled]
	if set && v != "true" && v != "false" {
		return false, &AnnotationError{Key: contract.AnnotationEnabled, Value: v, Want: `want "true" or "false"`}
	}
	if enforced && ownedByWorkload(pod) {
		if v == "false" {
			return false, &PolicyError{Message: fmt.Sprintf(
				"namespace policy %s=\"true\": every Deployment and StatefulSet replica in this namespace takes part in leader election, so annotation %s=\"false\" is not allowed here",
				contract.LabelEnforce, contract.AnnotationEnabled)}
		}
		return true, nil
	}
	return v == "true", nil
}

// refuseUnsupported refuses the pods the elector cannot serve safely, naming the field, why, and the way out.
func refuseUnsupported(pod *corev1.Pod, wayOut string) error {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return fmt.Errorf("spec.os.name is %q: the elector is a Linux image with a Linux-only securityContext, so it cannot run in a Windows pod; leader election is not available for Windows pods (%s)",
			pod.Spec.OS.Name, wayOut)
	}
	if pod.Spec.NodeSelector[corev1.LabelOSStable] == string(corev1.Windows) {
		return fmt.Errorf("spec.nodeSelector %s is %q: the elector is a Linux image, so it cannot run in a Windows pod; leader election is not available for Windows pods (%s)",
			corev1.LabelOSStable, corev1.Windows, wayOut)
	}
	if pod.Spec.HostNetwork {
		return fmt.Errorf("spec.hostNetwork is true: the elector would listen on the node's address, where its port becomes a hostPort (one such pod per node across all workloads) and every process on the node could reach its endpoints, including stepping down; leader election is not available for host-network pods (%s)",
			wayOut)
	}
	return nil
}

// wayOut tells the user of a pod that cannot take part what to change: its opt-in, or, where the namespace's
// policy enrolled it without one, where to run it.
func wayOut(pod *corev1.Pod) string {
	if pod.Annotations[contract.AnnotationEnabled] == "true" {
		return "remove annotation " + contract.AnnotationEnabled
	}
	return fmt.Sprintf("namespace policy %s=\"true\" enrols every Deployment and StatefulSet replica here; run this workload in a namespace without that label", contract.LabelEnforce)
}

// settingsHash identifies what was injected, so that a changed configuration is visible on the pod. It runs
// on every admission, so the digest's input is built in one stack buffer from fixed-width numbers (durations
// in nanoseconds, CPU in millicores, memory in bytes) rather than formatted strings: one allocation, the result.
func settingsHash(s Settings, mode SidecarMode) string {
	buf := make([]byte, 0, 1024)
	handover := "false"
	if s.Handover {
		handover = "true"
	}
	for _, str := range []string{s.LeaseName, s.Traffic, s.Image, string(mode), s.Mesh, s.AppCheck, s.HealthGate, handover} {
		buf = append(buf, str...)
		buf = append(buf, 0) // no string may run into the next
	}
	for _, n := range []int64{int64(s.LeaseDuration), int64(s.RenewDeadline), int64(s.RetryPeriod), int64(s.Port),
		s.CPURequest.MilliValue(), s.CPULimit.MilliValue(), s.MemoryRequest.Value(), s.MemoryLimit.Value(), s.ProxyUser} {
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	sum := sha256.Sum256(buf)
	var out [12]byte
	hex.Encode(out[:], sum[:6])
	return string(out[:])
}
