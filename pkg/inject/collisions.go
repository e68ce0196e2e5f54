package inject

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/leader-election/leader-election/pkg/contract"
)

// fitInjected makes everything inject appended to out fit beside what the user wrote in pod: an appended volume
// whose name the pod already uses is renamed to the first free "<name>-<n>" (with the appended containers' mounts),
// and an appended container whose name, port name or port (number and protocol) the pod already uses is refused, naming
// the user's container. It looks only at what was appended, so every volume, container and port a future
// change adds is covered without being listed here.
func fitInjected(pod, out *corev1.Pod) error {
	added := appendedContainers(pod, out)

	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = true
	}
	for i := len(pod.Spec.Volumes); i < len(out.Spec.Volumes); i++ {
		v := &out.Spec.Volumes[i]
		if volumes[v.Name] {
			free := freeName(v.Name, volumes)
			renameMounts(added, v.Name, free)
			v.Name = free
		}
		volumes[v.Name] = true
	}

	users := map[string]bool{}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			users[c.Name] = true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		users[c.Name] = true
	}
	for _, c := range added {
		if users[c.Name] {
			return fmt.Errorf("container name %q is reserved for the injected elector; rename the pod's container %q", c.Name, c.Name)
		}
		for _, p := range c.Ports {
			if owner := namedBy(pod, p.Name); owner != "" {
				return fmt.Errorf("port name %q is reserved for the injected elector; rename the port of the pod's container %q", p.Name, owner)
			}
			if owner := declaredBy(pod, p); owner != "" {
				return &AnnotationError{Key: contract.AnnotationPort, Value: strconv.Itoa(int(p.ContainerPort)),
					Want: fmt.Sprintf("port %d/%s is already declared by container %q; choose a free port", p.ContainerPort, protocolOf(p), owner)}
			}
		}
	}
	return nil
}

// appendedContainers returns pointers to the containers out has beyond pod's, init containers first.
func appendedContainers(pod, out *corev1.Pod) []*corev1.Container {
	var added []*corev1.Container
	for i := len(pod.Spec.InitContainers); i < len(out.Spec.InitContainers); i++ {
		added = append(added, &out.Spec.InitContainers[i])
	}
	for i := len(pod.Spec.Containers); i < len(out.Spec.Containers); i++ {
		added = append(added, &out.Spec.Containers[i])
	}
	return added
}

// freeName returns name-2, name-3, ... whichever is first not in taken.
func freeName(name string, taken map[string]bool) string {
	for n := 2; ; n++ {
		if candidate := name + "-" + strconv.Itoa(n); !taken[candidate] {
			return candidate
		}
	}
}

// renameMounts points the containers' mounts of volume from at volume to.
func renameMounts(containers []*corev1.Container, from, to string) {
	for _, c := range containers {
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == from {
				c.VolumeMounts[i].Name = to
			}
		}
	}
}

// declaredBy returns the name of the pod's container (init or regular) that declares the same port number with
// the same protocol, or "": UDP 8642 and TCP 8642 are different sockets and may coexist.
func declaredBy(pod *corev1.Pod, port corev1.ContainerPort) string {
	return portOwner(pod, func(p corev1.ContainerPort) bool {
		return p.ContainerPort == port.ContainerPort && protocolOf(p) == protocolOf(port)
	})
}

// namedBy returns the name of the pod's container (init or regular) that declares a port with the given name, or
// "": the API server only warns about a duplicate, and a Service's targetPort or the PodMonitor's port, which
// select by name, would then reach the user's container as well as the elector.
func namedBy(pod *corev1.Pod, name string) string {
	return portOwner(pod, func(p corev1.ContainerPort) bool { return name != "" && p.Name == name })
}

// portOwner returns the name of the first container (init or regular) with a port that matches, or "".
func portOwner(pod *corev1.Pod, matches func(corev1.ContainerPort) bool) string {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if matches(p) {
					return c.Name
				}
			}
		}
	}
	return ""
}

// protocolOf is the port's protocol, TCP when unset (the API server's default).
func protocolOf(p corev1.ContainerPort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}
