package appcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Options are the Checker's surroundings.
type Options struct {
	// PodIP is where a check without a host goes, as the kubelet's probes go to the pod IP (an application may
	// listen on that address only). "" means 127.0.0.1: for a pod whose traffic a mesh captures (the elector then
	// runs as the mesh's proxy user, whose connections to the pod IP Istio redirects into its proxy) and outside a
	// pod. An application listening on all addresses answers on both.
	PodIP string
	// Clock schedules the checks; nil is the real clock. A check's timeout is always real time.
	Clock clock.Clock
}

// Checker runs one check of this pod's application the way the kubelet runs a readiness probe, and keeps the
// verdict: it implements elector.AppHealth. Run drives it; Healthy and Changed may be called from any goroutine.
type Checker struct {
	probe   corev1.Probe
	clock   clock.Clock
	check   checkFunc
	what    string
	changed chan struct{}

	mu      sync.Mutex
	verdict verdict
}

// New validates the probe and prepares its check; nothing is sent until Run.
func New(probe corev1.Probe, opts Options) (*Checker, error) {
	if err := Validate(probe); err != nil {
		return nil, err
	}
	podIP := strings.TrimSuffix(strings.TrimPrefix(opts.PodIP, "["), "]")
	if podIP == "" {
		podIP = "127.0.0.1"
	} else if net.ParseIP(podIP) == nil {
		return nil, &FieldError{Field: "pod IP", Value: fmt.Sprintf("%q", opts.PodIP), Want: "want an IP address (downward API status.podIP)"}
	}
	host := func(h string) string {
		if h == "" {
			return podIP
		}
		return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	p := WithDefaults(probe)
	c := &Checker{probe: p, clock: opts.Clock, changed: make(chan struct{}, 1),
		verdict: newVerdict(p.SuccessThreshold, p.FailureThreshold)}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	switch {
	case p.HTTPGet != nil:
		c.check, c.what = httpCheck(p.HTTPGet, host(p.HTTPGet.Host))
	case p.TCPSocket != nil:
		c.check, c.what = tcpCheck(p.TCPSocket, host(p.TCPSocket.Host))
	default:
		c.check, c.what = grpcCheck(p.GRPC, podIP)
	}
	return c, nil
}

// String describes the check and its timing, for logs.
func (c *Checker) String() string {
	p := c.probe
	return fmt.Sprintf("%s every %ds (timeout %ds, initial delay %ds, healthy after %d successes, unhealthy after %d failures)",
		c.what, p.PeriodSeconds, p.TimeoutSeconds, p.InitialDelaySeconds, p.SuccessThreshold, p.FailureThreshold)
}

// Healthy reports the current verdict and a short reason for it ("" when healthy).
func (c *Checker) Healthy() (healthy bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdict.healthy, c.verdict.reason
}

// Changed delivers a value whenever the verdict may have changed (buffered, capacity 1, never closed).
func (c *Checker) Changed() <-chan struct{} { return c.changed }

// Run checks after the probe's initial delay and then once per period, one check at a time (a check that takes
// longer than the period delays the next, as in the kubelet), until ctx ends. It returns once no check is running.
func (c *Checker) Run(ctx context.Context) {
	timer := c.clock.NewTimer(time.Duration(c.probe.InitialDelaySeconds) * time.Second)
	defer timer.Stop()
	period := time.Duration(c.probe.PeriodSeconds) * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		started := c.clock.Now()
		c.checkOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(max(0, period-c.clock.Since(started)))
	}
}

// checkOnce runs the check within the probe's timeout and records the result.
func (c *Checker) checkOnce(ctx context.Context) {
	checkCtx, cancel := context.WithTimeout(ctx, time.Duration(c.probe.TimeoutSeconds)*time.Second)
	failure := c.check(checkCtx)
	timedOut := errors.Is(checkCtx.Err(), context.DeadlineExceeded)
	cancel()
	if ctx.Err() != nil {
		return // stopping: an interrupted check says nothing about the application
	}
	if failure != "" && timedOut { // one stable reason, not the transport's wording of the moment
		failure = fmt.Sprintf("%s: no answer within %ds (timeoutSeconds)", c.what, c.probe.TimeoutSeconds)
	}
	c.record(failure)
}

// record feeds one result to the verdict and signals Changed when the verdict changed.
func (c *Checker) record(failure string) {
	c.mu.Lock()
	changed := c.verdict.observe(failure)
	c.mu.Unlock()
	if changed {
		select {
		case c.changed <- struct{}{}:
		default: // a signal is already waiting; the reader will see the newest verdict
		}
	}
}
