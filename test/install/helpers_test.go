// Package install tests what users install: the Helm chart in charts/leader-election, the kustomize configuration
// in config/, and the Dockerfiles. Rendered objects are created on a real kube-apiserver (test/controlplane).
package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestMain runs the tests, or, when Helm runs this binary as the switch test's post-renderer (postRender), that.
func TestMain(m *testing.M) {
	if url := os.Getenv(envPostRenderURL); url != "" {
		if err := postRender(os.Stdin, os.Stdout, url, os.Getenv(envPostRenderCert)); err != nil {
			fmt.Fprintf(os.Stderr, "post-renderer: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The chart's default release: the names config/default uses.
const (
	defaultRelease   = "leader-election"
	defaultNamespace = "leader-election-system"
)

// certManagerModule holds the CustomResourceDefinitions of cert-manager's Issuer and Certificate (deploy/crds).
const certManagerModule = "github.com/cert-manager/cert-manager@v1.21.2"

var (
	chartDir  = filepath.Join(controlplane.RepoRoot(), "charts", "leader-election")
	configDir = filepath.Join(controlplane.RepoRoot(), "config")
)

// tool finds a test tool on PATH or in <repo>/bin/tools, where `make tools` installs it.
func tool(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join(controlplane.RepoRoot(), "bin", "tools", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	tb.Fatalf("%s is neither on PATH nor in bin/tools: run `make tools`", name)
	return ""
}

// run runs a tool and returns its standard output; a failure carries the tool's standard error.
func run(tb testing.TB, name string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command(tool(tb, name), args...)
	cmd.Dir = controlplane.RepoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// release is one way of rendering the chart.
type release struct {
	name, namespace string
	// values are written to a values file (YAML); nil renders the defaults.
	values string
}

// helmTemplate renders the chart and fails the test when helm refuses.
func helmTemplate(tb testing.TB, r release) objects {
	tb.Helper()
	out, err := helmTemplateErr(tb, r)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func helmTemplateErr(tb testing.TB, r release) (objects, error) {
	tb.Helper()
	args := []string{"template", r.name, chartDir, "--namespace", r.namespace}
	if r.values != "" {
		args = append(args, "--values", writeFile(tb, "values.yaml", r.values))
	}
	out, err := run(tb, "helm", args...)
	if err != nil {
		return nil, err
	}
	return decode(tb, out), nil
}

// kustomizeBuild builds a kustomization under config/.
func kustomizeBuild(tb testing.TB, dir string) objects {
	tb.Helper()
	out, err := run(tb, "kustomize", "build", filepath.Join(configDir, dir))
	if err != nil {
		tb.Fatal(err)
	}
	return decode(tb, out)
}

func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// objects is a rendered manifest.
type objects []*unstructured.Unstructured

func decode(tb testing.TB, manifest string) objects {
	tb.Helper()
	var out objects
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			tb.Fatalf("decoding rendered manifest: %v\n%s", err, manifest)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// one returns the only object of a kind (and name, unless empty), failing the test otherwise.
func (o objects) one(tb testing.TB, kind, name string) *unstructured.Unstructured {
	tb.Helper()
	var found []*unstructured.Unstructured
	for _, u := range o {
		if u.GetKind() == kind && (name == "" || u.GetName() == name) {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		tb.Fatalf("want exactly one %s %q in the rendered objects, found %d (%v)", kind, name, len(found), o.keys())
	}
	return found[0]
}

func (o objects) ofKind(kind string) objects {
	var out objects
	for _, u := range o {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// key names an object: kind, namespace and name.
func key(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

func (o objects) keys() []string {
	out := make([]string, 0, len(o))
	for _, u := range o {
		out = append(out, key(u))
	}
	return out
}

// as converts a rendered object into its typed API struct, failing on unknown fields (a typo in a template).
func as[T any](tb testing.TB, u *unstructured.Unstructured) *T {
	tb.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		tb.Fatalf("%s: %v", key(u), err)
	}
	return out
}

// toYAML is for failure messages.
func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(v)
	}
	return string(b)
}

// prometheusOperatorModule holds the CustomResourceDefinitions of ServiceMonitor, PodMonitor and PrometheusRule
// (example/prometheus-operator-crd), which the chart renders with monitoring.enabled.
const prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// certManagerCRDDir returns the directory of cert-manager's CustomResourceDefinitions.
func certManagerCRDDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(moduleDir(tb, certManagerModule), "deploy", "crds")
}

// monitoringCRDFiles returns the files of the Prometheus Operator's CustomResourceDefinitions the chart uses.
func monitoringCRDFiles(tb testing.TB) []string {
	tb.Helper()
	dir := filepath.Join(moduleDir(tb, prometheusOperatorModule), "example", "prometheus-operator-crd")
	var files []string
	for _, plural := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		files = append(files, filepath.Join(dir, "monitoring.coreos.com_"+plural+".yaml"))
	}
	return files
}

var (
	modulesMu sync.Mutex
	modules   = map[string]string{}
)

// moduleDir downloads a module (through the Go module proxy, once, cached in the module cache) and returns its
// directory. It runs outside this module so that go.mod stays as it is.
func moduleDir(tb testing.TB, module string) string {
	tb.Helper()
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if dir, ok := modules[module]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "module-download")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = dir // no go.mod here: nothing is added to this module's
	cmd.Env = append(os.Environ(), "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("go mod download %s: %v\n%s%s", module, err, out, stderr.String())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		tb.Fatalf("go mod download %s: no directory in %s (%v %s)", module, out, err, mod.Error)
	}
	modules[module] = mod.Dir
	return mod.Dir
}
