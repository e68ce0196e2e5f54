package inject

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
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
			pod.Annotations[AnnotationInjected] = tc.injected
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
		pod.Labels[LabelRole] = RoleLeader
		out, changed, err := Mutate(pod, cfg, true)
		if err != nil || !changed {
			t.Fatalf("changed=%v err=%v, want the role label removed", changed, err)
		}
		if _, set := out.Labels[LabelRole]; set || !equality.Semantic.DeepEqual(out.Spec, genuine.Spec) || len(out.Spec.InitContainers) != 1 {
			t.Errorf("want the pod as the policies injected it without %s: labels %v, %d init containers", LabelRole, out.Labels, len(out.Spec.InitContainers))
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
