// Package elector is the election core of the elector sidecar: it takes part in the election for one Lease
// (state, decide, machine, handover, candidates, follow) and publishes its view as a Status. Serving that view
// over HTTP and exporting its metrics to Prometheus is pkg/electorhttp's job.
package elector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// shutdownReleaseTimeout bounds the release on exit, so that the process exits within a few seconds even when
// the API server is unreachable (a standby then takes over when the lease expires).
const shutdownReleaseTimeout = 2 * time.Second

// advertWithdrawTimeout bounds the write that marks this replica's candidate Lease unhealthy on exit.
const advertWithdrawTimeout = time.Second

// eventFlushTimeout is how long queued Events may still be written on exit.
const eventFlushTimeout = time.Second

// errStopped is returned by StepDown once the election loop has ended.
var errStopped = errors.New("the election has stopped")

// Options are an Elector's collaborators; the zero value selects the real clock and a discarding logger.
type Options struct {
	// Clock drives every timer; tests pass a fake one.
	Clock clock.WithDelayedExecution
	// Logger receives the elector's log.
	Logger *slog.Logger
	// AppHealth gates leadership on the application's health (nil: not gated).
	AppHealth AppHealth
	// Candidates is where this replica advertises itself and, while leading, follows the other candidates, so
	// that a leader can hand the Lease over to a chosen successor (nil: no advertisement; leaving the leadership
	// always releases the Lease to a race).
	Candidates CandidateAPI
	// Metrics receives the election's measurements (nil: not measured).
	Metrics Metrics
}

// Elector takes part in the election for one Lease and publishes its state (Status, Subscribe, Ready, Healthy).
type Elector struct {
	cfg      Config
	clock    clock.WithDelayedExecution
	leases   LeaseAPI
	log      *slog.Logger
	problems *problemLog
	metrics  Metrics
	board    *board
	recorder *recorder
	machine  *machine
	retry    backoff
	labels   *labelsFile
	health   AppHealth
	// candidates is nil when this replica does not take part in handovers (see Options.Candidates).
	candidates CandidateAPI
	advertiser *advertiser
	// stopCandidateWatch ends the leader's candidate watch; nil while it is not running.
	stopCandidateWatch context.CancelFunc
	candidateWatches   sync.WaitGroup
	stepDowns          chan chan error
	done               chan struct{}
}

// New validates cfg and prepares an election; Run takes part in it.
func New(cfg Config, leases LeaseAPI, events EventAPI, opts Options) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid election configuration: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = noMetrics{}
	}
	problems := newProblemLog(opts.Logger)
	leases = countedLeases{next: leases, metrics: metrics}
	b := newBoard()
	e := &Elector{
		cfg:       cfg,
		clock:     opts.Clock,
		leases:    leases,
		log:       opts.Logger,
		problems:  problems,
		metrics:   metrics,
		board:     b,
		recorder:  newRecorder(countedEvents{next: events, metrics: metrics}, opts.Clock, cfg.Identity, problems),
		retry:     backoffFor(cfg),
		labels:    &labelsFile{path: cfg.LabelsFile, log: opts.Logger},
		stepDowns: make(chan chan error),
		done:      make(chan struct{}),
	}
	e.machine = &machine{
		cfg: cfg, clock: opts.Clock, leases: leases, recorder: e.recorder, metrics: metrics,
		problems: problems, log: opts.Logger, board: b, retry: e.retry,
		revision: revisionOf(cfg.LabelsFile), started: opts.Clock.Now(),
	}
	if opts.Candidates != nil {
		if why := candidatesUsable(cfg); why != "" {
			opts.Logger.Warn("not advertising this replica as a candidate: a leader cannot hand over to it", "reason", why)
		} else {
			e.candidates = opts.Candidates
			e.advertiser = newAdvertiser(opts.Candidates, cfg, opts.Clock, opts.Logger, problems, b)
			e.machine.advertiser = e.advertiser
			b.setAdvertising()
		}
	}
	if opts.AppHealth != nil {
		e.health = opts.AppHealth
		e.machine.readHealth(opts.AppHealth)
	}
	e.machine.advertise()
	e.machine.publish()
	return e, nil
}

// Run takes part in the election until ctx ends, then releases the Lease if it holds it and returns. The
// returned error only reports a failed release; API trouble while running is retried, never returned.
func (e *Elector) Run(ctx context.Context) error {
	defer close(e.done)
	eventsCtx, stopEvents := context.WithCancel(context.Background())
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		e.recorder.run(eventsCtx, eventFlushTimeout)
	}()

	advertiseCtx, stopAdvertising := context.WithCancel(ctx)
	advertiseDone := make(chan struct{})
	go func() {
		defer close(advertiseDone)
		if e.advertiser != nil {
			e.advertiser.run(advertiseCtx)
		}
	}()

	followCtx, stopFollowing := context.WithCancel(ctx)
	observations := make(chan observation, 16)
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		e.follow(followCtx, observations)
	}()

	err := e.loop(ctx, observations)

	e.syncCandidateWatch(ctx, false)
	e.candidateWatches.Wait()
	stopAdvertising()
	<-advertiseDone
	if e.advertiser != nil {
		e.advertiser.withdraw(advertWithdrawTimeout)
	}
	stopFollowing()
	<-followDone
	stopEvents()
	<-eventsDone
	e.board.close()
	return err
}

// loop is the election loop: it alone changes the election state, one input at a time.
func (e *Elector) loop(ctx context.Context, observations <-chan observation) error {
	var healthChanged <-chan struct{} // nil: never ready
	if e.health != nil {
		healthChanged = e.health.Changed()
	}
	for {
		wake := e.machine.advance(ctx)
		e.syncCandidateWatch(ctx, e.machine.s.leading)
		var candidatesChanged <-chan struct{}
		if e.machine.candidates != nil {
			candidatesChanged = e.machine.candidates.changed
		}
		// Wake at least once per retry period even with nothing to do: the heartbeat /healthz checks.
		now := e.clock.Now()
		pause := e.cfg.RetryPeriod
		if !wake.IsZero() {
			pause = max(0, min(pause, wake.Sub(now)))
		}
		timer := e.clock.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			releaseCtx, cancel := context.WithTimeout(context.Background(), shutdownReleaseTimeout)
			defer cancel()
			return e.machine.shutdown(releaseCtx)
		case o := <-observations:
			e.machine.observe(o.lease, o.deletedAt)
		case <-healthChanged:
			e.machine.readHealth(e.health)
		case <-candidatesChanged:
		case <-timer.C():
		case reply := <-e.stepDowns:
			e.machine.requestStepDown(reply)
		}
		timer.Stop()
	}
}

// syncCandidateWatch runs the candidate watch while this replica leads, and only then: standbys make no requests
// for candidates.
func (e *Elector) syncCandidateWatch(ctx context.Context, leading bool) {
	switch {
	case e.candidates == nil:
	case leading && e.stopCandidateWatch == nil:
		set := newCandidateSet()
		watchCtx, cancel := context.WithCancel(ctx)
		e.stopCandidateWatch = cancel
		e.machine.candidates = set
		e.candidateWatches.Go(func() { e.watchCandidates(watchCtx, set) })
	case !leading && e.stopCandidateWatch != nil:
		e.stopCandidateWatch()
		e.stopCandidateWatch = nil
		e.machine.candidates = nil
	}
}

// StepDown hands the Lease over to a healthy candidate, or releases it, if this replica holds it (ErrNotLeader
// otherwise) and keeps this replica from taking it back for one lease duration, unless nobody else has taken it
// by then. The leader first leaves the Service for ServiceLeaveTime (its readiness fails, it keeps renewing), so
// StepDown returns after that.
func (e *Elector) StepDown(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case e.stepDowns <- reply:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errStopped
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status is this replica's view of the election now.
func (e *Elector) Status() Status {
	return statusOf(e.board.current(), e.clock.Now(), e.cfg)
}

// Ready reports whether /readyz answers 200, and why not.
func (e *Elector) Ready() (bool, string) {
	labelled := e.cfg.Readiness == ReadinessMember && e.labels.labelledLeader()
	return ready(e.board.current(), e.board.watch(), labelled, e.clock.Now(), e.cfg)
}

// Healthy reports whether /healthz answers 200, and why not.
func (e *Elector) Healthy() (bool, string) {
	return healthy(e.board.lastBeat(), e.clock.Now(), e.cfg)
}

// Subscribe returns a channel that first holds the current Status, then every change (a slow reader skips
// intermediate states but always ends on the current one), and is closed when Run returns; cancel ends the
// subscription.
func (e *Elector) Subscribe() (updates <-chan Status, cancel func()) {
	return e.board.subscribe(func(s Snapshot) Status { return statusOf(s, e.clock.Now(), e.cfg) })
}

// Snapshot is what the election loop last published.
func (e *Elector) Snapshot() Snapshot {
	return e.board.current()
}

// Config is the configuration this elector runs with.
func (e *Elector) Config() Config {
	return e.cfg
}
