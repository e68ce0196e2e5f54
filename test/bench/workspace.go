package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/leader-election/leader-election/test/cluster"
	"github.com/leader-election/leader-election/test/controlplane"
)

// benchNamespace holds every Lease of the election benchmarks.
const benchNamespace = "bench"

// workspace is the election benchmarks' world: one kube-apiserver, a namespace, one API user per implementation
// with exactly the elector's permissions, and the Lease watch that times every failover.
type workspace struct {
	env    *controlplane.Env
	cs     kubernetes.Interface
	dir    string
	procs  *procs
	leases *leaseWatch
	logf   func(format string, args ...any)
	ours   *impl
	base   *impl
	once   sync.Once
}

// impl is one leader-election implementation under test.
type impl struct {
	name string // "ours" or "baseline"
	bin  string
	// kubeconfig reaches the API server directly as this implementation's user; rest holds the same credentials.
	kubeconfig string
	rest       *rest.Config
}

func (im *impl) isOurs() bool { return im.name == "ours" }

// startWorkspace starts etcd and kube-apiserver and prepares the namespace and users.
func startWorkspace(ctx context.Context, dir string, bins binaries, ps *procs, logf func(string, ...any)) (_ *workspace, err error) {
	logf("starting etcd and kube-apiserver for the election benchmarks")
	env, err := controlplane.New()
	if err != nil {
		return nil, err
	}
	ws := &workspace{env: env, cs: env.Clientset, dir: dir, procs: ps, logf: logf}
	defer func() {
		if err != nil {
			ws.stop()
		}
	}()
	if _, err := ws.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", benchNamespace, err)
	}
	role, err := cluster.ReadManifest[*rbacv1.ClusterRole]("config/rbac/elector_role.yaml")
	if err != nil {
		return nil, err
	}
	if _, err := ws.cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
	}
	// A user per implementation, bound as the webhook binds a pod's ServiceAccount: the shipped elector role, in
	// this namespace only. Both pay the same authorization cost.
	if ws.ours, err = ws.newImpl(ctx, "ours", bins.elector, role.Name); err != nil {
		return nil, err
	}
	if ws.base, err = ws.newImpl(ctx, "baseline", bins.baseline, role.Name); err != nil {
		return nil, err
	}
	if ws.leases, err = watchLeases(ctx, ws.cs, benchNamespace); err != nil {
		return nil, err
	}
	return ws, nil
}

func (ws *workspace) newImpl(ctx context.Context, name, bin, clusterRole string) (*impl, error) {
	user := "bench-" + name
	_, err := ws.cs.RbacV1().RoleBindings(benchNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("binding %s: %w", user, err)
	}
	kubeconfig, err := ws.env.WriteKubeconfig(ws.dir, user)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Base(kubeconfig), err)
	}
	return &impl{name: name, bin: bin, kubeconfig: kubeconfig, rest: cfg}, nil
}

func (ws *workspace) impls() []*impl { return []*impl{ws.ours, ws.base} }

// stop ends every process, then the control plane; it may be called more than once.
func (ws *workspace) stop() {
	ws.once.Do(func() {
		ws.procs.killAll()
		if ws.leases != nil {
			ws.leases.stop()
		}
		if err := ws.env.Stop(); err != nil {
			ws.logf("stopping the control plane: %v", err)
		}
	})
}
