package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestMain sets controller-runtime's logger: unset, it prints a warning after 30 seconds that lands in the
// middle of a benchmark's output line and breaks it for benchstat and the benchmark's parser.
func TestMain(m *testing.M) {
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	os.Exit(m.Run())
}

// nopBinder binds nothing: the benchmarks measure the handler, not the API server behind the binder.
type nopBinder struct{}

func (nopBinder) Check(context.Context, string, string) error { return nil }

// benchPods are the pods the benchmarks admit. bare-pod is what a client sends (test/bench's pod: two labels,
// two annotations, one container), the size the handler's target was set for; replica-pod is a Deployment
// replica as kube-apiserver hands it to a mutating webhook: defaulted, with managedFields, an owner and the
// ServiceAccount admission's token volume, three times the fields to decode and copy.
var benchPods = []string{"bare-pod", "replica-pod"}

// podFileRequest is the admission request for testdata/<name>.json.
func podFileRequest(tb testing.TB, name string) admission.Request {
	raw, err := os.ReadFile("testdata/" + name + ".json")
	if err != nil {
		tb.Fatal(err)
	}
	return rawRequest(raw, admissionv1.Create, false)
}

// BenchmarkHandle is one admission in process: decode the pod, inject.Mutate, build the patch (target: <= 20 us,
// <= 120 allocations). The binder is a no-op; the HTTP and AdmissionReview layers are BenchmarkServeHTTP's.
func BenchmarkHandle(b *testing.B) {
	for _, name := range benchPods {
		b.Run(name, func(b *testing.B) {
			p := newInjector(nopBinder{})
			req := podFileRequest(b, name)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if resp := p.Handle(ctx, req); !resp.Allowed || len(resp.Patches) == 0 {
					b.Fatalf("not patched: %+v", resp.Result)
				}
			}
		})
	}
}

// BenchmarkServeHTTP is the whole request as controller-runtime serves it, without TLS: the AdmissionReview
// decoded, Handle, and the response with its patch encoded. It has no target; it shows what surrounds Handle.
func BenchmarkServeHTTP(b *testing.B) {
	for _, name := range benchPods {
		b.Run(name, func(b *testing.B) {
			req := podFileRequest(b, name)
			body, err := json.Marshal(admissionv1.AdmissionReview{
				TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request:  &req.AdmissionRequest,
			})
			if err != nil {
				b.Fatal(err)
			}
			handler := &admission.Webhook{Handler: newInjector(nopBinder{})}
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, PathOptIn, bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				handler.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
					b.Fatalf("answer %d: %s", rec.Code, rec.Body.Bytes())
				}
			}
		})
	}
}
