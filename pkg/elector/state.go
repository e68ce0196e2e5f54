package elector

import (
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// state is everything the election loop knows. Only the loop changes it; the functions here are pure so that
// the timing rules can be tested with plain values.
type state struct {
	// known is true once the Lease (or its absence) has been observed.
	known bool
	// lease is the newest Lease observed, from the watch or from this replica's own writes; nil when absent.
	lease *coordinationv1.Lease
	// observedAt is when, by this replica's monotonic clock, the Lease's holder or renewal last changed. The
	// holder's clock is never trusted: a standby counts the lease duration from the moment it saw a change.
	observedAt time.Time
	// leading is true from a successful acquisition until this replica gives up, loses or releases the Lease.
	leading bool
	// lastRenewSent is when the last successful acquisition or renewal was sent (not answered): the server
	// applied it no earlier, so no standby can have started counting before it.
	lastRenewSent time.Time
	// retryAt holds back the next write after a failed one.
	retryAt time.Time
	// holdOffUntil keeps a replica that stepped down from taking the Lease back for one lease duration.
	holdOffUntil time.Time
	// awaitingNewer is set when a write conflicted: the Lease changed, and the watch should bring the change.
	// If it has not by awaitingUntil (about one retry period later), the Lease is read instead: a watch can
	// stay open and deliver nothing.
	awaitingNewer bool
	awaitingUntil time.Time
	// maybeHolder is set when an acquisition or creation failed without an answer from the server (a timeout,
	// a cancelled request): it may have landed, so shutdown reads the Lease and releases it if it is ours.
	maybeHolder bool
	// highestToken is the highest leaseTransitions this replica has seen on the Lease, valid when seenToken:
	// a Lease deleted and created again must not start over below it.
	highestToken int32
	seenToken    bool
	// createNotBefore is when the last holder of a deleted Lease has run out of lease by this replica's clock:
	// until then it may still act as the leader, so nobody may create the Lease anew. A replica whose first
	// observation is "no Lease" waits a lease duration and a retry period (see observe).
	createNotBefore time.Time
	// app is the application's health; an unhealthy replica neither creates, acquires nor confirms a handover,
	// and an unhealthy leader hands over when a healthy successor is known.
	app appState
	// successorKnown is set (before each decision) when the leader's candidate watch knows a healthy successor.
	successorKnown bool
	// steppingDown is set by a step-down request until this leader has left the Lease.
	steppingDown bool
	// leftServiceAt is when this leader, stepping down or unhealthy with a healthy successor known, made its
	// readiness fail so as to leave the Service before it leaves the Lease (ServiceLeaveTime later); zero while it
	// serves. It is cleared when the application recovers or the successor is gone, and on every new tenure.
	leftServiceAt time.Time
}

// action is the next step of the election loop.
type action int

const (
	// wait: nothing to do until the wake time, an observation or a request.
	wait action = iota
	// create the Lease, which does not exist.
	create
	// acquire the Lease: it is free, expired or already names this replica.
	acquire
	// renew the Lease this replica holds.
	renew
	// giveUp leadership: the renew deadline passed without a successful renewal.
	giveUp
	// reread the Lease: a write conflicted and the watch did not bring the newer state in time.
	reread
	// leaveService: this leader steps down, or its application is unhealthy and a healthy successor is known; turn
	// unready and keep the Lease until the Service has dropped this pod (ServiceLeaveTime), then hand over.
	leaveService
	// rejoinService: the application recovered (or the successor is gone) while leaving; turn ready again.
	rejoinService
	// handOver the Lease to a healthy successor (or release it when stepping down without one): this leader has
	// been out of the Service for ServiceLeaveTime.
	handOver
)

func (a action) String() string {
	return [...]string{"wait", "create", "acquire", "renew", "give up", "reread", "leave the Service", "rejoin the Service", "hand over"}[a]
}

// decide returns the next action and, for wait, when to look again (zero: only an observation can help).
func decide(s *state, now time.Time, cfg Config) (action, time.Time) {
	if s.leading {
		giveUpAt := s.lastRenewSent.Add(cfg.RenewDeadline)
		if !now.Before(giveUpAt) {
			return giveUp, time.Time{}
		}
		if s.awaitingNewer {
			if !now.Before(s.awaitingUntil) {
				return reread, time.Time{}
			}
			return wait, earlier(s.awaitingUntil, giveUpAt)
		}
		// With no healthy successor an unhealthy leader keeps the Lease: it serves no worse than no leader at all,
		// and it may recover; it hands over as soon as a healthy candidate appears. Whether stepping down or
		// unhealthy, it first leaves the Service and keeps renewing: its pod is still Ready and labelled, and the
		// Service would otherwise send requests to it after the Lease moved, answers from a non-leader.
		leaving := s.steppingDown || (!s.app.healthy() && s.successorKnown)
		handOverAt := s.leftServiceAt.Add(ServiceLeaveTime)
		switch {
		case leaving && s.leftServiceAt.IsZero():
			return leaveService, time.Time{}
		case !leaving && !s.leftServiceAt.IsZero():
			return rejoinService, time.Time{}
		case leaving && !now.Before(handOverAt):
			return handOver, time.Time{}
		}
		renewAt := later(s.lastRenewSent.Add(cfg.renewInterval()), s.retryAt)
		if !now.Before(renewAt) {
			return renew, time.Time{}
		}
		if leaving {
			return wait, earlier(earlier(renewAt, giveUpAt), handOverAt)
		}
		return wait, earlier(renewAt, giveUpAt)
	}
	if !s.known {
		return wait, time.Time{}
	}
	if s.awaitingNewer {
		if !now.Before(s.awaitingUntil) {
			return reread, time.Time{}
		}
		return wait, s.awaitingUntil
	}
	if !s.app.healthy() {
		// An unhealthy replica neither creates nor acquires the Lease, nor confirms a handover to itself (which
		// then falls to another replica after the handover bound). Only a change of health can help.
		return wait, time.Time{}
	}
	if now.Before(s.retryAt) {
		return wait, s.retryAt
	}
	if ownedBy(s.lease, cfg) && handoverFromOf(s.lease) != "" {
		// Handed over to this replica: confirm at once, even while holding off after its own step-down (holding
		// off keeps it from taking the Lease back; here another leader chose it).
		return acquire, time.Time{}
	}
	if now.Before(s.holdOffUntil) {
		return wait, s.holdOffUntil
	}
	if s.lease == nil {
		if now.Before(s.createNotBefore) {
			return wait, s.createNotBefore
		}
		return create, time.Time{}
	}
	if holderOf(s.lease) == "" || ownedBy(s.lease, cfg) {
		// Free, or written by this very pod (its elector container restarted, or it gave up while the Lease
		// kept its name): the write's resourceVersion makes it safe, it fails if anyone changed the Lease. A
		// Lease naming this pod's name with another UID is a stranger's, waited out like any other.
		return acquire, time.Time{}
	}
	expiry := expiryOf(s, cfg)
	if now.Before(expiry) {
		return wait, expiry
	}
	return acquire, time.Time{}
}

// expiryOf is when the observed holder's lease runs out by this replica's clock. A Lease handed over and not yet
// confirmed runs out after the handover bound (if that is shorter): its successor has not led yet, so whoever
// takes it then overlaps with nobody, and the successor's late confirmation conflicts.
func expiryOf(s *state, cfg Config) time.Time {
	d := leaseDurationOf(s.lease, cfg.LeaseDuration)
	if handoverFromOf(s.lease) != "" {
		d = min(d, cfg.handoverBound())
	}
	return s.observedAt.Add(d)
}

// leaseDurationOf is the duration the holder promised in the Lease, or ours when it promised none, and never
// more than MaxLeaseDuration: whoever can write the Lease must not be able to freeze the election with an
// absurd duration.
func leaseDurationOf(l *coordinationv1.Lease, fallback time.Duration) time.Duration {
	if l == nil || l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds <= 0 {
		return fallback
	}
	return min(time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second, MaxLeaseDuration)
}

// observe folds a Lease seen through the watch into the state (nil: the Lease is gone). It ignores anything
// older than what is already known, and reports whether this replica thereby lost leadership.
func observe(s *state, l *coordinationv1.Lease, deletedAt string, now time.Time, cfg Config) (lost bool) {
	incoming := deletedAt
	if l != nil {
		incoming = l.ResourceVersion
	}
	if s.known && s.lease != nil && olderResourceVersion(incoming, s.lease.ResourceVersion) {
		return false
	}
	if s.known && s.lease != nil && incoming == s.lease.ResourceVersion {
		return false // the echo of our own write, or a re-list of what we already have
	}
	if l == nil && !s.known && !s.seenToken {
		// The first thing this replica learns is that there is no Lease. It cannot tell a workload's first
		// start from a Lease deleted moments ago, under a holder that has not noticed yet and while other
		// replicas wait it out remembering its token. So it waits a lease duration and a retry period: any such
		// holder has run out by then, and any replica that remembers the token creates the Lease first.
		s.createNotBefore = later(s.createNotBefore, now.Add(cfg.LeaseDuration+cfg.RetryPeriod))
	}
	if l == nil && s.lease != nil {
		// Deleted, and this replica may have missed changes before the deletion (a watch that stayed silent is
		// restarted from a read, which finds only that the Lease is gone): someone may have acquired or renewed
		// it meanwhile. Every such write was sent before the deletion, which came before now, so whoever sent it
		// stops leading within a renew deadline from now.
		s.createNotBefore = later(s.createNotBefore, now.Add(cfg.RenewDeadline))
	}
	if l == nil && s.lease != nil && holderOf(s.lease) != "" {
		// Deleted while held: the last holder may act until its lease runs out as this replica saw it. Not the
		// handover bound: a successor may have confirmed (and led since) without this replica seeing it, when a
		// silent watch was restarted from a read that found the Lease gone.
		s.createNotBefore = later(s.createNotBefore, s.observedAt.Add(leaseDurationOf(s.lease, cfg.LeaseDuration)))
	}
	if !s.known || recordChanged(s.lease, l) {
		s.observedAt = now
	}
	s.known, s.lease, s.awaitingNewer = true, l, false
	noteToken(s, l)
	if s.leading && !ownedBy(l, cfg) {
		s.leading = false
		return true
	}
	return false
}

// noteToken remembers the highest fencing token seen.
func noteToken(s *state, l *coordinationv1.Lease) {
	if l == nil {
		return
	}
	if t := transitionsOf(l); !s.seenToken || t > s.highestToken {
		s.highestToken, s.seenToken = t, true
	}
}

// nextToken is the fencing token of a new tenure over the Lease l (nil: creating it): above the Lease's and
// above every token this replica has seen, so that a Lease deleted and created again cannot lower it.
func nextToken(s *state, l *coordinationv1.Lease) int32 {
	switch {
	case l != nil && s.seenToken:
		return max(transitionsOf(l), s.highestToken) + 1
	case l != nil:
		return transitionsOf(l) + 1
	case s.seenToken:
		return s.highestToken + 1
	default:
		return 0 // nothing remembered: the first Lease, or every replica was down while it was deleted
	}
}

// recordChanged reports whether the election record differs: a new holder, renewal, transition count, or a
// handover confirmed.
func recordChanged(a, b *coordinationv1.Lease) bool {
	if a == nil || b == nil {
		return a != b
	}
	return holderOf(a) != holderOf(b) || holderUIDOf(a) != holderUIDOf(b) || transitionsOf(a) != transitionsOf(b) ||
		handoverFromOf(a) != handoverFromOf(b) ||
		!a.Spec.RenewTime.Equal(b.Spec.RenewTime) || !a.Spec.AcquireTime.Equal(b.Spec.AcquireTime)
}

// olderResourceVersion reports whether a is older than b. Resource versions are opaque by contract, but they
// come from etcd's revision counter; a watch event can arrive after the answer to a later write of ours, and
// comparing is the only way to tell. When either does not parse, nothing is assumed older.
func olderResourceVersion(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x < y
}

// ownedBy reports whether the Lease names this very pod: its name as the holder and its UID in the
// holder-uid annotation. A Lease without the annotation is nobody's own.
func ownedBy(l *coordinationv1.Lease, cfg Config) bool {
	return holderOf(l) == cfg.Identity && holderUIDOf(l) == cfg.UID && cfg.UID != ""
}

// holderUIDOf is the UID of the pod that wrote itself as the Lease's holder, "" when unknown.
func holderUIDOf(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return l.Annotations[HolderUIDAnnotation]
}

// holderOf is the Lease's holder identity, "" when it has none (or there is no Lease).
func holderOf(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// transitionsOf is the Lease's leaseTransitions, the fencing token.
func transitionsOf(l *coordinationv1.Lease) int32 {
	if l == nil || l.Spec.LeaseTransitions == nil {
		return 0
	}
	return *l.Spec.LeaseTransitions
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
