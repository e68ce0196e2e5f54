package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/test/controlplane"
)

// TestElectionAgainstARealAPIServer runs electors as real processes, three per scenario, against a real
// kube-apiserver and etcd. Every scenario also samples readiness (never two ready replicas) and the Lease's
// history (the fencing token grows with every new holder) from start to end.
func TestElectionAgainstARealAPIServer(t *testing.T) {
	h := newHarness(t)
	t.Run("one leader, and every replica agrees with the Lease", h.testAgreement)
	t.Run("step-down on the control socket hands over, over TCP it is refused even from 127.0.0.6", h.testStepDown)
	t.Run("SIGTERM on the leader releases the Lease to a standby (--handover=false)", h.testGracefulExit)
	t.Run("SIGTERM on the leader hands the Lease over to the newest healthy candidate, token + 1", h.testHandoverOnSIGTERM)
	t.Run("a successor paused before it confirms: another replica takes over after the handover bound", h.testDeadSuccessor)
	t.Run("kill -9 on the leader: a standby takes over within the lease duration plus 1s", h.testCrash)
	t.Run("a leader paused past its lease is not ready when it resumes", h.testPause)
	t.Run("a leader cut off from the API server turns unready, is replaced, and rejoins as a standby", h.testPartition)
	t.Run("an elector without RBAC stays up and unready, and says why once", h.testForbidden)
	t.Run("a second signal exits at once, even while the release hangs", h.testSecondSignal)
	t.Run("the API server restarts under the electors", h.testAPIServerRestart)
	t.Run("a second live process with the leader's pod name and another UID does not lead beside it", h.testSameNameAnotherUID)
	t.Run("a Lease deleted under a live leader: unready at once, recreated after the lease with a higher token", h.testLeaseDeleted)
	t.Run("a standby whose watch goes silent still takes over when the leader dies", h.testSilentWatch)
	t.Run("SIGTERM during an acquisition that landed unanswered releases the Lease", h.testUnansweredAcquisition)
	t.Run("in member readiness a replica labelled leader that does not lead is unready", h.testLabelledMember)
}

// newHarness starts the control plane and an identity for the electors bound to exactly what election needs,
// so the scenarios also prove that nothing more is needed.
func newHarness(t *testing.T) *harness {
	// A fixed certificate directory keeps the serving certificate across an API server restart, and
	// shutdown-send-retry-after bounds the server's shutdown to seconds (it otherwise waits up to a minute
	// for open watches, such as the electors', to end).
	certDir := t.TempDir()
	env := controlplane.Start(t,
		func(e *envtest.Environment) { e.ControlPlane.GetAPIServer().CertDir = certDir },
		controlplane.WithAPIServerArgs(map[string]string{"shutdown-send-retry-after": "true"}))
	ctx := context.Background()
	const namespace = "election"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "elector", Namespace: namespace},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "watch", "create", "update"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create"}},
		},
	}
	if _, err := env.Clientset.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "elector", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "elector"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "elector"}},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(namespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "elector"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := user.Config()
	return &harness{env: env, namespace: namespace, electorConfig: cfg, kubeconfig: writeKubeconfig(t, cfg, cfg.Host)}
}

func (h *harness) lease(t *testing.T, name string) *coordinationv1.Lease {
	t.Helper()
	l, err := h.env.Clientset.CoordinationV1().Leases(h.namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (h *harness) testAgreement(t *testing.T) {
	g := h.newGroup(t, "agree")
	g.startN(t, 3)
	leader := g.waitLeader(t, 10*time.Second)
	lease := h.lease(t, "agree")
	for _, r := range g.replicas {
		st, err := r.status()
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if st.Name != *lease.Spec.HolderIdentity || st.LeaseTransitions != *lease.Spec.LeaseTransitions {
			t.Errorf("%s says leader %q, token %d; the Lease says %q, %d", r.name, st.Name, st.LeaseTransitions, *lease.Spec.HolderIdentity, *lease.Spec.LeaseTransitions)
		}
		if st.IsLeader != (r == leader) || st.Identity != r.name || st.LeaseName != "agree" {
			t.Errorf("%s: GET / = %+v (leader is %s)", r.name, st, leader.name)
		}
		if _, err := time.Parse(time.RFC3339Nano, st.ValidUntil); err != nil {
			t.Errorf("%s: validUntil %q is not RFC 3339: %v", r.name, st.ValidUntil, err)
		}
		wantReady := http.StatusServiceUnavailable
		if r == leader {
			wantReady = http.StatusOK
		}
		if got := r.readyz(time.Second); got != wantReady {
			t.Errorf("%s: /readyz = %d, want %d", r.name, got, wantReady)
		}
	}
	metrics := get(t, leader.base+"/metrics")
	if !strings.Contains(metrics, `leader_election_master_status{name="agree"} 1`) {
		t.Errorf("the leader's /metrics lacks leader_election_master_status 1:\n%s", metrics)
	}
	for _, r := range g.replicas {
		rss := metricValue(t, get(t, r.base+"/metrics"), "process_resident_memory_bytes")
		t.Logf("%s: resident memory %.1f MiB", r.name, rss/(1<<20))
		if rss > 20<<20 {
			t.Errorf("%s uses %.1f MiB of resident memory, more than the 20 MiB target", r.name, rss/(1<<20))
		}
	}

	// The status subcommand, as a script would use it, with the electors' own identity (no list permission
	// needed for one named Lease).
	code, out := runToExit(t, nil, "status", "-n", h.namespace, "agree", "-o", "json", "--kubeconfig", h.kubeconfig)
	var rows []leaseRow
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 1 || rows[0].Holder != leader.name {
		t.Errorf("elector status -o json: exit %d, %v, output:\n%s", code, err, out)
	}
	code, out = runToExit(t, nil, "status", "--kubeconfig", writeKubeconfig(t, h.env.Config, h.env.Config.Host), "-n", h.namespace)
	if code != 0 || !strings.Contains(out, "agree") || !strings.Contains(out, leader.name) || !strings.Contains(out, " ago") {
		t.Errorf("elector status (table): exit %d, output:\n%s", code, out)
	}

	// Acquisition is recorded as an Event on the Lease (best effort, so it may trail the acquisition).
	waitUntil(t, 5*time.Second, "an Acquired Event on the Lease", func() bool {
		events, err := h.env.Clientset.EventsV1().Events(h.namespace).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range events.Items {
			if e.Regarding.Name == "agree" && e.Regarding.Kind == "Lease" && e.Reason == "Acquired" && e.ReportingInstance == leader.name {
				return true
			}
		}
		return false
	})
}

func (h *harness) testStepDown(t *testing.T) {
	g := h.newGroup(t, "stepdown")
	g.startN(t, 3, "ELECTOR_BIND_ADDRESS=0.0.0.0")
	old := g.waitLeader(t, 10*time.Second)

	// Over TCP, step-down is refused from every address, including 127.0.0.6, where Istio delivers outside
	// traffic: a real connection from that address, as the mesh's would arrive.
	for _, from := range []string{"127.0.0.6", "127.0.0.1"} {
		code, body := postFrom(t, net.ParseIP(from), old.base+"/stepdown")
		if code != http.StatusForbidden || !strings.Contains(body, old.socket) || !strings.Contains(body, "curl --abstract-unix-socket") {
			t.Errorf("step-down over TCP from %s: %d %q, want 403 naming the control socket", from, code, body)
		}
	}
	if st, err := old.status(); err != nil || !st.IsLeader {
		t.Fatalf("a refused step-down changed the election: %+v, %v", st, err)
	}
	for _, r := range g.replicas {
		if r != old {
			if code, body, err := r.stepDown(); err != nil || code != http.StatusConflict {
				t.Errorf("step-down on standby %s: %d %q %v, want 409", r.name, code, body, err)
			}
		}
	}

	streams := map[*replica]<-chan elector.Status{}
	for _, r := range g.replicas {
		streams[r] = r.subscribe(t)
		// A replica that has not synced its watch yet may first say nobody leads; it must then name the leader.
		waitEvent(t, r, streams[r], func(st elector.Status) bool { return st.Name == old.name })
	}
	tokenBefore := *h.lease(t, "stepdown").Spec.LeaseTransitions
	mark := g.history.mark()
	start := time.Now()
	if code, body, err := old.stepDown(); err != nil || code != http.StatusOK {
		t.Fatalf("step-down on the control socket: %d %q %v", code, body, err)
	}
	next := g.history.waitFor(t, mark, 5*time.Second, "another holder", func(e leaseEntry) bool { return e.holder != "" && e.holder != old.name })
	t.Logf("step-down handover: %s held the Lease %s after the request", next.holder, next.at.Sub(start).Round(time.Millisecond))
	if next.transitions <= tokenBefore {
		t.Errorf("fencing token %d after the handover, not above %d", next.transitions, tokenBefore)
	}
	for _, r := range g.replicas {
		waitEvent(t, r, streams[r], func(st elector.Status) bool { return st.Name == next.holder })
	}
}

// postFrom sends an empty POST from a given local address (nil: any).
func postFrom(t *testing.T, local net.IP, target string) (int, string) {
	t.Helper()
	dialer := &net.Dialer{Timeout: time.Second}
	if local != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: local}
	}
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := client.Post(target, "", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricValue is the value of an unlabelled metric in a Prometheus text exposition.
func metricValue(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(exposition, "\n") {
		if value, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func get(t *testing.T, target string) string {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func waitEvent(t *testing.T, r *replica, stream <-chan elector.Status, match func(elector.Status) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case st, ok := <-stream:
			if !ok {
				t.Fatalf("%s's event stream ended", r.name)
			}
			if match(st) {
				return
			}
		case <-deadline:
			t.Fatalf("%s's event stream did not deliver the change within 5s", r.name)
		}
	}
}

func (h *harness) testGracefulExit(t *testing.T) {
	g := h.newGroup(t, "sigterm")
	g.startN(t, 3, "ELECTOR_HANDOVER=false")
	old := g.waitLeader(t, 10*time.Second)
	mark := g.history.mark()
	start := time.Now()
	if err := old.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	released := g.history.waitFor(t, mark, 5*time.Second, "the released Lease (no holder)", func(e leaseEntry) bool { return e.holder == "" })
	next := g.history.waitFor(t, mark, 5*time.Second, "another holder", func(e leaseEntry) bool { return e.holder != "" && e.holder != old.name })
	if released.index > next.index {
		t.Errorf("the Lease passed from %s to %s without being released in between", old.name, next.holder)
	}
	t.Logf("graceful failover (SIGTERM -> another holder): %s (released after %s)",
		next.at.Sub(start).Round(time.Millisecond), released.at.Sub(start).Round(time.Millisecond))
	code, err := old.proc.Wait(3 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("after SIGTERM %s exited with %d (%v); want 0 within 3s", old.name, code, err)
	}
	t.Logf("%s exited 0 %s after SIGTERM", old.name, time.Since(start).Round(time.Millisecond))
	g.waitLeader(t, 5*time.Second, old)
}

// labelsFile writes a downward-API labels file naming a pod-template revision, as the webhook mounts it.
func labelsFile(t *testing.T, revision string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "labels")
	if err := os.WriteFile(path, []byte("app=\"web\"\npod-template-hash=\""+revision+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startRollout runs two replicas of an old revision, waits for one to lead, then one replica of a new revision,
// and waits until its candidate Lease says it is healthy: a rollout's first new pod.
func (h *harness) startRollout(t *testing.T, g *group) (leader, newPod *replica) {
	t.Helper()
	g.startN(t, 2, "ELECTOR_POD_LABELS_FILE="+labelsFile(t, "old"))
	leader = g.waitLeader(t, 10*time.Second)
	newPod = g.start(t, h.kubeconfig, "ELECTOR_POD_LABELS_FILE="+labelsFile(t, "new"))
	var c *coordinationv1.Lease
	waitUntil(t, 10*time.Second, newPod.name+"'s candidate Lease", func() bool {
		var err error
		c, err = h.env.Clientset.CoordinationV1().Leases(h.namespace).Get(context.Background(), elector.CandidateLeaseName(g.lease, newPod.name), metav1.GetOptions{})
		return err == nil
	})
	if c.Labels[elector.CandidateForLabel] != g.lease || c.Annotations[elector.CandidateRevisionAnnotation] != "new" ||
		c.Annotations[elector.CandidateHealthyAnnotation] != "true" || len(c.OwnerReferences) != 1 || string(c.OwnerReferences[0].UID) != newPod.uid {
		t.Fatalf("candidate Lease of %s: labels %v annotations %v owners %v", newPod.name, c.Labels, c.Annotations, c.OwnerReferences)
	}
	// The leader learns of the new candidate from its candidate watch, which it starts when it acquires (at times
	// the moment waitLeader returned). The test cannot see what that watch delivered; a real rollout leaves it
	// the seconds between the new pod turning Ready and the old pod's deletion. Two retry periods (the electors'
	// own pace) cover the delivery, even by a watch just started, on a loaded machine; without them, a SIGTERM
	// a few milliseconds after the candidate Lease appeared went to a leader that knew only the old revision's
	// replica, and handed over to it.
	time.Sleep(2 * retryPeriod)
	return leader, newPod
}

func (h *harness) testHandoverOnSIGTERM(t *testing.T) {
	g := h.newGroup(t, "handover")
	old, successor := h.startRollout(t, g)
	mark := g.history.mark()
	token := h.lease(t, "handover").Spec.LeaseTransitions
	start := time.Now()
	if err := old.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	handed := g.history.waitFor(t, mark, 5*time.Second, "the handover", func(e leaseEntry) bool { return e.holder != old.name })
	if handed.holder != successor.name || handed.holderUID != successor.uid || handed.handoverFrom != old.name || handed.transitions != *token+1 {
		t.Fatalf("first state after SIGTERM: %+v; want holder %s (UID %s), handover-from %s, token %d: a direct handover to the new revision, never a release",
			handed, successor.name, successor.uid, old.name, *token+1)
	}
	confirmed := g.history.waitFor(t, handed.index+1, 5*time.Second, "the confirmation", func(leaseEntry) bool { return true })
	if confirmed.holder != successor.name || confirmed.handoverFrom != "" || confirmed.transitions != *token+1 {
		t.Fatalf("after the handover: %+v; want %s confirming with token %d and no handover-from", confirmed, successor.name, *token+1)
	}
	t.Logf("direct handover: SIGTERM -> handed over %s, confirmed %s", handed.at.Sub(start).Round(time.Millisecond), confirmed.at.Sub(start).Round(time.Millisecond))
	code, err := old.proc.Wait(3 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("after SIGTERM %s exited with %d (%v); want 0", old.name, code, err)
	}
	if got := g.waitLeader(t, 5*time.Second, old); got != successor {
		t.Fatalf("%s leads, want the successor %s", got.name, successor.name)
	}
	if st, err := successor.status(); err != nil || !st.IsLeader || st.HandoverFrom != "" || st.LeaseTransitions != *token+1 {
		t.Fatalf("the successor's GET /: %+v (%v)", st, err)
	}
}

func (h *harness) testDeadSuccessor(t *testing.T) {
	g := h.newGroup(t, "deadsucc")
	old, successor := h.startRollout(t, g)
	var third *replica
	for _, r := range g.replicas {
		if r != old && r != successor {
			third = r
		}
	}
	if err := successor.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = successor.proc.Signal(syscall.SIGCONT)
		}
	})
	mark := g.history.mark()
	token := *h.lease(t, "deadsucc").Spec.LeaseTransitions
	start := time.Now()
	if err := old.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	handed := g.history.waitFor(t, mark, 5*time.Second, "the handover", func(e leaseEntry) bool { return e.holder != old.name })
	if handed.holder != successor.name || handed.handoverFrom != old.name {
		t.Fatalf("first state after SIGTERM: %+v; want a handover to the (paused) new pod %s", handed, successor.name)
	}
	taken := g.history.waitFor(t, handed.index+1, 3*leaseDuration, "another replica taking the unconfirmed handover", func(leaseEntry) bool { return true })
	if taken.holder != third.name || taken.transitions != token+2 || taken.handoverFrom != "" {
		t.Fatalf("after the handover: %+v; want %s with token %d (the paused successor never confirmed)", taken, third.name, token+2)
	}
	t.Logf("dead successor: taken by %s %s after SIGTERM (handover bound %s, lease duration %s)", taken.holder,
		taken.at.Sub(start).Round(time.Millisecond), 2*retryPeriod, leaseDuration)
	// The successor resumes: its confirmation conflicts, it never claims to lead, and the Lease stays with the third.
	if err := successor.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	deadline := time.Now().Add(2 * retryPeriod)
	for time.Now().Before(deadline) {
		if st, err := successor.status(); err == nil && st.IsLeader {
			t.Fatalf("the resumed successor claims to lead: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if l := h.lease(t, "deadsucc"); *l.Spec.HolderIdentity != third.name || *l.Spec.LeaseTransitions != token+2 {
		t.Fatalf("after the successor resumed the Lease names %s with token %d, want %s with %d", *l.Spec.HolderIdentity, *l.Spec.LeaseTransitions, third.name, token+2)
	}
}

func (h *harness) testCrash(t *testing.T) {
	g := h.newGroup(t, "sigkill")
	g.startN(t, 3)
	old := g.waitLeader(t, 10*time.Second)
	mark := g.history.mark()
	start := time.Now()
	if err := old.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := g.history.waitFor(t, mark, 10*time.Second, "another holder", func(e leaseEntry) bool { return e.holder != "" && e.holder != old.name })
	took := next.at.Sub(start)
	t.Logf("crash failover (kill -9 -> another holder): %s (lease duration %s)", took.Round(time.Millisecond), leaseDuration)
	if limit := leaseDuration + time.Second; took > limit {
		t.Errorf("crash failover took %s, more than lease duration + 1s (%s)", took, limit)
	}
	g.waitLeader(t, 5*time.Second, old)
}

func (h *harness) testPause(t *testing.T) {
	g := h.newGroup(t, "sigstop")
	g.startN(t, 3)
	old := g.waitLeader(t, 10*time.Second)
	mark := g.history.mark()
	start := time.Now()
	if err := old.proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = old.proc.Signal(syscall.SIGCONT)
		}
	})
	next := g.history.waitFor(t, mark, 10*time.Second, "another holder", func(e leaseEntry) bool { return e.holder != "" && e.holder != old.name })
	t.Logf("paused leader replaced by %s after %s", next.holder, next.at.Sub(start).Round(time.Millisecond))
	time.Sleep(time.Until(start.Add(leaseDuration + time.Second)))
	if err := old.proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if code := old.readyz(5 * time.Second); code != http.StatusServiceUnavailable {
		t.Fatalf("first /readyz of %s after resuming: %d, want 503", old.name, code)
	}
	waitUntil(t, 5*time.Second, old.name+" to follow the new leader as a standby", func() bool {
		st, err := old.status()
		return err == nil && !st.IsLeader && st.Name == next.holder
	})
	if !old.alive() {
		t.Fatalf("%s exited after resuming", old.name)
	}
}

func (h *harness) testPartition(t *testing.T) {
	apiServer, err := url.Parse(h.electorConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, apiServer.Host)
	g := h.newGroup(t, "partition")
	cut := g.start(t, writeKubeconfig(t, h.electorConfig, "https://"+proxy.addr()))
	if g.waitLeader(t, 10*time.Second) != cut {
		t.Fatal("the first replica did not lead")
	}
	g.startN(t, 2)
	for _, r := range g.replicas {
		waitUntil(t, 5*time.Second, r.name+" to see the leader", func() bool {
			st, err := r.status()
			return err == nil && st.Name == cut.name
		})
	}

	mark := g.history.mark()
	start := time.Now()
	proxy.sever()
	var unreadyAfter time.Duration
	waitUntil(t, 5*time.Second, cut.name+" to turn unready", func() bool {
		sent := time.Now()
		if cut.readyz(time.Second) != http.StatusOK {
			unreadyAfter = sent.Sub(start)
			return true
		}
		return false
	})
	t.Logf("cut-off leader unready %s after the cut (renew deadline %s)", unreadyAfter.Round(time.Millisecond), renewDeadline)
	if unreadyAfter > renewDeadline {
		t.Errorf("the cut-off leader stayed ready for %s, beyond the renew deadline %s", unreadyAfter, renewDeadline)
	}
	next := g.history.waitFor(t, mark, 10*time.Second, "another holder", func(e leaseEntry) bool { return e.holder != "" && e.holder != cut.name })
	t.Logf("%s took over %s after the cut", next.holder, next.at.Sub(start).Round(time.Millisecond))

	proxy.heal()
	healed := time.Now()
	waitUntil(t, 10*time.Second, cut.name+" to rejoin as a standby", func() bool {
		st, err := cut.status()
		return err == nil && !st.IsLeader && st.Name == next.holder
	})
	t.Logf("%s rejoined as a standby %s after the network healed", cut.name, time.Since(healed).Round(time.Millisecond))
	if code := cut.readyz(time.Second); code != http.StatusServiceUnavailable {
		t.Errorf("rejoined standby /readyz = %d, want 503", code)
	}
	if code := httpStatus(cut.base + "/healthz"); code != http.StatusOK || !cut.alive() {
		t.Errorf("rejoined standby /healthz = %d, alive %v", code, cut.alive())
	}
}

func (h *harness) testForbidden(t *testing.T) {
	nobody, err := h.env.AddUser(envtest.User{Name: "nobody"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := h.newGroup(t, "forbidden")
	r := g.start(t, writeKubeconfig(t, nobody.Config(), nobody.Config().Host))
	time.Sleep(4 * time.Second) // several retries: 125ms, 250ms, 500ms, 1s, 2s
	if !r.alive() {
		t.Fatalf("exited without RBAC:\n%s", r.proc.Output())
	}
	if code := r.readyz(time.Second); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d without RBAC, want 503", code)
	}
	if code := httpStatus(r.base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d without RBAC, want 200 (a restart cannot grant permissions)", code)
	}
	// Once per operation that needs it, never per retry: reading the Lease, and writing the candidate Lease.
	for _, op := range []string{`operation="read the Lease"`, `operation="write the candidate Lease"`} {
		if n := outputLines(r.proc.Output(), "reason=Forbidden", op); n != 1 {
			t.Errorf("the missing permission was logged %d times for %s, want once:\n%s", n, op, r.proc.Output())
		}
	}
	if n, want := outputLines(r.proc.Output(), "reason=Forbidden"), 2; n != want {
		t.Errorf("the missing permission was logged %d times, want %d (once per operation):\n%s", n, want, r.proc.Output())
	}
	if err := r.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := r.proc.Wait(3 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d (%v), want 0", code, err)
	}
}

func (h *harness) testSecondSignal(t *testing.T) {
	apiServer, err := url.Parse(h.electorConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, apiServer.Host)
	g := h.newGroup(t, "twosignals")
	// A free Lease is acquired at once: the first replica of a Lease nobody has created would wait a lease duration
	// and a retry period (17s here) before creating it.
	free := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "twosignals", Namespace: h.namespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(""), LeaseTransitions: ptr.To[int32](0)}}
	if _, err := h.env.Clientset.CoordinationV1().Leases(h.namespace).Create(context.Background(), free, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The default timings: releasing through a dead connection may take up to a retry period (2s).
	r := g.start(t, writeKubeconfig(t, h.electorConfig, "https://"+proxy.addr()), "LEASE_DURATION=15s", "RENEW_DEADLINE=10s", "RETRY_PERIOD=2s")
	g.waitLeader(t, 30*time.Second)
	proxy.sever()
	start := time.Now()
	if err := r.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !r.alive() {
		t.Fatalf("exited before the release could have finished:\n%s", r.proc.Output())
	}
	if err := r.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := r.proc.Wait(time.Second)
	if err != nil || code != exitFailure {
		t.Fatalf("after a second SIGTERM: exit %d (%v), want %d at once", code, err, exitFailure)
	}
	t.Logf("exited with %d %s after the first signal, on the second", code, time.Since(start).Round(time.Millisecond))
}

func (h *harness) testAPIServerRestart(t *testing.T) {
	g := h.newGroup(t, "restart")
	g.startN(t, 3)
	before := g.waitLeader(t, 10*time.Second)
	start := time.Now()
	apiServer := h.env.ControlPlane.APIServer
	if err := apiServer.Stop(); err != nil {
		t.Fatalf("stopping the API server: %v", err)
	}
	t.Logf("API server stopped in %s", time.Since(start).Round(time.Millisecond))
	if err := apiServer.Start(); err != nil {
		t.Fatalf("starting the API server again: %v", err)
	}
	t.Logf("API server back after %s", time.Since(start).Round(time.Millisecond))
	after := g.waitLeader(t, 30*time.Second)
	t.Logf("leader before the restart %s, after %s; one leader again %s after the stop", before.name, after.name, time.Since(start).Round(time.Millisecond))
	for _, r := range g.replicas {
		if !r.alive() {
			t.Errorf("%s exited during the API server's restart:\n%s", r.name, r.proc.Output())
		}
	}
}

func (h *harness) proxied(t *testing.T) (*tcpProxy, string) {
	t.Helper()
	apiServer, err := url.Parse(h.electorConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, apiServer.Host)
	return proxy, writeKubeconfig(t, h.electorConfig, "https://"+proxy.addr())
}

// The force-deleted StatefulSet pod: its containers still run and reach the API server while its replacement,
// with the same name and a new UID, starts.
func (h *harness) testSameNameAnotherUID(t *testing.T) {
	proxy, throughProxy := h.proxied(t)
	g := h.newGroup(t, "twin")
	old := g.start(t, throughProxy)
	if g.waitLeader(t, 10*time.Second) != old {
		t.Fatal("the first replica did not lead")
	}
	g.start(t, h.kubeconfig)
	tokenBefore := *h.lease(t, "twin").Spec.LeaseTransitions
	twin := g.startPod(t, old.name, "uid-replacement", h.kubeconfig)
	time.Sleep(leaseDuration + time.Second)
	l := h.lease(t, "twin")
	if *l.Spec.HolderIdentity != old.name || l.Annotations[elector.HolderUIDAnnotation] != old.uid || *l.Spec.LeaseTransitions != tokenBefore {
		t.Fatalf("while the old pod renews, the Lease changed: holder %q uid %q token %d", *l.Spec.HolderIdentity, l.Annotations[elector.HolderUIDAnnotation], *l.Spec.LeaseTransitions)
	}
	if st, err := twin.status(); err != nil || st.IsLeader || st.Name != "" {
		t.Fatalf("the replacement says %+v (%v); want not leading, and no name (its own name is not its own lease)", st, err)
	}

	// The old pod loses contact; another process takes over after the lease, with a new token.
	mark := g.history.mark()
	proxy.sever()
	next := g.history.waitFor(t, mark, 4*leaseDuration, "a new tenure", func(e leaseEntry) bool { return e.holderUID != "" && e.holderUID != old.uid })
	if next.transitions <= tokenBefore {
		t.Errorf("the new tenure of %s (%s) has token %d, not above %d", next.holder, next.holderUID, next.transitions, tokenBefore)
	}
	// Back in contact, the old process re-reads a Lease that names its pod name with another UID: it must not lead.
	proxy.heal()
	waitUntil(t, 10*time.Second, "the old process to follow as a standby", func() bool {
		st, err := old.status()
		return err == nil && !st.IsLeader
	})
	time.Sleep(leaseDuration)
	if st, err := old.status(); err != nil || st.IsLeader {
		t.Errorf("the old process leads again: %+v %v", st, err)
	}
	if l := h.lease(t, "twin"); l.Annotations[elector.HolderUIDAnnotation] == old.uid {
		t.Errorf("the old process took the Lease back from a pod of its name: %+v", l.Spec)
	}
}

func (h *harness) testLeaseDeleted(t *testing.T) {
	g := h.newGroup(t, "deleted")
	g.startN(t, 3)
	old := g.waitLeader(t, 10*time.Second)
	mark := g.history.mark()
	// The Lease as it was deleted (a renewal in between makes the delete conflict: read again), for its last
	// renewal's time.
	leases := h.env.Clientset.CoordinationV1().Leases(h.namespace)
	var last *coordinationv1.Lease
	var deleted time.Time
	waitUntil(t, 5*time.Second, "the Lease deleted as last read", func() bool {
		l := h.lease(t, "deleted")
		deleted = time.Now()
		err := leases.Delete(context.Background(), "deleted", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion}})
		if err != nil && !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
		last = l
		return err == nil
	})
	tokenBefore := *last.Spec.LeaseTransitions
	waitUntil(t, 2*time.Second, old.name+" to turn unready", func() bool { return old.readyz(time.Second) != http.StatusOK })
	t.Logf("%s unready %s after the deletion", old.name, time.Since(deleted).Round(time.Millisecond))
	// Having seen the deletion, the old leader renews no more: its last answered renewal is final (until it
	// creates the Lease again, a renew deadline later at the earliest).
	ownRenewal := lastRenewal(t, old, "deleted")
	if ownRenewal.Sub(last.Spec.RenewTime.Time) > time.Millisecond { // renewTime keeps microseconds, the metric a float
		t.Fatalf("%s's last answered renewal (%s) is later than the deleted Lease's: read after it created the Lease again?",
			old.name, ownRenewal.Format(time.StampMicro))
	}
	next := g.history.waitFor(t, mark, 3*leaseDuration, "the Lease created again", func(e leaseEntry) bool { return e.holder != "" })
	t.Logf("%s created the Lease again %s after the deletion, token %d (was %d)", next.holder, next.at.Sub(deleted).Round(time.Millisecond), next.transitions, tokenBefore)
	if next.transitions <= tokenBefore {
		t.Errorf("the recreated Lease has token %d, not above %d", next.transitions, tokenBefore)
	}
	// Nobody may create before the lease of the old leader's last renewal ran out, as the creator knew it: a
	// standby counts from when it saw the Lease's last renewal, sent (its renewTime, this machine's clock) before
	// it was seen; the old leader from its own last answered renewal (a renewal that landed unanswered it does not
	// count). The deletion's time is no measure: the last renewal can be more than a retry period older when the
	// next one was slow and arrived after the deletion.
	renewed, whose := last.Spec.RenewTime.Time, "the deleted Lease's last renewal"
	if next.holder == old.name {
		renewed, whose = ownRenewal, "its own last answered renewal"
	}
	if waited := next.at.Sub(renewed); waited < leaseDuration {
		t.Errorf("%s created the Lease again %s after %s (%s before the deletion), before that lease (%s) ran out",
			next.holder, waited, whose, deleted.Sub(renewed).Round(time.Millisecond), leaseDuration)
	}
	g.waitLeader(t, 5*time.Second)
}

// lastRenewal is a replica's leader_election_last_renewal_timestamp_seconds for a Lease: when it sent its last
// renewal that was answered.
func lastRenewal(t *testing.T, r *replica, lease string) time.Time {
	t.Helper()
	prefix := `leader_election_last_renewal_timestamp_seconds{name="` + lease + `"} `
	for _, line := range strings.Split(get(t, r.base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			seconds, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return time.Unix(0, int64(seconds*1e9))
		}
	}
	t.Fatalf("%s's metrics lack %s", r.name, strings.TrimSpace(prefix))
	return time.Time{}
}

// A proxy keeps the standby's watch open but forwards nothing; then the leader dies.
func (h *harness) testSilentWatch(t *testing.T) {
	proxy, throughProxy := h.proxied(t)
	g := h.newGroup(t, "silent")
	leader := g.start(t, h.kubeconfig)
	if g.waitLeader(t, 10*time.Second) != leader {
		t.Fatal("the first replica did not lead")
	}
	standby := g.start(t, throughProxy)
	// Its watch delivers: a standby's validUntil moves with every renewal it sees.
	seen := map[string]bool{}
	waitUntil(t, 5*time.Second, "the standby to see renewals through its watch", func() bool {
		st, err := standby.status()
		if err == nil && st.Name == leader.name {
			seen[st.ValidUntil] = true
		}
		return len(seen) >= 3
	})
	proxy.freeze()
	time.Sleep(2 * retryPeriod) // renewals the standby never sees
	start := time.Now()
	if err := leader.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	g.waitLeader(t, 4*leaseDuration, leader)
	t.Logf("the standby behind a silent watch took over %s after the leader died", time.Since(start).Round(time.Millisecond))
}

// The acquisition lands on the server, its answer never arrives, and SIGTERM comes while it is outstanding.
func (h *harness) testUnansweredAcquisition(t *testing.T) {
	proxy, throughProxy := h.proxied(t)
	g := h.newGroup(t, "unanswered")
	ghost := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "unanswered", Namespace: h.namespace},
		// 3s: the replica's takeover comes before its silent-watch restart (after its own 4s lease duration).
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("ghost"), LeaseDurationSeconds: ptr.To[int32](3),
			LeaseTransitions: ptr.To[int32](2), RenewTime: ptr.To(metav1.NowMicro())},
	}
	if _, err := h.env.Clientset.CoordinationV1().Leases(h.namespace).Create(context.Background(), ghost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := g.start(t, throughProxy)
	waitUntil(t, 5*time.Second, r.name+" to see the ghost holder", func() bool {
		st, err := r.status()
		return err == nil && st.Name == "ghost"
	})
	mark := g.history.mark()
	proxy.holdReplies()
	landed := g.history.waitFor(t, mark, 3*leaseDuration, r.name+"'s acquisition to land", func(e leaseEntry) bool { return e.holder == r.name })
	if st, err := r.status(); err != nil || st.IsLeader {
		t.Fatalf("%s knows it leads (%+v, %v): the answer to its acquisition was not held", r.name, st, err)
	}
	proxy.stopHoldingReplies()
	if err := r.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	released := g.history.waitFor(t, landed.index+1, 3*time.Second, "the Lease released", func(e leaseEntry) bool { return e.holder == "" })
	t.Logf("released %s after SIGTERM (the lease would have run %s)", released.at.Sub(signalled).Round(time.Millisecond), leaseDuration)
	if code, err := r.proc.Wait(3 * time.Second); err != nil || code != 0 {
		t.Errorf("exit %d (%v), want 0", code, err)
	}
}

// Contract 3: the label controller may still label a replica leader after it stopped leading; in member
// readiness that replica must be unready, so that a Service selecting the label never lists two pods.
func (h *harness) testLabelledMember(t *testing.T) {
	g := h.newGroup(t, "labelled")
	ghost := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "labelled", Namespace: h.namespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("ghost"), LeaseDurationSeconds: ptr.To[int32](300),
			LeaseTransitions: ptr.To[int32](1), RenewTime: ptr.To(metav1.NowMicro())},
	}
	if _, err := h.env.Clientset.CoordinationV1().Leases(h.namespace).Create(context.Background(), ghost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The ghost renews as a live leader does: a Lease silent for a lease duration makes the standby restart its
	// watch as stalled, and it is unready for that moment, which is not what this scenario is about.
	h.keepRenewing(t, "labelled")
	labels := filepath.Join(t.TempDir(), "labels")
	write := func(content string) {
		if err := os.WriteFile(labels, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("app=\"web\"\n")
	r := g.start(t, h.kubeconfig, "ELECTOR_READINESS=member", "ELECTOR_POD_LABELS_FILE="+labels)
	waitUntil(t, 5*time.Second, r.name+" to follow the ghost holder", func() bool {
		st, err := r.status()
		return err == nil && st.Name == "ghost"
	})
	// In member readiness a replica is also unready until its candidate Lease is written (a start-up write that
	// can take longer than the Lease watch on a loaded machine): wait until it is ready as a member, so that the
	// answers below are about the label alone.
	waitUntil(t, 5*time.Second, r.name+" to be ready as a member", func() bool { return r.readyz(time.Second) == http.StatusOK })
	write("app=\"web\"\nleader-election/role=\"leader\"\n")
	if code := r.readyz(time.Second); code != http.StatusServiceUnavailable {
		t.Errorf("a standby labelled leader: /readyz %d, want 503", code)
	}
	write("app=\"web\"\n")
	if code := r.readyz(time.Second); code != http.StatusOK {
		t.Errorf("a standby following the Lease, not labelled leader: /readyz %d, want 200", code)
	}
	if err := os.Remove(labels); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code := r.readyz(time.Second); code != http.StatusOK {
			t.Errorf("without a labels file: /readyz %d, want 200 (a missing file is not a leader label)", code)
		}
	}
	if n := outputLines(r.proc.Output(), "cannot read the pod's labels"); n != 1 {
		t.Errorf("the missing labels file was logged %d times, want once:\n%s", n, r.proc.Output())
	}
}

// keepRenewing renews the Lease's renewTime every 500ms, as its holder would, until the test ends.
func (h *harness) keepRenewing(t *testing.T, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		leases := h.env.Clientset.CoordinationV1().Leases(h.namespace)
		for {
			if l, err := leases.Get(ctx, name, metav1.GetOptions{}); err == nil {
				l.Spec.RenewTime = ptr.To(metav1.NowMicro())
				_, _ = leases.Update(ctx, l, metav1.UpdateOptions{}) // a conflict is retried on the next tick
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}
