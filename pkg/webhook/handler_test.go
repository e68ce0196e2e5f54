package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
)

// recordingBinder remembers what it was asked to check and can fail on demand.
type recordingBinder struct {
	calls []string
	err   error
}

func (b *recordingBinder) Check(_ context.Context, ns, sa string) error {
	b.calls = append(b.calls, ns+"/"+sa)
	return b.err
}

func newInjector(b Binder) *PodInjector {
	return &PodInjector{
		Config:   inject.DefaultConfig("v0.1.0", "leader-election/elector:v0.1.0"),
		Binder:   b,
		Excluded: NewNamespaceSet([]string{"kube-system", "leader-election-system"}),
	}
}

func podRequest(t testing.TB, pod *corev1.Pod, op admissionv1.Operation, dryRun bool) admission.Request {
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return rawRequest(raw, op, dryRun)
}

// rawRequest is an admission request for a pod given as the API server sends it, in JSON.
func rawRequest(raw []byte, op admissionv1.Operation, dryRun bool) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "req-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "shop",
		Operation: op,
		DryRun:    ptr.To(dryRun),
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func optedIn() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{
			contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web",
		}},
		Spec: corev1.PodSpec{ServiceAccountName: "runner", Containers: []corev1.Container{{Name: "app", Image: "a"}}},
	}
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name       string
		pod        *corev1.Pod
		op         admissionv1.Operation
		dryRun     bool
		namespace  string
		binderErr  error
		wantAllow  bool
		wantPatch  bool
		wantChecks int
		wantReason string
	}{
		{name: "opted-in pod is patched; its ServiceAccount checked, nothing bound", pod: optedIn(), op: admissionv1.Create, wantAllow: true, wantPatch: true, wantChecks: 1},
		{name: "dry run is patched and checked (Check writes nothing)", pod: optedIn(), op: admissionv1.Create, dryRun: true, wantAllow: true, wantPatch: true, wantChecks: 1},
		{name: "update is allowed unchanged", pod: optedIn(), op: admissionv1.Update, wantAllow: true},
		{name: "unannotated pod is allowed unchanged", pod: &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}}, op: admissionv1.Create, wantAllow: true},
		{name: "bad annotation is denied with its reason", pod: func() *corev1.Pod {
			p := optedIn()
			p.Annotations[contract.AnnotationTraffic] = "dns"
			return p
		}(), op: admissionv1.Create, wantReason: `annotation leader-election/traffic: "dns" is not accepted`},
		{name: "excluded namespace is refused and nothing is bound", pod: optedIn(), op: admissionv1.Create, namespace: "kube-system",
			wantReason: "namespace kube-system is excluded from leader-election by the installation"},
		{name: "binding failure refuses the pod", pod: optedIn(), op: admissionv1.Create, binderErr: errors.New("ServiceAccount shop/runner not found"),
			wantChecks: 1, wantReason: "ServiceAccount shop/runner not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &recordingBinder{err: tt.binderErr}
			req := podRequest(t, tt.pod, tt.op, tt.dryRun)
			if tt.namespace != "" {
				req.Namespace = tt.namespace
			}
			resp := newInjector(b).Handle(t.Context(), req)
			if resp.Allowed != tt.wantAllow {
				t.Fatalf("Allowed = %v (%v), want %v", resp.Allowed, resp.Result, tt.wantAllow)
			}
			if got := len(resp.Patches) > 0; got != tt.wantPatch {
				t.Errorf("patched = %v, want %v", got, tt.wantPatch)
			}
			if len(b.calls) != tt.wantChecks {
				t.Errorf("Check called %d times (%v), want %d", len(b.calls), b.calls, tt.wantChecks)
			}
			if tt.wantChecks > 0 && b.calls[0] != "shop/runner" {
				t.Errorf("checked %s, want shop/runner", b.calls[0])
			}
			if tt.wantReason != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tt.wantReason)) {
				t.Errorf("result = %+v, want a message containing %q", resp.Result, tt.wantReason)
			}
		})
	}
}

// TestPatchKeepsUnknownFields: the patch names only what the injection adds, so a field this build's
// k8s.io/api does not know (a newer API server's) is never removed, whatever shape the request's pod has.
func TestPatchKeepsUnknownFields(t *testing.T) {
	replica, err := os.ReadFile("testdata/replica-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	// The replica as kube-apiserver sends it, with fields from the future added to metadata, spec and container.
	future := bytes.Replace(replica, []byte(`"generateName"`), []byte(`"futureMetaField":{"y":2},"generateName"`), 1)
	future = bytes.Replace(future, []byte(`"restartPolicy": "Always"`), []byte(`"restartPolicy":"Always","futurePodField":true`), 1)
	future = bytes.Replace(future, []byte(`"name": "app"`), []byte(`"name":"app","fieldFromTheFuture":{"x":1}`), 1)
	for _, tc := range []struct {
		name string
		raw  string
		keep []string
	}{
		{"bare pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"leader-election/enabled":"true","leader-election/lease-name":"web"}},
			"spec":{"containers":[{"name":"app","image":"a","fieldFromTheFuture":{"x":1}}],"futurePodField":true}}`,
			[]string{`"fieldFromTheFuture":{"x":1}`, `"futurePodField":true`}},
		{"labels null, init containers with unknown fields", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":null,
			"annotations":{"leader-election/enabled":"true","leader-election/lease-name":"web"}},
			"spec":{"initContainers":[{"name":"setup","image":"s","futureInit":1}],"containers":[{"name":"app","image":"a"}],"volumes":null}}`,
			[]string{`"futureInit":1`, `"leader-election/member":"true"`}},
		{"replica as the API server sends it", string(future),
			[]string{`"futureMetaField":{"y":2}`, `"futurePodField":true`, `"fieldFromTheFuture":{"x":1}`, `"kube-api-access-7xk2p"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			req := rawRequest(raw, admissionv1.Create, false)
			resp := newInjector(&recordingBinder{}).Handle(t.Context(), req)
			if !resp.Allowed || len(resp.Patches) == 0 {
				t.Fatalf("response = %+v", resp.Result)
			}
			for _, op := range resp.Patches {
				if op.Operation == "remove" {
					t.Errorf("patch removes %s; unknown fields must survive", op.Path)
				}
			}
			ops, _ := json.Marshal(resp.Patches)
			patch, err := jsonpatchapply.DecodePatch(ops)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := patch.Apply(raw)
			if err != nil {
				t.Fatalf("the patch does not apply to the request's object: %v\n%s", err, ops)
			}
			for _, want := range append(tc.keep, `"name":"leader-elector"`) {
				if !bytes.Contains(patched, []byte(want)) {
					t.Errorf("patched pod lacks %s:\n%s", want, patched)
				}
			}
		})
	}
}

// FuzzDecode sends arbitrary bodies to the webhook's HTTP handler: it must never panic, and a body that is not
// a valid AdmissionReview must be answered with code 400 and a reason.
func FuzzDecode(f *testing.F) {
	seed := podRequest(f, optedIn(), admissionv1.Create, false)
	good, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &seed.AdmissionRequest,
	})
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"request":{"object":{"spec":{"containers":5}}}}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":null}}`))
	handler := &admission.Webhook{Handler: newInjector(&recordingBinder{})}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, PathOptIn, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		handler.ServeHTTP(rec, req)
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil {
			t.Fatalf("answer is not an AdmissionReview: %q", rec.Body.String())
		}
		if !review.Response.Allowed && review.Response.Result != nil && review.Response.Result.Code == http.StatusBadRequest &&
			review.Response.Result.Message == "" {
			t.Fatal("a 400 without a reason")
		}
	})
}

func TestMalformedReviewIs400WithReason(t *testing.T) {
	handler := &admission.Webhook{Handler: newInjector(&recordingBinder{})}
	for _, body := range []string{"not json", `{"request":{"uid":"1","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":{"spec":{"containers":5}}}}`} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, PathOptIn, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		handler.ServeHTTP(rec, req)
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
			t.Fatalf("%q: answer %q is not an AdmissionReview", body, rec.Body.String())
		}
		r := review.Response
		if r == nil || r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest || r.Result.Message == "" {
			t.Errorf("%q: response %+v, want code 400 with a reason", body, r)
		}
	}
}
