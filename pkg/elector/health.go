package elector

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// AppHealth is the verdict of this pod's application checks; nil in Options means leadership is not health-gated.
type AppHealth interface {
	// Healthy reports the current verdict and a short reason for it ("" when healthy).
	Healthy() (healthy bool, reason string)
	// Changed delivers a value whenever the verdict may have changed (buffered, capacity 1, never closed).
	Changed() <-chan struct{}
}

// appState is what the election loop knows of its application's health. The zero value is "not gated": healthy.
type appState struct {
	// gated is true when an AppHealth was given.
	gated bool
	// unhealthy is the last verdict read, inverted so that the zero value means healthy.
	unhealthy bool
	// reason is the verdict's reason when unhealthy.
	reason string
	// since is when the verdict last changed (when the loop read it).
	since time.Time
}

// healthy reports whether the application may lead: always when leadership is not gated.
func (a appState) healthy() bool {
	return !a.unhealthy
}

// changedTo folds a verdict read at now into the state and reports whether it differs from the previous one.
func (a *appState) changedTo(healthy bool, reason string, now time.Time) bool {
	if !healthy && reason == "" {
		reason = "unhealthy"
	}
	if healthy {
		reason = ""
	}
	if a.unhealthy == !healthy && a.reason == reason && !a.since.IsZero() {
		return false
	}
	flipped := a.unhealthy == healthy || a.since.IsZero()
	a.unhealthy, a.reason = !healthy, reason
	if flipped {
		a.since = now
	}
	return true
}

// readHealth takes the application's verdict into the machine: the state, the metric, an Event and a log line
// when it flips, and the candidate advertisement.
func (m *machine) readHealth(h AppHealth) {
	healthy, reason := h.Healthy()
	wasHealthy, hadVerdict := m.s.app.healthy(), !m.s.app.since.IsZero()
	m.s.app.gated = true
	if !m.s.app.changedTo(healthy, reason, m.clock.Now()) {
		return
	}
	m.metrics.AppHealthy(healthy)
	m.advertise()
	switch {
	case hadVerdict && wasHealthy == healthy:
		// Only the reason changed: nothing to record.
	case healthy:
		m.log.Info("the application is healthy")
		m.recorder.record(m.s.lease, corev1.EventTypeNormal, "AppHealthy", fmt.Sprintf("%s: the application is healthy again", m.cfg.Identity))
	default:
		m.log.Warn("the application is unhealthy", "reason", m.s.app.reason, "leading", m.s.leading)
		m.recorder.record(m.s.lease, corev1.EventTypeWarning, "AppUnhealthy", fmt.Sprintf("%s: the application is unhealthy (%s)%s",
			m.cfg.Identity, m.s.app.reason, unhealthyConsequence(m.s.leading)))
	}
}

// unhealthyConsequence tells what an unhealthy verdict does, for the Event.
func unhealthyConsequence(leading bool) string {
	if leading {
		return "; handing the Lease over to a healthy candidate if there is one"
	}
	return "; it will not take the Lease until healthy"
}

// AppStatus is the application's health in GET / and /events; absent when leadership is not health-gated.
type AppStatus struct {
	// Healthy is the last verdict of the application's checks.
	Healthy bool `json:"healthy"`
	// Reason says why the application is unhealthy ("" when healthy).
	Reason string `json:"reason,omitempty"`
	// Since is when the verdict last changed.
	Since string `json:"since,omitempty"`
}

// appStatusOf renders the application's health for clients.
func appStatusOf(a appState) AppStatus {
	if !a.gated {
		return AppStatus{}
	}
	st := AppStatus{Healthy: a.healthy(), Reason: a.reason}
	if !a.since.IsZero() {
		st.Since = formatTime(a.since)
	}
	return st
}
