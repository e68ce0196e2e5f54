package elector

import (
	"context"
	"fmt"
	"net/http"

	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	"github.com/leader-election/leader-election/pkg/version"
)

// The clients here know two API groups only. client-go's typed clients would register every API group's types
// through k8s.io/client-go/kubernetes/scheme, which more than doubles the binary.

// newScheme registers the only types the elector reads or writes.
func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{coordinationv1.AddToScheme, eventsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	// Status (errors) and WatchEvent come unversioned.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s, nil
}

// NewAPIs returns the Lease and Event clients for one election, sharing one connection pool.
func NewAPIs(cfg *rest.Config, namespace, leaseName string) (LeaseAPI, EventAPI, error) {
	cfg, httpClient, err := newPool(cfg)
	if err != nil {
		return nil, nil, err
	}
	leases, err := restClientFor(cfg, httpClient, coordinationv1.SchemeGroupVersion)
	if err != nil {
		return nil, nil, err
	}
	events, err := restClientFor(cfg, httpClient, eventsv1.SchemeGroupVersion)
	if err != nil {
		return nil, nil, err
	}
	return restLeases{client: leases, namespace: namespace, name: leaseName, closeIdle: closeIdleOf(httpClient)}, restEvents{client: events}, nil
}

// ReadLeases reads one Lease of a namespace, or all of them when name is "", for the status command.
func ReadLeases(ctx context.Context, cfg *rest.Config, namespace, name string) ([]coordinationv1.Lease, error) {
	client, _, err := newLeaseClient(cfg)
	if err != nil {
		return nil, err
	}
	if name != "" {
		l := &coordinationv1.Lease{}
		if err := client.Get().Namespace(namespace).Resource("leases").Name(name).Do(ctx).Into(l); err != nil {
			return nil, fmt.Errorf("reading Lease %s/%s: %w", namespace, name, err)
		}
		return []coordinationv1.Lease{*l}, nil
	}
	list := &coordinationv1.LeaseList{}
	if err := client.Get().Namespace(namespace).Resource("leases").Do(ctx).Into(list); err != nil {
		return nil, fmt.Errorf("listing Leases in namespace %s: %w", namespace, err)
	}
	return list.Items, nil
}

// tuneConfig adapts a client configuration to election traffic.
func tuneConfig(in *rest.Config) *rest.Config {
	cfg := rest.CopyConfig(in)
	// HTTP/1.1 gives every request its own connection, so a request that timed out on a dead connection does
	// not leave the next attempt queued behind it (HTTP/2 multiplexes all of them on one connection until
	// its health check notices, 45 s later by default).
	cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	// The election's own timers pace its requests; a client-side rate limiter could only delay a handover.
	cfg.QPS, cfg.Burst = 50, 100
	if cfg.UserAgent == "" {
		cfg.UserAgent = "leader-election-elector/" + version.Version
	}
	return cfg
}

// newPool tunes a client configuration for election traffic (tuneConfig) and builds the HTTP client, one
// connection pool, that the REST clients built from it share.
func newPool(in *rest.Config) (*rest.Config, *http.Client, error) {
	cfg := tuneConfig(in)
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("building the HTTP client for the API server: %w", err)
	}
	return cfg, httpClient, nil
}

// newLeaseClient builds a coordination.k8s.io/v1 client on a connection pool of its own, and returns the pool too.
func newLeaseClient(in *rest.Config) (*rest.RESTClient, *http.Client, error) {
	cfg, httpClient, err := newPool(in)
	if err != nil {
		return nil, nil, err
	}
	client, err := restClientFor(cfg, httpClient, coordinationv1.SchemeGroupVersion)
	if err != nil {
		return nil, nil, err
	}
	return client, httpClient, nil
}

// closeIdleOf returns what closes the idle connections of a pool. http.Client's own CloseIdleConnections does
// nothing here: client-go's round-tripper wrappers (user agent, authentication) do not pass it on.
func closeIdleOf(c *http.Client) func() {
	return func() { utilnet.CloseIdleConnectionsFor(c.Transport) }
}

// restClientFor builds a REST client for one group version with the elector's small scheme.
func restClientFor(cfg *rest.Config, httpClient *http.Client, gv schema.GroupVersion) (*rest.RESTClient, error) {
	s, err := newScheme()
	if err != nil {
		return nil, fmt.Errorf("registering API types: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	client, err := rest.RESTClientForConfigAndClient(c, httpClient)
	if err != nil {
		return nil, fmt.Errorf("building the %s client: %w", gv, err)
	}
	return client, nil
}
