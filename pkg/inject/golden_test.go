package inject

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/contract"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml and *.err.txt from the current output")

func testConfig() Config { return DefaultConfig("v0.1.0", "leader-election/elector:v0.1.0") }

// TestGolden runs every testdata/<case>.in.yaml through Mutate and compares with <case>.out.yaml (the pod) or
// <case>.err.txt (the refusal). A case named enforced-* runs as in an enforcing namespace, container-* with the
// regular-container fallback. Every injected pod is then mutated again to prove reinvocation changes nothing.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 30 {
		t.Fatalf("found %d golden cases, want at least 30", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			pod := readPod(t, in)
			cfg := testConfig()
			if strings.HasPrefix(name, "container-") {
				cfg.Sidecar = SidecarContainer
			}
			enforced := strings.HasPrefix(name, "enforced-")
			out, changed, err := Mutate(pod, cfg, enforced)

			errFile := filepath.Join("testdata", name+".err.txt")
			outFile := filepath.Join("testdata", name+".out.yaml")
			if err != nil {
				compareGolden(t, errFile, []byte(err.Error()+"\n"))
				if _, statErr := os.Stat(outFile); statErr == nil {
					t.Errorf("%s exists but the case is refused: %v", outFile, err)
				}
				return
			}
			if _, statErr := os.Stat(errFile); statErr == nil {
				t.Errorf("%s exists but the case is admitted", errFile)
			}
			got, mErr := yaml.Marshal(out)
			if mErr != nil {
				t.Fatal(mErr)
			}
			compareGolden(t, outFile, got)
			if !changed && !equality.Semantic.DeepEqual(pod, out) {
				t.Errorf("Mutate reported no change but returned a different pod")
			}
			checkElectorAcceptsTheCheck(t, out)
			again, changedAgain, err := Mutate(out, cfg, enforced)
			if err != nil || changedAgain || !equality.Semantic.DeepEqual(again, out) {
				t.Errorf("reinvocation changed the pod (changed=%v, err=%v)", changedAgain, err)
			}
		})
	}
}

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(data, pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pod
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/inject -run TestGolden -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (rerun with -update if the change is intended)\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// checkElectorAcceptsTheCheck fails when the webhook hands the elector a health check that the elector's own
// settings would refuse (it would exit 2 and crash-loop).
func checkElectorAcceptsTheCheck(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	c, _ := containerNamed(pod, contract.ContainerName)
	if c == nil {
		return
	}
	for _, e := range c.Env {
		if e.Name == contract.EnvAppCheck {
			if _, err := appcheck.Parse(e.Value); err != nil {
				t.Errorf("the elector refuses %s=%s: %v", contract.EnvAppCheck, e.Value, err)
			}
		}
	}
}
