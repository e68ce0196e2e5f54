package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/leader-election/leader-election/pkg/contract"
)

// Admission outcomes, the values of the outcome label of leader_election_webhook_admissions_total.
const (
	OutcomeInjected = "injected"
	OutcomeSkipped  = "skipped"
	OutcomeRefused  = "refused"
	OutcomeError    = "error"
)

// Event reasons the webhook records on the owner of a pod it admits (docs/observability.md).
const (
	ReasonInjected = "ElectorInjected"
	ReasonRefused  = "InjectionRefused"
)

// EventRecorder is the part of controller-runtime's events.k8s.io recorder the webhook uses.
type EventRecorder interface {
	Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Observer counts what the admission handlers decide and records an Event on the pod's owner (its ReplicaSet,
// StatefulSet, ...) when a pod is injected or refused, so that `kubectl describe` of the owner says why its pods
// are missing. The pod has no name yet at admission, so the Event goes on the owner named by its ownerReferences,
// with the UID they carry: nothing is read from the API server. The admission path pays for a counter and a
// channel send; owners are decoded and Events written from a queue of their own, dropped when it is full (256
// Events, or queueBytesLimit of pods).
type Observer struct {
	admissions *prometheus.CounterVec
	dropped    prometheus.Counter
	events     EventRecorder
	queue      chan ownerEvent
	// queuedBytes is what the queue holds of pods and notes, kept under queueBytesLimit.
	queuedBytes atomic.Int64
}

// ownerEvent is an Event waiting for its pod's owner to be decoded.
type ownerEvent struct {
	raw       []byte
	namespace string
	eventType string
	reason    string
	note      string
}

// noteLimit keeps an Event's note under the API's limit of 1024 bytes.
const noteLimit = 1000

// queueBytesLimit bounds the pods the queue holds: a pod's JSON may be megabytes, and 256 of them would take the
// webhook past its memory limit (128Mi in the chart).
const queueBytesLimit = 8 << 20

// NewObserver registers the admission metrics on reg. events may be nil: then no Events are recorded.
func NewObserver(reg prometheus.Registerer, events EventRecorder) (*Observer, error) {
	o := &Observer{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_webhook_admissions_total",
			Help: "Admission requests by webhook path and outcome (injected, skipped, refused, error); reason is the " +
				"key or pod field at fault for a refusal (docs/observability.md), the HTTP status code for an error.",
		}, []string{"webhook", "outcome", "reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leader_election_webhook_events_dropped_total",
			Help: "Events about admitted or refused pods that were dropped because the queue was full.",
		}),
		events: events,
		queue:  make(chan ownerEvent, 256),
	}
	for _, c := range []prometheus.Collector{o.admissions, o.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Observe wraps the handler of one webhook path.
func (o *Observer) Observe(path string, next admission.Handler) admission.Handler {
	// Present from the start, so that rates and alerts see zeros rather than nothing.
	for _, outcome := range []string{OutcomeInjected, OutcomeSkipped} {
		o.admissions.WithLabelValues(path, outcome, "")
	}
	o.admissions.WithLabelValues(path, OutcomeError, strconv.Itoa(http.StatusInternalServerError))
	return &observed{observer: o, path: path, next: next}
}

type observed struct {
	observer *Observer
	path     string
	next     admission.Handler
}

// Handle implements admission.Handler.
func (h *observed) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp := h.next.Handle(ctx, req)
	outcome, reason := outcomeOf(resp)
	h.observer.admissions.WithLabelValues(h.path, outcome, reason).Inc()
	// Dry-run requests have no side effects, Events included.
	if req.DryRun != nil && *req.DryRun {
		return resp
	}
	switch outcome {
	case OutcomeInjected:
		h.observer.enqueue(req, corev1.EventTypeNormal, ReasonInjected, "injected the leader-election elector into a new pod")
	case OutcomeRefused:
		h.observer.enqueue(req, corev1.EventTypeWarning, ReasonRefused, "refused a new pod: "+resp.Result.Message)
	}
	return resp
}

// outcomeOf classifies a response: a patch is an injection, an allowance without one a pod left alone, a 403
// a refusal (admission.Denied), anything else an error.
func outcomeOf(resp admission.Response) (outcome, reason string) {
	switch {
	case resp.Allowed && len(resp.Patches) > 0:
		return OutcomeInjected, ""
	case resp.Allowed:
		return OutcomeSkipped, ""
	case resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return OutcomeRefused, keyAtFault(resp.Result.Message)
	case resp.Result != nil && resp.Result.Code != 0:
		return OutcomeError, strconv.Itoa(int(resp.Result.Code))
	}
	return OutcomeError, strconv.Itoa(http.StatusInternalServerError)
}

// faults are what a refusal message can name as the cause, each with its label value: the annotation and label
// keys (pkg/inject names the key at fault in every refusal about one), the pod fields some shapes are refused
// for, and a container that takes the elector's name. A fixed set, so the metric's cardinality is bounded.
// TestEveryKeyCanBeAtFault checks that every key pkg/inject defines is here.
var faults = []struct{ match, reason string }{
	{contract.AnnotationEnabled, contract.AnnotationEnabled},
	{contract.AnnotationLeaseName, contract.AnnotationLeaseName},
	{contract.AnnotationLeaseDuration, contract.AnnotationLeaseDuration},
	{contract.AnnotationRenewDeadline, contract.AnnotationRenewDeadline},
	{contract.AnnotationRetryPeriod, contract.AnnotationRetryPeriod},
	{contract.AnnotationPort, contract.AnnotationPort},
	{contract.AnnotationTraffic, contract.AnnotationTraffic},
	{contract.AnnotationImage, contract.AnnotationImage},
	{contract.AnnotationCPURequest, contract.AnnotationCPURequest},
	{contract.AnnotationCPULimit, contract.AnnotationCPULimit},
	{contract.AnnotationMemoryRequest, contract.AnnotationMemoryRequest},
	{contract.AnnotationMemoryLimit, contract.AnnotationMemoryLimit},
	{contract.AnnotationMesh, contract.AnnotationMesh},
	{contract.AnnotationHealthCheck, contract.AnnotationHealthCheck},
	{contract.AnnotationHealthContainer, contract.AnnotationHealthContainer},
	{contract.AnnotationHealthFailureThreshold, contract.AnnotationHealthFailureThreshold},
	{contract.AnnotationHealthGate, contract.AnnotationHealthGate},
	{contract.AnnotationHandover, contract.AnnotationHandover},
	{contract.AnnotationInjected, contract.AnnotationInjected},
	{contract.LabelEnforce, contract.LabelEnforce},
	{"spec.hostNetwork", "spec.hostNetwork"},
	{"spec.os.name", "spec.os.name"},
	{"spec.nodeSelector", "spec.nodeSelector"},
	{"container name", "container-name"},
	{"port name", "port-name"},
}

// keyAtFault is the reason of the fault a refusal message names first, or "other". No match string is a
// prefix of another, so the first match is the fault itself.
func keyAtFault(msg string) string {
	reason, at := "other", len(msg)
	for _, f := range faults {
		if i := strings.Index(msg, f.match); i >= 0 && i < at {
			reason, at = f.reason, i
		}
	}
	return reason
}

func (o *Observer) enqueue(req admission.Request, eventType, reason, note string) {
	if o.events == nil {
		return
	}
	ev := ownerEvent{raw: req.Object.Raw, namespace: req.Namespace, eventType: eventType, reason: reason, note: truncate(note, noteLimit)}
	size := ev.size()
	if o.queuedBytes.Add(size) > queueBytesLimit {
		o.queuedBytes.Add(-size)
		o.dropped.Inc()
		return
	}
	select {
	case o.queue <- ev:
	default:
		o.queuedBytes.Add(-size)
		o.dropped.Inc()
	}
}

// size is what the event holds in memory, for queueBytesLimit.
func (ev ownerEvent) size() int64 { return int64(len(ev.raw) + len(ev.note)) }

// Start writes queued Events until ctx ends (a manager.Runnable).
func (o *Observer) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-o.queue:
			o.record(ev)
		}
	}
}

// NeedLeaderElection is false: every replica records what it admitted.
func (o *Observer) NeedLeaderElection() bool { return false }

func (o *Observer) record(ev ownerEvent) {
	o.queuedBytes.Add(-ev.size())
	owner, err := ownerOf(ev.raw, ev.namespace)
	if err != nil || owner == nil {
		return // a pod without an owner was created by someone who sees the answer directly
	}
	o.events.Eventf(owner, nil, ev.eventType, ev.reason, "Admit", "%s", ev.note)
}

// ownerOf returns a reference to the pod's controlling owner (else its first owner), from the raw pod.
func ownerOf(raw []byte, namespace string) (*corev1.ObjectReference, error) {
	var pod struct {
		Metadata struct {
			OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, err
	}
	refs := pod.Metadata.OwnerReferences
	if len(refs) == 0 {
		return nil, nil
	}
	ref := metav1.GetControllerOfNoCopy(&metav1.ObjectMeta{OwnerReferences: refs})
	if ref == nil {
		ref = &refs[0]
	}
	if ref.UID == "" || ref.Name == "" {
		return nil, errors.New("owner reference without a name or UID")
	}
	return &corev1.ObjectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, Namespace: namespace, UID: ref.UID}, nil
}

// truncate shortens s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
