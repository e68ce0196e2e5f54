package electorhttp

import (
	"context"
	"sync"
	"time"

	"github.com/leader-election/leader-election/pkg/elector"
)

// progressTimeout bounds every wait for an answer; it is never a timing assertion.
const progressTimeout = 5 * time.Second

// epoch is the time the fakes report.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// testConfig is what the HTTP API reads of an elector's configuration.
func testConfig() elector.Config {
	return elector.Config{Identity: "me", LeaseName: "demo", LeaseDuration: 4 * time.Second, ControlSocket: "@leader-election-test"}
}

// fakeElector is an Elector whose answers the test sets; the election itself is pkg/elector's to test.
type fakeElector struct {
	cfg elector.Config

	mu         sync.Mutex
	snapshot   elector.Snapshot
	status     elector.Status
	ready      bool
	readyWhy   string
	healthy    bool
	healthyWhy string
	// stepDown answers StepDown; stepDowns counts the calls.
	stepDown  error
	stepDowns int
	subs      map[chan elector.Status]struct{}
}

func newFakeElector(cfg elector.Config) *fakeElector {
	return &fakeElector{cfg: cfg, healthy: true, healthyWhy: "ok", subs: map[chan elector.Status]struct{}{}}
}

// set changes the published state and pushes the Status to subscribers, as the election loop does.
func (f *fakeElector) set(s elector.Snapshot, st elector.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshot, f.status = s, st
	for ch := range f.subs {
		ch <- st
	}
}

func (f *fakeElector) setReady(ok bool, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready, f.readyWhy = ok, why
}

func (f *fakeElector) Status() elector.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeElector) Subscribe() (<-chan elector.Status, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan elector.Status, 16)
	ch <- f.status
	f.subs[ch] = struct{}{}
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, ch)
	}
}

func (f *fakeElector) Snapshot() elector.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshot
}

func (f *fakeElector) Config() elector.Config { return f.cfg }

func (f *fakeElector) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.readyWhy
}

func (f *fakeElector) Healthy() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy, f.healthyWhy
}

func (f *fakeElector) StepDown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stepDowns++
	return f.stepDown
}

func (f *fakeElector) stepDownCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stepDowns
}
