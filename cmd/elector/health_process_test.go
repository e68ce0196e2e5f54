package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leader-election/leader-election/pkg/elector"
)

// TestHealthGatedElection runs electors whose application check (--app-check, httpGet) asks an HTTP server of
// the test, one path per replica, whose answers the test switches: real processes, a real API server.
func TestHealthGatedElection(t *testing.T) {
	h := newHarness(t)
	t.Run("an unhealthy standby never takes the Lease, and takes it once healthy", h.testUnhealthyStandby)
	t.Run("a leader whose application turns unhealthy hands over to a healthy replica", h.testLeaderTurnsUnhealthy)
}

// appServer answers GET /<replica> with 200 or 503, as the test sets.
type appServer struct {
	port    int
	mu      sync.Mutex
	healthy map[string]bool
}

func startAppServer(t *testing.T) *appServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &appServer{port: l.Addr().(*net.TCPAddr).Port, healthy: map[string]bool{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ok := a.healthy[strings.TrimPrefix(r.URL.Path, "/")]
		a.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return a
}

func (a *appServer) set(name string, healthy bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.healthy[name] = healthy
}

// checkEnv is the replica's --app-check: its path on the app server, checked every second, one failure or
// success flips the verdict.
func (a *appServer) checkEnv(name string) string {
	return fmt.Sprintf(`ELECTOR_APP_CHECK={"httpGet":{"path":"/%s","port":%d,"host":"127.0.0.1"},"periodSeconds":1,"timeoutSeconds":1,"failureThreshold":1,"successThreshold":1}`, name, a.port)
}

// startChecked starts n replicas of g, each checked at its own path, healthy as given.
func (h *harness) startChecked(t *testing.T, g *group, app *appServer, healthy ...bool) {
	t.Helper()
	for i, ok := range healthy {
		name := fmt.Sprintf("%s-%d", g.lease, i)
		app.set(name, ok)
		g.start(t, h.kubeconfig, app.checkEnv(name))
	}
}

func (h *harness) testUnhealthyStandby(t *testing.T) {
	app := startAppServer(t)
	g := h.newGroup(t, "gated")
	h.startChecked(t, g, app, true, false, false)
	leader := g.waitLeader(t, 15*time.Second)
	if leader != g.replicas[0] {
		t.Fatalf("%s leads; only %s is healthy", leader.name, g.replicas[0].name)
	}
	mark := g.history.mark()
	if err := leader.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	released := g.history.waitFor(t, mark, 5*time.Second, "the release (no healthy candidate to hand over to)", func(e leaseEntry) bool { return e.holder != leader.name })
	if released.holder != "" {
		t.Fatalf("after SIGTERM the Lease names %q; with every other replica unhealthy it must be released", released.holder)
	}
	// Two lease durations: a free Lease, two standbys, neither takes it.
	time.Sleep(2 * leaseDuration)
	for _, r := range g.replicas[1:] {
		st, err := r.status()
		if err != nil {
			t.Fatal(err)
		}
		if st.IsLeader || st.App.Healthy || st.App.Reason == "" {
			t.Errorf("%s: GET / = %+v; want not leading, app unhealthy with a reason", r.name, st)
		}
	}
	if l := h.lease(t, "gated"); *l.Spec.HolderIdentity != "" {
		t.Fatalf("an unhealthy standby took the Lease: %s", *l.Spec.HolderIdentity)
	}
	app.set(g.replicas[2].name, true)
	if got := g.waitLeader(t, 5*time.Second); got != g.replicas[2] {
		t.Fatalf("%s leads, want %s, the one that turned healthy", got.name, g.replicas[2].name)
	}
}

func (h *harness) testLeaderTurnsUnhealthy(t *testing.T) {
	app := startAppServer(t)
	g := h.newGroup(t, "flip")
	h.startChecked(t, g, app, true, true, false)
	leader := g.waitLeader(t, 15*time.Second)
	var healthy *replica
	for _, r := range g.replicas[:2] {
		if r != leader {
			healthy = r
		}
	}
	if healthy == nil {
		t.Fatalf("%s leads; it is unhealthy", leader.name)
	}
	mark := g.history.mark()
	token := *h.lease(t, "flip").Spec.LeaseTransitions
	start := time.Now()
	app.set(leader.name, false)
	// It first leaves the Service: /readyz 503 while it still leads and holds the Lease.
	deadline := time.Now().Add(5 * time.Second)
	for leader.readyz(time.Second) == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("%s still ready 5s after its app started failing (check period 1s)", leader.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	unready := time.Now()
	if st, err := leader.status(); err != nil || !st.IsLeader {
		t.Fatalf("the leader's GET / just after it turned unready: %+v (%v); want still leading while it leaves the Service", st, err)
	}
	handed := g.history.waitFor(t, mark, 5*time.Second+elector.ServiceLeaveTime, "the handover", func(e leaseEntry) bool { return e.holder != leader.name })
	// How long it was out of the Service counts from the moment its readiness failed, which its log records: the
	// test's own probe sees that moment only after its polling pause and the answer's delay, which on a loaded
	// machine made an exact wait look short.
	left, ok := logTime(leader.proc.Output(), "leaving the Service before handing the Lease over")
	if !ok {
		t.Fatalf("%s's log does not say when it left the Service:\n%s", leader.name, leader.proc.Output())
	}
	if out := handed.at.Sub(left); out < elector.ServiceLeaveTime || left.After(unready) {
		t.Fatalf("handed over %s after leaving the Service at %s (unready seen at %s); want the whole ServiceLeaveTime (%s) out of the Service first",
			out, left.Format(time.StampMilli), unready.Format(time.StampMilli), elector.ServiceLeaveTime)
	}
	if handed.holder != healthy.name || handed.handoverFrom != leader.name || handed.transitions != token+1 {
		t.Fatalf("first state after the leader's app failed: %+v; want a handover to %s (the healthy one) with token %d", handed, healthy.name, token+1)
	}
	t.Logf("app failure -> handed over to %s after %s (check period 1s)", handed.holder, handed.at.Sub(start).Round(time.Millisecond))
	if got := g.waitLeader(t, 5*time.Second); got != healthy {
		t.Fatalf("%s leads, want %s", got.name, healthy.name)
	}
	st, err := leader.status()
	if err != nil || st.IsLeader || st.App.Healthy {
		t.Fatalf("the old leader's GET /: %+v (%v)", st, err)
	}
	metrics := get(t, leader.base+"/metrics")
	for _, want := range []string{`leader_election_app_healthy{name="flip"} 0`, `leader_election_leader_exits_total{cause="unhealthy",name="flip",outcome="handed_over"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the old leader's /metrics lack %s", want)
		}
	}
	// Healthy again, it stays a standby: the new leader is healthy.
	app.set(leader.name, true)
	time.Sleep(2 * time.Second)
	if l := h.lease(t, "flip"); *l.Spec.HolderIdentity != healthy.name {
		t.Fatalf("the Lease moved on to %s once the old leader recovered", *l.Spec.HolderIdentity)
	}
}
