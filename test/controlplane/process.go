package controlplane

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	portsNext  int
	portsGiven = map[int]bool{}
)

// lowestPort is where NextFreePort's range starts: above the well-known and registered ports the machine's own
// services use.
const lowestPort = 15000

// NextFreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
// out before (two flags given the same port make the second server fail to bind).
//
// The port comes from below the kernel's ephemeral range, never from a ":0" probe. A port the kernel picks for
// ":0" lies in that range, where every listener on this machine that asks for ":0" (the servers, proxies and
// control planes of the other packages testing at the same time) may get the same port in the moment between
// the probe and the bind of the process it is meant for, which then cannot serve. Below that range only an
// explicit request takes a port: each process starts at a random place and walks on, so two processes of this
// module rarely meet, and a port in use fails the probe.
func NextFreePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	high := ephemeralLow()
	if portsNext == 0 {
		portsNext = lowestPort + rand.IntN(high-lowestPort)
	}
	for range high - lowestPort {
		port := portsNext
		if portsNext++; portsNext >= high {
			portsNext = lowestPort
		}
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		l.Close()
		portsGiven[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d that was not handed out already", lowestPort, high-1)
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux's default is 32768), where NextFreePort's
// range ends.
func ephemeralLow() int {
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > lowestPort+1000 {
				return low
			}
		}
	}
	return 32768
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
