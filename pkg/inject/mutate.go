// Package inject decides whether a pod takes part in leader election and, if it does, returns it with the
// elector sidecar, its probes and its credentials. It is a pure function of (Pod, Config): no I/O, no clock.
package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// PolicyError refuses a pod because a namespace policy forbids what it asks for.
type PolicyError struct{ Message string }

func (e *PolicyError) Error() string { return e.Message }

// Mutate returns the pod with the elector injected and changed=true, or the pod itself and changed=false when it
// does not take part or was injected already (reinvocation), or an error that says why the pod is refused.
// enforced is true for pods of a namespace labelled leader-election/enforce="true".
func Mutate(pod *corev1.Pod, cfg Config, enforced bool) (out *corev1.Pod, changed bool, err error) {
	takesPart, err := takesPart(pod, enforced)
	if err != nil || !takesPart {
		return pod, false, err
	}
	if hasContainer(pod, ContainerName) {
		if pod.Annotations[AnnotationInjected] != "" {
			return pod, false, nil
		}
		return pod, false, fmt.Errorf("container name %q is reserved for the injected elector; rename the pod's container", ContainerName)
	}
	s, err := settingsFor(pod, cfg)
	if err != nil {
		return pod, false, err
	}

	out = pod.DeepCopy()
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
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[LabelMember] = "true"
	out.Annotations[AnnotationLeaseName] = s.LeaseName
	out.Annotations[AnnotationInjected] = cfg.Version + "/" + settingsHash(s, cfg.Sidecar)
	return out, true, nil
}

// takesPart applies the opt-in annotation and the namespace policy.
func takesPart(pod *corev1.Pod, enforced bool) (bool, error) {
	v, set := pod.Annotations[AnnotationEnabled]
	if set && v != "true" && v != "false" {
		return false, &AnnotationError{Key: AnnotationEnabled, Value: v, Want: `want "true" or "false"`}
	}
	if enforced && ownedByWorkload(pod) {
		if v == "false" {
			return false, &PolicyError{Message: fmt.Sprintf(
				"namespace policy %s=\"true\": every Deployment and StatefulSet replica in this namespace takes part in leader election, so annotation %s=\"false\" is not allowed here",
				LabelEnforce, AnnotationEnabled)}
		}
		return true, nil
	}
	return v == "true", nil
}

// settingsHash identifies what was injected, so that a changed configuration is visible on the pod.
func settingsHash(s Settings, mode SidecarMode) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%s|%s|%d|%s|%s|%s|%s|%s|%s", s.LeaseName, s.LeaseDuration, s.RenewDeadline, s.RetryPeriod,
		s.Port, s.Traffic, s.Image, s.CPURequest.String(), s.MemoryRequest.String(), s.MemoryLimit.String(), mode)
	return hex.EncodeToString(h.Sum(nil))[:12]
}
