package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-election/leader-election/pkg/elector"
)

// The soak's settings: `make soak DURATION=30m` runs it long; `make test` runs the default.
var (
	soakDuration = flag.Duration("soak.duration", 150*time.Second, "how long the fault soak injects faults")
	soakSeed     = flag.Uint64("soak.seed", 0, "the fault soak's random seed (0: from the clock); the log prints it for a replay")
	soakOnly     = flag.String("soak.only", "", "inject only the fault kinds whose names contain one of these comma-separated words (default: every kind)")
)

// recoveryMargin is what a leader may take beyond one lease duration to be back after a fault heals: an
// elector's backoff, a request's round trip and the sampler's own period on a loaded machine.
const recoveryMargin = 2 * time.Second

// The kinds of fault the soak injects.
const (
	faultPause    = "pause past the lease (SIGSTOP/SIGCONT)"
	faultKill     = "kill -9 and restart in the same pod"
	faultTwin     = "second process, same pod name, new UID"
	faultSever    = "severed from the API server"
	faultSilent   = "watch kept open but silent"
	faultRestart  = "API server restart"
	faultDelete   = "Lease deleted"
	faultSIGTERM  = "SIGTERM to the leader, pod replaced"
	faultStepDown = "step-down on the control socket"
	faultFlap     = "application health flaps"
	faultStalled  = "handover to a paused successor"
)

var faultKinds = []string{faultPause, faultKill, faultTwin, faultSever, faultSilent, faultRestart, faultDelete, faultSIGTERM, faultStepDown, faultFlap, faultStalled}

// chosenKinds are the fault kinds -soak.only selects.
func chosenKinds(t *testing.T) []string {
	if *soakOnly == "" {
		return faultKinds
	}
	var kinds []string
	for _, k := range faultKinds {
		for _, word := range strings.Split(*soakOnly, ",") {
			if word = strings.TrimSpace(word); word != "" && strings.Contains(k, word) {
				kinds = append(kinds, k)
				break
			}
		}
	}
	if len(kinds) == 0 {
		t.Fatalf("-soak.only=%q matches no fault kind; the kinds are: %s", *soakOnly, strings.Join(faultKinds, "; "))
	}
	return kinds
}

// The soak's application check (--app-check): every replica's pod has an application endpoint that the soak
// turns healthy and unhealthy, probed every second, one failure or success enough, as fast as a probe can be.
const (
	appCheckPeriod  = time.Second
	appCheckTimeout = time.Second
)

// A replica's application verdict trails its endpoint: a change is seen at the next check (a period, plus the
// check's timeout), then advertised in its candidate Lease (at most one write per retry period), which the leader's
// candidate watch delivers. appVerdictLag bounds that, with the sampler's margin; the handover checker calls an
// endpoint surely healthy or surely unhealthy only when it has been so for longer.
const appVerdictLag = appCheckPeriod + appCheckTimeout + retryPeriod + recoveryMargin

// TestFaultSoak runs three electors, health-gated on an application endpoint of their own, against the real API
// server while a seeded scheduler injects random faults, one at a time (among them graceful handovers on SIGTERM
// and step-down, and flapping application health), and checks over the whole run: never two replicas ready at
// once (the 10 ms sampler), the fencing token strictly increasing with every change of holder (a watch that
// records every state), every handover landing on a healthy replica when one exists, and a leader again within
// the lease duration plus a small margin after every fault heals.
func TestFaultSoak(t *testing.T) {
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("fault soak: seed %d (replay: go test ./cmd/elector -run TestFaultSoak -args -soak.seed=%d), duration %s, timings %s/%s/%s",
		seed, seed, *soakDuration, leaseDuration, renewDeadline, retryPeriod)
	kinds := chosenKinds(t)
	s := newSoak(t, rand.New(rand.NewPCG(seed, seed^0x5eed)))
	s.run(t, *soakDuration, kinds)
}

// soakPod is one pod of the soak: a name, its current UID, its own proxy to the API server, its application's
// endpoint, and its live processes (two while a twin runs).
type soakPod struct {
	name       string
	uid        string
	proxy      *tcpProxy
	kubeconfig string
	app        *appEndpoint
	procs      []*replica
}

type soak struct {
	h    *harness
	g    *group
	rng  *rand.Rand
	pods []*soakPod
	uids int

	injected   map[string]int
	recoveries map[string]time.Duration // slowest recovery after heal, by kind
	late       []string
	handovers  map[string]int // handover writes the Lease carried during each kind of fault
	stepDowns  map[int]int    // the answers to the step-down faults' requests, by status code (0: no answer)
}

func newSoak(t *testing.T, rng *rand.Rand) *soak {
	h := newHarness(t)
	apiServer, err := url.Parse(h.electorConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{h: h, g: h.newGroup(t, "soak"), rng: rng, injected: map[string]int{}, recoveries: map[string]time.Duration{}, handovers: map[string]int{}, stepDowns: map[int]int{}}
	for i := range 3 {
		proxy := startProxy(t, apiServer.Host)
		p := &soakPod{name: fmt.Sprintf("soak-%d", i), proxy: proxy, kubeconfig: writeKubeconfig(t, h.electorConfig, "https://"+proxy.addr()), app: startApp(t)}
		p.uid = s.newUID(p)
		p.procs = []*replica{s.startProcess(t, p)}
		s.pods = append(s.pods, p)
	}
	return s
}

// startProcess runs one more elector process in the pod, with its current UID and the pod's application check.
func (s *soak) startProcess(t *testing.T, p *soakPod) *replica {
	return s.g.startPod(t, p.name, p.uid, p.kubeconfig, "ELECTOR_APP_CHECK="+p.app.check(appCheckPeriod, appCheckTimeout))
}

func (s *soak) newUID(p *soakPod) string {
	s.uids++
	return fmt.Sprintf("uid-%s-%d", p.name, s.uids)
}

func (s *soak) run(t *testing.T, duration time.Duration, kinds []string) {
	start := time.Now()
	waitUntil(t, 15*time.Second, "a first leader", func() bool { return s.g.exclusive.leaderSince(start) })
	for time.Since(start) < duration && !t.Failed() {
		kind := kinds[s.rng.IntN(len(kinds))]
		t.Logf("%s fault %d: %s", time.Now().Format(time.StampMilli), total(s.injected)+1, kind)
		// Handovers count toward the fault until the next one starts: a verdict trails its application, so a flap
		// may move the Lease after it healed.
		before := s.g.history.handovers()
		healed := s.inject(t, kind)
		s.injected[kind]++
		s.awaitLeader(t, kind, healed)
		time.Sleep(time.Duration(500+s.rng.IntN(1500)) * time.Millisecond)
		s.handovers[kind] += s.g.history.handovers() - before
	}
	s.report(t, time.Since(start))
}

// awaitLeader waits for a ready leader after a fault healed and records how long it took.
func (s *soak) awaitLeader(t *testing.T, kind string, healed time.Time) {
	waitUntil(t, 30*time.Second, "a leader after "+kind, func() bool { return s.g.exclusive.leaderSince(healed) })
	took := time.Since(healed)
	s.recoveries[kind] = max(s.recoveries[kind], took)
	if limit := leaseDuration + recoveryMargin; took > limit {
		s.late = append(s.late, fmt.Sprintf("%s: no leader for %s after it healed (limit %s)", kind, took.Round(time.Millisecond), limit))
	}
}

// inject carries out one fault and returns when it healed.
func (s *soak) inject(t *testing.T, kind string) time.Time {
	t.Helper()
	switch kind {
	case faultPause:
		r := s.pick().procs[0]
		if err := r.proc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(leaseDuration + s.jitter(2*time.Second))
		if err := r.proc.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	case faultKill:
		p := s.pick()
		for _, r := range p.procs {
			s.kill(t, r)
		}
		time.Sleep(s.jitter(time.Second))
		p.procs = []*replica{s.startProcess(t, p)}
	case faultTwin:
		// The force-deleted pod's containers run on; its replacement starts with the same name. After a while the
		// old node dies for good.
		p := s.pick()
		old := p.procs
		p.uid = s.newUID(p)
		p.procs = append(p.procs, s.startProcess(t, p))
		time.Sleep(time.Second + s.jitter(leaseDuration))
		for _, r := range old {
			s.kill(t, r)
		}
		p.procs = slices.DeleteFunc(p.procs, func(r *replica) bool { return slices.Contains(old, r) })
	case faultSever:
		p := s.pick()
		p.proxy.sever()
		time.Sleep(time.Second + s.jitter(leaseDuration+2*time.Second))
		p.proxy.heal()
	case faultSilent:
		p := s.pick()
		p.proxy.freeze()
		time.Sleep(time.Second + s.jitter(2*leaseDuration))
		p.proxy.heal()
	case faultRestart:
		apiServer := s.h.env.ControlPlane.APIServer
		if err := apiServer.Stop(); err != nil {
			t.Fatalf("stopping the API server: %v", err)
		}
		if err := apiServer.Start(); err != nil {
			t.Fatalf("starting the API server again: %v", err)
		}
	case faultDelete:
		err := s.h.env.Clientset.CoordinationV1().Leases(s.h.namespace).Delete(context.Background(), "soak", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting the Lease: %v", err)
		}
	case faultSIGTERM:
		// A Deployment deletes the leader's pod: its elector hands the Lease over and exits, and a new pod
		// (same name here, as a StatefulSet's, and a new UID) starts a moment later.
		p, r := s.leader()
		if r == nil {
			return time.Now() // no leader to stop; the fault is counted all the same
		}
		if err := r.proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if _, err := r.proc.Wait(10 * time.Second); err != nil {
			t.Fatalf("%s did not exit within 10s of SIGTERM: %v", r.name, err)
		}
		s.g.exclusive.remove(r)
		p.procs = slices.DeleteFunc(p.procs, func(x *replica) bool { return x == r })
		time.Sleep(s.jitter(2 * time.Second))
		p.uid = s.newUID(p)
		p.procs = append(p.procs, s.startProcess(t, p))
	case faultStepDown:
		if _, r := s.leader(); r != nil {
			// A refusal (a leader that just lost its Lease) is fine: what matters is what the checkers see.
			s.stepDown(t, r)
		}
	case faultFlap:
		// One to three pods, the leader's more often, turn unhealthy and healthy a few times, each state for up
		// to a few check periods, then all are healthy again.
		var flapping []*soakPod
		for _, p := range s.pods {
			if s.rng.IntN(2) == 0 {
				flapping = append(flapping, p)
			}
		}
		if lp, _ := s.leader(); lp != nil && !slices.Contains(flapping, lp) && s.rng.IntN(3) > 0 {
			flapping = append(flapping, lp)
		}
		for range 1 + s.rng.IntN(3) {
			for _, p := range flapping {
				p.app.set(false)
			}
			time.Sleep(500*time.Millisecond + s.jitter(3*appCheckPeriod))
			for _, p := range flapping {
				p.app.set(true)
			}
			time.Sleep(s.jitter(3 * appCheckPeriod))
		}
	case faultStalled:
		// Every standby is paused, so whichever the leader picks cannot confirm: after the handover bound anyone
		// may take the Lease (the old leader here), and a successor resumed later must not lead on the handover
		// it missed.
		_, leader := s.leader()
		if leader == nil {
			return time.Now()
		}
		var paused []*replica
		for _, p := range s.pods {
			for _, r := range p.procs {
				if r != leader {
					if err := r.proc.Signal(syscall.SIGSTOP); err != nil {
						t.Fatal(err)
					}
					paused = append(paused, r)
				}
			}
		}
		s.stepDown(t, leader)
		time.Sleep(time.Second + s.jitter(leaseDuration))
		for _, r := range paused {
			if err := r.proc.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	return time.Now()
}

// stepDown asks r to step down on its control socket and counts the answer.
func (s *soak) stepDown(t *testing.T, r *replica) {
	code, body, err := r.stepDown()
	if err != nil {
		t.Logf("step-down on %s: %v", r.name, err)
	} else if code != http.StatusOK {
		t.Logf("step-down on %s answered %d: %s", r.name, code, strings.TrimSpace(body))
	}
	s.stepDowns[code]++
}

// leader is the pod and process the Lease names (by pod name and UID), nil when none of them.
func (s *soak) leader() (*soakPod, *replica) {
	l, err := s.h.env.Clientset.CoordinationV1().Leases(s.h.namespace).Get(context.Background(), "soak", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return nil, nil
	}
	for _, p := range s.pods {
		for _, r := range p.procs {
			if r.name == *l.Spec.HolderIdentity && r.uid == l.Annotations[elector.HolderUIDAnnotation] {
				return p, r
			}
		}
	}
	return nil, nil
}

// pick chooses the pod to hurt: the leader's more often than not, since that is where faults matter most.
func (s *soak) pick() *soakPod {
	if s.rng.IntN(3) > 0 {
		if l, err := s.h.env.Clientset.CoordinationV1().Leases(s.h.namespace).Get(context.Background(), "soak", metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
			for _, p := range s.pods {
				if p.name == *l.Spec.HolderIdentity {
					return p
				}
			}
		}
	}
	return s.pods[s.rng.IntN(len(s.pods))]
}

func (s *soak) jitter(upTo time.Duration) time.Duration {
	return time.Duration(s.rng.Int64N(int64(upTo)))
}

func (s *soak) kill(t *testing.T, r *replica) {
	_ = r.proc.Signal(syscall.SIGCONT) // a stopped process is killed all the same, but let it not linger
	if err := r.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := r.proc.Wait(5 * time.Second); err != nil {
		t.Fatalf("%s did not die: %v", r.name, err)
	}
	s.g.exclusive.remove(r)
}

// report prints the figures of the run and fails on late leaders; overlaps and token regressions fail the test
// through the group's own checks when it ends, and are counted here for the summary.
func (s *soak) report(t *testing.T, ran time.Duration) {
	w := s.g.exclusive
	w.mu.Lock()
	overlaps, rounds, gap := len(w.violations), w.rounds, w.longestGap
	w.mu.Unlock()
	problems, tenures, highest := s.g.history.fencingProblems()
	handovers, unhealthy := s.checkHandovers()
	var kinds []string
	total := 0
	for _, k := range faultKinds {
		kinds = append(kinds, fmt.Sprintf("  %-42s %3d   slowest leader after heal %-9s handovers %d", k, s.injected[k], s.recoveries[k].Round(time.Millisecond), s.handovers[k]))
		total += s.injected[k]
	}
	sort.Strings(s.late)
	var answers []string
	for _, code := range slices.Sorted(maps.Keys(s.stepDowns)) {
		answers = append(answers, fmt.Sprintf("%d × %d", s.stepDowns[code], code))
	}
	t.Logf("fault soak summary: ran %s, %d faults\n%s\noverlaps (two ready at once): %d in %d sampling rounds\ntoken regressions: %d over %d tenures (last token %d)\nhandovers: %d, to a surely unhealthy replica while one was surely healthy: %d; step-down answers (status codes): %s\nlongest time without a ready leader: %s\nleaders late after a heal (limit %s): %d",
		ran.Round(time.Second), total, strings.Join(kinds, "\n"), overlaps, rounds, len(problems), tenures, highest,
		handovers, len(unhealthy), strings.Join(answers, ", "), gap.Round(time.Millisecond), leaseDuration+recoveryMargin, len(s.late))
	for _, l := range s.late {
		t.Error(l)
	}
	for _, u := range unhealthy {
		t.Error(u)
	}
	if overlaps > 0 || len(problems) > 0 || len(s.late) > 0 || len(unhealthy) > 0 {
		for _, r := range s.g.replicas {
			t.Logf("--- output of %s (%s):\n%s", r.name, r.uid, r.proc.Output())
		}
	}
}

// checkHandovers counts the handover writes the Lease history holds and lists those that went to a replica whose
// application had been unhealthy for longer than its verdict can trail, while another replica's (neither the old
// leader's nor the successor's) had been healthy that long: a handover must land on a healthy replica when one
// exists. A handover may go to an unhealthy replica when no replica is surely healthy, and within the lag a
// verdict may still be the old one.
func (s *soak) checkHandovers() (handovers int, unhealthy []string) {
	byName := map[string]*soakPod{}
	for _, p := range s.pods {
		byName[p.name] = p
	}
	for _, e := range s.g.history.handoverEntries() {
		handovers++
		succ := byName[e.holder]
		if succ == nil || !succ.app.was(false, e.at.Add(-appVerdictLag), e.at) {
			continue
		}
		for _, p := range s.pods {
			if p != succ && p.name != e.handoverFrom && p.app.was(true, e.at.Add(-appVerdictLag), e.at) {
				unhealthy = append(unhealthy, fmt.Sprintf("%s handed the Lease over to %s at %s (token %d), whose application had been unhealthy for over %s, while %s's had been healthy",
					e.handoverFrom, e.holder, e.at.Format(time.StampMilli), e.transitions, appVerdictLag, p.name))
				break
			}
		}
	}
	return handovers, unhealthy
}

func total(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// TestHandoverCheckerFlagsAnUnhealthySuccessor holds the soak's handover checker to its rule on a made-up history:
// it flags a handover to a replica down for longer than the verdict lag while another was up that long, and
// nothing else.
func TestHandoverCheckerFlagsAnUnhealthySuccessor(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	app := func(changes ...appChange) *appEndpoint { return &appEndpoint{changes: changes} }
	up, down := func(at time.Time) appChange { return appChange{at, true} }, func(at time.Time) appChange { return appChange{at, false} }
	at := t0.Add(10 * time.Minute)
	lag := appVerdictLag
	for _, tc := range []struct {
		name        string
		successor   *appEndpoint
		other       *appEndpoint
		wantFlagged bool
	}{
		{"healthy successor", app(up(t0)), app(up(t0)), false},
		{"successor down long, another up long", app(up(t0), down(at.Add(-2*lag))), app(up(t0)), true},
		{"successor down only within the lag", app(up(t0), down(at.Add(-lag/2))), app(up(t0)), false},
		{"successor down long, nobody else up long", app(up(t0), down(at.Add(-2*lag))), app(up(t0), down(at.Add(-lag/2))), false},
		{"successor down long, the other back only within the lag", app(up(t0), down(at.Add(-2*lag))), app(down(t0), up(at.Add(-lag/2))), false},
	} {
		s := &soak{
			pods: []*soakPod{{name: "old", app: app(up(t0))}, {name: "succ", app: tc.successor}, {name: "other", app: tc.other}},
			g: &group{history: &leaseHistory{entries: []leaseEntry{
				{at: t0, holder: "old", holderUID: "u1", transitions: 1},
				{at: at, holder: "succ", holderUID: "u2", transitions: 2, handoverFrom: "old"},
				{at: at.Add(time.Millisecond), holder: "succ", holderUID: "u2", transitions: 2},
			}}},
		}
		n, flagged := s.checkHandovers()
		if n != 1 || (len(flagged) > 0) != tc.wantFlagged {
			t.Errorf("%s: %d handovers, flagged %q; want 1, flagged %v", tc.name, n, flagged, tc.wantFlagged)
		}
	}
}
