package webhook

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/contract"
)

// recordedEvent is one call to the fake recorder.
type recordedEvent struct {
	regarding         *corev1.ObjectReference
	eventType, reason string
	note              string
}

type fakeRecorder struct{ events []recordedEvent }

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	ref, _ := regarding.(*corev1.ObjectReference)
	f.events = append(f.events, recordedEvent{regarding: ref, eventType: eventtype, reason: reason, note: fmtNote(note, args)})
}

func fmtNote(note string, args []any) string {
	if note == "%s" && len(args) == 1 {
		return args[0].(string)
	}
	return note
}

// drain writes every queued Event, as Start does.
func drain(o *Observer) {
	for {
		select {
		case ev := <-o.queue:
			o.record(ev)
		default:
			return
		}
	}
}

func ownedByRS(pod *corev1.Pod) *corev1.Pod {
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5f7d8", UID: "rs-uid", Controller: ptr.To(true)}}
	pod.Labels = map[string]string{"pod-template-hash": "5f7d8"}
	return pod
}

func admissionsCount(t *testing.T, reg *prometheus.Registry, outcome, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "leader_election_webhook_admissions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["webhook"] == PathOptIn && labels["outcome"] == outcome && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestObserverCountsOutcomesAndRecordsEventsOnTheOwner(t *testing.T) {
	badPort := func() *corev1.Pod {
		p := optedIn()
		p.Annotations[contract.AnnotationPort] = "99999"
		return p
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		dryRun    bool
		binderErr error
		outcome   string
		reason    string
		// wantEvent is the Event's reason on the ReplicaSet, "" for none.
		wantEvent string
		wantNote  string
	}{
		{"injected replica", ownedByRS(optedIn()), false, nil, OutcomeInjected, "", ReasonInjected, "injected the leader-election elector"},
		{"refused replica", ownedByRS(badPort()), false, nil, OutcomeRefused, contract.AnnotationPort, ReasonRefused, `annotation leader-election/port: "99999" is not accepted`},
		{"refused in a dry run: counted, no Event", ownedByRS(badPort()), true, nil, OutcomeRefused, contract.AnnotationPort, "", ""},
		{"injected in a dry run: no Event", ownedByRS(optedIn()), true, nil, OutcomeInjected, "", "", ""},
		{"refused pod without an owner: no Event", badPort(), false, nil, OutcomeRefused, contract.AnnotationPort, "", ""},
		{"pod left alone", ownedByRS(plainPodForObserver()), false, nil, OutcomeSkipped, "", "", ""},
		{"binding failed", ownedByRS(optedIn()), false, errors.New("etcd is down"), OutcomeError, "500", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			rec := &fakeRecorder{}
			o, err := NewObserver(reg, rec)
			if err != nil {
				t.Fatal(err)
			}
			h := o.Observe(PathOptIn, newInjector(&recordingBinder{err: tc.binderErr}))
			h.Handle(t.Context(), podRequest(t, tc.pod, admissionv1.Create, tc.dryRun))
			drain(o)

			if got := admissionsCount(t, reg, tc.outcome, tc.reason); got != 1 {
				t.Errorf("admissions{outcome=%q, reason=%q} = %g, want 1", tc.outcome, tc.reason, got)
			}
			if tc.wantEvent == "" {
				if len(rec.events) != 0 {
					t.Fatalf("recorded %+v, want no Event", rec.events)
				}
				return
			}
			if len(rec.events) != 1 {
				t.Fatalf("recorded %d Events, want one %s", len(rec.events), tc.wantEvent)
			}
			ev := rec.events[0]
			want := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Namespace: "shop", Name: "web-5f7d8", UID: "rs-uid"}
			if ev.regarding == nil || *ev.regarding != want {
				t.Errorf("Event regarding %+v, want the ReplicaSet %+v", ev.regarding, want)
			}
			if ev.reason != tc.wantEvent || !strings.Contains(ev.note, tc.wantNote) {
				t.Errorf("Event %s %q, want %s containing %q", ev.reason, ev.note, tc.wantEvent, tc.wantNote)
			}
		})
	}
}

func plainPodForObserver() *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "a"}}}}
}

func TestObserverDropsEventsWhenTheQueueIsFullAndSaysSo(t *testing.T) {
	reg := prometheus.NewRegistry()
	o, err := NewObserver(reg, &fakeRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	h := o.Observe(PathOptIn, newInjector(&recordingBinder{}))
	req := podRequest(t, ownedByRS(optedIn()), admissionv1.Create, false)
	for range cap(o.queue) + 3 {
		h.Handle(t.Context(), req)
	}
	if got := counterValue(t, reg, "leader_election_webhook_events_dropped_total"); got != 3 {
		t.Errorf("dropped %g Events, want 3", got)
	}
}

// TestObserverQueueHoldsBoundedBytes: the queue keeps each pod's raw JSON until its owner is decoded, and a pod
// may be megabytes (annotations alone up to 256 KiB); a queue full of large pods must stay within a few MiB of
// the webhook's 128 MiB limit, dropping (and counting) what does not fit.
func TestObserverQueueHoldsBoundedBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	o, err := NewObserver(reg, &fakeRecorder{})
	if err != nil {
		t.Fatal(err)
	}
	h := o.Observe(PathOptIn, newInjector(&recordingBinder{}))
	pod := ownedByRS(optedIn())
	pod.Annotations[contract.AnnotationPort] = "99999" // refused: an Event is queued
	pod.Annotations["example.com/blob"] = strings.Repeat("x", 200<<10)
	req := podRequest(t, pod, admissionv1.Create, false)
	for range cap(o.queue) {
		h.Handle(t.Context(), req)
	}
	held := 0
	for len(o.queue) > 0 {
		ev := <-o.queue
		held += len(ev.raw) + len(ev.note)
		o.record(ev)
	}
	if held > queueBytesLimit {
		t.Errorf("the queue held %d MiB of pods, want at most %d MiB", held>>20, queueBytesLimit>>20)
	}
	if got := counterValue(t, reg, "leader_election_webhook_events_dropped_total"); got == 0 {
		t.Errorf("no Event dropped although %d MiB were offered", cap(o.queue)*len(req.Object.Raw)>>20)
	}
	if got := o.queuedBytes.Load(); got != 0 {
		t.Errorf("%d bytes still counted as queued after the queue was drained", got)
	}
}

// counterValue reads an unlabelled counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

func TestKeyAtFaultIsTheFirstKeyTheMessageNames(t *testing.T) {
	for msg, want := range map[string]string{
		`annotation leader-election/port: "99999" is not accepted: want a port number from 1 to 65535`:                                                      contract.AnnotationPort,
		"annotations leader-election/lease-duration, leader-election/renew-deadline, leader-election/retry-period: 3s < 5s":                                 contract.AnnotationLeaseDuration,
		"annotation leader-election/lease-name: required for a pod without an owner":                                                                        contract.AnnotationLeaseName,
		`namespace policy leader-election/enforce="true": ... annotation leader-election/enabled="false" is not allowed here`:                               contract.LabelEnforce,
		`container name "leader-elector" is reserved for the injected elector; rename the pod's container`:                                                  "container-name",
		`port name "elector-http" is reserved for the injected elector; rename the port of the pod's container "app"`:                                       "port-name",
		`spec.hostNetwork is true: ... leader election is not available for host-network pods (namespace policy leader-election/enforce="true" enrols ...)`: "spec.hostNetwork",
		"decoding the pod: unexpected end of JSON input":                                                                                                    "other",
	} {
		if got := keyAtFault(msg); got != want {
			t.Errorf("keyAtFault(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestTruncateKeepsNotesUnderTheAPILimit(t *testing.T) {
	long := strings.Repeat("é", 800) // 1600 bytes
	got := truncate(long, noteLimit)
	if len(got) > noteLimit || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("truncate: %d bytes, suffix %q", len(got), got[len(got)-4:])
	}
	if truncate("short", noteLimit) != "short" {
		t.Error("a short note was changed")
	}
}

// TestEveryKeyCanBeAtFault: every annotation key and the enforce label pkg/contract defines is a fault the metric
// can name, so a new annotation is not counted as "other". Read from keys.go's source, which lists them all.
func TestEveryKeyCanBeAtFault(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "contract", "keys.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range faults {
		known[f.match] = true
	}
	var checked int
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				if !strings.HasPrefix(name.Name, "Annotation") && name.Name != "LabelEnforce" {
					continue
				}
				checked++
				key := contract.Prefix + strings.TrimPrefix(exprString(t, spec.(*ast.ValueSpec).Values[0]), "Prefix + ")
				if !known[key] {
					t.Errorf("%s (%s) is not in faults: a refusal naming it would be counted as \"other\"", name.Name, key)
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("found only %d keys in keys.go: is the parser looking at the right file?", checked)
	}
}

// exprString renders `Prefix + "enabled"` as `Prefix + enabled`.
func exprString(t *testing.T, e ast.Expr) string {
	t.Helper()
	bin, ok := e.(*ast.BinaryExpr)
	if !ok {
		t.Fatalf("key constant %T is not Prefix + \"...\"", e)
	}
	lit, ok := bin.Y.(*ast.BasicLit)
	if !ok {
		t.Fatalf("key constant's right side %T is not a string", bin.Y)
	}
	v, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	return "Prefix + " + v
}
