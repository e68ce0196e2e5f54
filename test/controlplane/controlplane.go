// Package controlplane starts a real etcd and kube-apiserver, built from source by hack/control-plane.sh, for
// the integration tests: PodSecurity admission and the RBAC authorizer are the real ones.
package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// RepoRoot is the root of this repository, found from this source file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var quietControllerRuntime sync.Once

var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error
)

// Assets returns the directory holding kube-apiserver, etcd and kube-controller-manager. It honours
// KUBEBUILDER_ASSETS when that already holds them and otherwise builds them once (cached outside the clone).
func Assets() (string, error) {
	assetsOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(RepoRoot(), "hack", "control-plane.sh"))
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			assetsErr = fmt.Errorf("building the local control plane: %w", err)
			return
		}
		assetsDir = strings.TrimSpace(out.String())
	})
	return assetsDir, assetsErr
}

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Clientset is an admin clientset.
	Clientset kubernetes.Interface
}

// Option adjusts the control plane before it starts.
type Option func(*envtest.Environment)

// WithWebhooks installs the given webhook configurations, pointed at a local server (see envtest).
func WithWebhooks(opts envtest.WebhookInstallOptions) Option {
	return func(e *envtest.Environment) { e.WebhookInstallOptions = opts }
}

// WithAPIServerArgs sets extra kube-apiserver flags (name without the dashes, then values).
func WithAPIServerArgs(args map[string]string) Option {
	return func(e *envtest.Environment) {
		for k, v := range args {
			e.ControlPlane.GetAPIServer().Configure().Set(k, v)
		}
	}
}

// New starts etcd and kube-apiserver; the caller stops them with Stop. Tests use Start instead.
func New(opts ...Option) (*Env, error) {
	dir, err := Assets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	// The kube-apiserver's own output is kept out of the test log unless asked for: it is long and rarely useful.
	if os.Getenv("CONTROL_PLANE_LOGS") != "" {
		env.ControlPlane.GetAPIServer().Out = os.Stderr
		env.ControlPlane.GetAPIServer().Err = os.Stderr
	}
	for _, o := range opts {
		o(env)
	}
	// envtest logs through controller-runtime, which otherwise prints a stack trace to say no logger was set.
	quietControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", dir, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Environment: env, Config: cfg, Clientset: cs}, nil
}

// Start starts etcd and kube-apiserver and stops them when the test ends. It fails the test (never skips) when
// the control plane cannot be built or started.
func Start(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	env, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stopping the control plane: %v", err)
		}
	})
	return env
}
