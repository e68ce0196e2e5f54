package podpatch

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/inject"
)

// futureFields are fields this build's k8s.io/api does not know, as a newer API server would send them; every
// patched pod must still carry them.
var futureFields = map[string]string{
	"metadata":  `"futureMetaField":{"x":1}`,
	"spec":      `"futurePodField":true`,
	"container": `"fieldFromTheFuture":"kept"`,
}

// withFutureFields adds futureFields to a raw pod: to metadata, to spec and to every container of both lists.
func withFutureFields(t *testing.T, raw []byte) []byte {
	t.Helper()
	var pod map[string]any
	if err := json.Unmarshal(raw, &pod); err != nil {
		t.Fatal(err)
	}
	pod["metadata"].(map[string]any)["futureMetaField"] = map[string]any{"x": 1}
	spec := pod["spec"].(map[string]any)
	spec["futurePodField"] = true
	for _, list := range []string{"initContainers", "containers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			c.(map[string]any)["fieldFromTheFuture"] = "kept"
		}
	}
	out, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// applyAndDecode builds the patch from before to after, applies it to raw as kube-apiserver would, and returns
// the result both raw and decoded.
func applyAndDecode(t *testing.T, raw []byte, before, after *corev1.Pod) ([]byte, *corev1.Pod) {
	t.Helper()
	ops, err := Build(before, after)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	encoded, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatchapply.DecodePatch(encoded)
	if err != nil {
		t.Fatalf("the patch does not decode: %v\n%s", err, encoded)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("the patch does not apply to the request's pod: %v\npatch: %s\npod: %s", err, encoded, raw)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatalf("the patched pod does not decode: %v\n%s", err, patched)
	}
	return patched, got
}

func assertSamePod(t *testing.T, got, want *corev1.Pod) {
	t.Helper()
	if !equality.Semantic.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		t.Errorf("the patched request differs from Mutate's pod\n--- patched\n%s\n--- Mutate\n%s", g, w)
	}
}

// TestPatchReproducesMutateOnEveryGoldenCase applies the patch to the raw input of every case of inject's golden
// corpus, in both sidecar modes and as in an enforcing namespace, with unknown fields added: the result must be
// exactly Mutate's pod, and the unknown fields must survive.
func TestPatchReproducesMutateOnEveryGoldenCase(t *testing.T) {
	inputs, err := filepath.Glob("../inject/testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	patched := 0
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		rawYAML, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		for _, mode := range []inject.SidecarMode{inject.SidecarNative, inject.SidecarContainer} {
			for _, enforced := range []bool{false, true} {
				t.Run(name+"/"+string(mode)+map[bool]string{true: "/enforced"}[enforced], func(t *testing.T) {
					raw := withFutureFields(t, rawYAML)
					pod := &corev1.Pod{}
					if err := json.Unmarshal(raw, pod); err != nil {
						t.Fatal(err)
					}
					cfg := inject.DefaultConfig("v0.1.0", "leader-election/elector:v0.1.0")
					cfg.Sidecar = mode
					out, changed, err := inject.Mutate(pod, cfg, enforced)
					if err != nil || !changed {
						return // refused or left alone: no patch is sent
					}
					patched++
					result, got := applyAndDecode(t, raw, pod, out)
					assertSamePod(t, got, out)
					for _, f := range futureFields {
						if !strings.Contains(string(result), f) {
							t.Errorf("the patched pod lost %s:\n%s", f, result)
						}
					}
				})
			}
		}
	}
	// The corpus holds well over ten injected shapes; far fewer means the cases were not found or not injected.
	if patched < 10 {
		t.Errorf("only %d golden cases produced a patch", patched)
	}
}

func basePod() *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "a"}}}}
}

// TestPatchShapes covers what the golden corpus may not: maps absent, null or empty in the request, keys that
// need JSON-pointer escaping, replaced and removed keys, lists absent or null.
func TestPatchShapes(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		mutate func(*corev1.Pod)
	}{
		{"labels absent, one added", `{"metadata":{},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { p.Labels = map[string]string{"leader-election/member": "true"} }},
		{"labels null, one added", `{"metadata":{"labels":null},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { p.Labels = map[string]string{"leader-election/member": "true"} }},
		{"labels empty, one added", `{"metadata":{"labels":{}},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { p.Labels["leader-election/member"] = "true" }},
		{"label removed, another replaced, another added",
			`{"metadata":{"labels":{"leader-election/role":"leader","app":"web","tier":"x"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) {
				delete(p.Labels, "leader-election/role")
				p.Labels["tier"] = "y"
				p.Labels["leader-election/member"] = "true"
			}},
		{"every label removed", `{"metadata":{"labels":{"leader-election/role":"leader"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { delete(p.Labels, "leader-election/role") }},
		{"keys with ~ and /", `{"metadata":{"annotations":{"a~b/c":"1","~1":"2"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) {
				p.Annotations["a~b/c"] = "changed"
				delete(p.Annotations, "~1")
				p.Annotations["x/~0"] = "added"
			}},
		{"service account set where absent", `{"metadata":{},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" }},
		{"service account replaced", `{"metadata":{},"spec":{"serviceAccountName":"a","containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) { p.Spec.ServiceAccountName = "b" }},
		{"lists absent, null and present", `{"metadata":{},"spec":{"volumes":null,"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v1"}, corev1.Volume{Name: "v2"})
				p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "init", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)})
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c1"}, corev1.Container{Name: "c2"})
			}},
		{"appended to non-empty lists", `{"metadata":{},"spec":{"volumes":[{"name":"u","emptyDir":{}}],"initContainers":[{"name":"i","image":"i"}],"containers":[{"name":"app","image":"a"}]}}`,
			func(p *corev1.Pod) {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v1"})
				p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "e1"}, corev1.Container{Name: "e2"})
			}},
		{"nothing changed", `{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`,
			func(*corev1.Pod) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := withFutureFields(t, []byte(tt.raw))
			before := &corev1.Pod{}
			if err := json.Unmarshal(raw, before); err != nil {
				t.Fatal(err)
			}
			after := before.DeepCopy()
			tt.mutate(after)
			result, got := applyAndDecode(t, raw, before, after)
			assertSamePod(t, got, after)
			for _, f := range futureFields {
				if !strings.Contains(string(result), f) {
					t.Errorf("the patched pod lost %s:\n%s", f, result)
				}
			}
		})
	}
}

// TestRefusesChangesOutsideTheContract: a change Build cannot express must be an error naming the field, never
// a patch that silently leaves it out.
func TestRefusesChangesOutsideTheContract(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   string
	}{
		{"user container changed", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "b" }, "an existing entry of spec.containers"},
		{"user container removed", func(p *corev1.Pod) { p.Spec.Containers = nil }, "removed entries from spec.containers"},
		{"volume replaced", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "other"}}
		}, "an existing entry of spec.volumes"},
		{"another spec field", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "spec (a field other than"},
		{"another metadata field", func(p *corev1.Pod) { p.Finalizers = []string{"x"} }, "metadata (other than labels and annotations)"},
		{"status", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := basePod()
			before.Spec.Volumes = []corev1.Volume{{Name: "v"}}
			after := before.DeepCopy()
			after.Labels = map[string]string{"allowed": "too"}
			tt.mutate(after)
			ops, err := Build(before, after)
			if err == nil {
				t.Fatalf("Build accepted the change and returned %v", ops)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestKeyPath(t *testing.T) {
	for in, want := range map[string]string{"plain": "/m/plain", "a/b": "/m/a~1b", "a~b": "/m/a~0b", "~1": "/m/~01", "/~": "/m/~1~0", "": "/m/"} {
		if got := keyPath("/m", in); got != want {
			t.Errorf("keyPath(/m, %q) = %q, want %q", in, got, want)
		}
	}
}
