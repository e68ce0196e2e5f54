package elector

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// Metrics receives the election's measurements as they happen (pkg/electorhttp exports them to Prometheus).
// The election loop calls it, so an implementation must not block.
type Metrics interface {
	// Leading records a change of this replica's leadership.
	Leading(is bool)
	// Renewed records a successful acquisition or renewal, sent at the given time.
	Renewed(sent time.Time)
	// TookOver records an acquisition at acquired of a Lease whose previous state was previous (held by another
	// replica, or released by one; nil when there was none).
	TookOver(previous *coordinationv1.Lease, acquired time.Time)
	// AppHealthy records the application's verdict.
	AppHealthy(healthy bool)
	// HandedOver counts a deliberate exit from leadership by cause (stepdown, unhealthy, shutdown) and outcome
	// (handed_over, released).
	HandedOver(cause, outcome string)
	// APIError counts a failed request of verb on resource; err is nil for a request that succeeded.
	APIError(resource, verb string, err error)
}

// noMetrics discards the measurements (Options.Metrics nil).
type noMetrics struct{}

func (noMetrics) Leading(bool)                              {}
func (noMetrics) Renewed(time.Time)                         {}
func (noMetrics) TookOver(*coordinationv1.Lease, time.Time) {}
func (noMetrics) AppHealthy(bool)                           {}
func (noMetrics) HandedOver(string, string)                 {}
func (noMetrics) APIError(string, string, error)            {}

// countedLeases counts LeaseAPI failures in the metrics.
type countedLeases struct {
	next    LeaseAPI
	metrics Metrics
}

func (c countedLeases) Get(ctx context.Context) (*coordinationv1.Lease, error) {
	l, err := c.next.Get(ctx)
	c.metrics.APIError("leases", "get", err)
	return l, err
}

func (c countedLeases) Watch(ctx context.Context, rv string) (watch.Interface, error) {
	w, err := c.next.Watch(ctx, rv)
	c.metrics.APIError("leases", "watch", err)
	return w, err
}

func (c countedLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out, err := c.next.Create(ctx, l)
	c.metrics.APIError("leases", "create", err)
	return out, err
}

func (c countedLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out, err := c.next.Update(ctx, l)
	c.metrics.APIError("leases", "update", err)
	return out, err
}

// countedEvents counts EventAPI failures in the metrics.
type countedEvents struct {
	next    EventAPI
	metrics Metrics
}

func (c countedEvents) Create(ctx context.Context, e *eventsv1.Event) error {
	err := c.next.Create(ctx, e)
	c.metrics.APIError("events", "create", err)
	return err
}
