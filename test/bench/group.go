package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leader-election/leader-election/pkg/elector"
)

// timing is an election's lease duration, renew deadline and retry period.
type timing struct{ lease, renew, retry time.Duration }

// defaultTiming is client-go's customary 15s/10s/2s, also our elector's default: the failover rows use it because
// defaults are what most users run.
var defaultTiming = timing{15 * time.Second, 10 * time.Second, 2 * time.Second}

func (t timing) String() string { return fmt.Sprintf("%s/%s/%s", t.lease, t.renew, t.retry) }

// group is the replicas of one implementation competing for one Lease, as the pods of one Deployment would.
type group struct {
	ws     *workspace
	impl   *impl
	lease  string
	timing timing
	// kubeconfigFor gives a new replica its kubeconfig; nil means the implementation's direct one.
	kubeconfigFor func(id string) (string, error)
	// env is added to every one of our electors' environment, after the defaults it may override; podEnv, when
	// set, adds a replica's own (its labels file, its application's check).
	env    []string
	podEnv func(id string) ([]string, error)

	// prefix names new replicas (<prefix>-<n>); "" means the Lease's name.
	prefix string

	mu       sync.Mutex
	replicas []*replica
	next     int // number of the next replica's identity: a replacement is a new pod with a new name
}

// replica is one elector process.
type replica struct {
	id   string
	proc *proc
	base string // ours: its HTTP server

	mu       sync.Mutex
	lastSeen string // baseline: the leader its last "new leader" line named
	leading  bool   // baseline: it printed "started leading"
}

// newGroup makes a group without replicas; add starts them.
func (ws *workspace) newGroup(im *impl, lease string, t timing) *group {
	return &group{ws: ws, impl: im, lease: lease, timing: t}
}

// startGroup makes a group and starts n replicas.
func (ws *workspace) startGroup(ctx context.Context, im *impl, lease string, n int, t timing) (*group, error) {
	g := ws.newGroup(im, lease, t)
	for range n {
		if _, err := g.add(ctx); err != nil {
			g.stop()
			return nil, err
		}
	}
	return g, nil
}

// add starts one more replica. Our elector's port is picked free just before; if another process took it in
// between, the elector exits and the replica is started again on another port.
func (g *group) add(ctx context.Context) (*replica, error) {
	g.mu.Lock()
	id := fmt.Sprintf("%s-%d", or(g.prefix, g.lease), g.next)
	g.next++
	g.mu.Unlock()
	kubeconfig := g.impl.kubeconfig
	if g.kubeconfigFor != nil {
		var err error
		if kubeconfig, err = g.kubeconfigFor(id); err != nil {
			return nil, err
		}
	}
	r, err := g.launch(ctx, id, kubeconfig)
	for attempt := 1; errors.Is(err, errExitedAtStart) && attempt < 3; attempt++ {
		r, err = g.launch(ctx, id, kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.replicas = append(g.replicas, r)
	g.mu.Unlock()
	return r, nil
}

func (g *group) launch(ctx context.Context, id, kubeconfig string) (*replica, error) {
	r := &replica{id: id}
	logPath := filepath.Join(g.ws.dir, id+".log")
	t := g.timing
	if !g.impl.isOurs() {
		args := []string{"--kubeconfig=" + kubeconfig, "--id=" + id, "--lease-lock-name=" + g.lease,
			"--lease-lock-namespace=" + benchNamespace, "--lease-duration=" + t.lease.String(),
			"--renew-deadline=" + t.renew.String(), "--retry-period=" + t.retry.String()}
		var err error
		r.proc, err = g.ws.procs.start(id, g.impl.bin, args, nil, logPath, r.observeLine)
		return r, err
	}
	port := freePort()
	r.base = "http://127.0.0.1:" + strconv.Itoa(port)
	env := []string{"POD_NAME=" + id, "POD_UID=uid-" + id, "POD_NAMESPACE=" + benchNamespace, "LEASE_NAME=" + g.lease, "KUBECONFIG=" + kubeconfig,
		"LEASE_DURATION=" + t.lease.String(), "RENEW_DEADLINE=" + t.renew.String(), "RETRY_PERIOD=" + t.retry.String(),
		"ELECTOR_BIND_ADDRESS=127.0.0.1", "ELECTOR_PORT=" + strconv.Itoa(port), "ELECTOR_READINESS=leader",
		// Every bench elector shares this machine's network namespace, where a pod's elector has its own: each
		// needs its own abstract step-down socket (the default, @leader-election, is one per pod).
		"ELECTOR_CONTROL_SOCKET=@leader-election-bench-" + strconv.Itoa(port)}
	env = append(env, g.env...)
	if g.podEnv != nil {
		own, err := g.podEnv(id)
		if err != nil {
			return nil, err
		}
		env = append(env, own...)
	}
	var err error
	if r.proc, err = g.ws.procs.start(id, g.impl.bin, nil, env, logPath, nil); err != nil {
		return nil, err
	}
	// Its own identity in GET / proves that this process, not another one that got the same port, answers.
	err = poll(ctx, 20*time.Second, 10*time.Millisecond, func() (bool, error) {
		if r.proc.exited() {
			return false, fmt.Errorf("%w:\n%s", errExitedAtStart, r.proc.tail())
		}
		st, err := r.status()
		return err == nil && st.Identity == id, nil
	})
	if err != nil {
		r.proc.stop(syscall.SIGKILL, time.Second)
		return nil, fmt.Errorf("elector %s did not serve HTTP: %w", id, err)
	}
	return r, nil
}

// errExitedAtStart is an elector that exited before serving HTTP, most likely because its port was taken.
var errExitedAtStart = errors.New("the elector exited at start")

// observeLine reads the baseline's log: client-go reports a leader it observes through OnNewLeader.
func (r *replica) observeLine(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, leader, ok := strings.Cut(line, "new leader: "); ok {
		r.lastSeen = strings.TrimSpace(leader)
	}
	if strings.Contains(line, "started leading") {
		r.leading = true
	}
}

// follows reports whether the replica knows holder as the leader: our elector from its GET /, the baseline from
// its last "new leader" line. A standby that does not follow yet could not take over, so trials wait for it.
func (r *replica) follows(holder string) bool {
	if r.base == "" {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.id == holder {
			return r.leading
		}
		return r.lastSeen == holder
	}
	st, err := r.status()
	if err != nil {
		return false
	}
	if r.id == holder {
		return st.IsLeader
	}
	return st.Name == holder
}

// status is our elector's GET / answer.
func (r *replica) status() (elector.Status, error) {
	client := http.Client{Timeout: 2 * time.Second}
	var st elector.Status
	resp, err := client.Get(r.base + "/")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET / answered %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (g *group) byID(id string) *replica {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.replicas {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (g *group) members() []*replica {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*replica(nil), g.replicas...)
}

func (g *group) remove(r *replica) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.replicas {
		if x == r {
			g.replicas = append(g.replicas[:i], g.replicas[i+1:]...)
			return
		}
	}
}

// settle waits until one of the group's replicas holds the Lease and every other one follows it, and returns the
// leader. A Lease that changes hands meanwhile (an overloaded machine can make a leader miss its renew deadline)
// is followed to its new holder.
func (g *group) settle(ctx context.Context, timeout time.Duration) (*replica, error) {
	var holder, lagging string
	err := poll(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		holder, lagging = g.ws.leases.get(g.lease).holder, ""
		if holder == "" || g.byID(holder) == nil {
			lagging = "any"
			return false, nil
		}
		for _, r := range g.members() {
			if r.proc.exited() {
				return false, fmt.Errorf("replica %s exited:\n%s", r.id, r.proc.tail())
			}
			if !r.follows(holder) {
				lagging = r.id
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease %s held by %q: replica %s does not follow: %w", g.lease, holder, lagging, err)
	}
	return g.byID(holder), nil
}

// stop ends the group's processes at once: the group is done, nothing is measured any more.
func (g *group) stop() {
	var wg sync.WaitGroup
	for _, r := range g.members() {
		wg.Go(func() { r.proc.stop(syscall.SIGKILL, 5*time.Second) })
	}
	wg.Wait()
	g.mu.Lock()
	g.replicas = nil
	g.mu.Unlock()
}

// poll calls cond every interval until it is true, returns an error, or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
