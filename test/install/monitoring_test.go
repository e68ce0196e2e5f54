package install

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/controlplane"
)

// monitoringKinds are the kinds only monitoring.enabled renders (with a second Service, for the metrics).
var monitoringKinds = []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}

var monitored = release{name: defaultRelease, namespace: defaultNamespace, values: "monitoring: {enabled: true}"}

// TestChartMonitoringIsOffByDefault: a cluster without the Prometheus Operator's CRDs installs the defaults.
func TestChartMonitoringIsOffByDefault(t *testing.T) {
	objs := helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace})
	for _, kind := range monitoringKinds {
		if n := len(objs.ofKind(kind)); n != 0 {
			t.Errorf("the defaults render %d %s", n, kind)
		}
	}
	if n := len(objs.ofKind("Service")); n != 1 {
		t.Errorf("the defaults render %d Services, want only the admission Service", n)
	}
}

// TestChartMonitoringWiring: with monitoring.enabled every object is rendered and reaches what it monitors: the
// ServiceMonitor selects the metrics Service (and not the admission Service), which reaches the webhook's metrics
// port; the PodMonitor selects injected pods on the port pkg/inject names; the alerts select the jobs the
// Prometheus Operator gives those monitors; the dashboard ConfigMap carries the sidecar's label and valid JSON.
func TestChartMonitoringWiring(t *testing.T) {
	objs := helmTemplate(t, monitored)
	deploy := as[appsv1.Deployment](t, objs.one(t, "Deployment", ""))
	pod := deploy.Spec.Template

	metricsSvc := as[corev1.Service](t, objs.one(t, "Service", "leader-election-webhook-metrics"))
	admissionSvc := as[corev1.Service](t, objs.one(t, "Service", deploy.Name))
	if !labels.SelectorFromSet(metricsSvc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("metrics Service selector %v does not select the webhook's pods", metricsSvc.Spec.Selector)
	}
	if len(metricsSvc.Spec.Ports) != 1 || metricsSvc.Spec.Ports[0].Name != "metrics" || metricsSvc.Spec.Ports[0].TargetPort.String() != "metrics" ||
		!slices.ContainsFunc(pod.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
		t.Errorf("metrics Service ports %+v, want one port named metrics targeting the container port named metrics", metricsSvc.Spec.Ports)
	}

	sm := objs.one(t, "ServiceMonitor", "")
	smSelector := selectorAt(t, sm, "spec", "selector")
	if !smSelector.Matches(labels.Set(metricsSvc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the metrics Service's labels %v", smSelector, metricsSvc.Labels)
	}
	if smSelector.Matches(labels.Set(admissionSvc.Labels)) {
		t.Errorf("ServiceMonitor selector %v also selects the admission Service, which serves only TLS", smSelector)
	}
	if names, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames"); !slices.Equal(names, []string{defaultNamespace}) {
		t.Errorf("ServiceMonitor namespaceSelector.matchNames %v, want [%s]", names, defaultNamespace)
	}
	if port := endpointPort(t, sm, "endpoints"); port != "metrics" {
		t.Errorf("ServiceMonitor endpoint port %q, want metrics", port)
	}

	// An injected pod: the PodMonitor must select it and scrape the port the elector listens on.
	injected, _, err := inject.Mutate(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, inject.DefaultConfig("v0.1.0", "leader-election/elector:v0.1.0"), false)
	if err != nil {
		t.Fatal(err)
	}
	pm := objs.one(t, "PodMonitor", "")
	if sel := selectorAt(t, pm, "spec", "selector"); !sel.Matches(labels.Set(injected.Labels)) || sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("PodMonitor selector %v: want it to select injected pods %v and not the webhook's", sel, injected.Labels)
	}
	if anyNS, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any"); !anyNS {
		t.Errorf("PodMonitor does not look in every namespace by default")
	}
	elector := injected.Spec.InitContainers[len(injected.Spec.InitContainers)-1]
	if port := endpointPort(t, pm, "podMetricsEndpoints"); len(elector.Ports) != 1 || port != elector.Ports[0].Name {
		t.Errorf("PodMonitor scrapes port %q, the injected elector's ports are %+v", port, elector.Ports)
	}

	// The Prometheus Operator names a ServiceMonitor's job after the Service, a PodMonitor's <namespace>/<name>.
	rules := toYAML(objs.one(t, "PrometheusRule", "").Object["spec"])
	for _, want := range []string{
		`job="` + metricsSvc.Name + `", namespace="` + defaultNamespace + `"`,
		`job="` + defaultNamespace + "/" + pm.GetName() + `"`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("no alert selects %s", want)
		}
	}

	cm := as[corev1.ConfigMap](t, objs.one(t, "ConfigMap", ""))
	if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != defaultNamespace {
		t.Errorf("dashboard ConfigMap %s/%s labels %v, want grafana_dashboard=1 in the release's namespace", cm.Namespace, cm.Name, cm.Labels)
	}
	var dashboard map[string]any
	if err := json.Unmarshal([]byte(cm.Data["leader-election.json"]), &dashboard); err != nil || dashboard["uid"] != "leader-election" {
		t.Errorf("dashboard ConfigMap holds no dashboard JSON (uid %v): %v", dashboard["uid"], err)
	}
}

// TestChartMonitoringSwitches: each object has its own switch under monitoring.enabled, and the dashboard may
// go to Grafana's namespace.
func TestChartMonitoringSwitches(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         []string // the monitoring kinds rendered
	}{
		{"a switch without monitoring.enabled", "monitoring: {enabled: false, podMonitor: {enabled: true}}", nil},
		{"no ServiceMonitor", "monitoring: {enabled: true, serviceMonitor: {enabled: false}}", []string{"PodMonitor", "PrometheusRule", "ConfigMap"}},
		{"no PodMonitor and no rules", "monitoring: {enabled: true, podMonitor: {enabled: false}, prometheusRule: {enabled: false}}", []string{"ServiceMonitor", "ConfigMap"}},
		{"no dashboard", "monitoring: {enabled: true, dashboard: {enabled: false}}", []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: tc.values})
			var got []string
			for _, kind := range monitoringKinds {
				if len(objs.ofKind(kind)) > 0 {
					got = append(got, kind)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("rendered %v, want %v", got, tc.want)
			}
			wantServices := 1
			if slices.Contains(tc.want, "ServiceMonitor") {
				wantServices = 2
			}
			if n := len(objs.ofKind("Service")); n != wantServices {
				t.Errorf("%d Services, want %d", n, wantServices)
			}
		})
	}
	objs := helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: "monitoring: {enabled: true, dashboard: {namespace: grafana}}"})
	if ns := objs.one(t, "ConfigMap", "").GetNamespace(); ns != "grafana" {
		t.Errorf("dashboard ConfigMap in %q, want grafana", ns)
	}
}

// TestChartAlertsWithPromtool runs `promtool test rules` on the groups the chart renders (so the chart and the
// tested rules cannot drift) with testdata/alerts_test.yaml, and checks that every alert has a case in which it
// fires and one in which it must not.
func TestChartAlertsWithPromtool(t *testing.T) {
	rule := monitoredObjects(t).one(t, "PrometheusRule", "")
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	rulesYAML, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{"rules.yaml": rulesYAML, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(t, "promtool", "check", "rules", filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := run(t, "promtool", "test", "rules", filepath.Join(dir, "alerts_test.yaml")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	var suite struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &suite); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range suite.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	alerts := alertNames(t, groups)
	if len(alerts) < 8 {
		t.Fatalf("found %d alerts in the rendered rule, want the eight documented ones: %v", len(alerts), alerts)
	}
	for _, a := range alerts {
		if !fires[a] || !silent[a] {
			t.Errorf("alert %s: a case where it fires: %v, where it must not: %v; want both", a, fires[a], silent[a])
		}
	}
}

// TestMonitoringUsesDocumentedMetricsAndAlerts: every metric the alerts and the dashboard query is in
// docs/observability.md's metric table, every leader_election_* metric there is defined in the code, and every
// alert has a section (its runbook) in the document.
func TestMonitoringUsesDocumentedMetricsAndAlerts(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)(\\{[^`]*\\})?` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	if len(documented) == 0 {
		t.Fatal("docs/observability.md has no metric table")
	}

	rendered := monitoredObjects(t)
	queries := toYAML(rendered.one(t, "PrometheusRule", "").Object["spec"]) + as[corev1.ConfigMap](t, rendered.one(t, "ConfigMap", "")).Data["leader-election.json"]
	metric := regexp.MustCompile(`\b(leader_election_[a-z_]+|controller_runtime_[a-z_]+|certwatcher_[a-z_]+|process_[a-z_]+|up)\b[{\[)]`)
	used := map[string]bool{}
	for _, m := range metric.FindAllStringSubmatch(queries, -1) {
		name := m[1]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && documented[base] {
				name = base
			}
		}
		used[name] = true
	}
	for name := range used {
		if !documented[name] {
			t.Errorf("the alerts or the dashboard query %s, which docs/observability.md does not list", name)
		}
	}
	if !used["leader_election_master_status"] || !used["controller_runtime_webhook_latency_seconds"] {
		t.Fatalf("found only %v in the queries: is the pattern right?", used)
	}

	var source strings.Builder
	err = filepath.WalkDir(filepath.Join(controlplane.RepoRoot(), "pkg"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		source.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range documented {
		if strings.HasPrefix(name, "leader_election_") && !strings.Contains(source.String(), `"`+name+`"`) {
			t.Errorf("docs/observability.md lists %s, which no code in pkg/ defines", name)
		}
	}

	groups, _, _ := unstructured.NestedSlice(rendered.one(t, "PrometheusRule", "").Object, "spec", "groups")
	for _, a := range alertNames(t, groups) {
		if !strings.Contains(string(doc), "### "+a+"\n") {
			t.Errorf("alert %s has no section \"### %s\" in docs/observability.md (its runbook_url points there)", a, a)
		}
	}
}

func monitoredObjects(t *testing.T) objects {
	t.Helper()
	return helmTemplate(t, monitored)
}

func alertNames(t *testing.T, groups []any) []string {
	t.Helper()
	var names []string
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			if name, ok := r.(map[string]any)["alert"].(string); ok {
				names = append(names, name)
			}
		}
	}
	return names
}

func selectorAt(t *testing.T, u *unstructured.Unstructured, path ...string) labels.Selector {
	t.Helper()
	m, _, _ := unstructured.NestedMap(u.Object, path...)
	ls := &metav1.LabelSelector{}
	if err := runtimeFromMap(m, ls); err != nil {
		t.Fatalf("%s: %v", key(u), err)
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("%s: %v", key(u), err)
	}
	return sel
}

func runtimeFromMap(m map[string]any, out any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// endpointPort is the port of the only endpoint in a monitor's list field.
func endpointPort(t *testing.T, u *unstructured.Unstructured, field string) string {
	t.Helper()
	eps, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
	if len(eps) != 1 {
		t.Fatalf("%s: want one entry in spec.%s, got %d", key(u), field, len(eps))
	}
	port, _ := eps[0].(map[string]any)["port"].(string)
	return port
}
