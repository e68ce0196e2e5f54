package inject

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/leader-election/leader-election/pkg/contract"
)

// Placeholders returns settings whose values appear nowhere else in an elector built from them, so that a
// generator can find each one in the built container and replace it with an expression (pkg/admissionpolicy turns
// them into CEL). Durations are distinct and print in different Go formats; the port and the proxy user are
// numbers no other field holds.
func Placeholders() Settings {
	return Settings{
		LeaseName:     "placeholder-lease-name",
		LeaseDuration: 111 * time.Second,
		RenewDeadline: 77 * time.Second,
		RetryPeriod:   33 * time.Second,
		Port:          54321,
		Traffic:       contract.TrafficLabel,
		Image:         "placeholder/image:tag",
		CPURequest:    resource.MustParse("1"),
		CPULimit:      resource.MustParse("2"),
		MemoryRequest: resource.MustParse("3"),
		MemoryLimit:   resource.MustParse("4"),
		Mesh:          contract.MeshIstio,
		ProxyUser:     987654,
		AppCheck:      "placeholder-app-check",
		HealthGate:    "placeholder-health-gate", // an annotation, not in the elector: the generator computes it apart
		// true, not false: a zero value could not tell the generator that the setting exists; ELECTOR_HANDOVER's
		// "true" is the only string "true" in the elector.
		Handover: true,
	}
}

// PlaceholderTokenVolume is the token volume's name in Facts' elector: the name depends on the pod.
const PlaceholderTokenVolume = "placeholder-token-volume"

// PolicyFacts is everything the admission policies of admission mode "policy" must do exactly as Mutate does:
// the elector built by the same code from Placeholders, the volumes, and the names and numbers Mutate decides
// with. The policies are generated from it (pkg/admissionpolicy), so the two modes have one source of truth.
type PolicyFacts struct {
	// Elector is the native sidecar built from Placeholders() with traffic mode "label"; ElectorReadiness the same
	// with traffic mode "readiness" (the fields that differ depend on the traffic mode); ElectorRegular and
	// ElectorRegularReadiness the same as a regular container (sidecar mode "container").
	Elector, ElectorReadiness, ElectorRegular, ElectorRegularReadiness corev1.Container
	// UngatedEnv is the elector's env when leadership is not health-gated (Placeholders' AppCheck empty);
	// GatedNoMeshEnv its env when gated outside Istio. Elector's own env is the gated one under Istio: the env
	// vars the check adds depend on both.
	UngatedEnv, GatedNoMeshEnv []corev1.EnvVar
	// NonRootUID is the user the elector runs as outside Istio; IstioProxyUser Istio's default proxy user.
	NonRootUID, IstioProxyUser int64
	// TokenVolume and PodInfoVolume are the volumes Mutate appends (the token volume only when the pod has none).
	TokenVolume, PodInfoVolume corev1.Volume
	// TokenMountPath is where a ServiceAccount token is mounted; PodInfoMountPath the labels file's directory.
	TokenMountPath, PodInfoMountPath string
	// IstioProxyContainer is the name of Istio's proxy container.
	IstioProxyContainer string
	// DeploymentHashLabels are the labels whose value a ReplicaSet owner's name ends with, in the order tried.
	DeploymentHashLabels []string
	// PortName is the elector port's name.
	PortName string
}

// Facts returns the PolicyFacts of this version of Mutate.
func Facts() PolicyFacts {
	placeholders := Placeholders()
	readiness := placeholders
	readiness.Traffic = contract.TrafficReadiness
	none := placeholders
	none.Mesh = contract.MeshNone
	ungated := placeholders
	ungated.AppCheck = ""
	return PolicyFacts{
		Elector:                 electorContainer(placeholders, true, PlaceholderTokenVolume),
		ElectorReadiness:        electorContainer(readiness, true, PlaceholderTokenVolume),
		ElectorRegular:          electorContainer(placeholders, false, PlaceholderTokenVolume),
		ElectorRegularReadiness: electorContainer(readiness, false, PlaceholderTokenVolume),
		UngatedEnv:              electorContainer(ungated, true, PlaceholderTokenVolume).Env,
		GatedNoMeshEnv:          electorContainer(none, true, PlaceholderTokenVolume).Env,
		NonRootUID:              *electorContainer(none, true, PlaceholderTokenVolume).SecurityContext.RunAsUser,
		IstioProxyUser:          istioProxyUser,
		TokenVolume:             tokenVolume(),
		PodInfoVolume:           podInfoVolume(),
		TokenMountPath:          tokenMountPath,
		PodInfoMountPath:        podInfoMountPath,
		IstioProxyContainer:     istioProxyContainer,
		DeploymentHashLabels:    []string{appsv1.DefaultDeploymentUniqueLabelKey, rolloutsHashLabel},
		PortName:                portName,
	}
}
