package elector

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	testclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// fakeLeases is an in-memory API server for one Lease: resource versions, optimistic concurrency, watches.
type fakeLeases struct {
	mu       sync.Mutex
	lease    *coordinationv1.Lease // nil: absent
	rv       int
	calls    map[string]int // by verb
	order    []string       // every verb, in the order the calls came
	fail     func(verb string) error
	watchers []*fakeWatch
	// history is every change, so that a watch from a resource version replays what followed it.
	history []watch.Event
	// answersLost makes writes apply but return an error.
	answersLost bool
	// beforeWatch, when set, runs (once) just before a watch is opened: a change between read and watch.
	beforeWatch func()
}

// fakeWatch is one open watch; a muted one stays open but delivers nothing, as a stalled connection does.
type fakeWatch struct {
	*watch.RaceFreeFakeWatcher
	muted bool
}

var leaseResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func newFakeLeases() *fakeLeases {
	return &fakeLeases{rv: 100, calls: map[string]int{}}
}

// heldBy is a Lease as another replica left it.
func heldBy(holder string, transitions int32, durationSeconds int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ns", UID: "uid-1"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To(durationSeconds),
			LeaseTransitions:     ptr.To(transitions),
			// A holder's clock means nothing to the others; an ancient renewTime must not matter.
			RenewTime: ptr.To(metav1.NewMicroTime(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))),
		},
	}
}

// withUID marks a Lease as written by the pod with the given UID, as every elector's write does.
func withUID(l *coordinationv1.Lease, uid string) *coordinationv1.Lease {
	l = l.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[HolderUIDAnnotation] = uid
	return l
}

// holderUIDOfTest is the Lease's holder-uid annotation.
func holderUIDOfTest(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return l.Annotations[HolderUIDAnnotation]
}

// store replaces the Lease as if another client wrote it, and notifies watchers.
func (f *fakeLeases) store(l *coordinationv1.Lease) *coordinationv1.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storeLocked(l)
}

func (f *fakeLeases) storeLocked(l *coordinationv1.Lease) *coordinationv1.Lease {
	f.rv++
	l = l.DeepCopy()
	l.ResourceVersion = strconv.Itoa(f.rv)
	ev := watch.Event{Type: watch.Modified, Object: l.DeepCopy()}
	if f.lease == nil {
		ev.Type = watch.Added
	}
	f.lease = l
	f.notifyLocked(ev)
	return l.DeepCopy()
}

func (f *fakeLeases) notifyLocked(ev watch.Event) {
	f.history = append(f.history, ev)
	for _, w := range f.watchers {
		if !w.muted {
			w.Action(ev.Type, ev.Object.DeepCopyObject())
		}
	}
}

// muteWatches keeps every open watch open but silent from now on; watches opened later work.
func (f *fakeLeases) muteWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		w.muted = true
	}
}

// deleteLease deletes the Lease as a person or a cleanup tool would, and notifies watchers.
func deleteLease(f *fakeLeases) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	if f.lease == nil {
		return
	}
	gone := f.lease.DeepCopy()
	gone.ResourceVersion = strconv.Itoa(f.rv)
	f.lease = nil
	f.notifyLocked(watch.Event{Type: watch.Deleted, Object: gone})
}

// rvString is the newest resource version.
func (f *fakeLeases) rvString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strconv.Itoa(f.rv)
}

// closeWatches ends every open watch, as an API server does after a while.
func (f *fakeLeases) closeWatches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		w.Stop()
	}
	f.watchers = nil
}

func (f *fakeLeases) current() *coordinationv1.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lease.DeepCopy()
}

func (f *fakeLeases) count(verb string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[verb]
}

// firstWrite is the verb of the first create or update, "" before any.
func (f *fakeLeases) firstWrite() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, verb := range f.order {
		if verb == "create" || verb == "update" {
			return verb
		}
	}
	return ""
}

func (f *fakeLeases) setFail(fn func(verb string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// loseAnswers makes writes land on the server but fail for the client, as a timeout or a cancelled request
// whose answer never arrived.
func (f *fakeLeases) loseAnswers(lose bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answersLost = lose
}

func (f *fakeLeases) enter(verb string) error {
	f.calls[verb]++
	f.order = append(f.order, verb)
	if f.fail != nil {
		return f.fail(verb)
	}
	return nil
}

func (f *fakeLeases) Get(context.Context) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("get"); err != nil {
		return nil, err
	}
	if f.lease == nil {
		return nil, apierrors.NewNotFound(leaseResource, "demo")
	}
	return f.lease.DeepCopy(), nil
}

func (f *fakeLeases) Watch(_ context.Context, rv string) (watch.Interface, error) {
	f.mu.Lock()
	hook := f.beforeWatch
	f.beforeWatch = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("watch"); err != nil {
		return nil, err
	}
	w := &fakeWatch{RaceFreeFakeWatcher: watch.NewRaceFreeFake()}
	switch from, err := strconv.Atoi(rv); {
	case rv == "" && f.lease != nil:
		w.Add(f.lease.DeepCopy())
	case err == nil:
		// As the API server does: every change after the given resource version, in order.
		for _, ev := range f.history {
			if evRV, _ := strconv.Atoi(ev.Object.(*coordinationv1.Lease).ResourceVersion); evRV > from {
				w.Action(ev.Type, ev.Object.DeepCopyObject())
			}
		}
	}
	f.watchers = append(f.watchers, w)
	return w, nil
}

func (f *fakeLeases) Create(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("create"); err != nil {
		return nil, err
	}
	if f.lease != nil {
		return nil, apierrors.NewAlreadyExists(leaseResource, l.Name)
	}
	out := f.storeLocked(l)
	if f.answersLost {
		return nil, context.DeadlineExceeded
	}
	return out, nil
}

func (f *fakeLeases) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("update"); err != nil {
		return nil, err
	}
	if f.lease == nil {
		return nil, apierrors.NewNotFound(leaseResource, l.Name)
	}
	if l.ResourceVersion != f.lease.ResourceVersion {
		return nil, apierrors.NewConflict(leaseResource, l.Name, nil)
	}
	out := f.storeLocked(l)
	if f.answersLost {
		return nil, context.DeadlineExceeded
	}
	return out, nil
}

// fakeEvents records Events.
type fakeEvents struct {
	mu      sync.Mutex
	reasons []string
}

func (f *fakeEvents) Create(_ context.Context, e *eventsv1.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reasons = append(f.reasons, e.Reason)
	return nil
}

// errRefused is what a client sees when nothing listens at the API server's address.
var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// testConfig is a valid configuration with the fast durations the integration tests use (4s / 2s / 500ms).
func testConfig(identity string) Config {
	return Config{
		Identity:      identity,
		UID:           identity + "-uid",
		Namespace:     "ns",
		LeaseName:     "demo",
		LeaseDuration: 4 * time.Second,
		RenewDeadline: 2 * time.Second,
		RetryPeriod:   500 * time.Millisecond,
		Readiness:     ReadinessLeader,
	}
}

// epoch is where fake clocks start.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newTestMachine is a machine driven directly by the test, with a fake clock.
func newTestMachine(t *testing.T, cfg Config, api LeaseAPI, clk *testclock.FakeClock) *machine {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	problems := newProblemLog(log)
	return &machine{
		cfg: cfg, clock: clk, leases: api, metrics: noMetrics{}, problems: problems, log: log, board: newBoard(),
		recorder: newRecorder(&fakeEvents{}, clk, cfg.Identity, problems), retry: backoffFor(cfg),
	}
}
