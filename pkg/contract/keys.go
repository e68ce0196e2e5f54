// Package contract holds the names the project's parts agree on with users and with each other: the annotation
// and label keys on pods and namespaces, the injected container's name and the elector's environment variables.
// The webhook (pkg/inject), the label controller (pkg/leaderlabel), the admission policies (pkg/admissionpolicy),
// the elector (pkg/elector) and the tests read them from here, so that none imports another only for a name.
package contract

// PolicyInjectedSuffix follows the version in AnnotationInjected where admission mode "policy" injected the pod:
// the MutatingAdmissionPolicies' CEL has no hash function to write the webhook's settings hash with.
const PolicyInjectedSuffix = "policy"

// Annotation and label keys: the product's contract with users (README "Annotations").
const (
	// Prefix starts every key this project reads or writes.
	Prefix = "leader-election/"

	// AnnotationEnabled opts a pod in ("true") or out ("false").
	AnnotationEnabled = Prefix + "enabled"
	// AnnotationLeaseName names the Lease the replicas compete for.
	AnnotationLeaseName = Prefix + "lease-name"
	// AnnotationLeaseDuration is how long a Lease is valid after its last renewal.
	AnnotationLeaseDuration = Prefix + "lease-duration"
	// AnnotationRenewDeadline is how long a leader keeps trying to renew before it steps down.
	AnnotationRenewDeadline = Prefix + "renew-deadline"
	// AnnotationRetryPeriod is how often the leader renews.
	AnnotationRetryPeriod = Prefix + "retry-period"
	// AnnotationPort is the elector's HTTP port.
	AnnotationPort = Prefix + "port"
	// AnnotationTraffic chooses how Services reach the leader: TrafficLabel or TrafficReadiness.
	AnnotationTraffic = Prefix + "traffic"
	// AnnotationImage overrides the elector image.
	AnnotationImage = Prefix + "image"
	// AnnotationCPURequest overrides the elector's CPU request.
	AnnotationCPURequest = Prefix + "cpu-request"
	// AnnotationCPULimit overrides the elector's CPU limit.
	AnnotationCPULimit = Prefix + "cpu-limit"
	// AnnotationMemoryRequest overrides the elector's memory request.
	AnnotationMemoryRequest = Prefix + "memory-request"
	// AnnotationMemoryLimit overrides the elector's memory limit.
	AnnotationMemoryLimit = Prefix + "memory-limit"
	// AnnotationMesh says whether the elector bypasses a service mesh's proxy: MeshIstio or MeshNone. The webhook
	// writes the value it resolved, so a reinvocation rebuilds the same container.
	AnnotationMesh = Prefix + "mesh"
	// AnnotationHealthCheck says what the elector checks before it leads (issue 13): HealthCheckReadiness (the
	// health container's readinessProbe), HealthCheckNone, or an explicit check such as http://:8080/healthz.
	AnnotationHealthCheck = Prefix + "health-check"
	// AnnotationHealthContainer names the container whose readinessProbe (and port names) the check uses.
	AnnotationHealthContainer = Prefix + "health-container"
	// AnnotationHealthFailureThreshold overrides the check's failureThreshold: failures in a row before the
	// application counts as unhealthy and its elector hands leadership over.
	AnnotationHealthFailureThreshold = Prefix + "health-failure-threshold"
	// AnnotationHealthGate is written by the webhook: whether leadership follows a health check, which one, or why
	// not (an exec readinessProbe, none at all), so what the elector gates on is visible on the pod.
	AnnotationHealthGate = Prefix + "health-gate"
	// AnnotationHandover chooses a direct handover to a chosen successor ("true", the default) or releasing the
	// Lease to a race ("false") when the leader steps down.
	AnnotationHandover = Prefix + "handover"
	// AnnotationInjected is written by the webhook: "<version>/<config hash>".
	AnnotationInjected = Prefix + "injected"

	// LabelEnforce on a namespace makes every Deployment and StatefulSet replica there take part.
	LabelEnforce = Prefix + "enforce"
	// LabelMember marks every injected pod, so the leader-label controller watches only these pods.
	LabelMember = Prefix + "member"
	// LabelRole is set to RoleLeader on the pod holding the Lease (traffic mode "label"); Services select it.
	LabelRole = Prefix + "role"
	// RoleLeader is LabelRole's value on the leader.
	RoleLeader = "leader"
)

// Traffic modes.
const (
	// TrafficLabel keeps every healthy replica ready (so rollouts complete) and routes Services by LabelRole.
	TrafficLabel = "label"
	// TrafficReadiness makes only the leader ready: simplest, but Deployments never report all replicas available.
	TrafficReadiness = "readiness"
)

// AnnotationHealthCheck's values besides an explicit check.
const (
	// HealthCheckReadiness hands the elector the health container's readinessProbe (the default).
	HealthCheckReadiness = "readiness"
	// HealthCheckNone leaves leadership ungated by the application's health.
	HealthCheckNone = "none"
)

// Mesh modes (AnnotationMesh).
const (
	// MeshIstio runs the elector as Istio's proxy user, whose traffic Istio's iptables rules do not capture, so
	// the elector reaches the API server even after a classic istio-proxy container has exited.
	MeshIstio = "istio"
	// MeshNone leaves the elector's traffic to whatever the pod's network does.
	MeshNone = "none"
)

// ContainerName is the injected sidecar's name.
const ContainerName = "leader-elector"

// Environment variables of the elector (README "The elector's contract").
const (
	EnvPodName       = "POD_NAME"
	EnvPodUID        = "POD_UID"
	EnvNamespace     = "POD_NAMESPACE"
	EnvLeaseName     = "LEASE_NAME"
	EnvLeaseDuration = "LEASE_DURATION"
	EnvRenewDeadline = "RENEW_DEADLINE"
	EnvRetryPeriod   = "RETRY_PERIOD"
	EnvPort          = "ELECTOR_PORT"
	EnvReadiness     = "ELECTOR_READINESS"
	// EnvPodLabelsFile points the elector at the pod's labels (downward API volume), so that a replica labelled
	// leader-election/role=leader that is not a fresh leader reports unready.
	EnvPodLabelsFile = "ELECTOR_POD_LABELS_FILE"
	// EnvHandover is "true" (hand the Lease to a chosen successor) or "false" (release it to a race).
	EnvHandover = "ELECTOR_HANDOVER"
	// EnvAppCheck is the application's health check as JSON of a probe; absent when leadership is not gated.
	EnvAppCheck = "ELECTOR_APP_CHECK"
	// EnvPodIP is the pod's IP (downward API status.podIP), where a check without a host goes.
	EnvPodIP = "POD_IP"
)
