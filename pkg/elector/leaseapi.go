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
	// closeIdle closes the idle connections of the pool the election's requests draw from (see unanswered).
	closeIdle func()
}

// unanswered closes the pool's idle connections when a request went unanswered (it timed out, or was
// cancelled while waiting). The fault that swallowed the answer may have killed the idle connections too,
// silently; the next request, often the one that decides what to do about the unknown outcome (the read
// before a release on shutdown), would otherwise reuse one and wait out its whole timeout on it.
func (r restLeases) unanswered(err error) error {
	if r.closeIdle != nil && notAnswered(err) {
		r.closeIdle()
	}
	return err
}

func (r restLeases) Get(ctx context.Context) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := r.client.Get().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(r.name).Do(ctx).Into(out)
	return out, r.unanswered(err)
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
	w, err := req.Watch(ctx)
	return w, r.unanswered(err)
}

func (r restLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := r.client.Post().MaxRetries(0).Namespace(r.namespace).Resource("leases").Body(l).Do(ctx).Into(out)
	return out, r.unanswered(err)
}

func (r restLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if l.Name != r.name {
		return nil, fmt.Errorf("lease %q is not the elected Lease %q", l.Name, r.name)
	}
	out := &coordinationv1.Lease{}
	err := r.client.Put().MaxRetries(0).Namespace(r.namespace).Resource("leases").Name(r.name).Body(l).Do(ctx).Into(out)
	return out, r.unanswered(err)
}

// restEvents is EventAPI over a REST client for events.k8s.io/v1.
type restEvents struct {
	client rest.Interface
}

func (r restEvents) Create(ctx context.Context, e *eventsv1.Event) error {
	return r.client.Post().MaxRetries(0).Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Error()
}
