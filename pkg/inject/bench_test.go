package inject

import "testing"

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
