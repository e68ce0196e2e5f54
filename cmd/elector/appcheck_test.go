package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestTheElectorProcessChecksItsApplication runs the elector binary with ELECTOR_APP_CHECK and POD_IP, as the
// webhook injects them, and watches the application's side: the check arrives once per period at the pod IP with
// the probe's path and headers, and a running check does not keep the elector from a clean exit. The API server
// is unreachable: the check does not wait for an election.
func TestTheElectorProcessChecksItsApplication(t *testing.T) {
	var checks atomic.Int32
	var lastProblem atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || r.Header.Get("X-Probe") != "elector" || !strings.HasPrefix(r.UserAgent(), "leader-election-elector/") {
			lastProblem.Store(fmt.Sprintf("%s %s %v", r.Method, r.URL, r.Header))
		}
		checks.Add(1)
	}))
	defer app.Close()
	appPort := app.Listener.Addr().String()[strings.LastIndex(app.Listener.Addr().String(), ":")+1:]

	port := controlplane.FreePort(t)
	p := controlplane.StartProcess(t, "elector", electorBin, cleanEnv(
		"POD_NAME=p-0", "POD_UID=uid-0", "POD_NAMESPACE=ns", "LEASE_NAME=demo", "KUBECONFIG="+deadAPIServerKubeconfig(t),
		"LEASE_DURATION=4s", "RENEW_DEADLINE=2s", "RETRY_PERIOD=500ms",
		"ELECTOR_BIND_ADDRESS=127.0.0.1", "ELECTOR_PORT="+strconv.Itoa(port), "ELECTOR_CONTROL_SOCKET="+testSocket(port),
		"POD_IP=127.0.0.1",
		`ELECTOR_APP_CHECK={"httpGet":{"path":"/ready","port":`+appPort+`,"httpHeaders":[{"name":"X-Probe","value":"elector"}]},"periodSeconds":1}`))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUntil(t, 10*time.Second, "the elector to serve HTTP", func() bool { return httpStatus(base+"/healthz") == http.StatusOK })
	waitUntil(t, 10*time.Second, "three checks of the application", func() bool { return checks.Load() >= 3 })
	if problem := lastProblem.Load(); problem != nil {
		t.Errorf("a check arrived without the probe's path or headers: %s", problem)
	}
	if !strings.Contains(p.Output(), "leadership follows the application's health") || !strings.Contains(p.Output(), "httpGet http://127.0.0.1:"+appPort+"/ready every 1s") {
		t.Errorf("the elector does not log what it checks:\n%s", p.Output())
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(10 * time.Second); err != nil || code != exitOK {
		t.Fatalf("after SIGTERM: exit code %d, %v\n%s", code, err, p.Output())
	}
}
