package elector

import (
	"context"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
)

// advertiser keeps this replica's candidate Lease current from a goroutine of its own, so that the election loop
// never waits on it: the loop offers the latest advertisement, the advertiser writes it at most once per retry
// period (a health check that flaps costs one write per retry period at most), retrying failures with the
// standby backoff. It writes nothing periodically. One write is exempt from the pause: the first that says
// healthy. A new pod advertises itself unhealthy ("not checked yet") as it starts and healthy once its first
// check passes, often within the retry period; member readiness waits for that healthy advertisement, so the
// pause would hold every new pod of a rollout back by up to a retry period for nothing.
type advertiser struct {
	api      CandidateAPI
	cfg      Config
	clock    clock.WithDelayedExecution
	log      *slog.Logger
	problems *problemLog
	board    *board
	retry    backoff
	want     chan candidate
	// current is the candidate Lease as last written or read (nil: unknown); only run, then withdraw, use it.
	current *coordinationv1.Lease
	// last is the advertisement last written.
	last candidate
	// saidHealthy is set once an advertisement saying healthy was written.
	saidHealthy bool
}

func newAdvertiser(api CandidateAPI, cfg Config, clk clock.WithDelayedExecution, log *slog.Logger, problems *problemLog, b *board) *advertiser {
	return &advertiser{api: api, cfg: cfg, clock: clk, log: log, problems: problems, board: b, retry: backoffFor(cfg),
		want: make(chan candidate, 1)}
}

// offer asks for me to be advertised; a newer offer replaces one not yet written. It never blocks.
func (a *advertiser) offer(me candidate) {
	for {
		select {
		case a.want <- me:
			return
		default:
		}
		select {
		case <-a.want:
		default:
		}
	}
}

// run writes offered advertisements until ctx ends.
func (a *advertiser) run(ctx context.Context) {
	var (
		lastWrite time.Time
		failures  int
	)
	for {
		var me candidate
		select {
		case me = <-a.want:
		case <-ctx.Done():
			return
		}
		for {
			firstHealthy := me.Healthy && !a.saidHealthy
			if wait := lastWrite.Add(a.cfg.RetryPeriod).Sub(a.clock.Now()); !lastWrite.IsZero() && !firstHealthy && wait > 0 {
				if !a.sleep(ctx, wait) {
					return
				}
			}
			select {
			case newer := <-a.want: // coalesce what arrived meanwhile
				me = newer
			default:
			}
			out, err := a.write(ctx, a.current, me)
			lastWrite = a.clock.Now()
			if err == nil {
				a.current, a.last, failures = out, me, 0
				a.saidHealthy = a.saidHealthy || me.Healthy
				a.problems.succeeded("write the candidate Lease")
				a.board.setAdvertised(me.Healthy)
				break
			}
			if ctx.Err() != nil {
				return
			}
			a.current = nil // read it again before the next attempt
			if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
				failures++
				a.problems.failed("write the candidate Lease", err)
				if !a.sleep(ctx, a.retry.delay(failures)) {
					return
				}
			}
		}
	}
}

// withdraw marks the advertisement unhealthy on exit, so that no leader hands over to a replica that is going
// away (the garbage collector deletes the candidate Lease only once the pod is gone). Best effort, within
// timeout; call it after run returned.
func (a *advertiser) withdraw(timeout time.Duration) {
	if a.current == nil || !a.last.Healthy {
		return // never written, or already says unhealthy
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	me := a.last
	me.Healthy = false
	if _, err := a.write(ctx, a.current, me); err != nil {
		a.log.Info("could not mark the candidate Lease unhealthy on exit", "error", err)
	}
}

// write creates or updates the candidate Lease (current: its last known state, nil to find out).
func (a *advertiser) write(ctx context.Context, current *coordinationv1.Lease, me candidate) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RetryPeriod)
	defer cancel()
	desired := candidateLease(a.cfg, me, a.clock.Now())
	if current == nil {
		got, err := a.api.Get(ctx, desired.Name)
		switch {
		case apierrors.IsNotFound(err):
			return a.api.Create(ctx, desired)
		case err != nil:
			return nil, err
		}
		current = got
	}
	// Keep what others may have added (labels of a tool, the UID), replace what this replica advertises.
	next := current.DeepCopy()
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	for k, v := range desired.Labels {
		next.Labels[k] = v
	}
	for k, v := range desired.Annotations {
		next.Annotations[k] = v
	}
	next.OwnerReferences = desired.OwnerReferences
	next.Spec = desired.Spec
	return a.api.Update(ctx, next)
}

// sleep waits d, false when ctx ended first.
func (a *advertiser) sleep(ctx context.Context, d time.Duration) bool {
	t := a.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
