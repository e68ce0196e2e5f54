package controlplane

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Build compiles a main package of this module (e.g. "./cmd/webhook") into the test's temporary directory,
// static and with -trimpath like the Makefile's build (unstripped, so a crash in a test has its symbols), and
// returns the binary's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// Kubeconfig writes a kubeconfig for a user the API server authenticates by client certificate and returns its
// path. No groups means the user has exactly what RBAC grants it.
func (e *Env) Kubeconfig(tb testing.TB, user string, groups ...string) string {
	tb.Helper()
	path, err := e.WriteKubeconfig(tb.TempDir(), user, groups...)
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// WriteKubeconfig is Kubeconfig for callers without a test: it writes <dir>/<user>.kubeconfig.
func (e *Env) WriteKubeconfig(dir, user string, groups ...string) (string, error) {
	u, err := e.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, strings.ReplaceAll(user, ":", "_")+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := NextFreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// NextFreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
// out before: the kernel may offer a port again as soon as its probe listener closes, and two flags given the
// same port make the second server fail to bind.
func NextFreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port found that was not handed out already")
}

// Process is a binary under test, running as a real process. Its output is kept and printed when the test fails.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// StartProcess starts bin with args; the process is killed when the test ends if it is still running.
func StartProcess(tb testing.TB, name, bin string, env []string, args ...string) *Process {
	tb.Helper()
	p := &Process{Name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("--- output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		if p.cmd.ProcessState == nil {
			return -1, p.err
		}
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Output is everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
