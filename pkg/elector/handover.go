package elector

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Direct handover. A leader that steps down, loses its application's health or shuts down writes the Lease over
// to a chosen successor in ONE update, guarded by the resourceVersion: holderIdentity = the successor's pod name,
// holder-uid = its UID, leaseTransitions + 1, acquireTime = renewTime = now, and the annotation
// HandoverFromAnnotation = the old holder's pod name. It stops reporting leader before it sends that write.
//
// The successor sees the write through its Lease watch and confirms it with its first renewal (token + 0, the
// annotation removed, guarded by the resourceVersion); only once that write succeeded does it lead, and its
// readiness is timed from when it sent it. A handover not confirmed within Config.handoverBound may be taken by
// anyone, and such a take makes a late confirmation conflict: a successor that died costs the bound, no more.

// HandoverFromAnnotation is on a Lease handed over and not confirmed yet: the pod name of the holder that wrote it.
const HandoverFromAnnotation = "leader-election/handover-from"

// handoverFromOf is the pod that handed the Lease over, "" when the Lease is not awaiting a confirmation.
func handoverFromOf(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return l.Annotations[HandoverFromAnnotation]
}

// self is this replica as a candidate.
func (m *machine) self() candidate {
	return candidate{Name: m.cfg.Identity, UID: m.cfg.UID, Healthy: m.s.app.healthy(), Revision: m.revision, Started: m.started}
}

// successor is the replica this leader would hand over to now, from what its candidate watch knows.
func (m *machine) successor() (candidate, bool) {
	if m.candidates == nil {
		return candidate{}, false
	}
	return chooseSuccessor(m.candidates.list(), m.self())
}

// advertise offers this replica's current advertisement to the advertiser (if candidates are advertised).
func (m *machine) advertise() {
	if m.advertiser != nil {
		m.advertiser.offer(m.self())
	}
}

// leave ends this replica's tenure on purpose (why: step-down, health, shutdown): by a handover to a healthy
// successor when Config.Handover is set and one is known, else by a release, as before handover existed.
func (m *machine) leave(ctx context.Context, cause handoverCause, why string) error {
	succ, ok := m.successor()
	if !m.cfg.Handover || !ok {
		if m.cfg.Handover {
			why += " (no healthy candidate to hand over to)"
		}
		m.metrics.HandedOver(string(cause), "released")
		return m.release(ctx, why)
	}
	err := m.handOver(ctx, succ, why)
	if isStale(err) {
		// The Lease changed since this leader last knew it. Most often its own write did: a renewal cancelled by
		// SIGTERM (or timed out) after it had landed. If the Lease is still this replica's, hand over from what it
		// is now, rather than fall back to a release and make the successor's acquisition a second change.
		readCtx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
		cur, getErr := m.leases.Get(readCtx)
		cancel()
		if getErr == nil && ownedBy(cur, m.cfg) {
			m.s.lease = cur
			err = m.handOver(ctx, succ, why)
		}
	}
	if err == nil {
		m.metrics.HandedOver(string(cause), "handed_over")
		return nil
	}
	m.log.Warn("handover failed; releasing the Lease instead", "successor", succ.Name, "error", err)
	m.metrics.HandedOver(string(cause), "released")
	// A handover that failed without an answer may have landed: release re-reads the Lease on a conflict and
	// releases only a Lease that is still this replica's.
	return m.release(ctx, why+" (the handover to "+succ.Name+" failed)")
}

// handoverCause is why a leader leaves, for the metrics.
type handoverCause string

const (
	causeStepDown  handoverCause = "stepdown"
	causeUnhealthy handoverCause = "unhealthy"
	causeShutdown  handoverCause = "shutdown"
)

// handOver writes the Lease over to succ (see the top of this file). It stops leading first.
func (m *machine) handOver(ctx context.Context, succ candidate, why string) error {
	m.s.leading = false
	m.metrics.Leading(false)
	m.publish()
	now := m.clock.Now()
	l := m.s.lease.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Spec.HolderIdentity = ptr.To(succ.Name)
	l.Annotations[HolderUIDAnnotation] = succ.UID
	l.Annotations[HandoverFromAnnotation] = m.cfg.Identity
	l.Spec.LeaseTransitions = ptr.To(transitionsOf(m.s.lease) + 1)
	l.Spec.AcquireTime = ptr.To(metav1.NewMicroTime(now))
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
	l.Spec.LeaseDurationSeconds = ptr.To(m.cfg.leaseDurationSeconds())
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	out, err := m.leases.Update(ctx, l)
	if err != nil {
		return fmt.Errorf("handing the Lease over to %s: %w", succ.Name, err)
	}
	m.s.lease, m.s.observedAt = out, m.clock.Now()
	noteToken(&m.s, out)
	m.recorder.record(out, corev1.EventTypeNormal, "HandedOver", fmt.Sprintf("%s handed the Lease over to %s (leaseTransitions %d): %s",
		m.cfg.Identity, succ.Name, transitionsOf(out), why))
	m.log.Info("handed the Lease over", "successor", succ.Name, "successorRevision", succ.Revision,
		"leaseTransitions", transitionsOf(out), "reason", why)
	return nil
}
