package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-election/leader-election/test/controlplane"
)

// deadAPIServerKubeconfig writes a kubeconfig for an API server address where nothing listens.
func deadAPIServerKubeconfig(t *testing.T) string {
	t.Helper()
	port := controlplane.FreePort(t)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, port)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBadSettingsExitWithCode2AndSayWhatIsWrong(t *testing.T) {
	valid := []string{"POD_NAME=p-0", "POD_UID=uid-0", "POD_NAMESPACE=ns", "LEASE_NAME=demo"}
	with := func(extra ...string) []string { return append(append([]string{}, valid...), extra...) }
	kubeconfig := deadAPIServerKubeconfig(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"nothing set", nil, nil, []string{
			"missing pod name: set --pod-name or POD_NAME",
			"missing namespace: set --namespace or POD_NAMESPACE",
			"missing lease name: set --lease-name or LEASE_NAME"}},
		{"pod name empty in the environment", []string{"POD_NAME=", "POD_UID=u", "POD_NAMESPACE=ns", "LEASE_NAME=demo"}, nil, []string{"missing pod name"}},
		{"pod UID missing", []string{"POD_NAME=p-0", "POD_NAMESPACE=ns", "LEASE_NAME=demo"}, nil, []string{"missing pod UID: set --pod-uid or POD_UID"}},
		{"namespace not a name", []string{"POD_NAME=p-0", "POD_UID=u", "POD_NAMESPACE=Bad_NS", "LEASE_NAME=demo"}, nil, []string{`POD_NAMESPACE="Bad_NS": not a namespace name`}},
		{"lease name not a name", valid, []string{"--lease-name=Not/A/Name"}, []string{`--lease-name="Not/A/Name": not a valid object name`}},
		{"lease duration not a duration", with("LEASE_DURATION=soon"), nil, []string{`LEASE_DURATION="soon": not a duration; use a Go duration such as 15s`}},
		{"renew deadline not a duration", valid, []string{"--renew-deadline=10"}, []string{`--renew-deadline="10": not a duration`}},
		{"retry period not a duration", with("RETRY_PERIOD=2 seconds"), nil, []string{`RETRY_PERIOD="2 seconds": not a duration`}},
		{"retry period zero", with("RETRY_PERIOD=0s"), nil, []string{
			"retry-period (0s) must be greater than zero", `retry-period from RETRY_PERIOD="0s"`}},
		{"retry period not below renew deadline", with("RETRY_PERIOD=10s"), nil, []string{
			"renew-deadline (10s) must be longer than retry-period (10s)", "renew-deadline from default 10s"}},
		{"renew deadline not below lease duration", valid, []string{"--renew-deadline=20s"}, []string{
			"durations out of bounds", "lease-duration (15s) must be longer than renew-deadline (20s)",
			`renew-deadline from --renew-deadline="20s"`, "lease-duration from default 15s"}},
		{"lease duration below renew deadline", with("LEASE_DURATION=5s"), nil, []string{
			"lease-duration (5s) must be longer than renew-deadline (10s)", `lease-duration from LEASE_DURATION="5s"`}},
		{"the old fast timings, too small a margin for the probe", valid, []string{"--lease-duration=2s", "--renew-deadline=1500ms", "--retry-period=500ms"}, []string{
			"lease-duration (2s) must be between 3s and 5m0s"}},
		{"margin below the probe's detection time", valid, []string{"--lease-duration=3s", "--renew-deadline=1900ms", "--retry-period=500ms"}, []string{
			"lease-duration (3s) must exceed renew-deadline (1.9s) by at least 2s"}},
		{"retry period below 250ms", with("RETRY_PERIOD=100ms"), nil, []string{"retry-period (100ms) must be at least 250ms"}},
		{"readiness unknown", with("ELECTOR_READINESS=always"), nil, []string{`ELECTOR_READINESS="always": use "leader" or "member"`}},
		{"readiness flag unknown", valid, []string{"--readiness=Leader"}, []string{`--readiness="Leader": use "leader" or "member"`}},
		{"port zero", valid, []string{"--port=0"}, []string{`--port="0": not a port; use a number from 1 to 65535`}},
		{"port too high", with("ELECTOR_PORT=70000"), nil, []string{`ELECTOR_PORT="70000": not a port`}},
		{"port not a number", with("ELECTOR_PORT=http"), nil, []string{`ELECTOR_PORT="http": not a port`}},
		{"app check exec", with(`ELECTOR_APP_CHECK={"exec":{"command":["cat","/tmp/ready"]}}`), nil, []string{
			`ELECTOR_APP_CHECK="{\"exec\"`, "exec", "cannot run a command in the application's; use httpGet, tcpSocket or grpc"}},
		{"app check with a named port", valid, []string{`--app-check={"httpGet":{"path":"/healthz","port":"http"}}`}, []string{
			`--app-check=`, `httpGet.port: "http" is not accepted: want a port number from 1 to 65535`}},
		{"app check aimed outside the pod", with(`ELECTOR_APP_CHECK={"tcpSocket":{"port":5432,"host":"10.0.0.1"}}`), nil, []string{
			`tcpSocket.host: "10.0.0.1" is not accepted`, "loopback"}},
		{"app check not JSON", with("ELECTOR_APP_CHECK=http://:8080/healthz"), nil, []string{
			`ELECTOR_APP_CHECK="http://:8080/healthz": not a probe in JSON`}},
		{"app check with two handlers and a negative period", with(`ELECTOR_APP_CHECK={"grpc":{"port":9090},"tcpSocket":{"port":9090},"periodSeconds":-1}`), nil, []string{
			"more than one check", "periodSeconds: -1 is not accepted"}},
		{"pod IP not an IP", with("POD_IP=pod-7"), nil, []string{`POD_IP="pod-7": not an IP address`}},
		{"unknown flag", valid, []string{"--lease=demo"}, []string{"flag provided but not defined: -lease"}},
		{"stray argument", valid, []string{"run"}, []string{`unexpected argument "run"`}},
		{"several problems at once", []string{"POD_NAME=p-0"}, []string{"--port=-1", "--readiness=x"}, []string{
			"missing namespace", "missing lease name", `--port="-1"`, `--readiness="x"`}},
		{"port in use", with("KUBECONFIG=" + kubeconfig), []string{"--port=" + busyPort, "--bind-address=127.0.0.1"}, []string{
			"cannot serve HTTP on 127.0.0.1:" + busyPort, "address already in use", `port from --port="` + busyPort + `"`}},
		{"bind address not local", with("KUBECONFIG="+kubeconfig, "ELECTOR_BIND_ADDRESS=192.0.2.1"), nil, []string{
			"cannot serve HTTP on 192.0.2.1:8642", `bind address from ELECTOR_BIND_ADDRESS="192.0.2.1"`}},
		{"kubeconfig missing", with("KUBECONFIG=/nonexistent/kubeconfig"), nil, []string{
			`KUBECONFIG="/nonexistent/kubeconfig": cannot load the kubeconfig`}},
		{"outside a cluster without kubeconfig", valid, nil, []string{"no --kubeconfig or KUBECONFIG given and no in-cluster configuration"}},
		{"status with a bad output format", nil, []string{"status", "-o", "yaml"}, []string{`-o "yaml": use table or json`}},
		{"status with two Lease names", nil, []string{"status", "a", "b"}, []string{"at most one Lease name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, tc.env, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; output:\n%s", code, exitUsage, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output does not say %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestHelpDocumentsEverySettingAndEndpoint(t *testing.T) {
	code, out := runToExit(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, o := range options() {
		if !strings.Contains(out, "--"+o.flag+", $"+o.env) {
			t.Errorf("--help does not document --%s / %s", o.flag, o.env)
		}
	}
	for _, want := range []string{"/readyz", "/healthz", "/metrics", "/events", "/stepdown", "elector status", "(default 8642)", "(default 15s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestUnreachableAPIServerKeepsTheElectorUpUnreadyAndQuiet(t *testing.T) {
	port := controlplane.FreePort(t)
	p := controlplane.StartProcess(t, "elector", electorBin, cleanEnv(
		"POD_NAME=p-0", "POD_UID=uid-0", "POD_NAMESPACE=ns", "LEASE_NAME=demo", "KUBECONFIG="+deadAPIServerKubeconfig(t),
		"LEASE_DURATION=4s", "RENEW_DEADLINE=2s", "RETRY_PERIOD=500ms",
		"ELECTOR_BIND_ADDRESS=127.0.0.1", "ELECTOR_PORT="+strconv.Itoa(port), "ELECTOR_CONTROL_SOCKET="+testSocket(port)))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUntil(t, 10*time.Second, "the elector to serve HTTP", func() bool { return httpStatus(base+"/healthz") == http.StatusOK })

	// Several retries happen in this time (backoff 125ms, 250ms, 500ms, 1s, 2s...).
	time.Sleep(4 * time.Second)
	if code, err := p.Wait(10 * time.Millisecond); err == nil {
		t.Fatalf("the elector exited (code %d) while the API server was unreachable:\n%s", code, p.Output())
	}
	if got := httpStatus(base + "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d while the API server is unreachable; want 200 (restarting would not help)", got)
	}
	if got := httpStatus(base + "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d without any contact with the API server; want 503", got)
	}
	logged := strings.Count(p.Output(), `operation="read the Lease" reason=ConnectionRefused`)
	if logged != 1 {
		t.Errorf("the refused connection was logged %d times; want once, however many retries:\n%s", logged, p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(3 * time.Second); err != nil || code != 0 {
		t.Fatalf("after SIGTERM: exit code %d, %v; want 0 within 3s", code, err)
	}
}
