package elector

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// reportingController names the elector in the Events it writes (a qualified name, as the API requires).
const reportingController = "leader-election/elector"

// eventTimeout bounds one Event write; Events are best effort.
const eventTimeout = 5 * time.Second

// recorder writes Events about the Lease from its own goroutine, so the election never waits on them; when
// writes fall behind, new Events are dropped rather than queued without bound.
type recorder struct {
	api      EventAPI
	clock    clock.PassiveClock
	identity string
	problems *problemLog
	queue    chan *eventsv1.Event
}

func newRecorder(api EventAPI, clk clock.PassiveClock, identity string, problems *problemLog) *recorder {
	return &recorder{api: api, clock: clk, identity: identity, problems: problems, queue: make(chan *eventsv1.Event, 16)}
}

// record queues an Event about the Lease; it never blocks.
func (r *recorder) record(l *coordinationv1.Lease, eventType, reason, note string) {
	if l == nil {
		return
	}
	now := r.clock.Now()
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// The same naming scheme as client-go's recorder: unique per object and moment.
			Name:      fmt.Sprintf("%s.%x", l.Name, now.UnixNano()),
			Namespace: l.Namespace,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: reportingController,
		ReportingInstance:   r.identity,
		Action:              reason,
		Reason:              reason,
		Type:                eventType,
		Note:                note,
		Regarding: corev1.ObjectReference{
			APIVersion: coordinationv1.SchemeGroupVersion.String(),
			Kind:       "Lease",
			Namespace:  l.Namespace,
			Name:       l.Name,
			UID:        l.UID,
		},
	}
	select {
	case r.queue <- ev:
	default:
	}
}

// run writes queued Events until ctx ends, then those still queued for at most flushFor.
func (r *recorder) run(ctx context.Context, flushFor time.Duration) {
	for {
		select {
		case ev := <-r.queue:
			r.write(context.Background(), ev)
		case <-ctx.Done():
			deadline, cancel := context.WithTimeout(context.Background(), flushFor)
			defer cancel()
			for {
				select {
				case ev := <-r.queue:
					r.write(deadline, ev)
				default:
					return
				}
			}
		}
	}
}

func (r *recorder) write(ctx context.Context, ev *eventsv1.Event) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if err := r.api.Create(ctx, ev); err != nil {
		r.problems.failed("create event", err)
		return
	}
	r.problems.succeeded("create event")
}
