package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/leader-election/leader-election/pkg/contract"
)

// TestRecognisesPolicyInjection: while `helm upgrade` switches admission modes, the MutatingAdmissionPolicies
// inject before the webhook sees the pod. The webhook accepts their injection of its own version as it is, and
// nothing else that merely carries their mark.
func TestRecognisesPolicyInjection(t *testing.T) {
	cfg := testConfig()
	genuine := readPod(t, "testdata/policy-injected.in.yaml")
	for _, tc := range []struct {
		name     string
		injected string
		// refused is a substring of the refusal; empty means accepted unchanged.
		refused string
	}{
		{"this version's policy injection", "v0.1.0/policy", ""},
		{"another version's policy injection", "v0.0.9/policy", `annotation leader-election/injected is "v0.0.9/policy", want "v0.1.0/`},
		{"the suffix without the version", "policy", `annotation leader-election/injected is "policy"`},
		{"the suffix in another case", "v0.1.0/Policy", `annotation leader-election/injected is "v0.1.0/Policy"`},
		{"the suffix with more after it", "v0.1.0/policy/x", `annotation leader-election/injected is "v0.1.0/policy/x"`},
		{"a stale settings hash", "v0.1.0/000000000000", `annotation leader-election/injected is "v0.1.0/000000000000"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := genuine.DeepCopy()
			pod.Annotations[contract.AnnotationInjected] = tc.injected
			out, changed, err := Mutate(pod, cfg, false)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused == "" && (changed || !equality.Semantic.DeepEqual(out, pod)):
				t.Fatalf("changed (changed=%v): a genuine injection must be accepted as it is, never injected twice", changed)
			case tc.refused != "" && err == nil:
				t.Fatalf("accepted, want refused with %q", tc.refused)
			case tc.refused != "" && !strings.Contains(err.Error(), tc.refused):
				t.Fatalf("refused with %v, want %q", err, tc.refused)
			}
		})
	}

	t.Run("a copied role label is removed, nothing else", func(t *testing.T) {
		pod := genuine.DeepCopy()
		pod.Labels[contract.LabelRole] = contract.RoleLeader
		out, changed, err := Mutate(pod, cfg, true)
		if err != nil || !changed {
			t.Fatalf("changed=%v err=%v, want the role label removed", changed, err)
		}
		if _, set := out.Labels[contract.LabelRole]; set || !equality.Semantic.DeepEqual(out.Spec, genuine.Spec) || len(out.Spec.InitContainers) != 1 {
			t.Errorf("want the pod as the policies injected it without %s: labels %v, %d init containers", contract.LabelRole, out.Labels, len(out.Spec.InitContainers))
		}
	})

	t.Run("the policies' injection in the other sidecar mode", func(t *testing.T) {
		container := cfg
		container.Sidecar = SidecarContainer
		_, _, err := Mutate(genuine.DeepCopy(), container, false)
		if err == nil || !strings.Contains(err.Error(), "the container is in the wrong list for sidecar mode container") {
			t.Fatalf("got %v, want refused: the webhook would inject a regular container", err)
		}
	})
}

// TestRecognisesPolicyDurations: the policies write an election timing finer than a millisecond as annotated
// (250500us), where the webhook prints it as Go does (250.5ms). The webhook accepts the policies' spelling of the
// same duration, and only theirs.
func TestRecognisesPolicyDurations(t *testing.T) {
	cfg := testConfig()
	pod := readPod(t, "testdata/policy-injected.in.yaml")
	pod.Annotations[contract.AnnotationLeaseDuration], pod.Annotations[contract.AnnotationRenewDeadline], pod.Annotations[contract.AnnotationRetryPeriod] = "4s", "2s", "250500us"
	fresh, _, err := Mutate(withoutElector(pod), cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	retryIs := func(p *corev1.Pod, v string) {
		c, _ := containerNamed(p, contract.ContainerName)
		for i := range c.Env {
			if c.Env[i].Name == contract.EnvRetryPeriod {
				c.Env[i].Value = v
			}
		}
	}
	for _, tc := range []struct {
		name, injected, retry string
		accepted              bool
	}{
		{"the policies' spelling", "v0.1.0/policy", "250500us", true},
		{"Go's spelling under the policies' mark", "v0.1.0/policy", "250.5ms", true},
		{"another duration under the policies' mark", "v0.1.0/policy", "250501us", false},
		{"not a duration under the policies' mark", "v0.1.0/policy", "250500", false},
		{"the policies' spelling under the webhook's hash", fresh.Annotations[contract.AnnotationInjected], "250500us", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fresh.DeepCopy()
			p.Annotations[contract.AnnotationInjected] = tc.injected
			retryIs(p, tc.retry)
			out, changed, err := Mutate(p, cfg, false)
			switch {
			case tc.accepted && (err != nil || changed || !equality.Semantic.DeepEqual(out, p)):
				t.Fatalf("changed=%v err=%v, want accepted as it is", changed, err)
			case !tc.accepted && (err == nil || !strings.Contains(err.Error(), "its env differ")):
				t.Fatalf("got %v, want refused: its env differ", err)
			}
		})
	}
}
