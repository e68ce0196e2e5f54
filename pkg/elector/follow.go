package elector

import (
	"context"
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
)

// observation is one state of the Lease as the watch reported it.
type observation struct {
	// lease is the Lease, nil when it does not exist.
	lease *coordinationv1.Lease
	// deletedAt is the resource version of the deletion when lease is nil because it was deleted.
	deletedAt string
}

// follow keeps a watch on the Lease and sends what it sees to the loop until ctx ends. This is how standbys
// learn of changes without polling: one long request, re-established only when it ends or fails.
func (e *Elector) follow(ctx context.Context, out chan<- observation) {
	send := func(o observation) bool {
		select {
		case out <- o:
			return true
		case <-ctx.Done():
			return false
		}
	}
	failures := 0
	fail := func(op string, err error) {
		e.board.setWatch(false, e.clock.Now())
		if ctx.Err() != nil {
			return
		}
		e.problems.failed(op, err)
		failures++
		select {
		case <-e.clock.After(e.retry.delay(failures)):
		case <-ctx.Done():
		}
	}
	// resourceVersion is where the next watch starts; "" means read the Lease first and watch from the read's
	// resource version, so that nothing that happens in between (a deletion) goes unseen. When the Lease does
	// not exist, the watch starts from "": the server then sends the Lease as soon as anyone creates it.
	resourceVersion := ""
	for ctx.Err() == nil {
		if resourceVersion == "" {
			l, err := e.getLease(ctx)
			switch {
			case apierrors.IsNotFound(err):
				l = nil
			case err != nil:
				fail("read the Lease", err)
				continue
			}
			e.problems.succeeded("read the Lease")
			if l != nil {
				resourceVersion = l.ResourceVersion
			}
			if !send(observation{lease: l}) {
				return
			}
		}
		w, err := e.startWatch(ctx, resourceVersion)
		if err != nil {
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				resourceVersion = "" // too far behind: start over from a read, which cannot be too old
				continue
			}
			fail("watch the Lease", err)
			continue
		}
		started := e.clock.Now()
		e.board.setWatch(true, started)
		e.problems.succeeded("watch the Lease")
		var ok bool
		resourceVersion, ok, err = e.consume(ctx, w, resourceVersion, send)
		if !ok {
			return
		}
		if errors.Is(err, errWatchSilent) {
			// Perhaps stalled behind a proxy, perhaps only a quiet Lease: either way, start over from a read.
			e.board.setWatch(false, e.clock.Now())
			e.log.Info("restarting the Lease watch from a fresh read", "reason", err)
			resourceVersion = ""
			continue
		}
		lasted := e.clock.Since(started) >= e.cfg.RetryPeriod
		if lasted {
			failures = 0
		}
		if err == nil && !lasted {
			// Servers close watches after many minutes; one that ends at once means a broken connection,
			// and reconnecting in a tight loop would only hammer a server that is going away.
			err = errWatchClosedEarly
		}
		if err != nil {
			e.metrics.APIError("leases", "watch", err)
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				resourceVersion = "" // fell behind: start over from the current state
				continue
			}
			fail("watch the Lease", err)
		}
	}
}

// errWatchClosedEarly reports a watch that ended right after it started.
var errWatchClosedEarly = errors.New("the watch ended right after it started (connection lost?)")

// errWatchSilent reports a watch that delivered neither an event nor a bookmark for a lease duration. A live
// leader renews every retry period and the server sends bookmarks, so such a watch is probably stalled (a
// proxy that keeps the connection open but forwards nothing); at worst the Lease is only quiet, and the cost is
// one read and one watch per lease duration while nobody leads.
var errWatchSilent = errors.New("the watch delivered nothing for a lease duration")

// getLease reads the Lease within the renew deadline.
func (e *Elector) getLease(ctx context.Context) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	return e.leases.Get(ctx)
}

// startWatch opens a watch, giving up if the API server does not answer within the renew deadline. The
// watch itself runs for as long as the server keeps it open.
func (e *Elector) startWatch(ctx context.Context, resourceVersion string) (watch.Interface, error) {
	ctx, cancel := context.WithCancel(ctx)
	timer := e.clock.AfterFunc(e.cfg.RenewDeadline, cancel)
	w, err := e.leases.Watch(ctx, resourceVersion)
	timer.Stop()
	if err != nil {
		cancel()
		return nil, err
	}
	return stopBoth{Interface: w, cancel: cancel}, nil
}

// stopBoth stops a watch and releases its context.
type stopBoth struct {
	watch.Interface
	cancel context.CancelFunc
}

func (s stopBoth) Stop() {
	s.Interface.Stop()
	s.cancel()
}

// consume forwards a watch's events until it ends. It returns the resource version to resume from, false if
// ctx ended, and the error the watch ended with (nil when the server closed it normally, errWatchSilent when it
// delivered nothing for a lease duration).
func (e *Elector) consume(ctx context.Context, w watch.Interface, resourceVersion string, send func(observation) bool) (string, bool, error) {
	defer w.Stop()
	silence := e.clock.NewTimer(e.cfg.LeaseDuration)
	defer silence.Stop()
	for {
		select {
		case <-ctx.Done():
			return resourceVersion, false, nil
		case <-silence.C():
			return resourceVersion, true, errWatchSilent
		case ev, open := <-w.ResultChan():
			if !open {
				return resourceVersion, true, nil
			}
			if !silence.Stop() {
				select {
				case <-silence.C():
				default:
				}
			}
			silence.Reset(e.cfg.LeaseDuration)
			e.board.watchActive(e.clock.Now())
			switch ev.Type {
			case watch.Added, watch.Modified:
				l, isLease := ev.Object.(*coordinationv1.Lease)
				if !isLease {
					return resourceVersion, true, fmt.Errorf("watch sent a %T, not a Lease", ev.Object)
				}
				resourceVersion = l.ResourceVersion
				if !send(observation{lease: l}) {
					return resourceVersion, false, nil
				}
			case watch.Deleted:
				if acc, err := meta.Accessor(ev.Object); err == nil {
					resourceVersion = acc.GetResourceVersion()
				}
				if !send(observation{deletedAt: resourceVersion}) {
					return resourceVersion, false, nil
				}
			case watch.Bookmark:
				if acc, err := meta.Accessor(ev.Object); err == nil {
					resourceVersion = acc.GetResourceVersion()
				}
			case watch.Error:
				return resourceVersion, true, apierrors.FromObject(ev.Object)
			}
		}
	}
}
