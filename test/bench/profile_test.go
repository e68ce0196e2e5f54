package main

import (
	"testing"
	"time"
)

func TestParseTracesAndBuckets(t *testing.T) {
	out := []byte(`File: kube-apiserver
Type: cpu
-----------+-------------------------------------------------------
      10ms   runtime.memmove
             gopkg.in/evanphx/json-patch%2ev4.Patch.Apply
             k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook
-----------+-------------------------------------------------------
     1.5s   crypto/tls.(*Conn).Write
             k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook
-----------+-------------------------------------------------------
     20ms   runtime.gcDrain
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
     30ms   syscall.Syscall
-----------+-------------------------------------------------------
`)
	traces := parseTraces(out)
	if len(traces) != 4 || traces[1].value != 1500*time.Millisecond || len(traces[0].frames) != 3 {
		t.Fatalf("traces = %+v", traces)
	}
	sums := map[string]time.Duration{}
	for _, tr := range traces {
		for _, r := range apiServerBuckets {
			if r.frames == nil || tr.matches(r.frames) {
				sums[r.bucket] += tr.value
				break
			}
		}
	}
	want := map[string]time.Duration{
		apiServerBuckets[0].bucket: 20 * time.Millisecond,
		apiServerBuckets[1].bucket: 10 * time.Millisecond,
		apiServerBuckets[2].bucket: 1500 * time.Millisecond,
		"other":                    30 * time.Millisecond,
	}
	for k, v := range want {
		if sums[k] != v {
			t.Errorf("%s = %s, want %s (all: %v)", k, sums[k], v, sums)
		}
	}
}
