package inject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
)

// The elector's HTTP endpoints that the probes call (README "The elector's contract").
const (
	readyzPath  = "/readyz"
	healthzPath = "/healthz"
	portName    = "elector-http"
)

// Where a ServiceAccount token is mounted in every container, and the volume we add when the pod has none.
const (
	tokenMountPath  = "/var/run/secrets/kubernetes.io/serviceaccount"
	tokenVolumeName = "leader-election-token"
	// tokenExpirationSeconds matches the kubelet's default bound-token lifetime (it refreshes at 80%).
	tokenExpirationSeconds = 3607
)

// The pod's labels, as the downward API keeps them current in a file of the elector's own, read-only.
const (
	podInfoVolumeName = "leader-election-podinfo"
	podInfoMountPath  = "/etc/leader-election/podinfo"
	podLabelsFile     = podInfoMountPath + "/labels"
)

// nonRootUID is the distroless "nonroot" user the elector image runs as.
const nonRootUID = 65532

// electorContainer builds the sidecar from the pod's settings. restartPolicy Always makes it a native sidecar.
func electorContainer(s Settings, native bool, tokenVolume string) corev1.Container {
	readiness := "member"
	if s.Traffic == contract.TrafficReadiness {
		readiness = "leader"
	}
	port := intstr.FromInt32(s.Port)
	user := int64(nonRootUID)
	if s.Mesh == contract.MeshIstio {
		user = s.ProxyUser
	}
	c := corev1.Container{
		Name:            contract.ContainerName,
		Image:           s.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Env: []corev1.EnvVar{
			fieldEnv(contract.EnvPodName, "metadata.name"),
			fieldEnv(contract.EnvPodUID, "metadata.uid"),
			fieldEnv(contract.EnvNamespace, "metadata.namespace"),
			{Name: contract.EnvLeaseName, Value: s.LeaseName},
			{Name: contract.EnvLeaseDuration, Value: s.LeaseDuration.String()},
			{Name: contract.EnvRenewDeadline, Value: s.RenewDeadline.String()},
			{Name: contract.EnvRetryPeriod, Value: s.RetryPeriod.String()},
			{Name: contract.EnvPort, Value: strconv.Itoa(int(s.Port))},
			{Name: contract.EnvReadiness, Value: readiness},
			{Name: contract.EnvPodLabelsFile, Value: podLabelsFile},
			{Name: contract.EnvHandover, Value: strconv.FormatBool(s.Handover)},
		},
		Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: s.Port, Protocol: corev1.ProtocolTCP}},
		// Readiness is checked every second and fails on the first miss: a leader that stopped renewing must
		// leave the Service before another replica's lease can expire (lease-duration - renew-deadline later).
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: readyzPath, Port: port, Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			FailureThreshold: 1,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: healthzPath, Port: port, Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds:    10,
			TimeoutSeconds:   2,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		},
		Resources: corev1.ResourceRequirements{
			Requests: resourceList(s.CPURequest, s.MemoryRequest),
			Limits:   resourceList(s.CPULimit, s.MemoryLimit),
		},
		// Everything PodSecurity "restricted" asks for, so the elector never makes a pod less admissible.
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(user),
			RunAsGroup:               ptr.To(user),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		// Every field the API server would default is set, so a reinvocation can compare the stored container
		// with a fresh build field by field.
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts: []corev1.VolumeMount{
			{Name: tokenVolume, MountPath: tokenMountPath, ReadOnly: true},
			{Name: podInfoVolumeName, MountPath: podInfoMountPath, ReadOnly: true},
		},
	}
	if s.AppCheck != "" {
		// The check goes where the kubelet's probe would, the pod IP, except under Istio: there the elector runs
		// as the proxy's user, and Istio's iptables rules send that user's connections to the pod's own IP into
		// the proxy's inbound listener; loopback (the elector's default) reaches the application directly.
		if s.Mesh != contract.MeshIstio {
			c.Env = append(c.Env, fieldEnv(contract.EnvPodIP, "status.podIP"))
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: contract.EnvAppCheck, Value: s.AppCheck})
	}
	if native {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// resourceList holds the quantities that are set (a pod with pod-level resources may leave them unset), or nil.
func resourceList(cpu, memory resource.Quantity) corev1.ResourceList {
	list := corev1.ResourceList{}
	if !cpu.IsZero() {
		list[corev1.ResourceCPU] = cpu
	}
	if !memory.IsZero() {
		list[corev1.ResourceMemory] = memory
	}
	if len(list) == 0 {
		return nil
	}
	return list
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

// existingTokenVolume returns the name of the volume the ServiceAccount admission plugin mounted (a projected
// volume with a ServiceAccount token, mounted at the usual path), or "" when the pod has none: it set
// automountServiceAccountToken: false, or its ServiceAccount did.
func existingTokenVolume(pod *corev1.Pod) string {
	projectsToken := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil && src.ServiceAccountToken.Audience == "" {
				projectsToken[v.Name] = true
			}
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				if m.MountPath == tokenMountPath && projectsToken[m.Name] {
					return m.Name
				}
			}
		}
	}
	return ""
}

// tokenVolume is what the kubelet would mount for a ServiceAccount: a bound token, the cluster CA and the
// namespace. It is mounted into the elector alone, so the application keeps running without API credentials.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: tokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o444),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](tokenExpirationSeconds)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		},
	}}}
}

// podInfoVolume holds the pod's labels (metadata.labels) as a file the kubelet keeps current, for the elector.
func podInfoVolume() corev1.Volume {
	return corev1.Volume{Name: podInfoVolumeName, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		DefaultMode: ptr.To[int32](0o444),
		Items: []corev1.DownwardAPIVolumeFile{{
			Path:     "labels",
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels"},
		}},
	}}}
}

// hasContainer reports whether any container, init or regular, has the given name.
func hasContainer(pod *corev1.Pod, name string) bool {
	c, _ := containerNamed(pod, name)
	return c != nil
}

// containerNamed returns the pod's container with the given name (names are unique across init and regular
// containers), and whether it is an init container; nil when there is none.
func containerNamed(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}
