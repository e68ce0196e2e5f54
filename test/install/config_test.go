package install

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
)

// whatMatters lists, per kind, the fields whose difference between the chart and config/ changes behaviour.
// Labels other than selectors are left out: Helm's and kustomize's bookkeeping labels differ by design.
var whatMatters = map[string][][]string{
	"MutatingWebhookConfiguration":     {{"webhooks"}, {"metadata", "annotations"}},
	"ClusterRole":                      {{"rules"}, {"aggregationRule"}},
	"Role":                             {{"rules"}},
	"ClusterRoleBinding":               {{"roleRef"}, {"subjects"}},
	"RoleBinding":                      {{"roleRef"}, {"subjects"}},
	"ServiceAccount":                   {{"automountServiceAccountToken"}, {"imagePullSecrets"}},
	"Service":                          {{"spec"}},
	"Deployment":                       {{"spec", "replicas"}, {"spec", "selector"}, {"spec", "strategy"}, {"spec", "template", "spec"}, {"spec", "template", "metadata", "annotations"}},
	"PodDisruptionBudget":              {{"spec"}},
	"Issuer":                           {{"spec"}},
	"Certificate":                      {{"spec"}},
	"ValidatingAdmissionPolicy":        {{"spec"}},
	"ValidatingAdmissionPolicyBinding": {{"spec"}},
	"NetworkPolicy":                    {{"spec"}},
	"MutatingAdmissionPolicy":          {{"spec"}},
	"MutatingAdmissionPolicyBinding":   {{"spec"}},
	"ConfigMap":                        {{"data"}},
}

// TestConfigMatchesChart: `kustomize build config/default` and the chart with its defaults install the same
// objects, field for field where it matters (webhook rules, selectors, match conditions, failure policy, side
// effects, paths, RBAC rules, ports, the webhook's args, TLS). The Namespace is config/'s only extra: Helm leaves
// it to --create-namespace.
// Admission mode "policy" compares the chart's admission.mode=policy with config/default-policy the same way.
func TestConfigMatchesChart(t *testing.T) {
	for _, tc := range []struct{ values, dir string }{{"", "default"}, {policyMode, "default-policy"}} {
		t.Run(tc.dir, func(t *testing.T) {
			configMatchesChart(t, helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: tc.values}), kustomizeBuild(t, tc.dir), tc.dir)
		})
	}
}

func configMatchesChart(t *testing.T, chart, config objects, dir string) {

	byKey := func(objs objects) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, u := range objs {
			if u.GetKind() == "Namespace" {
				continue
			}
			m[key(u)] = u
		}
		return m
	}
	fromChart, fromConfig := byKey(chart), byKey(config)
	for k := range fromChart {
		if _, ok := fromConfig[k]; !ok {
			t.Errorf("%s: rendered by the chart, missing from config/%s", k, dir)
		}
	}
	for k := range fromConfig {
		if _, ok := fromChart[k]; !ok {
			t.Errorf("%s: in config/%s, not rendered by the chart", k, dir)
		}
	}
	if ns := config.one(t, "Namespace", defaultNamespace); ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("config/%s's Namespace does not enforce the restricted Pod Security Standard: %v", dir, ns.GetLabels())
	}

	for k, c := range fromChart {
		t.Run(k, func(t *testing.T) {
			paths, ok := whatMatters[c.GetKind()]
			if !ok {
				t.Fatalf("kind %s is not compared: add it to whatMatters", c.GetKind())
			}
			g, ok := fromConfig[k]
			if !ok {
				return // reported above
			}
			for _, p := range paths {
				want, _, _ := unstructured.NestedFieldNoCopy(c.Object, p...)
				got, _, _ := unstructured.NestedFieldNoCopy(g.Object, p...)
				for _, d := range diff(strings.Join(p, "."), normalize(want), normalize(got)) {
					t.Errorf("%s (chart, then config/%s)", d, dir)
				}
			}
		})
	}

	// The config's webhook Deployment selects its own pods as the chart's does.
	d := as[appsv1.Deployment](t, config.one(t, "Deployment", ""))
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("config/%s Deployment selector %v does not select its pods %v", dir, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
}

// TestConfigKeepsItsSourcesOfTruth: the files other packages read (test/integration reads them directly) are what
// config/default installs, unchanged but for the namespace.
func TestConfigKeepsItsSourcesOfTruth(t *testing.T) {
	config := kustomizeBuild(t, "default")
	for _, tc := range []struct {
		file string
		kind string
		name string
	}{
		{"webhook/manifests.yaml", "MutatingWebhookConfiguration", ""},
		{"rbac/elector_role.yaml", "ClusterRole", ""},
		{"rbac/webhook_role.yaml", "ClusterRole", ""},
		{"policies/webhook_pods.yaml", "ValidatingAdmissionPolicy", ""},
		{"policies/webhook_rbac.yaml", "ValidatingAdmissionPolicy", "leader-election-webhook-rolebindings"},
		{"policies/webhook_rbac.yaml", "ValidatingAdmissionPolicy", "leader-election-webhook-roles"},
		{"policies/elector_leases.yaml", "ValidatingAdmissionPolicy", ""},
		{"policies/pod_labels.yaml", "ValidatingAdmissionPolicy", ""},
	} {
		t.Run(tc.file+"/"+tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(configDir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			src := decode(t, string(b)).one(t, tc.kind, tc.name)
			built := config.one(t, tc.kind, src.GetName())
			for _, p := range whatMatters[tc.kind] {
				if p[0] == "metadata" {
					continue // the overlay adds the CA injection annotation
				}
				want, _, _ := unstructured.NestedFieldNoCopy(src.Object, p...)
				got, _, _ := unstructured.NestedFieldNoCopy(built.Object, p...)
				if !equality.Semantic.DeepEqual(normalize(want), normalize(got)) {
					t.Errorf("%v: config/%s and config/default differ\n%s\n%s", p, tc.file, toYAML(want), toYAML(got))
				}
			}
		})
	}
	mwc := as[admissionregistrationv1.MutatingWebhookConfiguration](t, config.one(t, "MutatingWebhookConfiguration", ""))
	for _, wh := range mwc.Webhooks {
		if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun ||
			*wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || len(wh.MatchConditions) == 0 {
			t.Errorf("webhook %s: want failurePolicy Fail, sideEffects NoneOnDryRun, reinvocationPolicy IfNeeded and matchConditions", wh.Name)
		}
	}
}

// TestSamples: the sample Deployment opts in, and its Service reaches the leader among the sample's pods only.
func TestSamples(t *testing.T) {
	objs := kustomizeBuild(t, "samples")
	d := as[appsv1.Deployment](t, objs.one(t, "Deployment", "sample"))
	svc := as[corev1.Service](t, objs.one(t, "Service", "sample"))
	objs.one(t, "ServiceAccount", d.Spec.Template.Spec.ServiceAccountName)

	if d.Spec.Template.Annotations[contract.AnnotationEnabled] != "true" {
		t.Errorf("sample pod template lacks %s: \"true\"", contract.AnnotationEnabled)
	}
	if svc.Spec.Selector[contract.LabelRole] != contract.RoleLeader {
		t.Errorf("sample Service selector %v lacks %s: %s", svc.Spec.Selector, contract.LabelRole, contract.RoleLeader)
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	leader := labels.Merge(d.Spec.Template.Labels, labels.Set{contract.LabelRole: contract.RoleLeader})
	if !sel.Matches(leader) {
		t.Errorf("sample Service selector %v does not select the leader pod %v", svc.Spec.Selector, leader)
	}
	if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("sample Service selector %v selects every replica, not only the leader", svc.Spec.Selector)
	}
	other := labels.Set{"app.kubernetes.io/name": "other", contract.LabelRole: contract.RoleLeader}
	if sel.Matches(other) {
		t.Errorf("sample Service selector %v selects other apps' leaders", svc.Spec.Selector)
	}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		if p.ContainerPort == inject.DefaultPort {
			t.Errorf("sample container uses the elector's port %d", inject.DefaultPort)
		}
	}
	if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == svc.Spec.Ports[0].TargetPort.String() }) {
		t.Errorf("sample Service targets port %s, which the sample container does not name", svc.Spec.Ports[0].TargetPort.String())
	}
}

// normalize makes YAML-decoded values comparable: integers decode as int64 or float64 depending on the tool.
func normalize(v any) any {
	b, err := yaml.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := yaml.Unmarshal(b, &out); err != nil {
		return v
	}
	return out
}

// diff lists the leaves where a (the chart's) and b (config's) differ, one line each, with their paths.
func diff(path string, a, b any) []string {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(a)) {
			out = append(out, diff(path+"."+k, a[k], b[k])...)
		}
		for _, k := range slices.Sorted(maps.Keys(b)) {
			if _, ok := a[k]; !ok {
				out = append(out, diff(path+"."+k, nil, b[k])...)
			}
		}
		return out
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			break
		}
		var out []string
		for i := range a {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), a[i], b[i])...)
		}
		return out
	}
	if equality.Semantic.DeepEqual(a, b) {
		return nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("%s: %s != %s", path, ja, jb)}
}
