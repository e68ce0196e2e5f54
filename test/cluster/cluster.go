// Package cluster runs a local Kubernetes cluster on one machine for the end-to-end tests, the demo and the
// benchmarks: etcd, kube-apiserver and kube-controller-manager built from source (the Deployment, ReplicaSet,
// StatefulSet, EndpointSlice and ServiceAccount controllers are the real ones), the webhook registered as the
// shipped configuration registers it, and a stand-in for the scheduler and the kubelet (see kubelet.go).
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-election/leader-election/test/controlplane"
)

// WebhookUser is the identity the webhook runs as: bound to the shipped webhook ClusterRole and nothing else.
const WebhookUser = "system:serviceaccount:leader-election-system:leader-election-webhook"

// Options configure a cluster.
type Options struct {
	// BinDir holds the webhook and elector binaries (make build puts them in bin/).
	BinDir string
	// WorkDir receives kubeconfigs and every process's log.
	WorkDir string
	// Logf narrates progress; nil is quiet.
	Logf func(format string, args ...any)
	// WebhookArgs are extra flags for the webhook.
	WebhookArgs []string
}

// Cluster is a running local cluster.
type Cluster struct {
	Env             *controlplane.Env
	Clientset       kubernetes.Interface
	AdminKubeconfig string
	Kubelet         *Kubelet
	opts            Options
	kcm, webhook    *exec.Cmd
	stopKubelet     context.CancelFunc
	kubeletDone     chan struct{}
}

// Start brings the whole cluster up and returns once it accepts annotated workloads.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	c := &Cluster{opts: opts}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	mwc, err := ReadManifest[*admissionregistrationv1.MutatingWebhookConfiguration]("config/webhook/manifests.yaml")
	if err != nil {
		return nil, err
	}
	opts.Logf("starting etcd and kube-apiserver")
	c.Env, err = controlplane.New(
		controlplane.WithWebhooks(envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{mwc},
			LocalServingHost: "127.0.0.1",
		}),
		// A real cluster runs the ServiceAccount admission plugin (envtest disables it): pods get their
		// ServiceAccount's token volume, and the elector sidecar reuses it.
		controlplane.WithAPIServerArgs(map[string]string{"disable-admission-plugins": ""}),
	)
	if err != nil {
		return nil, err
	}
	c.Clientset = c.Env.Clientset
	if c.AdminKubeconfig, err = c.Env.WriteKubeconfig(opts.WorkDir, "admin", "system:masters"); err != nil {
		return nil, err
	}
	if err := InstallRBAC(ctx, c.Clientset, WebhookUser); err != nil {
		return nil, err
	}

	opts.Logf("starting kube-controller-manager (deployment, replicaset, statefulset, endpointslice, serviceaccount controllers)")
	if err := c.startControllerManager(ctx); err != nil {
		return nil, err
	}
	opts.Logf("starting the webhook")
	if err := c.startWebhook(ctx); err != nil {
		return nil, err
	}
	opts.Logf("starting the node stand-in (scheduler and kubelet)")
	c.Kubelet = NewKubelet(c.Env.Config, c.Clientset, filepath.Join(opts.BinDir, "elector"), opts.WorkDir, opts.Logf)
	kctx, cancel := context.WithCancel(context.Background())
	c.stopKubelet, c.kubeletDone = cancel, make(chan struct{})
	ready := make(chan error, 1)
	go func() { defer close(c.kubeletDone); c.Kubelet.Run(kctx, ready) }()
	if err := <-ready; err != nil {
		return nil, err
	}
	return c, nil
}

// Stop ends every process and the control plane. The kubelet stand-in terminates its pods' processes first.
func (c *Cluster) Stop() {
	if c.stopKubelet != nil {
		c.stopKubelet()
		<-c.kubeletDone
	}
	for _, cmd := range []*exec.Cmd{c.webhook, c.kcm} {
		stopProcess(cmd, 10*time.Second)
	}
	if c.Env != nil {
		_ = c.Env.Stop()
	}
}

// RestartWebhook stops the webhook (SIGTERM) and starts it again with the same flags, returning once the new
// process reports ready: the cold start a rollout of the webhook goes through.
func (c *Cluster) RestartWebhook(ctx context.Context) error {
	stopProcess(c.webhook, 10*time.Second)
	return c.startWebhook(ctx)
}

// WebhookPID is the process ID of the running webhook.
func (c *Cluster) WebhookPID() int { return c.webhook.Process.Pid }

func (c *Cluster) startControllerManager(ctx context.Context) error {
	bin := filepath.Join(c.Env.BinaryAssetsDirectory, "kube-controller-manager")
	port := freePort()
	args := []string{
		"--kubeconfig=" + c.AdminKubeconfig,
		"--controllers=deployment-controller,replicaset-controller,statefulset-controller,endpointslice-controller,serviceaccount-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,disruption-controller,namespace-controller",
		"--root-ca-file=" + filepath.Join(c.Env.ControlPlane.APIServer.CertDir, "apiserver.crt"),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--authorization-always-allow-paths=/healthz",
		// Fast reactions: the defaults batch EndpointSlice updates and resync slowly, which hides nothing here.
		"--endpointslice-updates-batch-period=0s",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-service-endpoint-syncs=10",
	}
	var err error
	c.kcm, err = startLogged(bin, args, nil, filepath.Join(c.opts.WorkDir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	// Ready when the ServiceAccount controller has made the default namespace's "default" account.
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if exited(c.kcm) {
			return false, fmt.Errorf("kube-controller-manager exited; see %s", filepath.Join(c.opts.WorkDir, "kube-controller-manager.log"))
		}
		_, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *Cluster) startWebhook(ctx context.Context) error {
	kubeconfig, err := c.Env.WriteKubeconfig(c.opts.WorkDir, WebhookUser)
	if err != nil {
		return err
	}
	health := fmt.Sprintf("127.0.0.1:%d", freePort())
	wo := c.Env.WebhookInstallOptions
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--cert-dir=" + wo.LocalServingCertDir,
		"--port=" + strconv.Itoa(wo.LocalServingPort),
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + health,
	}, c.opts.WebhookArgs...)
	logFile := filepath.Join(c.opts.WorkDir, "webhook.log")
	if c.webhook, err = startLogged(filepath.Join(c.opts.BinDir, "webhook"), args, nil, logFile); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if exited(c.webhook) {
			return false, fmt.Errorf("webhook exited; see %s", logFile)
		}
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// InstallRBAC creates the shipped elector and webhook ClusterRoles and binds the webhook's to user.
func InstallRBAC(ctx context.Context, cs kubernetes.Interface, user string) error {
	var roles []*rbacv1.ClusterRole
	for _, path := range []string{"config/rbac/elector_role.yaml", "config/rbac/webhook_role.yaml"} {
		role, err := ReadManifest[*rbacv1.ClusterRole](path)
		if err != nil {
			return err
		}
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		roles = append(roles, role)
	}
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "leader-election-webhook"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roles[1].Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ReadManifest decodes one object from a YAML file of this repository.
func ReadManifest[T runtime.Object](rel string) (T, error) {
	var zero T
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), rel))
	if err != nil {
		return zero, err
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", rel, err)
	}
	typed, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("%s holds a %T, want %T", rel, obj, zero)
	}
	return typed, nil
}

// ReadManifests decodes every object of a multi-document YAML file of this repository.
func ReadManifests(rel string) ([]runtime.Object, error) {
	data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), rel))
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		objs = append(objs, obj)
	}
}

// startLogged starts a process with its output in logFile, in its own process group so Stop reaches children.
func startLogged(bin string, args, env []string, logFile string) (*exec.Cmd, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return cmd, nil
}

func exited(cmd *exec.Cmd) bool {
	return cmd.Process != nil && cmd.Process.Signal(syscall.Signal(0)) != nil
}

// stopProcess sends SIGTERM, then SIGKILL after grace.
func stopProcess(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for !exited(cmd) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}

func freePort() int {
	port, err := controlplane.NextFreePort()
	if err != nil {
		panic(err)
	}
	return port
}
