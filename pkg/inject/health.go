package inject

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/contract"
)

// The health gate's limits and wording (AnnotationHealthGate's values begin with one of these).
const (
	// maxFailureThreshold bounds AnnotationHealthFailureThreshold: beyond it a typo ("30s") is likelier than a need.
	maxFailureThreshold = 100
	gated               = "gated: "
	notGated            = "not gated: "
)

// healthCheckWant is what AnnotationHealthCheck accepts.
var healthCheckWant = fmt.Sprintf("want %q, %q, or a check of the pod's own port: http://:8080/healthz, https://:8443/ready, tcp://:5432 or grpc://:9090[/service] (a port name of the health container works too; a host, if any, only localhost or a loopback address)",
	contract.HealthCheckReadiness, contract.HealthCheckNone)

// resolveHealth decides what the elector checks before it leads, from the health annotations and the pod's
// readinessProbes, and records it in s.AppCheck (the probe as JSON, "" when not gated) and s.HealthGate (what,
// or why nothing, for the pod's AnnotationHealthGate).
//
// By default the first regular container with a readinessProbe (not Istio's proxy) is the health container and
// its probe is the check; a probe the elector cannot run (exec, a host outside the pod) or no probe at all leaves
// leadership ungated, which the gate annotation says, so pods admitted before health gating are admitted still.
// What a user asks for explicitly (AnnotationHealthCheck or AnnotationHealthContainer) is refused when it cannot
// be honoured. A port name the health container does not declare is always refused: the kubelet could not run
// that probe either.
func resolveHealth(pod *corev1.Pod, s *Settings) []error {
	ann := pod.Annotations
	mode, modeSet := ann[contract.AnnotationHealthCheck]
	if !modeSet {
		mode = contract.HealthCheckReadiness
	}
	containerName, containerSet := ann[contract.AnnotationHealthContainer]
	thresholdValue, thresholdSet := ann[contract.AnnotationHealthFailureThreshold]

	if mode == contract.HealthCheckNone {
		var errs []error
		for _, key := range []string{contract.AnnotationHealthContainer, contract.AnnotationHealthFailureThreshold} {
			if _, set := ann[key]; set {
				errs = append(errs, &AnnotationError{Key: key, Value: ann[key],
					Want: fmt.Sprintf("want it unset: %s is %q, so no check runs", contract.AnnotationHealthCheck, contract.HealthCheckNone)})
			}
		}
		s.HealthGate = notGated + contract.AnnotationHealthCheck + " is " + contract.HealthCheckNone
		return errs
	}

	var errs []error
	var threshold int32
	if thresholdSet {
		n, err := strconv.ParseInt(thresholdValue, 10, 32)
		if err != nil || n < 1 || n > maxFailureThreshold {
			errs = append(errs, &AnnotationError{Key: contract.AnnotationHealthFailureThreshold, Value: thresholdValue,
				Want: fmt.Sprintf("want a whole number of failures in a row from 1 to %d", maxFailureThreshold)})
		} else {
			threshold = int32(n)
		}
	}

	var health *corev1.Container
	if containerSet {
		health = regularContainer(pod, containerName)
		if health == nil {
			errs = append(errs, &AnnotationError{Key: contract.AnnotationHealthContainer, Value: containerName,
				Want: "want the name of one of the pod's regular containers: " + strings.Join(regularContainerNames(pod), ", ")})
		}
	} else {
		health = firstWithReadinessProbe(pod)
	}

	if containerSet && health == nil {
		return errs // nothing to check or resolve port names against
	}
	probe, gate, err := resolveCheck(pod, mode, modeSet || containerSet, health)
	if err != nil {
		return append(errs, err)
	}
	s.HealthGate = gate
	if probe == nil && threshold > 0 {
		errs = append(errs, &AnnotationError{Key: contract.AnnotationHealthFailureThreshold, Value: thresholdValue,
			Want: "want it only with a health check, and no check runs: " + strings.TrimPrefix(gate, notGated)})
	}
	if probe != nil && len(errs) == 0 {
		if thresholdSet {
			probe.FailureThreshold = threshold
		}
		s.AppCheck = appcheck.Encode(appcheck.WithDefaults(*probe))
	}
	return errs
}

// resolveCheck turns AnnotationHealthCheck's mode into the check (nil when not gated) and the health gate's
// text: the health container's readinessProbe, or an explicit check. explicit is true when the user asked for
// a readinessProbe by annotation.
func resolveCheck(pod *corev1.Pod, mode string, explicit bool, health *corev1.Container) (*corev1.Probe, string, error) {
	if mode != contract.HealthCheckReadiness {
		if health == nil {
			health = firstRegularContainer(pod)
		}
		probe, err := explicitCheck(mode, health)
		if err != nil {
			return nil, "", err
		}
		return &probe, gated + contract.AnnotationHealthCheck, nil
	}
	if health == nil || health.ReadinessProbe == nil {
		why := "no regular container has a readinessProbe"
		if health != nil {
			why = fmt.Sprintf("container %q has no readinessProbe", health.Name)
		}
		if explicit {
			return nil, "", readinessError(pod, why)
		}
		return nil, notGated + why, nil
	}
	probe := readinessCheck(health.ReadinessProbe)
	if err := resolvePortName(&probe, health); err != nil {
		return nil, "", fmt.Errorf("the readinessProbe of container %q is the elector's health check, but %w; declare the port, use its number, or set %s to an explicit check or to %q",
			health.Name, err, contract.AnnotationHealthCheck, contract.HealthCheckNone)
	}
	if err := appcheck.Validate(probe); err != nil {
		if explicit {
			why := fmt.Sprintf("the elector cannot run the readinessProbe of container %q (%s)", health.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
			return nil, "", readinessError(pod, why)
		}
		// The gate annotation is read by people: the field at fault, not the whole explanation.
		what := "an exec readinessProbe"
		var field *appcheck.FieldError
		if probe.Exec == nil && errors.As(err, &field) {
			what = fmt.Sprintf("a readinessProbe with %s %s", field.Field, field.Value)
		}
		return nil, fmt.Sprintf("%scontainer %q has %s, which the elector cannot run (set %s to an http://, tcp:// or grpc:// check)",
			notGated, health.Name, what, contract.AnnotationHealthCheck), nil
	}
	return &probe, fmt.Sprintf("%sreadinessProbe of container %q", gated, health.Name), nil
}

// readinessError refuses a readiness check the user asked for explicitly, naming the annotations that asked.
func readinessError(pod *corev1.Pod, why string) error {
	keys := []string{}
	for _, key := range []string{contract.AnnotationHealthCheck, contract.AnnotationHealthContainer} {
		if v, ok := pod.Annotations[key]; ok {
			keys = append(keys, fmt.Sprintf("%s=%q", key, v))
		}
	}
	return fmt.Errorf("annotations %s ask for a readinessProbe as the health check, but %s; name a container with an httpGet, tcpSocket or grpc readinessProbe, set %s to an http://, tcp:// or grpc:// check, or to %q",
		strings.Join(keys, ", "), why, contract.AnnotationHealthCheck, contract.HealthCheckNone)
}

// readinessCheck copies what a check needs from a readinessProbe: its handler and timing.
func readinessCheck(p *corev1.Probe) corev1.Probe {
	c := p.DeepCopy()
	c.TerminationGracePeriodSeconds = nil // a liveness/startup setting, meaningless for a check
	return *c
}

// resolvePortName replaces a named port with the number the health container declares under that name, as the
// kubelet does when it runs the probe.
func resolvePortName(p *corev1.Probe, c *corev1.Container) error {
	var port *intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = &p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = &p.TCPSocket.Port
	default:
		return nil
	}
	if port.Type != intstr.String {
		return nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			*port = intstr.FromInt32(cp.ContainerPort)
			return nil
		}
	}
	return fmt.Errorf("port %q is not a port name of container %q (its ports: %s)", port.StrVal, c.Name, portNames(c))
}

// explicitCheck turns AnnotationHealthCheck's URL form into a probe with the kubelet's default timing:
// http(s)://[host]:port[/path[?query]], tcp://[host]:port, grpc://[host]:port[/service]. A port may be a name of
// the health container's ports.
func explicitCheck(v string, health *corev1.Container) (corev1.Probe, error) {
	bad := func(why string) error {
		return &AnnotationError{Key: contract.AnnotationHealthCheck, Value: v, Want: why + "; " + healthCheckWant}
	}
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return corev1.Probe{}, bad("not a check")
	}
	hostPort, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		hostPort, path = rest[:i], rest[i:]
	}
	host, portText, err := net.SplitHostPort(hostPort)
	if err != nil || portText == "" {
		return corev1.Probe{}, bad("no port")
	}
	if host != "" && !appcheck.IsLoopback(host) {
		return corev1.Probe{}, bad(fmt.Sprintf("host %q is outside the pod: the elector checks its own pod only", host))
	}
	port := intstr.Parse(portText)
	if port.Type == intstr.String {
		if health == nil {
			return corev1.Probe{}, bad(fmt.Sprintf("port name %q, but the pod has no container to resolve it against", portText))
		}
		p := corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
		if err := resolvePortName(&p, health); err != nil {
			return corev1.Probe{}, &AnnotationError{Key: contract.AnnotationHealthCheck, Value: v, Want: err.Error() + "; name a declared port or use a number"}
		}
		port = p.TCPSocket.Port
	}

	var probe corev1.Probe
	switch scheme {
	case "http", "https":
		probe.HTTPGet = &corev1.HTTPGetAction{Port: port, Host: host, Path: path, Scheme: corev1.URIScheme(strings.ToUpper(scheme))}
	case "tcp":
		if path != "" {
			return corev1.Probe{}, bad(fmt.Sprintf("a tcp check has no path (%q)", path))
		}
		probe.TCPSocket = &corev1.TCPSocketAction{Port: port, Host: host}
	case "grpc":
		if host != "" {
			return corev1.Probe{}, bad("a grpc check goes to the pod IP, like the kubelet's, and takes no host")
		}
		service := strings.TrimPrefix(path, "/")
		if strings.ContainsAny(service, "/?#") {
			return corev1.Probe{}, bad(fmt.Sprintf("%q is not a gRPC service name", service))
		}
		probe.GRPC = &corev1.GRPCAction{Port: port.IntVal, Service: &service}
	default:
		return corev1.Probe{}, bad(fmt.Sprintf("scheme %q", scheme))
	}
	if err := appcheck.Validate(probe); err != nil {
		return corev1.Probe{}, bad(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return probe, nil
}

// regularContainer returns the pod's regular container with the given name, or nil.
func regularContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// firstWithReadinessProbe is the default health container: the first regular container with a readinessProbe,
// Istio's classic proxy excepted (its readiness is the proxy's, not the application's).
func firstWithReadinessProbe(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if c := &pod.Spec.Containers[i]; c.ReadinessProbe != nil && c.Name != istioProxyContainer {
			return c
		}
	}
	return nil
}

// firstRegularContainer resolves an explicit check's port names when no container has a readinessProbe.
func firstRegularContainer(pod *corev1.Pod) *corev1.Container {
	if len(pod.Spec.Containers) == 0 {
		return nil
	}
	return &pod.Spec.Containers[0]
}

func regularContainerNames(pod *corev1.Pod) []string {
	names := make([]string, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

func portNames(c *corev1.Container) string {
	var names []string
	for _, p := range c.Ports {
		if p.Name != "" {
			names = append(names, fmt.Sprintf("%s=%d", p.Name, p.ContainerPort))
		}
	}
	if len(names) == 0 {
		return "none named"
	}
	return strings.Join(names, ", ")
}

// resolveHandover applies AnnotationHandover.
func resolveHandover(pod *corev1.Pod, s *Settings) error {
	switch v, set := pod.Annotations[contract.AnnotationHandover]; {
	case !set, v == "true":
		s.Handover = true
	case v == "false":
		s.Handover = false
	default:
		return &AnnotationError{Key: contract.AnnotationHandover, Value: v, Want: `want "true" (hand the Lease to a chosen healthy successor) or "false" (release it to a race)`}
	}
	return nil
}
