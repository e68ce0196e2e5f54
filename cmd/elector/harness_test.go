package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/test/controlplane"
)

// The timings every scenario runs with: the fastest the bounds allow in spirit (4s / 2s / 500ms), so that
// failovers take seconds.
const (
	leaseDuration = 4 * time.Second
	renewDeadline = 2 * time.Second
	retryPeriod   = 500 * time.Millisecond
)

// probeTimeout bounds the tests' own requests to electors: a stopped process never answers.
const probeTimeout = 200 * time.Millisecond

// waitUntil polls cond until it holds or timeout passes; it never asserts anything about time itself.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpStatus is the status code of a GET, 0 when there is no answer within a second.
func httpStatus(url string) int {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// writeKubeconfig writes a kubeconfig with cfg's credentials for the API server at server.
func writeKubeconfig(t *testing.T, cfg *rest.Config, server string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// replica is one elector process.
type replica struct {
	name   string
	uid    string
	socket string // the control socket, for step-down
	base   string // http://127.0.0.1:<port>
	port   int
	proc   *controlplane.Process
}

// status is the replica's GET / answer.
func (r *replica) status() (elector.Status, error) {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(r.base + "/")
	if err != nil {
		return elector.Status{}, err
	}
	defer resp.Body.Close()
	var st elector.Status
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET / answered %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// readyz is the replica's /readyz status code, 0 when it does not answer within timeout.
func (r *replica) readyz(timeout time.Duration) int {
	client := http.Client{Timeout: timeout}
	resp, err := client.Get(r.base + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// stepDown asks for a step-down on the replica's control socket, as a process inside the pod would.
func (r *replica) stepDown() (int, string, error) {
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", r.socket)
		},
	}}
	resp, err := client.Post("http://localhost/stepdown", "", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// alive reports whether the process has not exited.
func (r *replica) alive() bool {
	_, err := r.proc.Wait(10 * time.Millisecond)
	return err != nil
}

// subscribe follows the replica's /events stream until the test ends.
func (r *replica) subscribe(t *testing.T) <-chan elector.Status {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/events: %v", r.name, err)
	}
	out := make(chan elector.Status, 64)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			if data, ok := strings.CutPrefix(scanner.Text(), "data: "); ok {
				var st elector.Status
				if json.Unmarshal([]byte(data), &st) == nil {
					out <- st
				}
			}
		}
	}()
	return out
}

// group is the replicas of one scenario, competing for one Lease, with the two watchers every scenario
// runs: the Lease's history (for the fencing token) and readiness exclusivity.
type group struct {
	h         *harness
	lease     string
	replicas  []*replica
	history   *leaseHistory
	exclusive *exclusivityWatch
}

// newGroup starts watching a Lease and the readiness of the replicas that will compete for it. When the test
// ends, it fails the test if two replicas were ever ready together or the fencing token ever failed to grow.
func (h *harness) newGroup(t *testing.T, lease string) *group {
	g := &group{h: h, lease: lease, history: recordLease(t, h.env.Clientset, h.namespace, lease), exclusive: watchExclusivity(t)}
	return g
}

// start runs one more replica, a pod of its own (a new name and UID), with the given kubeconfig and extra
// environment.
func (g *group) start(t *testing.T, kubeconfig string, extraEnv ...string) *replica {
	t.Helper()
	name := fmt.Sprintf("%s-%d", g.lease, len(g.replicas))
	return g.startPod(t, name, "uid-"+name, kubeconfig, extraEnv...)
}

// startPod runs one more elector process as the pod with the given name and UID: a second process of a pod
// that already runs one (same name and UID, a restarted container), or of a pod that replaced it (same name,
// another UID).
func (g *group) startPod(t *testing.T, name, uid, kubeconfig string, extraEnv ...string) *replica {
	t.Helper()
	port := controlplane.FreePort(t)
	env := cleanEnv(
		"POD_NAME="+name, "POD_UID="+uid, "POD_NAMESPACE="+g.h.namespace, "LEASE_NAME="+g.lease, "KUBECONFIG="+kubeconfig,
		"LEASE_DURATION="+leaseDuration.String(), "RENEW_DEADLINE="+renewDeadline.String(), "RETRY_PERIOD="+retryPeriod.String(),
		"ELECTOR_BIND_ADDRESS=127.0.0.1", "ELECTOR_PORT="+strconv.Itoa(port))
	// Every process of the tests shares this machine's network namespace, so each gets a control socket of its
	// own (in a pod, the default @leader-election is the pod's alone).
	socket := testSocket(port)
	env = append(env, "ELECTOR_CONTROL_SOCKET="+socket)
	env = append(env, extraEnv...)
	r := &replica{name: name, uid: uid, port: port, socket: socket, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	r.proc = controlplane.StartProcess(t, name+"@"+uid, electorBin, env)
	waitUntil(t, 10*time.Second, name+" to serve HTTP", func() bool { return httpStatus(r.base+"/healthz") == http.StatusOK })
	g.replicas = append(g.replicas, r)
	g.exclusive.add(r)
	return r
}

// startN runs n replicas with the harness's least-privilege kubeconfig.
func (g *group) startN(t *testing.T, n int, extraEnv ...string) {
	t.Helper()
	for range n {
		g.start(t, g.h.kubeconfig, extraEnv...)
	}
}

func (g *group) byName(name string) *replica {
	for _, r := range g.replicas {
		if r.name == name {
			return r
		}
	}
	return nil
}

// waitLeader waits until the Lease names a replica other than those excluded and that replica says it leads.
func (g *group) waitLeader(t *testing.T, timeout time.Duration, excluded ...*replica) *replica {
	t.Helper()
	var leader *replica
	waitUntil(t, timeout, "a leader for "+g.lease, func() bool {
		l, err := g.h.env.Clientset.CoordinationV1().Leases(g.h.namespace).Get(context.Background(), g.lease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false
		}
		leader = g.byName(*l.Spec.HolderIdentity)
		if leader == nil || slices.Contains(excluded, leader) {
			return false
		}
		st, err := leader.status()
		return err == nil && st.IsLeader
	})
	return leader
}

// harness is the control plane shared by the scenarios, and a least-privilege identity for the electors.
type harness struct {
	env       *controlplane.Env
	namespace string
	// electorConfig is the electors' identity: a user bound to exactly the election's permissions.
	electorConfig *rest.Config
	// kubeconfig is electorConfig written out, pointing straight at the API server.
	kubeconfig string
}

// leaseEntry is one state of a Lease as the test's own watch saw it.
type leaseEntry struct {
	index       int
	at          time.Time
	holder      string
	holderUID   string
	transitions int32
	// handoverFrom is the previous holder while a handover awaits its confirmation.
	handoverFrom string
}

// leaseHistory records every state of a Lease, from the test's own watch.
type leaseHistory struct {
	mu      sync.Mutex
	entries []leaseEntry
}

// recordLease watches a Lease until the test ends, then checks that the fencing token never shrank and grew
// with every new holder.
func recordLease(t *testing.T, cs kubernetes.Interface, namespace, name string) *leaseHistory {
	h := &leaseHistory{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.follow(ctx, cs, namespace, name)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		h.checkFencingToken(t)
	})
	return h
}

// follow re-establishes the watch whenever it ends (the API server may be restarted under it).
func (h *leaseHistory) follow(ctx context.Context, cs kubernetes.Interface, namespace, name string) {
	leases := cs.CoordinationV1().Leases(namespace)
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	rv := ""
	for ctx.Err() == nil {
		w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: rv})
		if err != nil {
			rv = ""
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				if ev.Type == watch.Error {
					rv = ""
				}
				continue
			}
			rv = l.ResourceVersion
			h.add(l)
		}
		w.Stop()
	}
}

func (h *leaseHistory) add(l *coordinationv1.Lease) {
	e := leaseEntry{at: time.Now(), holderUID: l.Annotations[elector.HolderUIDAnnotation], handoverFrom: l.Annotations[elector.HandoverFromAnnotation]}
	if l.Spec.HolderIdentity != nil {
		e.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseTransitions != nil {
		e.transitions = *l.Spec.LeaseTransitions
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.entries); n > 0 && h.entries[n-1].holder == e.holder && h.entries[n-1].holderUID == e.holderUID && h.entries[n-1].transitions == e.transitions &&
		h.entries[n-1].handoverFrom == e.handoverFrom {
		return // a renewal: nothing the tests look at changed
	}
	e.index = len(h.entries)
	h.entries = append(h.entries, e)
}

// mark is the position from which waitFor looks.
func (h *leaseHistory) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.entries)
}

// waitFor returns the first entry from position from on that matches.
func (h *leaseHistory) waitFor(t *testing.T, from int, timeout time.Duration, what string, match func(leaseEntry) bool) leaseEntry {
	t.Helper()
	var found leaseEntry
	waitUntil(t, timeout, what, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.entries[min(from, len(h.entries)):] {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// handoverEntries are the states written by a handover: the first state naming a successor with the handover
// annotation.
func (h *leaseHistory) handoverEntries() []leaseEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []leaseEntry
	for i, e := range h.entries {
		if e.handoverFrom == "" {
			continue
		}
		if prev := h.entries[max(i-1, 0)]; i == 0 || prev.handoverFrom != e.handoverFrom || prev.holder != e.holder || prev.holderUID != e.holderUID {
			out = append(out, e)
		}
	}
	return out
}

// handovers counts the handover writes seen so far.
func (h *leaseHistory) handovers() int { return len(h.handoverEntries()) }

// checkFencingToken fails the test if leaseTransitions ever shrank, or a new holder did not raise it above
// every earlier holder's.
func (h *leaseHistory) checkFencingToken(t *testing.T) {
	problems, tenures, highest := h.fencingProblems()
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) == 0 {
		t.Logf("fencing token: %d Lease states, %d tenures, strictly increasing (last %d)", h.mark(), tenures, highest)
	}
}

// fencingProblems lists every state where the token shrank or a tenure did not start above every earlier one.
func (h *leaseHistory) fencingProblems() (problems []string, tenures int, highest int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	highest = -1
	for i, e := range h.entries {
		if i > 0 && e.transitions < h.entries[i-1].transitions {
			problems = append(problems, fmt.Sprintf("fencing token went down: %+v after %+v", e, h.entries[i-1]))
		}
		// A tenure starts whenever a holder appears that the previous state did not name (by name or pod UID),
		// including a holder taking the Lease back after releasing it: each must carry a token above all earlier
		// ones.
		if e.holder != "" && (i == 0 || h.entries[i-1].holder != e.holder || h.entries[i-1].holderUID != e.holderUID) {
			if i > 0 && e.transitions <= highest {
				problems = append(problems, fmt.Sprintf("tenure of %s (%s) started with fencing token %d, not above the earlier %d", e.holder, e.holderUID, e.transitions, highest))
			}
			tenures++
		}
		if e.holder != "" {
			highest = max(highest, e.transitions)
		}
	}
	return problems, tenures, highest
}

// exclusivityWatch samples every replica's /readyz every 10 ms and records every round in which more than one
// replica answered 200.
type exclusivityWatch struct {
	mu         sync.Mutex
	replicas   []*replica
	rounds     int
	violations []string
	// lastLeader is the start of the last round in which a replica was ready; longestGap the longest time
	// between two such rounds.
	lastLeader time.Time
	longestGap time.Duration
}

// watchExclusivity starts sampling; when the test ends it logs the number of rounds and fails the test on a
// round with two ready replicas.
func watchExclusivity(t *testing.T) *exclusivityWatch {
	w := &exclusivityWatch{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		w.run(stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.violations) > 0 {
			t.Errorf("two replicas ready at once in %d of %d sampling rounds: %s", len(w.violations), w.rounds, strings.Join(w.violations, "; "))
			return
		}
		t.Logf("readiness sampled every 10ms in %d rounds across %d replicas: never two ready at once", w.rounds, len(w.replicas))
	})
	return w
}

func (w *exclusivityWatch) add(r *replica) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replicas = append(w.replicas, r)
}

// remove stops sampling a replica whose process has exited.
func (w *exclusivityWatch) remove(r *replica) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replicas = slices.DeleteFunc(w.replicas, func(x *replica) bool { return x == r })
}

// leaderSince reports whether a replica answered ready in a round that started after t.
func (w *exclusivityWatch) leaderSince(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastLeader.After(t)
}

func (w *exclusivityWatch) run(stop <-chan struct{}) {
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		w.mu.Lock()
		replicas := slices.Clone(w.replicas)
		w.mu.Unlock()
		started := time.Now()
		codes := make([]int, len(replicas))
		var wg sync.WaitGroup
		for i, r := range replicas {
			wg.Go(func() { codes[i] = r.readyz(probeTimeout) })
		}
		wg.Wait()
		var ready []string
		for i, code := range codes {
			if code == http.StatusOK {
				ready = append(ready, replicas[i].name)
			}
		}
		w.mu.Lock()
		if len(ready) > 0 {
			if !w.lastLeader.IsZero() {
				w.longestGap = max(w.longestGap, started.Sub(w.lastLeader))
			}
			w.lastLeader = started
		}
		w.rounds++
		if len(ready) > 1 && len(w.violations) < 20 {
			w.violations = append(w.violations, fmt.Sprintf("round %d at %s: %s", w.rounds, time.Now().Format(time.StampMilli), strings.Join(ready, ", ")))
		}
		w.mu.Unlock()
	}
}

// appEndpoint stands in for a pod's application as the elector's --app-check sees it: /healthz answers 200 while
// healthy, 503 otherwise. It remembers every change, for checkers that ask how long it had been in a state.
type appEndpoint struct {
	port    int
	mu      sync.Mutex
	healthy bool
	changes []appChange
}

// appChange is the endpoint turning healthy or unhealthy at a moment.
type appChange struct {
	at      time.Time
	healthy bool
}

// startApp serves a healthy application endpoint on loopback until the test ends.
func startApp(t *testing.T) *appEndpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &appEndpoint{port: l.Addr().(*net.TCPAddr).Port, healthy: true, changes: []appChange{{time.Now(), true}}}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		healthy := a.healthy
		a.mu.Unlock()
		if !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(func() { _ = server.Close() })
	return a
}

// set turns the endpoint healthy or unhealthy.
func (a *appEndpoint) set(healthy bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.healthy != healthy {
		a.healthy = healthy
		a.changes = append(a.changes, appChange{time.Now(), healthy})
	}
}

// was reports whether the endpoint was in the given state for the whole of [from, to].
func (a *appEndpoint) was(healthy bool, from, to time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	state, known := false, false // the state at from
	for _, c := range a.changes {
		if c.at.After(from) {
			if c.at.After(to) {
				break
			}
			if c.healthy != healthy {
				return false
			}
			continue
		}
		state, known = c.healthy, true
	}
	return known && state == healthy
}

// check is the --app-check value that probes this endpoint: every period, one failure or success enough.
func (a *appEndpoint) check(period, timeout time.Duration) string {
	return fmt.Sprintf(`{"httpGet":{"host":"127.0.0.1","path":"/healthz","port":%d},"periodSeconds":%d,"timeoutSeconds":%d,"successThreshold":1,"failureThreshold":1}`,
		a.port, int(period.Seconds()), int(timeout.Seconds()))
}

// logTime is the time of the first line of a process's output that contains every one of parts, from its
// time= field (the elector's log is slog's text format, to the millisecond).
func logTime(out string, parts ...string) (time.Time, bool) {
	for _, line := range strings.Split(out, "\n") {
		if outputLines(line, parts...) == 0 {
			continue
		}
		field, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, field)
		return at, err == nil
	}
	return time.Time{}, false
}

// outputLines counts the lines of a process's output that contain every one of parts.
func outputLines(out string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// testSocket is a control socket of its own for an elector serving HTTP on port: the default @leader-election
// is one per network namespace, and another test binary (or a developer's elector) may hold it.
func testSocket(port int) string {
	return fmt.Sprintf("@leader-election-test-%d-%d", os.Getpid(), port)
}
