package inject

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// FuzzMutate feeds arbitrary annotation values and pod shapes to Mutate: it must never panic, must refuse
// without changing the pod, and an injected pod must be left alone by a second call.
func FuzzMutate(f *testing.F) {
	f.Add("true", "web", "15s", "10s", "2s", "8642", "label", false, []byte(`{"spec":{"containers":[{"name":"app","ports":[{"containerPort":8642}]}]}}`))
	f.Add("false", "", "1s", "1h", "-1s", "0", "readiness", true, []byte(`{}`))
	f.Add("true", "Bad_Name", "15500ms", "10s", "2s", "65536", "x", true, []byte(`{"spec":{"automountServiceAccountToken":false}}`))
	f.Fuzz(func(t *testing.T, enabled, lease, dur, renew, retry, port, traffic string, enforced bool, podJSON []byte) {
		pod := deploymentPod(nil)
		_ = yaml.Unmarshal(podJSON, pod) // any shape that decodes, over a valid replica
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		for k, v := range map[string]string{
			AnnotationEnabled: enabled, AnnotationLeaseName: lease, AnnotationLeaseDuration: dur,
			AnnotationRenewDeadline: renew, AnnotationRetryPeriod: retry, AnnotationPort: port, AnnotationTraffic: traffic,
		} {
			if v != "" {
				pod.Annotations[k] = v
			}
		}
		before := pod.DeepCopy()
		out, changed, err := Mutate(pod, testConfig(), enforced)
		if !equality.Semantic.DeepEqual(before, pod) {
			t.Fatal("Mutate modified its input")
		}
		if err != nil || !changed {
			return
		}
		if !hasContainer(out, ContainerName) || out.Annotations[AnnotationInjected] == "" {
			t.Fatal("an injected pod lacks the elector or the injected annotation")
		}
		again, changedAgain, err := Mutate(out, testConfig(), enforced)
		if err != nil || changedAgain || again != out {
			t.Fatalf("reinvocation: changed=%v err=%v", changedAgain, err)
		}
	})
}
