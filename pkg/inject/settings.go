package inject

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/leader-election/leader-election/pkg/contract"
)

// Settings is what one pod's elector runs with: the Config's defaults overridden by the pod's annotations.
type Settings struct {
	LeaseName                                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Port                                      int32
	Traffic                                   string
	Image                                     string
	CPURequest, CPULimit                      resource.Quantity
	MemoryRequest, MemoryLimit                resource.Quantity
	// Mesh is MeshIstio or MeshNone; ProxyUser is the user (and group) the elector runs as under MeshIstio.
	Mesh      string
	ProxyUser int64
	// AppCheck is the application's health check as ELECTOR_APP_CHECK's JSON ("" = leadership not gated);
	// HealthGate says what is checked, or why nothing (AnnotationHealthGate).
	AppCheck, HealthGate string
	// Handover is true when a stepping-down leader hands the Lease to a chosen successor.
	Handover bool
}

// AnnotationError is a refused annotation value; its message names the key, the value and what is accepted.
type AnnotationError struct {
	Key, Value, Want string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %q is not accepted: %s", e.Key, e.Value, e.Want)
}

// settingsFor resolves a pod's settings, validating every annotation it sets. All bad values are reported
// together, so a user fixes them in one round trip.
func settingsFor(pod *corev1.Pod, cfg Config, kept *keptHealth) (Settings, error) {
	ann := pod.Annotations
	s := Settings{
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		Port:          cfg.Port,
		Traffic:       cfg.Traffic,
		Image:         cfg.Image,
		CPURequest:    cfg.CPURequest,
		CPULimit:      cfg.CPULimit,
		MemoryRequest: cfg.MemoryRequest,
		MemoryLimit:   cfg.MemoryLimit,
	}
	var errs []error
	bad := func(key, want string) { errs = append(errs, &AnnotationError{Key: key, Value: ann[key], Want: want}) }

	if v, ok := ann[contract.AnnotationLeaseName]; ok {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			bad(contract.AnnotationLeaseName, "want a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters): "+strings.Join(msgs, "; "))
		} else {
			s.LeaseName = v
		}
	} else if name, err := leaseNameFromOwner(pod); err != nil {
		errs = append(errs, err)
	} else {
		s.LeaseName = name
	}

	durations := []struct {
		key string
		dst *time.Duration
	}{
		{contract.AnnotationLeaseDuration, &s.LeaseDuration},
		{contract.AnnotationRenewDeadline, &s.RenewDeadline},
		{contract.AnnotationRetryPeriod, &s.RetryPeriod},
	}
	timingsParsed := true
	for _, d := range durations {
		v, ok := ann[d.key]
		if !ok {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 {
			bad(d.key, "want a positive Go duration such as 15s, 1m or 500ms")
			timingsParsed = false
			continue
		}
		*d.dst = parsed
	}
	if timingsParsed {
		if err := checkTimings(s.LeaseDuration, s.RenewDeadline, s.RetryPeriod); err != nil {
			errs = append(errs, fmt.Errorf("annotations %s, %s, %s: %w (want 250ms <= retry-period < renew-deadline, renew-deadline >= 1s, "+
				"lease-duration whole seconds from 3s to 300s and at least renew-deadline + 2s)",
				contract.AnnotationLeaseDuration, contract.AnnotationRenewDeadline, contract.AnnotationRetryPeriod, err))
		}
	}

	if v, ok := ann[contract.AnnotationPort]; ok {
		p, err := strconv.ParseInt(v, 10, 32)
		if err != nil || p < 1 || p > 65535 {
			bad(contract.AnnotationPort, "want a port number from 1 to 65535")
		} else {
			s.Port = int32(p)
		}
	}

	if v, ok := ann[contract.AnnotationTraffic]; ok {
		if v != contract.TrafficLabel && v != contract.TrafficReadiness {
			bad(contract.AnnotationTraffic, fmt.Sprintf("want %q or %q", contract.TrafficLabel, contract.TrafficReadiness))
		} else {
			s.Traffic = v
		}
	}
	if v, ok := ann[contract.AnnotationImage]; ok {
		// Any Unicode space, not only ASCII ones: the API server refuses an image with leading or trailing
		// whitespace (a no-break space, a carriage return), naming a container the user never wrote.
		if v == "" || strings.IndexFunc(v, unicode.IsSpace) >= 0 {
			bad(contract.AnnotationImage, "want an image reference without whitespace, such as leader-election/elector:v0.1.0")
		} else {
			s.Image = v
		}
	}
	errs = append(errs, resolveResources(pod, &s)...)
	if err := resolveMesh(pod, &s); err != nil {
		errs = append(errs, err)
	}
	if kept != nil {
		errs = append(errs, kept.apply(&s)...)
	} else {
		errs = append(errs, resolveHealth(pod, &s)...)
	}
	if err := resolveHandover(pod, &s); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// resolveResources applies the resource annotations, checks that no limit is below its request, and keeps a
// Guaranteed pod Guaranteed: when every container of the pod has requests equal to limits for CPU and memory,
// the elector's requests are raised to its limits (the kubelet gives exclusive CPUs and the last place in the
// eviction order only to Guaranteed pods, and one Burstable container makes the whole pod Burstable).
//
// A pod with pod-level resources (spec.resources) has a budget its containers share, and the API server refuses
// container requests that add up to more: there the elector takes no resources of its own but those its
// annotations name, and the pod-level limits cap it.
func resolveResources(pod *corev1.Pod, s *Settings) []error {
	ann := pod.Annotations
	var errs []error
	podLevel := hasPodLevelResources(pod)
	if podLevel {
		s.CPURequest, s.CPULimit, s.MemoryRequest, s.MemoryLimit = resource.Quantity{}, resource.Quantity{}, resource.Quantity{}, resource.Quantity{}
	}
	quantities := []struct {
		key   string
		dst   *resource.Quantity
		bytes bool
	}{
		{contract.AnnotationCPURequest, &s.CPURequest, false},
		{contract.AnnotationCPULimit, &s.CPULimit, false},
		{contract.AnnotationMemoryRequest, &s.MemoryRequest, true},
		{contract.AnnotationMemoryLimit, &s.MemoryLimit, true},
	}
	for _, q := range quantities {
		v, ok := ann[q.key]
		if !ok {
			continue
		}
		parsed, err := resource.ParseQuantity(v)
		if err != nil || parsed.Sign() <= 0 {
			errs = append(errs, &AnnotationError{Key: q.key, Value: v, Want: "want a positive Kubernetes quantity such as 10m, 32Mi or 1Gi"})
			continue
		}
		// The API server only warns about a fraction of a byte; "100m" is almost always a typo for 100Mi.
		if whole := parsed.DeepCopy(); q.bytes && !whole.RoundUp(0) {
			errs = append(errs, &AnnotationError{Key: q.key, Value: v, Want: "want a whole number of bytes such as 32Mi or 1Gi (m means thousandths)"})
			continue
		}
		*q.dst = parsed
	}
	if len(errs) > 0 {
		return errs
	}
	pairs := []struct {
		what                 string
		requestKey, limitKey string
		request, limit       *resource.Quantity
	}{
		{"CPU", contract.AnnotationCPURequest, contract.AnnotationCPULimit, &s.CPURequest, &s.CPULimit},
		{"memory", contract.AnnotationMemoryRequest, contract.AnnotationMemoryLimit, &s.MemoryRequest, &s.MemoryLimit},
	}
	guaranteed := !podLevel && isGuaranteed(pod)
	for _, p := range pairs {
		requestValue, requestSet := ann[p.requestKey]
		if guaranteed && !requestSet {
			// The default request follows the limit, however low the limit is annotated.
			*p.request = p.limit.DeepCopy()
			continue
		}
		if !p.limit.IsZero() && p.limit.Cmp(*p.request) < 0 {
			errs = append(errs, fmt.Errorf("annotations %s, %s: %s limit %s is below %s request %s; want a limit at least the request",
				p.limitKey, p.requestKey, p.what, p.limit.String(), p.what, p.request.String()))
			continue
		}
		if guaranteed && p.request.Cmp(*p.limit) != 0 {
			errs = append(errs, fmt.Errorf("annotations %s, %s: every container of this pod has requests equal to limits (QoS Guaranteed), so the elector's %s request %q must equal its limit %s to keep the pod Guaranteed; set both to one value or remove %s",
				p.requestKey, p.limitKey, p.what, requestValue, p.limit.String(), p.requestKey))
		}
	}
	if podLevel && len(errs) == 0 {
		errs = fitPodBudget(pod, s)
	}
	return errs
}

// fitPodBudget refuses annotated elector resources that do not fit a pod-level budget, as the API server would
// but naming the annotation: no limit above the pod's limit, and the requests of the containers that run beside
// the elector (the regular ones and the native sidecars; it is appended after every init container) plus the
// elector's within the pod's request, or its limit where it sets no request. A request left unset is its limit.
func fitPodBudget(pod *corev1.Pod, s *Settings) []error {
	budget := pod.Spec.Resources
	var errs []error
	for _, r := range []struct {
		name                 corev1.ResourceName
		requestKey, limitKey string
		request, limit       resource.Quantity
	}{
		{corev1.ResourceCPU, contract.AnnotationCPURequest, contract.AnnotationCPULimit, s.CPURequest, s.CPULimit},
		{corev1.ResourceMemory, contract.AnnotationMemoryRequest, contract.AnnotationMemoryLimit, s.MemoryRequest, s.MemoryLimit},
	} {
		podLimit, limited := budget.Limits[r.name]
		if limited && !r.limit.IsZero() && r.limit.Cmp(podLimit) > 0 {
			errs = append(errs, &AnnotationError{Key: r.limitKey, Value: pod.Annotations[r.limitKey],
				Want: fmt.Sprintf("want at most the pod's spec.resources.limits.%s %s", r.name, podLimit.String())})
			continue
		}
		request, key := r.request, r.requestKey
		if request.IsZero() {
			request, key = r.limit, r.limitKey
		}
		podRequest, field := budget.Requests[r.name], "spec.resources.requests."+string(r.name)
		if podRequest.IsZero() {
			podRequest, field = podLimit, "spec.resources.limits."+string(r.name)
		}
		if request.IsZero() || podRequest.IsZero() {
			continue
		}
		beside := requestsBeside(pod, r.name)
		total := beside.DeepCopy()
		total.Add(request)
		if total.Cmp(podRequest) > 0 {
			errs = append(errs, &AnnotationError{Key: key, Value: pod.Annotations[key], Want: fmt.Sprintf(
				"the pod's containers already request %s of its %s %s, and the elector's request must fit in what is left",
				beside.String(), field, podRequest.String())})
		}
	}
	return errs
}

// requestsBeside sums the requests (a limit where no request is set) of the containers that run beside the
// elector: the regular containers and the native sidecars.
func requestsBeside(pod *corev1.Pod, name corev1.ResourceName) resource.Quantity {
	var sum resource.Quantity
	add := func(c corev1.Container) {
		if q, ok := c.Resources.Requests[name]; ok {
			sum.Add(q)
		} else if q, ok := c.Resources.Limits[name]; ok {
			sum.Add(q)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for _, c := range pod.Spec.Containers {
		add(c)
	}
	return sum
}

// hasPodLevelResources reports whether the pod sets pod-level requests or limits (spec.resources).
func hasPodLevelResources(pod *corev1.Pod) bool {
	r := pod.Spec.Resources
	return r != nil && (len(r.Requests) > 0 || len(r.Limits) > 0)
}

// isGuaranteed reports whether every container, init and regular, sets CPU and memory limits and requests equal
// to them (an unset request defaults to the limit): the pod's QoS class is Guaranteed before injection.
func isGuaranteed(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				limit, ok := c.Resources.Limits[name]
				if !ok || limit.IsZero() {
					return false
				}
				if request, ok := c.Resources.Requests[name]; ok && request.Cmp(limit) != 0 {
					return false
				}
			}
		}
	}
	return len(pod.Spec.Containers) > 0
}

// istioProxyContainer is the name of Istio's injected proxy, istioProxyUser the user it runs as by default.
const (
	istioProxyContainer = "istio-proxy"
	istioProxyUser      = 1337
)

// resolveMesh decides whether the elector bypasses Istio's proxy. Istio's classic sidecar is a regular
// container, so on shutdown it may exit before the elector (a native sidecar, stopped last); the elector's
// release would then be redirected to a proxy that is gone and failover would wait a whole lease. Istio's
// iptables rules never capture traffic of the proxy's own user (Istio documents running init containers that
// need the network as that user), so under MeshIstio the elector runs as that user and always reaches the API
// server. With Istio's native sidecar (istio-proxy an init container) the elector, appended after it, starts
// after and stops before the proxy, so nothing is needed.
func resolveMesh(pod *corev1.Pod, s *Settings) error {
	proxy, native := containerNamed(pod, istioProxyContainer)
	if native {
		proxy = nil // Istio's native sidecar: ordering suffices
	}
	v, set := pod.Annotations[contract.AnnotationMesh]
	switch {
	case !set && proxy != nil, set && v == contract.MeshIstio:
		s.Mesh = contract.MeshIstio
	case !set, v == contract.MeshNone:
		s.Mesh = contract.MeshNone
		return nil
	default:
		return &AnnotationError{Key: contract.AnnotationMesh, Value: v, Want: fmt.Sprintf("want %q or %q", contract.MeshIstio, contract.MeshNone)}
	}
	s.ProxyUser = istioProxyUser
	if proxy != nil && proxy.SecurityContext != nil && proxy.SecurityContext.RunAsUser != nil && *proxy.SecurityContext.RunAsUser > 0 {
		s.ProxyUser = *proxy.SecurityContext.RunAsUser
	}
	return nil
}
