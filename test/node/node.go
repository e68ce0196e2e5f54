// Package node runs a real single-node Kubernetes cluster on this machine for the end-to-end suite and the demo:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from source by hack/control-plane.sh
// and hack/node-binaries.sh), a kubelet with containerd, runc and a CNI bridge, and kube-proxy, so pods are real
// containers and Service traffic goes through kube-proxy's rules.
//
// The harness changes the machine (a bridge, routes, firewall rules, cgroups, mounts, sysctls) and puts all of it
// back when it stops: on success, on failure and on Ctrl-C (SIGINT or SIGTERM). TakeSnapshot and Snapshot.Diff
// check that it did. Only one node runs per machine (LockFile). See real-node.md in the shared notes, or the
// comments here, for why each setting is what it is.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options configure a node.
type Options struct {
	// ControlPlane holds etcd, kube-apiserver and kube-controller-manager (hack/control-plane.sh).
	ControlPlane string
	// NodeBinaries holds kubelet, kube-proxy and kube-scheduler (hack/node-binaries.sh).
	NodeBinaries string
	// RepoRoot is this repository, whose test/node/pause and test/node/app the harness builds into images.
	RepoRoot string
	// Images are more image tarballs to import (e.g. the webhook's and the elector's from make images).
	Images []string
	// Keep leaves the harness's directory (logs, kubeconfigs) after Stop.
	Keep bool
	// Logf narrates progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Node is a running node and its control plane.
type Node struct {
	// Clientset and Config are an admin's (system:masters).
	Clientset kubernetes.Interface
	Config    *rest.Config
	// AdminKubeconfig is the path of an admin kubeconfig, for helm and kubectl.
	AdminKubeconfig string
	// Events records the container runtime's task exits.
	Events *RuntimeEvents

	opts   Options
	dir    string
	pki    *pki
	lock   *os.File
	before Snapshot

	mu       sync.Mutex
	procs    []*process
	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{}
	sigs     chan os.Signal
}

// Dir is the harness's directory: logs under logs/, certificates and kubeconfigs under pki/.
func (n *Node) Dir() string { return n.dir }

// Before is the machine's state as the harness found it.
func (n *Node) Before() Snapshot { return n.before }

func (n *Node) logf(format string, args ...any) { n.opts.Logf(format, args...) }

// Start brings the node up. It returns an error that says what is missing on a machine that cannot run a node
// (see Check); on any other failure it has already put the machine back.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	n := &Node{opts: opts, stopped: make(chan struct{})}
	if err := Preflight(opts.RepoRoot, opts.Logf); err != nil {
		return nil, err
	}
	if n.lock, err = acquireLock(); err != nil {
		return nil, err
	}
	n.before = TakeSnapshot()
	if len(n.before.Processes) > 0 || len(n.before.Cgroups) > 0 || contains(n.before.Links, BridgeName) {
		n.releaseLock()
		return nil, fmt.Errorf("a node from an earlier run is still on this machine (bridge %s, kubepods cgroups or processes under a %s* directory); remove it before starting another: %s",
			BridgeName, dirPrefix, n.before.Summary())
	}
	if n.dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		n.releaseLock()
		return nil, err
	}
	// From here on every change is undone by Stop, which runs on failure, at the end, and on SIGINT/SIGTERM.
	n.sigs = make(chan os.Signal, 2)
	signal.Notify(n.sigs, syscall.SIGINT, syscall.SIGTERM)
	go n.stopOnSignal()
	defer func() {
		if err != nil {
			if stopErr := n.Stop(); stopErr != nil {
				err = fmt.Errorf("%w; and putting the machine back: %v", err, stopErr)
			}
		}
	}()
	for _, d := range []string{"logs", "logs/pods", "cni/net.d", "images"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"network: bridge " + BridgeName + " with " + NodeIP + ", " + RoutedRange + " routed to it", n.startNetwork},
		{"certificates and kubeconfigs", n.writePKI},
		{"images: pause and the sample app", n.buildImages},
		{"containerd", n.startContainerd},
		{"etcd and kube-apiserver", n.startAPIServer},
		{"kube-controller-manager and kube-scheduler", n.startControllers},
		{"kubelet", n.startKubelet},
		{"kube-proxy", n.startKubeProxy},
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.do(ctx); err != nil {
			return nil, fmt.Errorf("node: %s: %w", s.what, err)
		}
		n.logf("node: %s ready in %s", s.what, time.Since(start).Round(10*time.Millisecond))
	}
	return n, nil
}

// stopOnSignal puts the machine back when the harness is interrupted, then exits as the signal would have.
func (n *Node) stopOnSignal() {
	select {
	case sig := <-n.sigs:
		fmt.Fprintf(os.Stderr, "node: %v: stopping the node and putting the machine back\n", sig)
		if err := n.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "node:", err)
		}
		after := TakeSnapshot()
		if diff := n.before.Diff(after); len(diff) > 0 {
			fmt.Fprintf(os.Stderr, "node: the machine differs from before:\n  %s\n", strings.Join(diff, "\n  "))
		} else {
			fmt.Fprintf(os.Stderr, "node: machine as before (%s)\n", after.Summary())
		}
		os.Exit(130)
	case <-n.stopped:
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func acquireLock() (*os.File, error) {
	f, err := os.OpenFile(LockFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the node lock %s: %w", LockFile, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(LockFile)
		f.Close()
		return nil, fmt.Errorf("another node harness is running on this machine (%s); one node per machine: its bridge %s, ports and kubepods cgroups would collide. Wait for it to finish",
			strings.TrimSpace(string(holder)), BridgeName)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d, %s, started %s\n", os.Getpid(), strings.Join(os.Args, " "), time.Now().UTC().Format(time.RFC3339))
	return f, nil
}

func (n *Node) releaseLock() {
	if n.lock != nil {
		_ = n.lock.Truncate(0)
		_ = syscall.Flock(int(n.lock.Fd()), syscall.LOCK_UN)
		n.lock.Close()
		_ = os.Remove(LockFile)
		n.lock = nil
	}
}

func (n *Node) startNetwork(context.Context) error {
	// This kernel has no dummy interfaces: the bridge itself carries the node IP, so the API server can bind to it
	// before any pod exists, and the CNI bridge plugin adopts it as the pods' gateway. The whole range goes to the
	// bridge first: a Service address kube-proxy has not programmed yet must not leave through the default route.
	for _, args := range [][]string{
		{"link", "add", BridgeName, "type", "bridge"},
		{"addr", "add", NodeIP + "/24", "dev", BridgeName},
		{"link", "set", BridgeName, "up"},
		{"route", "replace", RoutedRange, "dev", BridgeName},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return writeFile(n.path("cni", "net.d", "10-leader-election-node.conflist"), n.cniConfig())
}

func (n *Node) apiServerURL() string { return fmt.Sprintf("https://%s:%d", NodeIP, APIServerPort) }

func (n *Node) writePKI(context.Context) error {
	var err error
	if n.pki, err = newPKI(n.path("pki")); err != nil {
		return err
	}
	if _, _, err := n.pki.issue("apiserver", "kube-apiserver", nil,
		[]net.IP{net.ParseIP(NodeIP), net.ParseIP(serviceIP(1))},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}); err != nil {
		return err
	}
	if _, _, err := n.pki.serviceAccountKeys(); err != nil {
		return err
	}
	for _, kc := range []struct{ name, user, group string }{
		{"admin", "admin", "system:masters"},
		{"kubelet", "system:node:" + NodeName, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", ""},
		{"kube-controller-manager", "system:kube-controller-manager", ""},
		{"kube-scheduler", "system:kube-scheduler", ""},
	} {
		var groups []string
		if kc.group != "" {
			groups = []string{kc.group}
		}
		if _, err := n.pki.kubeconfig(kc.name, n.apiServerURL(), kc.user, groups...); err != nil {
			return err
		}
	}
	n.AdminKubeconfig = n.path("pki", "admin.kubeconfig")
	if n.Config, err = clientcmd.BuildConfigFromFlags("", n.AdminKubeconfig); err != nil {
		return err
	}
	n.Config.QPS, n.Config.Burst = 100, 200
	n.Clientset, err = kubernetes.NewForConfig(n.Config)
	return err
}

// serviceIP is the i-th address of the Service range (1: the kubernetes Service).
func serviceIP(i int) string { return "198.19.0." + strconv.Itoa(i) }

func (n *Node) startContainerd(ctx context.Context) error {
	if err := writeFile(n.path("containerd", "config.toml"), n.containerdConfig()); err != nil {
		return err
	}
	if _, err := n.start("containerd", "containerd", "--config", n.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := n.waitFor(ctx, "containerd", 30*time.Second, func(context.Context) (bool, error) {
		return exec.Command("ctr", "--address", n.socket(), "version").Run() == nil, nil
	}); err != nil {
		return err
	}
	var err error
	if n.Events, err = n.watchRuntimeEvents(); err != nil {
		return err
	}
	images := append([]string{n.path("images", "pause.tar"), n.path("images", "app.tar")}, n.opts.Images...)
	for _, img := range images {
		if out, err := n.ctr("images", "import", img); err != nil {
			return fmt.Errorf("importing %s: %v: %s", img, err, out)
		}
	}
	return nil
}

// ctr runs containerd's own client against this node's containerd, in the CRI plugin's namespace.
func (n *Node) ctr(args ...string) ([]byte, error) {
	return exec.Command("ctr", append([]string{"--address", n.socket(), "--namespace", "k8s.io"}, args...)...).CombinedOutput()
}

func (n *Node) startAPIServer(ctx context.Context) error {
	cp := n.opts.ControlPlane
	etcdURL := fmt.Sprintf("http://%s:%d", NodeIP, etcdPort)
	if _, err := n.start("etcd", filepath.Join(cp, "etcd"),
		"--data-dir", n.path("etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://%s:%d", NodeIP, etcdPeerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://%s:%d", NodeIP, etcdPeerPort),
		"--initial-cluster", fmt.Sprintf("default=http://%s:%d", NodeIP, etcdPeerPort),
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	pki := n.path("pki")
	apiserver, err := n.start("kube-apiserver", filepath.Join(cp, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", NodeIP, "--advertise-address", NodeIP, "--secure-port", strconv.Itoa(APIServerPort),
		"--service-cluster-ip-range", ServiceCIDR,
		"--tls-cert-file", filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file", filepath.Join(pki, "apiserver.key"),
		"--client-ca-file", n.pki.CAFile(),
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--profiling=false")
	if err != nil {
		return err
	}
	return n.waitFor(ctx, "kube-apiserver /readyz", 90*time.Second, func(ctx context.Context) (bool, error) {
		if apiserver.exited() {
			return false, fmt.Errorf("kube-apiserver exited; see %s", apiserver.log)
		}
		body, err := n.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

func (n *Node) startControllers(ctx context.Context) error {
	cp, pki := n.opts.ControlPlane, n.path("pki")
	kcm, err := n.start("kube-controller-manager", filepath.Join(cp, "kube-controller-manager"),
		"--kubeconfig", filepath.Join(pki, "kube-controller-manager.kubeconfig"),
		// With false, RBAC refuses the EndpointSlice controller its writes and Services route nowhere.
		"--use-service-account-credentials=true",
		"--root-ca-file", n.pki.CAFile(),
		"--service-account-private-key-file", filepath.Join(pki, "sa.key"),
		"--leader-elect=false", "--bind-address", NodeIP, "--secure-port", "10257",
		"--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10", "--concurrent-service-endpoint-syncs=10",
		"--endpointslice-updates-batch-period=0s")
	if err != nil {
		return err
	}
	if _, err := n.start("kube-scheduler", filepath.Join(n.opts.NodeBinaries, "kube-scheduler"),
		"--kubeconfig", filepath.Join(pki, "kube-scheduler.kubeconfig"),
		"--authentication-kubeconfig", filepath.Join(pki, "kube-scheduler.kubeconfig"),
		"--authorization-kubeconfig", filepath.Join(pki, "kube-scheduler.kubeconfig"),
		"--leader-elect=false", "--bind-address", NodeIP, "--secure-port", "10259"); err != nil {
		return err
	}
	// Ready when the ServiceAccount controller has made the default namespace's "default" account.
	return n.waitFor(ctx, "the default ServiceAccount", 60*time.Second, func(ctx context.Context) (bool, error) {
		if kcm.exited() {
			return false, fmt.Errorf("kube-controller-manager exited; see %s", kcm.log)
		}
		_, err := n.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (n *Node) startKubelet(ctx context.Context) error {
	if err := writeFile(n.path("resolv.conf"), "# the test node has no DNS\n"); err != nil {
		return err
	}
	if err := writeFile(n.path("kubelet", "config.yaml"), n.kubeletConfig()); err != nil {
		return err
	}
	kubelet, err := n.start("kubelet", filepath.Join(n.opts.NodeBinaries, "kubelet"),
		"--config", n.path("kubelet", "config.yaml"),
		"--kubeconfig", n.path("pki", "kubelet.kubeconfig"),
		"--container-runtime-endpoint", "unix://"+n.socket(),
		"--hostname-override", NodeName, "--node-ip", NodeIP,
		"--root-dir", n.path("kubelet", "root"), "--cert-dir", n.path("kubelet", "pki"))
	if err != nil {
		return err
	}
	return n.waitFor(ctx, "node "+NodeName+" Ready", 90*time.Second, func(ctx context.Context) (bool, error) {
		if kubelet.exited() {
			return false, fmt.Errorf("kubelet exited; see %s", kubelet.log)
		}
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

func (n *Node) startKubeProxy(ctx context.Context) error {
	if err := writeFile(n.path("kube-proxy", "config.yaml"), n.kubeProxyConfig(n.path("pki", "kube-proxy.kubeconfig"))); err != nil {
		return err
	}
	proxy, err := n.start("kube-proxy", filepath.Join(n.opts.NodeBinaries, "kube-proxy"), "--config", n.path("kube-proxy", "config.yaml"))
	if err != nil {
		return err
	}
	// Healthy means its first full sync is done: only then does a ClusterIP answer.
	hc := &http.Client{Timeout: time.Second}
	return n.waitFor(ctx, "kube-proxy /healthz", 60*time.Second, func(context.Context) (bool, error) {
		if proxy.exited() {
			return false, fmt.Errorf("kube-proxy exited; see %s", proxy.log)
		}
		resp, err := hc.Get(fmt.Sprintf("http://%s:10256/healthz", NodeIP))
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

func (n *Node) waitFor(ctx context.Context, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, cond); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s not within %s (logs in %s)", what, timeout, n.path("logs"))
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// Log returns the tail of a component's log (e.g. "kubelet"), for a failing test's output.
func (n *Node) Log(name string, maxBytes int) string {
	data, _ := os.ReadFile(n.path("logs", name+".log"))
	if len(data) > maxBytes {
		data = data[len(data)-maxBytes:]
	}
	return string(data)
}
