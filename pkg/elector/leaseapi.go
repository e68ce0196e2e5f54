package elector

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// LeaseAPI is everything the election does with the API server, for one Lease: get, watch, create, update.
type LeaseAPI interface {
	// Get reads the Lease.
	Get(ctx context.Context) (*coordinationv1.Lease, error)
	// Watch follows the Lease from a resource version ("" starts with its current state).
	Watch(ctx context.Context, resourceVersion string) (watch.Interface, error)
	// Create creates the Lease.
	Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// Update writes the Lease if its resourceVersion is still current (optimistic concurrency).
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// EventAPI creates Events, the only other thing the elector writes.
type EventAPI interface {
	// Create creates an Event in its namespace.
	Create(ctx context.Context, e *eventsv1.Event) error
}

// restLeases is LeaseAPI over a REST client for coordination.k8s.io/v1.
type restLeases struct {
	client    rest.Interface
	namespace string
	name      string
}

func (r restLeases) Get(ctx context.Context) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := r.client.Get().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(r.name).Do(ctx).Into(out)
	return out, err
}

func (r restLeases) Watch(ctx context.Context, resourceVersion string) (watch.Interface, error) {
	// A field selector on the name lets RBAC scope the watch to this one Lease (resourceNames).
	req := r.client.Get().MaxRetries(0).Namespace(r.namespace).Resource("leases").
		Param("watch", "true").
		Param("allowWatchBookmarks", "true").
		Param("fieldSelector", fields.OneTermEqualSelector("metadata.name", r.name).String())
	if resourceVersion != "" {
		req = req.Param("resourceVersion", resourceVersion)
	}
	return req.Watch(ctx)
}

func (r restLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := r.client.Post().MaxRetries(0).Namespace(r.namespace).Resource("leases").Body(l).Do(ctx).Into(out)
	return out, err
}

func (r restLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if l.Name != r.name {
		return nil, fmt.Errorf("lease %q is not the elected Lease %q", l.Name, r.name)
	}
	out := &coordinationv1.Lease{}
	err := r.client.Put().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(r.name).Body(l).Do(ctx).Into(out)
	return out, err
}

// restEvents is EventAPI over a REST client for events.k8s.io/v1.
type restEvents struct {
	client rest.Interface
}

func (r restEvents) Create(ctx context.Context, e *eventsv1.Event) error {
	return r.client.Post().MaxRetries(0).Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Error()
}
