package admissionpolicy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
)

// TestGeneratedFilesAreCurrent fails while the chart's or config/injection-policies's copy of the policies differs from
// what pkg/inject makes of them today: run `make generate` and review the diff.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := Files(ConfigVersion)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("generated %d files, want 4", len(files))
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Errorf("%v (run make generate)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what pkg/admissionpolicy generates: run make generate and review the diff", path)
		}
	}
}

// TestPoliciesFollowPkgInject: the policies carry what pkg/inject builds and refuses with, not copies of it.
func TestPoliciesFollowPkgInject(t *testing.T) {
	maps, vaps, err := Policies()
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 2 || len(vaps) != 4 {
		t.Fatalf("got %d mutating and %d validating policies, want 2 and 4", len(maps), len(vaps))
	}
	patch := maps[0].Spec.Mutations[0].JSONPatch.Expression
	f := inject.Facts()
	for _, want := range []string{contract.ContainerName, f.TokenMountPath, f.PodInfoMountPath, f.PortName, contract.EnvLeaseName, contract.EnvPodLabelsFile, contract.LabelMember,
		contract.EnvHandover, contract.EnvAppCheck, contract.EnvPodIP, contract.AnnotationHealthGate} {
		if !strings.Contains(patch, want) {
			t.Errorf("the injection does not mention %q", want)
		}
	}
	p := inject.Placeholders()
	for _, placeholder := range []string{p.LeaseName, p.Image, inject.PlaceholderTokenVolume, "54321", "987654", p.AppCheck, p.HealthGate} {
		for _, v := range maps[0].Spec.Variables {
			if strings.Contains(v.Expression, placeholder) {
				t.Errorf("variable %s still holds placeholder %q", v.Name, placeholder)
			}
		}
		if strings.Contains(patch, placeholder) {
			t.Errorf("the injection still holds placeholder %q", placeholder)
		}
	}
	for i, m := range maps {
		if m.Spec.ReinvocationPolicy != "IfNeeded" || *m.Spec.FailurePolicy != "Fail" || len(m.Spec.MatchConditions) == 0 || m.Spec.ParamKind == nil {
			t.Errorf("policy %s: want reinvocationPolicy IfNeeded, failurePolicy Fail, matchConditions and a paramKind", m.Name)
		}
		for _, v := range []int{i, i + 2} {
			if vaps[v].Spec.MatchConditions[0] != m.Spec.MatchConditions[0] {
				t.Errorf("%s and %s match different pods", m.Name, vaps[v].Name)
			}
		}
		if guard := vaps[i+2]; guard.Spec.ParamKind != nil {
			t.Errorf("guard %s takes parameters: it must judge pods while the parameter ConfigMap is missing", guard.Name)
		}
	}
}

// TestEverySettingHasAPlaceholder: a setting pkg/inject gains must get a placeholder (and the generator a CEL
// variable for it), or the policies would inject its zero value as a constant.
func TestEverySettingHasAPlaceholder(t *testing.T) {
	v := reflect.ValueOf(inject.Placeholders())
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("inject.Placeholders().%s is not set: give it a value found nowhere else in the elector and teach pkg/admissionpolicy to compute it",
				v.Type().Field(i).Name)
		}
	}
}

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		text string
		repl map[string]string
		want string
	}{
		{"plain", nil, "'plain'"},
		{`port "1" taken`, map[string]string{`"1"`: "p"}, "'port ' + p + ' taken'"},
		{"ab", map[string]string{"a": "x", "ab": "y"}, "y"},
		{"it's", nil, `'it\'s'`},
		{"a\u00a0b", nil, `'a\u00a0b'`},
	} {
		if got := template(tc.text, tc.repl); got != tc.want {
			t.Errorf("template(%q) = %s, want %s", tc.text, got, tc.want)
		}
	}
}

// TestMatchesWhatTheWebhookMatches: the policies select exactly the pods the webhook's configuration sends it
// (config/webhook/manifests.yaml, which test/install keeps equal to the chart's), so that failurePolicy Fail
// refuses in either mode only pods that must not run without an elector, and a change to one mode's match
// conditions fails here until the other follows.
func TestMatchesWhatTheWebhookMatches(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &mwc); err != nil {
		t.Fatal(err)
	}
	maps, vaps, err := Policies()
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != len(maps) {
		t.Fatalf("%d webhooks, %d mutating policies: want one policy per webhook", len(mwc.Webhooks), len(maps))
	}
	for i, wh := range mwc.Webhooks {
		for _, spec := range []struct {
			name       string
			conditions []admissionregistrationv1.MatchCondition
			match      *admissionregistrationv1.MatchResources
		}{
			{maps[i].Name, maps[i].Spec.MatchConditions, maps[i].Spec.MatchConstraints},
			{vaps[i].Name, vaps[i].Spec.MatchConditions, vaps[i].Spec.MatchConstraints},
			{vaps[i+2].Name, vaps[i+2].Spec.MatchConditions, vaps[i+2].Spec.MatchConstraints},
		} {
			if !reflect.DeepEqual(spec.conditions, wh.MatchConditions) {
				t.Errorf("policy %s matches %+v, webhook %s %+v", spec.name, spec.conditions, wh.Name, wh.MatchConditions)
			}
			if len(spec.match.ResourceRules) != 1 || len(wh.Rules) != 1 || !reflect.DeepEqual(spec.match.ResourceRules[0].RuleWithOperations, wh.Rules[0]) {
				t.Errorf("policy %s's rules %+v, webhook %s's %+v", spec.name, spec.match.ResourceRules, wh.Name, wh.Rules)
			}
		}
	}
}

// TestKustomizeNamesTheParamsNamespace: config/policy-mode rewrites the namespace in the guards' message by its
// position among the words; a reworded message must move that position with it.
func TestKustomizeNamesTheParamsNamespace(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "config", "policy-mode", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Replacements []struct {
			Targets []struct {
				Select     struct{ Kind, Name string }
				FieldPaths []string `json:"fieldPaths"`
				Options    *struct {
					Delimiter string
					Index     int
				}
			}
		}
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	words := strings.Split(MissingParamsMessage(ParamsName, DefaultNamespace), " ")
	guards := map[string]bool{}
	for _, r := range k.Replacements {
		for _, tg := range r.Targets {
			if tg.Select.Kind != "ValidatingAdmissionPolicy" {
				continue
			}
			guards[tg.Select.Name] = true
			if tg.Options == nil || tg.Options.Delimiter != " " || tg.Options.Index >= len(words) || words[tg.Options.Index] != DefaultNamespace {
				t.Errorf("config/policy-mode replaces word %+v of %s's message, want the index of %q in %q", tg.Options, tg.Select.Name, DefaultNamespace, words)
			}
		}
	}
	if !guards[GuardPolicy] || !guards[GuardEnforcedPolicy] {
		t.Errorf("config/policy-mode rewrites the namespace in the message of %v, want %s and %s", guards, GuardPolicy, GuardEnforcedPolicy)
	}
}
