package webhook

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestCachesLeaveNodeLeasesOut fills a real API server with a node heartbeat Lease and an election's Lease (and
// a ServiceAccount in each namespace) and lists them through a cache built with the webhook's options: nothing
// from kube-node-lease may be in it.
func TestCachesLeaveNodeLeasesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local control plane (make test runs it)")
	}
	env := controlplane.Start(t)
	ctx := t.Context()
	for _, ns := range []string{corev1.NamespaceNodeLease, metav1.NamespaceDefault} {
		meta := metav1.ObjectMeta{Name: "in-" + ns, Namespace: ns}
		if _, err := env.Clientset.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	opts := cacheOptions()
	opts.Scheme = scheme
	c, err := cache.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}

	leases := &coordinationv1.LeaseList{}
	if err := c.List(ctx, leases); err != nil {
		t.Fatal(err)
	}
	accounts := &corev1.ServiceAccountList{}
	if err := c.List(ctx, accounts); err != nil {
		t.Fatal(err)
	}
	var election bool
	for _, l := range leases.Items {
		if l.Namespace == corev1.NamespaceNodeLease {
			t.Errorf("Lease %s/%s is in the cache", l.Namespace, l.Name)
		}
		election = election || l.Name == "in-default"
	}
	if !election {
		t.Errorf("the election's Lease is not in the cache: %+v", leases.Items)
	}
	for _, a := range accounts.Items {
		if a.Namespace == corev1.NamespaceNodeLease {
			t.Errorf("ServiceAccount %s/%s is in the cache", a.Namespace, a.Name)
		}
	}
}
