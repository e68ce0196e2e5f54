package inject

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/elector"
)

// SidecarMode says how the elector joins the pod.
type SidecarMode string

const (
	// SidecarNative injects an init container with restartPolicy Always (Kubernetes >= 1.29): it starts before
	// and stops after the application, so the Lease is released only when the application's work is over.
	SidecarNative SidecarMode = "native"
	// SidecarContainer injects a regular container, for API servers or kubelets older than 1.29.
	SidecarContainer SidecarMode = "container"
)

// Config is the webhook-wide configuration: the defaults every annotation falls back to.
type Config struct {
	// Version is written into AnnotationInjected.
	Version string
	// Image is the default elector image.
	Image string
	// Sidecar chooses a native sidecar or a regular container.
	Sidecar SidecarMode
	// LeaseDuration, RenewDeadline and RetryPeriod are the default election timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Port is the elector's default HTTP port.
	Port int32
	// Traffic is the default traffic mode.
	Traffic string
	// CPURequest, CPULimit, MemoryRequest and MemoryLimit are the elector's default resources.
	CPURequest, CPULimit, MemoryRequest, MemoryLimit resource.Quantity
}

// DefaultPort is the elector's HTTP port unless configured otherwise.
const DefaultPort = 8642

// DefaultConfig returns the defaults documented in the README, with the given version and image.
func DefaultConfig(version, image string) Config {
	return Config{
		Version:       version,
		Image:         image,
		Sidecar:       SidecarNative,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
		Port:          DefaultPort,
		Traffic:       contract.TrafficLabel,
		CPURequest:    resource.MustParse("10m"),
		// A CPU limit on every elector lets pods into namespaces whose ResourceQuota tracks limits.cpu (the quota
		// refuses any container without one), and 100m is ten times what a renewal every 2s uses, so the elector
		// is not throttled in practice.
		CPULimit:      resource.MustParse("100m"),
		MemoryRequest: resource.MustParse("32Mi"),
		MemoryLimit:   resource.MustParse("64Mi"),
	}
}

// Validate checks the configuration once, up front, so that a bad flag stops the webhook at start rather than
// refusing pods later. The timing rules are the same as for the annotations.
func (c Config) Validate() error {
	if c.Image == "" {
		return fmt.Errorf("elector image: must not be empty")
	}
	if c.Sidecar != SidecarNative && c.Sidecar != SidecarContainer {
		return fmt.Errorf("sidecar mode %q: want %q or %q", c.Sidecar, SidecarNative, SidecarContainer)
	}
	if err := checkTimings(c.LeaseDuration, c.RenewDeadline, c.RetryPeriod); err != nil {
		return err
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d: want 1 to 65535", c.Port)
	}
	if c.Traffic != contract.TrafficLabel && c.Traffic != contract.TrafficReadiness {
		return fmt.Errorf("traffic %q: want %q or %q", c.Traffic, contract.TrafficLabel, contract.TrafficReadiness)
	}
	if c.CPULimit.Cmp(c.CPURequest) < 0 {
		return fmt.Errorf("CPU limit %s is below CPU request %s", c.CPULimit.String(), c.CPURequest.String())
	}
	if c.MemoryLimit.Cmp(c.MemoryRequest) < 0 {
		return fmt.Errorf("memory limit %s is below memory request %s", c.MemoryLimit.String(), c.MemoryRequest.String())
	}
	return nil
}

// checkTimings applies the elector's own rule (pkg/elector.CheckDurations: order, bounds, whole seconds and the
// margin the readiness probe needs), so a pod is refused at admission rather than crash-looping later.
func checkTimings(lease, renew, retry time.Duration) error {
	return elector.CheckDurations(lease, renew, retry)
}
