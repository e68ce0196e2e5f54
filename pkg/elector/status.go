package elector

import (
	"fmt"
	"time"

	"github.com/leader-election/leader-election/pkg/contract"
)

// Snapshot is what the election loop last published: enough to answer every HTTP request without asking it.
type Snapshot struct {
	// Known is true once the Lease (or its absence) has been observed.
	Known bool
	// Holder is the Lease's holder identity, "" when nobody holds it.
	Holder string
	// Transitions is the Lease's leaseTransitions, the fencing token.
	Transitions int32
	// Leading is true while this replica believes it holds the Lease; see Fresh for whether it may act on it.
	Leading bool
	// LastRenewSent is when the last successful acquisition or renewal was sent.
	LastRenewSent time.Time
	// ObservedExpiry is when the holder's lease runs out by this replica's clock (standbys only).
	ObservedExpiry time.Time
	// HandoverFrom is the previous holder while the Lease is handed over and not yet confirmed.
	HandoverFrom string
	// App is the application's health (zero when leadership is not health-gated).
	App AppStatus
	// LeavingService says why, while this leader stays out of the Service before it leaves the Lease (stepping
	// down, or its application unhealthy); "" while it serves. It still leads (GET / says so), but its readiness
	// fails, in both readiness modes.
	LeavingService string
}

// Fresh reports whether this replica leads and renewed within the renew deadline: the only state in which it
// may act as the leader. It is computed from time at every use, never stored, so that a replica resumed after
// a pause, or cut off from the API server, cannot report a leadership that has run out.
func (s Snapshot) Fresh(now time.Time, renewDeadline time.Duration) bool {
	return s.Leading && elapsed(s.LastRenewSent, now) < renewDeadline
}

// elapsed is the time from then to now by the monotonic clock or by the wall clock, whichever says longer.
// The monotonic clock keeps running while the process is stopped, but not while the whole machine is
// suspended; the wall clock is set forward on resume. Either running ahead only makes a leader unready early,
// until its next renewal.
func elapsed(then, now time.Time) time.Duration {
	return max(now.Sub(then), now.Round(0).Sub(then.Round(0)))
}

// Status is the JSON answer of GET / and of each /events message. Name comes first, as in the retired
// leader-elector sidecar's answer, so that applications written for it keep working.
type Status struct {
	// Name is the leader's identity as the Lease names it, "" when nobody holds the Lease; this replica's own
	// name only while it is a fresh leader.
	Name string `json:"name"`
	// IsLeader is true when this replica holds the Lease and its last renewal is within the renew deadline.
	IsLeader bool `json:"isLeader"`
	// LeaseTransitions is the fencing token: it grows every time the Lease changes hands.
	LeaseTransitions int32 `json:"leaseTransitions"`
	// ValidUntil is, on the leader, when it must stop acting unless it renews; on a standby, when the current
	// holder's lease expires as this replica sees it; absent when nobody holds the Lease.
	ValidUntil string `json:"validUntil,omitempty"`
	// Identity is this replica's own identity.
	Identity string `json:"identity"`
	// LeaseName is the Lease the replicas compete for.
	LeaseName string `json:"leaseName"`
	// Namespace is the Lease's namespace.
	Namespace string `json:"namespace"`
	// HandoverFrom names the previous holder while the Lease is handed over to Name and not yet confirmed by it.
	HandoverFrom string `json:"handoverFrom,omitempty"`
	// App is this replica's application health, when leadership is health-gated: an unhealthy replica does not
	// take the Lease, and an unhealthy leader hands it over to a healthy replica if there is one.
	App AppStatus `json:"app,omitzero"`
}

// statusOf builds the public view of a snapshot at a given moment.
func statusOf(s Snapshot, now time.Time, cfg Config) Status {
	fresh := s.Fresh(now, cfg.RenewDeadline)
	name := s.Holder
	if name == cfg.Identity && !fresh {
		// Clients of the retired leader-elector decide leadership by name == hostname: naming this replica
		// while it does not lead with a fresh renewal (it gave up, is cut off, or another pod of the same name
		// holds the Lease) would be split brain for them.
		name = ""
	}
	st := Status{
		Name:             name,
		IsLeader:         fresh,
		LeaseTransitions: s.Transitions,
		Identity:         cfg.Identity,
		LeaseName:        cfg.LeaseName,
		Namespace:        cfg.Namespace,
		HandoverFrom:     s.HandoverFrom,
		App:              s.App,
	}
	switch {
	case s.Leading:
		st.ValidUntil = formatTime(s.LastRenewSent.Add(cfg.RenewDeadline))
	case s.Holder != "":
		st.ValidUntil = formatTime(s.ObservedExpiry)
	}
	return st
}

// formatTime renders a wall-clock time for clients; the monotonic reading is for this process only.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ready decides /readyz and explains a refusal. A leader leaving the Service before it leaves the Lease is unready
// in both modes. A fresh leader is ready in both modes (in member mode even with its watch down: its renewals
// prove it is in contact, and label routing sends traffic to it alone). In member mode, a replica still labelled
// leader-election/role=leader (labelledLeader) that is not a fresh leader is unready, so that a Service selecting
// the label never lists it beside the real leader.
func ready(s Snapshot, w watchState, labelledLeader bool, now time.Time, cfg Config) (bool, string) {
	switch {
	case s.LeavingService != "":
		return false, fmt.Sprintf("leaving the Service: %s; the Lease goes to another replica once this pod is out of the Service (%s)",
			s.LeavingService, ServiceLeaveTime)
	case s.Fresh(now, cfg.RenewDeadline):
		return true, "leader"
	case s.Leading:
		return false, fmt.Sprintf("stale leader: last renewal sent %s ago, renew deadline is %s",
			elapsed(s.LastRenewSent, now).Round(time.Millisecond), cfg.RenewDeadline)
	case cfg.Readiness == ReadinessMember && labelledLeader:
		return false, fmt.Sprintf("labelled %s=%s but not a fresh leader: waiting for the label to move", contract.LabelRole, contract.RoleLeader)
	case cfg.Readiness == ReadinessMember && w.notAdvertised:
		return false, "not a candidate yet: the candidate Lease does not say this replica is healthy, so no leader could hand over to it"
	case cfg.Readiness == ReadinessMember && w.following(now, cfg):
		return true, "member"
	case cfg.Readiness == ReadinessMember && w.synced:
		return false, fmt.Sprintf("not following the Lease: its watch has been silent for %s (restarting it)",
			now.Sub(w.lastActivity).Round(time.Millisecond))
	case cfg.Readiness == ReadinessMember:
		return false, "not following the Lease: its watch is not established"
	case !s.Known:
		return false, "the Lease has not been read yet"
	case s.Holder == "":
		return false, "not the leader: nobody holds the Lease"
	default:
		return false, fmt.Sprintf("not the leader: %s holds the Lease", s.Holder)
	}
}

// healthy decides /healthz: the election loop has run recently. The loop wakes at least once per retry period
// and never waits on the API server for longer than that, so one lease duration of silence means it is stuck.
func healthy(heartbeat, now time.Time, cfg Config) (bool, string) {
	if age := now.Sub(heartbeat); age >= cfg.LeaseDuration {
		return false, fmt.Sprintf("election loop stuck: last ran %s ago", age.Round(time.Millisecond))
	}
	return true, "ok"
}
