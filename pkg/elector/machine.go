package elector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// ErrNotLeader is returned by StepDown on a replica that does not hold the Lease.
var ErrNotLeader = errors.New("not the leader")

// machine carries out the election's decisions (see decide) against the API server. One goroutine drives it:
// the election loop, or a unit test with a fake clock.
type machine struct {
	cfg      Config
	clock    clock.PassiveClock
	leases   LeaseAPI
	recorder *recorder
	metrics  Metrics
	problems *problemLog
	log      *slog.Logger
	board    *board
	retry    backoff

	// candidates is what the leader's candidate watch knows (nil while not leading, or without candidates).
	candidates *candidateSet
	// advertiser keeps this replica's candidate Lease current (nil without candidates).
	advertiser *advertiser
	// revision is this pod's template revision, started when this elector started: what it advertises.
	revision string
	started  time.Time

	s        state
	failures int // consecutive failed standby writes, for the backoff

	// stepDownReplies wait for the end of a step-down in progress (see requestStepDown).
	stepDownReplies []chan<- error
}

// observe folds a Lease seen through the watch into the state; nil means the Lease does not exist.
func (m *machine) observe(l *coordinationv1.Lease, deletedAt string) {
	if lost := observe(&m.s, l, deletedAt, m.clock.Now(), m.cfg); lost {
		reason := "the Lease was deleted"
		switch {
		case l != nil && holderOf(l) == m.cfg.Identity:
			reason = fmt.Sprintf("the Lease now names another pod of this name (UID %q, this pod's is %q)", holderUIDOf(l), m.cfg.UID)
		case l != nil:
			reason = fmt.Sprintf("the Lease now names %s", holderOrNobody(l))
		}
		m.stopLeading("Lost", corev1.EventTypeWarning, reason)
	}
	m.publish()
}

// maxActionsPerAdvance bounds one advance; every action either changes the decision or sets a wait.
const maxActionsPerAdvance = 4

// advance carries out decisions until there is nothing to do now, and returns when to look again (zero: only
// an observation or a request can change anything).
func (m *machine) advance(ctx context.Context) time.Time {
	defer m.publish()
	for range maxActionsPerAdvance {
		_, m.s.successorKnown = m.successor()
		act, wake := decide(&m.s, m.clock.Now(), m.cfg)
		switch act {
		case wait:
			return wake
		case create:
			m.create(ctx)
		case acquire:
			m.acquire(ctx)
		case renew:
			m.renew(ctx)
		case reread:
			m.reread(ctx)
		case leaveService:
			m.s.leftServiceAt = m.clock.Now()
			m.log.Warn("leaving the Service before handing the Lease over: readiness fails, the Lease is still renewed",
				"reason", m.leavingReason(), "handOverIn", ServiceLeaveTime)
			m.publish()
		case rejoinService:
			m.s.leftServiceAt = time.Time{}
			m.log.Info("back in the Service: the application recovered or no healthy successor is left", "appHealthy", m.s.app.healthy())
			m.publish()
		case handOver:
			cause, why := causeUnhealthy, "the application is unhealthy: "+m.s.app.reason
			if m.s.steppingDown {
				// Kept away from the Lease for one lease duration from when it leaves it.
				cause, why = causeStepDown, "stepped down on request"
				m.s.holdOffUntil = m.clock.Now().Add(m.cfg.LeaseDuration)
			}
			err := m.leave(ctx, cause, why)
			if err != nil {
				m.log.Warn("could not leave the Lease", "cause", cause, "error", err)
			}
			m.answerStepDowns(err)
		case giveUp:
			m.stopLeading("Lost", corev1.EventTypeWarning, fmt.Sprintf(
				"no successful renewal within the renew deadline (%s)", m.cfg.RenewDeadline))
		}
	}
	return m.clock.Now()
}

// create creates the Lease with this replica as its first holder.
func (m *machine) create(ctx context.Context) {
	now := m.clock.Now()
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: m.cfg.LeaseName, Namespace: m.cfg.Namespace,
			Annotations: map[string]string{HolderUIDAnnotation: m.cfg.UID}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(m.cfg.Identity),
			LeaseDurationSeconds: ptr.To(m.cfg.leaseDurationSeconds()),
			AcquireTime:          ptr.To(metav1.NewMicroTime(now)),
			RenewTime:            ptr.To(metav1.NewMicroTime(now)),
			LeaseTransitions:     ptr.To(nextToken(&m.s, nil)),
		},
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	out, err := m.leases.Create(ctx, l)
	m.afterAcquire("create the Lease", "", now, out, err)
}

// acquire takes the Lease over; a new holder increments leaseTransitions, the fencing token.
func (m *machine) acquire(ctx context.Context) {
	now := m.clock.Now()
	l := m.s.lease.DeepCopy()
	previous := holderOf(l)
	handedOverBy := handoverFromOf(l)
	if handedOverBy != "" {
		// Confirming a handover to this replica (token + 0), or taking over one whose successor did not confirm.
		delete(l.Annotations, HandoverFromAnnotation)
		if ownedBy(l, m.cfg) {
			previous = handedOverBy
		}
	}
	if !ownedBy(l, m.cfg) {
		// A new tenure, even under this pod's name when another pod (UID) wrote it: a new fencing token.
		l.Spec.LeaseTransitions = ptr.To(nextToken(&m.s, l))
		l.Spec.AcquireTime = ptr.To(metav1.NewMicroTime(now))
	}
	setHolder(l, m.cfg)
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
	l.Spec.LeaseDurationSeconds = ptr.To(m.cfg.leaseDurationSeconds())
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	out, err := m.leases.Update(ctx, l)
	if err == nil && previous != m.cfg.Identity {
		m.metrics.TookOver(m.s.lease, now)
	}
	m.afterAcquire("acquire the Lease", previous, now, out, err)
}

// afterAcquire records the outcome of a create or acquire sent at sent.
func (m *machine) afterAcquire(op, previous string, sent time.Time, out *coordinationv1.Lease, err error) {
	if err != nil {
		m.writeFailed(op, err)
		return
	}
	m.failures, m.s.retryAt, m.s.maybeHolder = 0, time.Time{}, false
	m.problems.succeeded(op)
	m.s.known, m.s.lease, m.s.observedAt = true, out, sent
	m.s.leading, m.s.lastRenewSent, m.s.leftServiceAt, m.s.steppingDown = true, sent, time.Time{}, false
	noteToken(&m.s, out)
	m.metrics.Leading(true)
	m.metrics.Renewed(sent)
	note := fmt.Sprintf("%s acquired the Lease (leaseTransitions %d)", m.cfg.Identity, transitionsOf(out))
	m.recorder.record(out, corev1.EventTypeNormal, "Acquired", note)
	m.log.Info("acquired the Lease", "leaseTransitions", transitionsOf(out), "previousHolder", previous)
}

// writeFailed handles a failed create or acquire. A conflict means the Lease changed since it was observed:
// the watch brings the change, and nothing is retried until it has.
func (m *machine) writeFailed(op string, err error) {
	if !answeredByServer(err) {
		m.s.maybeHolder = true
	}
	if isStale(err) {
		// The server answered: whatever made earlier requests fail is over, so the backoff starts again.
		m.failures = 0
		m.awaitNewer()
		m.log.Debug("lost a race for the Lease", "operation", op, "error", err)
		return
	}
	m.failures++
	m.s.retryAt = m.clock.Now().Add(m.retry.delay(m.failures))
	m.problems.failed(op, err)
}

// awaitNewer holds back writes until the Lease's newer state is known: from the watch, or from a read one retry
// period later.
func (m *machine) awaitNewer() {
	m.s.awaitingNewer = true
	m.s.awaitingUntil = m.clock.Now().Add(m.cfg.RetryPeriod)
}

// reread reads the Lease when a write conflicted and the watch has not brought the newer state in time.
func (m *machine) reread(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	l, err := m.leases.Get(ctx)
	switch {
	case apierrors.IsNotFound(err):
		l = nil
	case err != nil:
		m.problems.failed("read the Lease", err)
		m.s.awaitingUntil = m.clock.Now().Add(m.cfg.RetryPeriod)
		return
	}
	m.problems.succeeded("read the Lease")
	m.observe(l, "")
	m.s.awaitingNewer = false
}

// renew extends this replica's hold on the Lease: one write per retry period.
func (m *machine) renew(ctx context.Context) {
	now := m.clock.Now()
	l := m.s.lease.DeepCopy()
	setHolder(l, m.cfg)
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
	l.Spec.LeaseDurationSeconds = ptr.To(m.cfg.leaseDurationSeconds())
	// A renewal answered after the deadline is of no use: the leader has given up by then.
	timeout := min(m.cfg.RetryPeriod, m.s.lastRenewSent.Add(m.cfg.RenewDeadline).Sub(now))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := m.leases.Update(ctx, l)
	switch {
	case err == nil:
		m.problems.succeeded("renew the Lease")
		m.s.lease, m.s.observedAt, m.s.lastRenewSent, m.s.retryAt = out, now, now, time.Time{}
		m.metrics.Renewed(now)
	case isStale(err):
		m.awaitNewer()
		m.log.Info("renewal conflicted; waiting for the Lease's newer state", "error", err)
	default:
		// The next attempt is due a retry period after this one was sent, as client-go's renew loop ticks: counted
		// from the failure, a renewal that timed out (a whole retry period) would wait another before its retry,
		// and one sent at the largest renew interval would get no retry before the deadline at all.
		m.s.retryAt = now.Add(m.cfg.RetryPeriod)
		m.problems.failed("renew the Lease", err)
	}
}

// stopLeading leaves leadership without touching the Lease.
func (m *machine) stopLeading(reason, eventType, why string) {
	if !m.s.leading {
		return
	}
	m.s.leading = false
	m.metrics.Leading(false)
	m.recorder.record(m.s.lease, eventType, reason, fmt.Sprintf("%s stopped leading: %s", m.cfg.Identity, why))
	m.log.Warn("stopped leading", "reason", why)
	m.publish()
	// A step-down in progress has nothing left to do: this replica no longer leads.
	m.answerStepDowns(nil)
}

// requestStepDown starts a step-down: the leader leaves the Service at once, keeps the Lease for ServiceLeaveTime
// (see decide), then hands it over (or releases it) and keeps away from it for one lease duration, unless it is
// still free by then. reply (buffered) gets the outcome then; ErrNotLeader at once on a standby.
func (m *machine) requestStepDown(reply chan<- error) {
	if !m.s.leading {
		reply <- ErrNotLeader
		return
	}
	m.s.steppingDown = true
	m.stepDownReplies = append(m.stepDownReplies, reply)
}

// answerStepDowns ends the step-down in progress, if any, with err.
func (m *machine) answerStepDowns(err error) {
	for _, reply := range m.stepDownReplies {
		reply <- err
	}
	m.stepDownReplies, m.s.steppingDown = nil, false
}

// leavingReason says why a leader is leaving the Service.
func (m *machine) leavingReason() string {
	if m.s.steppingDown {
		return "stepping down on request"
	}
	return "the application is unhealthy (" + m.s.app.reason + ")"
}

// shutdown hands the Lease over (or releases it) if this replica holds it, or releases it if it may hold it
// because its last acquisition's outcome is unknown, so that a standby takes over at once. The pod is
// terminating and already out of the Service, so it does not wait: a step-down in progress ends here.
func (m *machine) shutdown(ctx context.Context) error {
	if m.s.leading {
		err := m.leave(ctx, causeShutdown, "shutting down")
		m.answerStepDowns(err)
		return err
	}
	m.answerStepDowns(nil)
	if !m.s.maybeHolder {
		return nil
	}
	// This read alone decides whether the standbys wait a whole lease, and the fault that swallowed the
	// acquisition's answer may have killed the connection it goes to: a read the server did not answer is tried
	// again, on a fresh connection, for as long as the shutdown's budget lasts, as the release is.
	var cur *coordinationv1.Lease
	var err error
	reading, stopReading := context.WithTimeout(ctx, shutdownReleaseTimeout)
	defer stopReading()
	for attempt := 0; ; attempt++ {
		readCtx, cancel := context.WithTimeout(reading, m.cfg.RetryPeriod)
		cur, err = m.leases.Get(readCtx)
		cancel()
		if err == nil || answeredByServer(err) || pause(reading, releaseRetryPause(attempt)) != nil {
			break
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading the Lease to release an acquisition whose outcome is unknown: %w", err)
	case !ownedBy(cur, m.cfg):
		return nil
	}
	m.s.lease = cur
	return m.release(ctx, "shutting down (the last acquisition landed unanswered)")
}

// release stops leading first (readiness falls before anyone else can acquire), then clears the holder,
// keeping leaseTransitions: the next holder increments it.
func (m *machine) release(ctx context.Context, why string) error {
	m.s.leading = false
	m.metrics.Leading(false)
	m.publish()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	l := m.s.lease.DeepCopy()
	reread := false
	for attempt := 0; ; attempt++ {
		l.Spec.HolderIdentity = ptr.To("")
		delete(l.Annotations, HolderUIDAnnotation)
		l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(m.clock.Now()))
		out, err := m.leases.Update(ctx, l)
		if err == nil {
			m.s.lease, m.s.observedAt = out, m.clock.Now()
			m.recorder.record(out, corev1.EventTypeNormal, "Released", fmt.Sprintf("%s released the Lease: %s", m.cfg.Identity, why))
			m.log.Info("released the Lease", "reason", why)
			return nil
		}
		if !isStale(err) {
			// A dropped connection or a timeout: the release is what lets a standby take over at once, so try
			// again, briefly, for as long as the release may take.
			if waitErr := pause(ctx, releaseRetryPause(attempt)); waitErr != nil {
				return fmt.Errorf("releasing the Lease: %w", err)
			}
			continue
		}
		if reread {
			return fmt.Errorf("releasing the Lease: %w", err)
		}
		reread = true
		// The Lease changed since it was observed; perhaps a renewal that timed out did land. Read it to know
		// whether there is still something to release.
		cur, getErr := m.leases.Get(ctx)
		if getErr != nil {
			return fmt.Errorf("releasing the Lease: %w; reading it: %w", err, getErr)
		}
		if !ownedBy(cur, m.cfg) {
			m.s.lease, m.s.observedAt = cur, m.clock.Now()
			return nil
		}
		l = cur.DeepCopy()
	}
}

// setHolder writes this pod into the Lease as its holder: the pod name, and its UID in the annotation. It drops a
// candidate label: the elected Lease is nobody's candidate Lease, but a candidate Lease of another election can
// carry its name (Lease "web" and pod "web-0" advertise in Lease "web-web-0", which may be another workload's
// elected Lease, created first by the candidate while that workload's Lease was absent). Kept, the label would
// make the elector-leases policy judge every write of this election as a candidate write for the other Lease and
// refuse it for ever; dropped, the Lease is taken like any other once its holder's lease has run out.
func setHolder(l *coordinationv1.Lease, cfg Config) {
	l.Spec.HolderIdentity = ptr.To(cfg.Identity)
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[HolderUIDAnnotation] = cfg.UID
	delete(l.Labels, CandidateForLabel)
}

// releaseRetryPause is the pause before the next release attempt after a transport error: 25ms, doubling, at most
// 400ms.
func releaseRetryPause(attempt int) time.Duration {
	return min(25*time.Millisecond<<min(attempt, 4), 400*time.Millisecond)
}

// pause waits d of real time, or until ctx ends (an error then). Release retries use real time because they run
// while the process shuts down, under a real deadline.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// answeredByServer reports whether a failed write was refused by the API server (so it did not land), as
// opposed to a timeout, a cancelled request or a lost connection, after which it may have landed.
func answeredByServer(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	return code != 0 && code < 500 && !apierrors.IsTimeout(err)
}

// isStale reports whether a write failed because the Lease is not what was observed.
func isStale(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
}

// snapshot is the public part of the state.
func (m *machine) snapshot() Snapshot {
	s := Snapshot{
		Known:         m.s.known,
		Holder:        holderOf(m.s.lease),
		Transitions:   transitionsOf(m.s.lease),
		Leading:       m.s.leading,
		LastRenewSent: m.s.lastRenewSent,
		HandoverFrom:  handoverFromOf(m.s.lease),
		App:           appStatusOf(m.s.app),
	}
	if m.s.leading && !m.s.leftServiceAt.IsZero() {
		s.LeavingService = m.leavingReason()
	}
	if m.s.lease != nil {
		s.ObservedExpiry = expiryOf(&m.s, m.cfg)
	}
	return s
}

// publish hands the current state to the HTTP side.
func (m *machine) publish() {
	now := m.clock.Now()
	snap := m.snapshot()
	m.board.publish(snap, statusOf(snap, now, m.cfg))
	m.board.beat(now)
}

func holderOrNobody(l *coordinationv1.Lease) string {
	if h := holderOf(l); h != "" {
		return h
	}
	return "nobody"
}
