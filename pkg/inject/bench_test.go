package inject

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-election/leader-election/pkg/contract"
)

// BenchmarkMutate measures the in-process cost of injecting one pod (target: <= 50 us, <= 150 allocs).
// BenchmarkDeepCopy is the baseline in the same run: the copy any mutating webhook must make.
func BenchmarkMutate(b *testing.B) {
	pod := deploymentPod(nil)
	cfg := testConfig()
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := Mutate(pod, cfg, false); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

func BenchmarkDeepCopy(b *testing.B) {
	pod := deploymentPod(nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = pod.DeepCopy()
	}
}

// BenchmarkMutateHealthGated injects a pod whose readinessProbe (httpGet, named port) becomes the elector's check.
func BenchmarkMutateHealthGated(b *testing.B) {
	pod := deploymentPod(nil)
	pod.Spec.Containers[0].Ports[0].Name = "http"
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
	cfg := testConfig()
	b.ReportAllocs()
	for b.Loop() {
		if out, changed, err := Mutate(pod, cfg, false); err != nil || !changed || out.Annotations[contract.AnnotationHealthGate] == "" {
			b.Fatal(changed, err)
		}
	}
}
