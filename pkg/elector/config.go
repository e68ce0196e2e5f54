package elector

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Readiness selects what /readyz reports.
type Readiness string

const (
	// ReadinessLeader makes /readyz 200 only on the replica that holds the Lease and renewed it recently.
	ReadinessLeader Readiness = "leader"
	// ReadinessMember makes /readyz 200 on every replica that follows the Lease, except a stale leader.
	ReadinessMember Readiness = "member"
)

// HolderUIDAnnotation is the Lease annotation that carries the UID of the pod named in spec.holderIdentity.
// holderIdentity stays the pod name (the leader-label controller and kubectl read it); the UID tells two pods of
// one name apart, such as a force-deleted StatefulSet pod that still runs and its replacement.
const HolderUIDAnnotation = "leader-election/holder-uid"

// Defaults are client-go's, which most Kubernetes components use.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config is what one replica needs to take part in an election; Validate checks it once, up front.
type Config struct {
	// Identity is this replica's holder identity, the pod name.
	Identity string
	// UID is this pod's UID (downward API metadata.uid). A Lease is this replica's own only when it names
	// Identity and carries UID in HolderUIDAnnotation: a force-deleted pod's successor has the same name but
	// another UID, and must treat the old holder as a stranger.
	UID string
	// Namespace is the Lease's namespace, the pod's own.
	Namespace string
	// LeaseName is the Lease the replicas compete for.
	LeaseName string
	// LeaseDuration is how long the Lease is valid after its last observed change; written (rounded up to whole
	// seconds, the Lease API's unit) into spec.leaseDurationSeconds for the standbys.
	LeaseDuration time.Duration
	// RenewDeadline is how long after sending its last successful renewal the leader still counts as the leader.
	RenewDeadline time.Duration
	// RetryPeriod is the pause between failed attempts (and, when RenewInterval is zero, how often the leader
	// renews).
	RetryPeriod time.Duration
	// RenewInterval is how often the leader renews after a successful renewal; zero means RetryPeriod (client-go's
	// behaviour). See DefaultRenewInterval and CheckRenewInterval.
	RenewInterval time.Duration
	// Handover makes a leader that steps down, loses its application's health or shuts down write the Lease over to
	// a chosen successor (see handover.go) instead of releasing it to a race.
	Handover bool
	// Readiness is what /readyz reports.
	Readiness Readiness
	// ControlSocket is the Unix socket (a leading @ for Linux's abstract namespace) on which POST /stepdown is
	// served; the TCP port refuses it and names this socket.
	ControlSocket string
	// LabelsFile is the pod's labels as the downward API writes them ("" = unknown). In member readiness, a
	// replica whose labels say contract.LabelRole=contract.RoleLeader but that is not a fresh leader is unready.
	LabelsFile string
}

// Validate reports every problem with the configuration at once, each naming the setting at fault.
func (c Config) Validate() error {
	var errs []error
	if c.Identity == "" {
		errs = append(errs, errors.New("identity (the pod name) must not be empty"))
	}
	if c.UID == "" {
		errs = append(errs, errors.New("pod UID must not be empty: it tells this pod's Lease from one written by an earlier pod of the same name"))
	}
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q is not a valid namespace name: %s", c.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Subdomain(c.LeaseName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("lease name %q is not a valid object name: %s", c.LeaseName, strings.Join(msgs, "; ")))
	}
	if err := CheckDurations(c.LeaseDuration, c.RenewDeadline, c.RetryPeriod); err != nil {
		errs = append(errs, err)
	}
	if err := CheckRenewInterval(c.RenewInterval, c.RenewDeadline, c.RetryPeriod); c.RenewInterval != 0 && err != nil {
		errs = append(errs, err)
	}
	if c.Readiness != ReadinessLeader && c.Readiness != ReadinessMember {
		errs = append(errs, fmt.Errorf("readiness %q must be %q or %q", c.Readiness, ReadinessLeader, ReadinessMember))
	}
	return errors.Join(errs...)
}

// The bounds on the durations. A Lease stores whole seconds; a lease longer than MaxLeaseDuration would let one
// stalled holder freeze the election for longer than anyone would wait, and a Lease that claims more is read as
// MaxLeaseDuration. ProbeDetectionTime is what the injected readiness probe needs to see a leader turn unready
// (period 1s + timeout 1s): the margin lease-duration - renew-deadline must be at least that long, or a Service
// could list the old leader and its successor together.
const (
	MinLeaseDuration   = 3 * time.Second
	MaxLeaseDuration   = 300 * time.Second
	MinRenewDeadline   = time.Second
	MinRetryPeriod     = 250 * time.Millisecond
	ProbeDetectionTime = 2 * time.Second
)

// CheckDurations is the one timing rule, used by the elector's flags and the webhook's annotations alike:
// 0 < retry-period < renew-deadline < lease-duration, every duration within its bounds (see MinLeaseDuration),
// lease-duration a whole number of seconds, and lease-duration - renew-deadline >= ProbeDetectionTime. The order is
// what makes readiness safe: a leader stops reporting ready renew-deadline after its last renewal, which is
// before any standby may take over (lease-duration after it saw that renewal); the margin is what lets the
// readiness probe notice in time. The error names the values at fault.
func CheckDurations(leaseDuration, renewDeadline, retryPeriod time.Duration) error {
	switch {
	case retryPeriod <= 0:
		return fmt.Errorf("retry-period (%s) must be greater than zero", retryPeriod)
	case retryPeriod < MinRetryPeriod:
		return fmt.Errorf("retry-period (%s) must be at least %s", retryPeriod, MinRetryPeriod)
	case renewDeadline <= retryPeriod:
		return fmt.Errorf("renew-deadline (%s) must be longer than retry-period (%s)", renewDeadline, retryPeriod)
	case renewDeadline < MinRenewDeadline:
		return fmt.Errorf("renew-deadline (%s) must be at least %s", renewDeadline, MinRenewDeadline)
	case leaseDuration <= renewDeadline:
		return fmt.Errorf("lease-duration (%s) must be longer than renew-deadline (%s)", leaseDuration, renewDeadline)
	case leaseDuration < MinLeaseDuration || leaseDuration > MaxLeaseDuration:
		return fmt.Errorf("lease-duration (%s) must be between %s and %s", leaseDuration, MinLeaseDuration, MaxLeaseDuration)
	case leaseDuration%time.Second != 0:
		return fmt.Errorf("lease-duration (%s) must be a whole number of seconds (a Lease stores seconds)", leaseDuration)
	case leaseDuration-renewDeadline < ProbeDetectionTime:
		return fmt.Errorf("lease-duration (%s) must exceed renew-deadline (%s) by at least %s, the readiness probe's detection time (period 1s + timeout 1s); the margin is %s",
			leaseDuration, renewDeadline, ProbeDetectionTime, leaseDuration-renewDeadline)
	}
	return nil
}

// DefaultRenewInterval is the renew interval that leaves a leader three renewal attempts before its renew deadline,
// each with a whole retry period to complete: renew-deadline - 3 x retry-period, and never less than the retry
// period. A failed renewal is retried every retry period, so a renewal due at that interval is followed by two
// retries that all end by the deadline, the same margin against a short API outage that client-go keeps with
// five attempts at a third of the writes. With 15s/10s/2s it is 4s: 15 writes a minute instead of client-go's 30;
// with the fastest timings (4s/2s/500ms) it is the retry period, as before.
func DefaultRenewInterval(renewDeadline, retryPeriod time.Duration) time.Duration {
	return max(retryPeriod, renewDeadline-3*retryPeriod)
}

// CheckRenewInterval checks a renew interval against the other durations: from retry-period (renewing more often
// than failed attempts are retried buys nothing) to renew-deadline - 2 x retry-period (a renewal that times out
// takes a retry period, and its retry, sent a retry period after it, needs another one to complete before the
// deadline; the retry period itself, client-go's behaviour, is always accepted). Readiness does not depend on it: a leader is ready for renew-deadline after its
// last successful renewal, whatever the interval.
func CheckRenewInterval(renewInterval, renewDeadline, retryPeriod time.Duration) error {
	if upper := max(retryPeriod, renewDeadline-2*retryPeriod); renewInterval < retryPeriod || renewInterval > upper {
		return fmt.Errorf("renew-interval (%s) must be from retry-period (%s) to renew-deadline - 2 x retry-period (%s), so that a renewal that times out is retried at least once, with its full timeout, before the renew deadline (%s)",
			renewInterval, retryPeriod, upper, renewDeadline)
	}
	return nil
}

// renewInterval is how often the leader renews: RenewInterval, or RetryPeriod when unset.
func (c Config) renewInterval() time.Duration {
	if c.RenewInterval > 0 {
		return c.RenewInterval
	}
	return c.RetryPeriod
}

// ServiceLeaveTime is how long a leader that steps down, or whose application failed its check, stays out of the
// Service, still holding and renewing the Lease, before it leaves the Lease. Its pod is Ready and labelled leader
// until then, so a handover at once would let the Service send requests to a pod that no longer leads. The wait
// covers what the readiness probe needs to see /readyz turn 503 (ProbeDetectionTime: period 1s + timeout 1s) plus
// what it takes for the endpoint to leave the data path: the kubelet's status write, the EndpointSlice controller,
// and kube-proxy, which applies a change at most once per minSyncPeriod (1s by default) after its last sync: about
// 2.2s in the worst phase. On the real node (test/e2e's step-down, where only /readyz takes the pod out) the old
// leader's last answer through the ClusterIP came 0.29-0.78s after it turned unready; 3s covers the worst phase
// with a margin for a loaded node.
const ServiceLeaveTime = ProbeDetectionTime + time.Second

// handoverBound is how long a Lease handed over to a successor waits for the successor's confirmation before
// anyone may take it: two retry periods. The successor needs one watch event and one write (milliseconds), and a
// failed first write is retried within a retry period; the bound is far below the lease duration, so a dead or
// paused successor costs less than a crashed leader does, and no safety rests on it: the old holder stopped
// leading before it wrote the handover, and the successor leads only once its confirmation, guarded by the
// resourceVersion, has landed, so anyone taking the Lease after the bound makes that confirmation fail.
func (c Config) handoverBound() time.Duration {
	return 2 * c.RetryPeriod
}

// leaseDurationSeconds is the lease duration as the Lease API stores it: whole seconds, rounded up so that the
// promise made to standbys is never shorter than the one this replica keeps.
func (c Config) leaseDurationSeconds() int32 {
	return int32((c.LeaseDuration + time.Second - 1) / time.Second)
}
