package inject

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Settings is what one pod's elector runs with: the Config's defaults overridden by the pod's annotations.
type Settings struct {
	LeaseName                                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Port                                      int32
	Traffic                                   string
	Image                                     string
	CPURequest, MemoryRequest, MemoryLimit    resource.Quantity
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
func settingsFor(pod *corev1.Pod, cfg Config) (Settings, error) {
	ann := pod.Annotations
	s := Settings{
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		Port:          cfg.Port,
		Traffic:       cfg.Traffic,
		Image:         cfg.Image,
		CPURequest:    cfg.CPURequest,
		MemoryRequest: cfg.MemoryRequest,
		MemoryLimit:   cfg.MemoryLimit,
	}
	var errs []error
	bad := func(key, want string) { errs = append(errs, &AnnotationError{Key: key, Value: ann[key], Want: want}) }

	if v, ok := ann[AnnotationLeaseName]; ok {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			bad(AnnotationLeaseName, "want a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters): "+strings.Join(msgs, "; "))
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
		{AnnotationLeaseDuration, &s.LeaseDuration},
		{AnnotationRenewDeadline, &s.RenewDeadline},
		{AnnotationRetryPeriod, &s.RetryPeriod},
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
				AnnotationLeaseDuration, AnnotationRenewDeadline, AnnotationRetryPeriod, err))
		}
	}

	if v, ok := ann[AnnotationPort]; ok {
		p, err := strconv.ParseInt(v, 10, 32)
		if err != nil || p < 1 || p > 65535 {
			bad(AnnotationPort, "want a port number from 1 to 65535")
		} else {
			s.Port = int32(p)
		}
	}
	if owner := containerUsingPort(pod, s.Port); owner != "" {
		key := AnnotationPort
		errs = append(errs, &AnnotationError{Key: key, Value: strconv.Itoa(int(s.Port)),
			Want: fmt.Sprintf("port %d is already used by container %q; choose a free port", s.Port, owner)})
	}

	if v, ok := ann[AnnotationTraffic]; ok {
		if v != TrafficLabel && v != TrafficReadiness {
			bad(AnnotationTraffic, fmt.Sprintf("want %q or %q", TrafficLabel, TrafficReadiness))
		} else {
			s.Traffic = v
		}
	}
	if v, ok := ann[AnnotationImage]; ok {
		if v == "" || strings.ContainsAny(v, " \t\n") {
			bad(AnnotationImage, "want an image reference such as leader-election/elector:v0.1.0")
		} else {
			s.Image = v
		}
	}
	quantities := []struct {
		key string
		dst *resource.Quantity
	}{
		{AnnotationCPURequest, &s.CPURequest},
		{AnnotationMemoryRequest, &s.MemoryRequest},
		{AnnotationMemoryLimit, &s.MemoryLimit},
	}
	for _, q := range quantities {
		v, ok := ann[q.key]
		if !ok {
			continue
		}
		parsed, err := resource.ParseQuantity(v)
		if err != nil || parsed.Sign() <= 0 {
			bad(q.key, "want a positive Kubernetes quantity such as 10m, 32Mi or 1Gi")
			continue
		}
		*q.dst = parsed
	}
	if s.MemoryLimit.Cmp(s.MemoryRequest) < 0 {
		errs = append(errs, fmt.Errorf("annotations %s, %s: memory limit %s is below memory request %s",
			AnnotationMemoryLimit, AnnotationMemoryRequest, s.MemoryLimit.String(), s.MemoryRequest.String()))
	}
	return s, errors.Join(errs...)
}

// containerUsingPort returns the name of a container (init or regular, not our own) that declares port, or "".
func containerUsingPort(pod *corev1.Pod, port int32) string {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == ContainerName {
				continue
			}
			for _, p := range c.Ports {
				if p.ContainerPort == port {
					return c.Name
				}
			}
		}
	}
	return ""
}
