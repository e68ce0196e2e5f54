package install

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/admissionpolicy"
	"github.com/leader-election/leader-election/pkg/version"
	"github.com/leader-election/leader-election/pkg/webhook"
	"github.com/leader-election/leader-election/test/controlplane"
)

func nondefaultValues(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "values-nondefault.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// chartMeta is the part of Chart.yaml the tests check against.
type chartMeta struct {
	APIVersion string `json:"apiVersion"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func readChartMeta(tb testing.TB) chartMeta {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var m chartMeta
	if err := yaml.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestChartMetadata: the chart is a v2 chart whose appVersion is the release the binaries are stamped with, so that
// the default image tags (the appVersion) name the images `make docker-build` produces.
func TestChartMetadata(t *testing.T) {
	m := readChartMeta(t)
	want := chartMeta{APIVersion: "v2", Name: "leader-election", Version: "0.1.0", AppVersion: version.Version}
	if m != want {
		t.Errorf("Chart.yaml: got %+v, want %+v (appVersion must equal pkg/version.Version)", m, want)
	}
}

func TestChartLint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
	}{
		{"defaults", ""},
		{"non-default values", nondefaultValues(t)},
		{"admission mode policy", policyMode},
		{"admission mode policy with non-default values", nondefaultValues(t) + "\n" + policyMode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", "platform"}
			if tc.values != "" {
				args = append(args, "--values", writeFile(t, "values.yaml", tc.values))
			}
			out, err := run(t, "helm", args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint --strict did not pass cleanly:\n%s", out)
			}
		})
	}
}

// TestChartSchemaRejects: a wrong value stops `helm install` before anything reaches the cluster, with a message
// that names the value and what is accepted.
func TestChartSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name, values, want string
	}{
		{"replicas as a word", "replicaCount: two", "at '/replicaCount': got string, want integer"},
		{"no replicas", "replicaCount: 0", "at '/replicaCount': minimum: got 0, want 1"},
		{"sidecar mode", "elector: {sidecarMode: sidecar}", "at '/elector/sidecarMode': value must be one of 'auto', 'native', 'container'"},
		{"traffic mode", "elector: {traffic: dns}", "at '/elector/traffic': value must be one of 'label', 'readiness'"},
		{"duration without unit", "elector: {leaseDuration: \"15\"}", "at '/elector/leaseDuration': '15' does not match pattern"},
		{"duration as a number", "elector: {retryPeriod: 2}", "at '/elector/retryPeriod': got number, want string"},
		{"fractional lease", "elector: {leaseDuration: 1.5s}", "at '/elector/leaseDuration': '1.5s' does not match pattern"},
		{"elector port too high", "elector: {port: 70000}", "at '/elector/port': maximum: got 70,000, want 65,535"},
		{"privileged webhook port", "webhook: {port: 443}", "at '/webhook/port': minimum: got 443, want 1,024"},
		{"webhook timeout above the API server's limit", "webhook: {timeoutSeconds: 31}", "at '/webhook/timeoutSeconds': maximum: got 31, want 30"},
		{"cert-manager switch as a string", "certManager: {enabled: \"no\"}", "at '/certManager/enabled': got string, want boolean"},
		{"misspelt value", "elector: {leaseDurration: 15s}", "at '/elector': additional properties 'leaseDurration' not allowed"},
		{"quantity", "elector: {resources: {memoryLimit: lots}}", "at '/elector/resources/memoryLimit': 'lots' does not match pattern"},
		{"issuer kind", "certManager: {issuerRef: {name: ca, kind: Issuers}}", "at '/certManager/issuerRef/kind': value must be one of 'Issuer', 'ClusterIssuer'"},
		{"issuer without a name", "certManager: {issuerRef: {kind: ClusterIssuer}}", "at '/certManager/issuerRef': properties 'name' required, if 'kind' exists"},
		{"monitoring switch as a string", "monitoring: {enabled: \"true\"}", "at '/monitoring/enabled': got string, want boolean"},
		{"scrape interval without unit", "monitoring: {podMonitor: {interval: \"30\"}}", "at '/monitoring/podMonitor/interval'"},
		{"flapping threshold of zero", "monitoring: {prometheusRule: {flappingChangesPerHour: 0}}", "at '/monitoring/prometheusRule/flappingChangesPerHour': minimum: got 0, want 1"},
		{"dashboard label as a number", "monitoring: {dashboard: {labels: {grafana_dashboard: 1}}}", "at '/monitoring/dashboard/labels/grafana_dashboard': got number, want string"},
		{"misspelt monitoring value", "monitoring: {serviceMonitors: {enabled: true}}", "at '/monitoring': additional properties 'serviceMonitors' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplateErr(t, release{name: defaultRelease, namespace: defaultNamespace, values: tc.values})
			if err == nil {
				t.Fatalf("helm template accepted %q", tc.values)
			}
			msg := err.Error()
			if !strings.Contains(msg, "values don't meet the specifications of the schema(s)") || !strings.Contains(msg, tc.want) {
				t.Errorf("values %q: helm said\n%s\nwant a schema error containing %q", tc.values, msg, tc.want)
			}
		})
	}
}

// TestChartAdmissionModeRejects: an admission mode other than webhook or policy stops the render, naming the value
// and the accepted ones (the schema checks only its type, so that this message is the one users see).
func TestChartAdmissionModeRejects(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"admission: {mode: mutating}", `admission.mode "mutating": want "webhook" (a mutating admission webhook, the default) or "policy"`},
		{"admission: {mode: Policy}", `admission.mode "Policy": want "webhook"`},
		{"admission: {mode: \"\"}", `admission.mode "": want "webhook"`},
		{"admission: {mode: 1}", "at '/admission/mode': got number, want string"},
		{"admission: {modes: policy}", "at '/admission': additional properties 'modes' not allowed"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			_, err := helmTemplateErr(t, release{name: defaultRelease, namespace: defaultNamespace, values: tc.values})
			if err == nil {
				t.Fatalf("helm template accepted %q", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("values %q: helm said\n%s\nwant %q", tc.values, err, tc.want)
			}
		})
	}
}

// policyMode is the value that selects admission mode "policy".
const policyMode = "admission: {mode: policy}"

// install is one way of installing, as rendered objects plus what the rendering was asked for.
type install struct {
	name        string
	objects     objects
	namespace   string
	certManager bool
	// policyMode: admission mode "policy", the manager without an admission server.
	policyMode bool
	// image and electorImage are the images the values ask for.
	image, electorImage string
	extraDNSNames       []string
	// release and notes, for the chart: how it was rendered and what its NOTES must say.
	release release
	notes   []string
}

func installs(t *testing.T) []install {
	t.Helper()
	app := readChartMeta(t).AppVersion
	defaults := release{name: defaultRelease, namespace: defaultNamespace}
	nondefault := release{name: "le", namespace: "platform", values: nondefaultValues(t)}
	policy := release{name: defaultRelease, namespace: defaultNamespace, values: policyMode}
	policyNondefault := release{name: "le", namespace: "platform", values: nondefaultValues(t) + "\n" + policyMode}
	return []install{
		{
			name:    "chart defaults",
			objects: helmTemplate(t, defaults),
			release: defaults,
			notes: []string{
				`leader-election/enabled: "true"`, "leader-election/role: leader",
				"rollout status deployment/leader-election-webhook", "Certificate leader-election-serving-cert",
			},
			namespace:   defaultNamespace,
			certManager: true,
			image:       "leader-election/webhook:" + app,
			// The chart's default elector image is the webhook's own default (cmd/webhook --elector-image).
			electorImage: "leader-election/elector:" + version.Version,
		},
		{
			name:    "chart without cert-manager",
			objects: helmTemplate(t, nondefault),
			release: nondefault,
			notes: []string{`leader-election/enabled: "true"`, `Traffic mode is "readiness"`, "replaced on every upgrade",
				"Monitoring is on", "PrometheusRule le-leader-election"},
			namespace:     "platform",
			image:         "example/leader-election-webhook:1.2.3-rc.1",
			electorImage:  "example/leader-election-elector:1.2.3-rc.1",
			extraDNSNames: []string{"localhost"},
		},
		{
			name:         "kustomize config/default",
			objects:      kustomizeBuild(t, "default"),
			namespace:    defaultNamespace,
			certManager:  true,
			image:        "leader-election/webhook:" + app,
			electorImage: "leader-election/elector:" + version.Version,
		},
		{
			name:         "chart in admission mode policy",
			objects:      helmTemplate(t, policy),
			release:      policy,
			notes:        []string{`Admission mode is "policy"`, "rollout status deployment/leader-election-webhook", "before its pods exist"},
			namespace:    defaultNamespace,
			policyMode:   true,
			image:        "leader-election/webhook:" + app,
			electorImage: "leader-election/elector:" + version.Version,
		},
		{
			name:         "chart in admission mode policy with non-default values",
			objects:      helmTemplate(t, policyNondefault),
			namespace:    "platform",
			policyMode:   true,
			image:        "example/leader-election-webhook:1.2.3-rc.1",
			electorImage: "example/leader-election-elector:1.2.3-rc.1",
		},
		{
			name:         "kustomize config/default-policy",
			objects:      kustomizeBuild(t, "default-policy"),
			namespace:    defaultNamespace,
			policyMode:   true,
			image:        "leader-election/webhook:" + app,
			electorImage: "leader-election/elector:" + version.Version,
		},
	}
}

// TestInstallWiring checks that the rendered objects fit together: every name one object uses for another, every
// port, selector and certificate. A mistake here installs cleanly and then refuses every annotated pod.
func TestInstallWiring(t *testing.T) {
	for _, in := range installs(t) {
		t.Run(in.name, func(t *testing.T) {
			objs := in.objects
			for _, u := range objs {
				if u.GetKind() == "Namespace" || strings.HasPrefix(u.GetKind(), "MutatingWebhook") || strings.HasPrefix(u.GetKind(), "MutatingAdmissionPolicy") || strings.HasPrefix(u.GetKind(), "ValidatingAdmissionPolicy") || strings.HasPrefix(u.GetKind(), "Cluster") {
					continue
				}
				if u.GetNamespace() != in.namespace {
					t.Errorf("%s: want namespace %s", key(u), in.namespace)
				}
			}

			deploy := as[appsv1.Deployment](t, objs.one(t, "Deployment", ""))
			pod := deploy.Spec.Template
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("want one container in the webhook's pod, got %d", len(pod.Spec.Containers))
			}
			c := pod.Spec.Containers[0]
			args := parseArgs(t, c.Args)
			if c.Image != in.image {
				t.Errorf("webhook image %q, want %q", c.Image, in.image)
			}
			if args["elector-image"] != in.electorImage {
				t.Errorf("--elector-image=%q, want %q", args["elector-image"], in.electorImage)
			}
			// Policy mode: the controllers only, binding from workloads; webhook mode: admission, as before.
			if want := map[bool]string{true: "false", false: ""}[in.policyMode]; args["admission"] != want {
				t.Errorf("--admission=%q, want %q", args["admission"], want)
			}
			if want := map[bool]string{true: "true", false: ""}[in.policyMode]; args["bind-workloads"] != want {
				t.Errorf("--bind-workloads=%q, want %q", args["bind-workloads"], want)
			}
			sel, err := metav1.LabelSelectorAsSelector(deploy.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
				t.Errorf("Deployment selector %v does not select its pod template's labels %v", deploy.Spec.Selector, pod.Labels)
			}

			// The ServiceAccount exists and is bound to the webhook's ClusterRole, and to nothing else: the label
			// controller runs on every replica without a Lease of its own.
			sa := objs.one(t, "ServiceAccount", pod.Spec.ServiceAccountName)
			electorRole := as[rbacv1.ClusterRole](t, objs.one(t, "ClusterRole", args["elector-cluster-role"]))
			crb := as[rbacv1.ClusterRoleBinding](t, objs.one(t, "ClusterRoleBinding", ""))
			webhookRole := as[rbacv1.ClusterRole](t, objs.one(t, "ClusterRole", crb.RoleRef.Name))
			wantSubject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.GetName(), Namespace: in.namespace}}
			if !slices.Equal(crb.Subjects, wantSubject) {
				t.Errorf("ClusterRoleBinding %s subjects %+v, want %+v", crb.Name, crb.Subjects, wantSubject)
			}
			if n := len(objs.ofKind("Role")) + len(objs.ofKind("RoleBinding")); n != 0 {
				t.Errorf("want no Role or RoleBinding for the webhook, got %d", n)
			}
			checkPolicies(t, objs, "system:serviceaccount:"+in.namespace+":"+sa.GetName(), electorRole.Name)
			checkPoliciesExclude(t, objs, strings.Split(args["excluded-namespaces"], ","))
			if !grants(electorRole.Rules, "leader-election.io", "electors", "elect") {
				t.Errorf("ClusterRole %s lacks the mark the Lease policy matches electors by (leader-election.io electors elect)", electorRole.Name)
			}
			// The webhook may bind the elector ClusterRole (and only that one) without holding its permissions.
			if !slices.ContainsFunc(webhookRole.Rules, func(r rbacv1.PolicyRule) bool {
				return slices.Equal(r.Verbs, []string{"bind"}) && slices.Equal(r.ResourceNames, []string{electorRole.Name})
			}) {
				t.Errorf("ClusterRole %s cannot bind %s (--elector-cluster-role): %+v", webhookRole.Name, electorRole.Name, webhookRole.Rules)
			}

			// Reading workloads is what --bind-workloads needs, and only in policy mode; never writing them.
			for _, r := range [][2]string{{"apps", "deployments"}, {"apps", "statefulsets"}, {"", "namespaces"}} {
				if got := grants(webhookRole.Rules, r[0], r[1], "get", "list", "watch"); got != in.policyMode {
					t.Errorf("ClusterRole %s reads %s: %v, want %v (only policy mode binds from workloads)", webhookRole.Name, r[1], got, in.policyMode)
				}
				for _, verb := range []string{"create", "update", "patch", "delete", "*"} {
					if grants(webhookRole.Rules, r[0], r[1], verb) {
						t.Errorf("ClusterRole %s may %s %s", webhookRole.Name, verb, r[1])
					}
				}
			}

			// Ports: the Service reaches the webhook's TLS port; the probes reach the health port.
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if in.policyMode {
				if _, ok := ports["webhook"]; ok || args["port"] != "" || args["cert-dir"] != "" || len(pod.Spec.Volumes) != 0 {
					t.Errorf("policy mode: the manager serves no admission port and mounts no certificate; got ports %v, --port=%q, --cert-dir=%q, volumes %v",
						ports, args["port"], args["cert-dir"], pod.Spec.Volumes)
				}
			} else if want := strconv.Itoa(int(ports["webhook"])); args["port"] != want {
				t.Errorf("--port=%s, want the container port named webhook (%s)", args["port"], want)
			}
			if want := ":" + strconv.Itoa(int(ports["health"])); args["health-probe-bind-address"] != want {
				t.Errorf("--health-probe-bind-address=%s, want %s (the container port named health)", args["health-probe-bind-address"], want)
			}
			if want := ":" + strconv.Itoa(int(ports["metrics"])); args["metrics-bind-address"] != want {
				t.Errorf("--metrics-bind-address=%s, want %s (the container port named metrics)", args["metrics-bind-address"], want)
			}
			for probe, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != probe || p.HTTPGet.Port.String() != "health" {
					t.Errorf("want an HTTP probe of %s on port health, got %+v", probe, p)
				}
			}
			// A NetworkPolicy, when rendered, selects the webhook's pods and opens ports they declare.
			for _, u := range objs.ofKind("NetworkPolicy") {
				np := as[networkingv1.NetworkPolicy](t, u)
				sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
				if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
					t.Errorf("NetworkPolicy %s does not select the webhook's pods", np.Name)
				}
				for _, rule := range np.Spec.Ingress {
					for _, p := range rule.Ports {
						if _, ok := ports[p.Port.String()]; !ok {
							t.Errorf("NetworkPolicy %s opens port %s, which the webhook's container does not name", np.Name, p.Port.String())
						}
					}
				}
			}
			for _, pdb := range objs.ofKind("PodDisruptionBudget") {
				pdb := as[policyv1.PodDisruptionBudget](t, pdb)
				sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
					t.Errorf("PodDisruptionBudget selector %v does not select the webhook's pods", pdb.Spec.Selector)
				}
			}
			if len(objs.ofKind("PodDisruptionBudget")) != 1 {
				t.Errorf("want one PodDisruptionBudget for %d replicas, got %d", *deploy.Spec.Replicas, len(objs.ofKind("PodDisruptionBudget")))
			}
			for _, ns := range []string{in.namespace, "kube-system"} {
				if !slices.Contains(strings.Split(args["excluded-namespaces"], ","), ns) {
					t.Errorf("--excluded-namespaces=%s lacks %s", args["excluded-namespaces"], ns)
				}
			}
			if in.policyMode {
				checkParamsAreFlags(t, objs, args)
				// The injection's bindings keep away exactly the namespaces the manager never binds in: a pod
				// injected there would have an elector refused its Lease for ever.
				for _, kind := range []string{"MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicyBinding"} {
					for _, u := range objs.ofKind(kind) {
						if kind == "ValidatingAdmissionPolicyBinding" && !strings.Contains(u.GetName(), "-injection") {
							continue
						}
						sel := &metav1.LabelSelector{}
						if m, ok, _ := unstructured.NestedMap(u.Object, "spec", "matchResources", "namespaceSelector"); ok {
							if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, sel); err != nil {
								t.Fatal(err)
							}
						}
						for _, ns := range strings.Split(args["excluded-namespaces"], ",") {
							if !excludes(sel, ns) {
								t.Errorf("--excluded-namespaces names %s, which %s %s's namespaceSelector lets through", ns, kind, u.GetName())
							}
						}
					}
				}
				// Nothing calls the manager: no webhook configuration, no admission Service, no certificate.
				for _, kind := range []string{"MutatingWebhookConfiguration", "Certificate", "Issuer", "Secret"} {
					if n := len(objs.ofKind(kind)); n != 0 {
						t.Errorf("policy mode renders %d %s", n, kind)
					}
				}
				for _, svc := range objs.ofKind("Service") {
					if svc.GetName() == deploy.Name {
						t.Errorf("policy mode renders the admission Service %s", svc.GetName())
					}
				}
				return
			}

			// The admission Service is named like the Deployment (with monitoring, a metrics Service joins it).
			svc := as[corev1.Service](t, objs.one(t, "Service", deploy.Name))
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.String() != "webhook" {
				t.Errorf("Service %s ports %+v, want 443 -> webhook", svc.Name, svc.Spec.Ports)
			}
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
				t.Errorf("Service selector %v does not select the webhook's pods %v", svc.Spec.Selector, pod.Labels)
			}

			// The webhooks call the Service on the paths the server registers, and never see the webhook's own
			// namespace (its pods must start while it is down).
			mwc := as[admissionregistrationv1.MutatingWebhookConfiguration](t, objs.one(t, "MutatingWebhookConfiguration", ""))
			wantPaths := []string{webhook.PathOptIn, webhook.PathEnforced}
			if len(mwc.Webhooks) != len(wantPaths) {
				t.Fatalf("want %d webhooks, got %d", len(wantPaths), len(mwc.Webhooks))
			}
			for i, wh := range mwc.Webhooks {
				s := wh.ClientConfig.Service
				if s == nil || s.Name != svc.Name || s.Namespace != in.namespace || s.Port == nil || *s.Port != 443 || s.Path == nil || *s.Path != wantPaths[i] {
					t.Errorf("webhook %s calls %+v, want Service %s/%s port 443 path %s", wh.Name, s, in.namespace, svc.Name, wantPaths[i])
				}
				if !excludes(wh.NamespaceSelector, in.namespace) || !excludes(wh.NamespaceSelector, "kube-system") {
					t.Errorf("webhook %s namespaceSelector %v does not keep %s and kube-system out", wh.Name, wh.NamespaceSelector, in.namespace)
				}
				// The handler refuses exactly the namespaces the configuration keeps away (forged requests).
				for _, ns := range strings.Split(args["excluded-namespaces"], ",") {
					if !excludes(wh.NamespaceSelector, ns) {
						t.Errorf("--excluded-namespaces names %s, which webhook %s's namespaceSelector lets through", ns, wh.Name)
					}
				}
			}

			// TLS: the Secret the Deployment mounts is the one the certificate is written to, and the API server
			// trusts it.
			var secretName string
			for _, v := range pod.Spec.Volumes {
				if v.Secret != nil {
					secretName = v.Secret.SecretName
				}
			}
			svcDNS := svc.Name + "." + in.namespace + ".svc"
			if in.certManager {
				cert := objs.one(t, "Certificate", strings.TrimPrefix(mwc.Annotations["cert-manager.io/inject-ca-from"], in.namespace+"/"))
				spec, _ := cert.Object["spec"].(map[string]any)
				if spec["secretName"] != secretName {
					t.Errorf("Certificate %s writes Secret %v, the Deployment mounts %q", cert.GetName(), spec["secretName"], secretName)
				}
				names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				if !slices.Contains(names, svcDNS) || !slices.Contains(names, svcDNS+".cluster.local") {
					t.Errorf("Certificate %s dnsNames %v lack %s", cert.GetName(), names, svcDNS)
				}
				for _, wh := range mwc.Webhooks {
					if len(wh.ClientConfig.CABundle) != 0 {
						t.Errorf("webhook %s has a caBundle; cert-manager injects it", wh.Name)
					}
				}
				if len(objs.ofKind("Secret")) != 0 {
					t.Errorf("a Secret is rendered although cert-manager writes it")
				}
				return
			}
			if len(objs.ofKind("Certificate")) != 0 || len(objs.ofKind("Issuer")) != 0 {
				t.Errorf("cert-manager objects rendered with certManager.enabled=false")
			}
			if _, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
				t.Errorf("inject-ca-from annotation with certManager.enabled=false")
			}
			secret := as[corev1.Secret](t, objs.one(t, "Secret", secretName))
			for _, wh := range mwc.Webhooks {
				for _, name := range append([]string{svcDNS, svcDNS + ".cluster.local"}, in.extraDNSNames...) {
					if err := verifyServing(wh.ClientConfig.CABundle, secret.Data, name); err != nil {
						t.Errorf("webhook %s: the API server would refuse the certificate for %s: %v", wh.Name, name, err)
					}
				}
			}
		})
	}
}

// TestChartCertificatesAreNewEachRender documents the trade-off of generating certificates without `lookup`: every
// render (every upgrade) issues a new CA and serving certificate.
func TestChartCertificatesAreNewEachRender(t *testing.T) {
	r := release{name: defaultRelease, namespace: defaultNamespace, values: "certManager: {enabled: false}"}
	a := helmTemplate(t, r).one(t, "Secret", "")
	b := helmTemplate(t, r).one(t, "Secret", "")
	if fmt.Sprint(a.Object["data"]) == fmt.Sprint(b.Object["data"]) {
		t.Errorf("two renders produced the same certificate; docs/install.md says each upgrade rotates it")
	}
}

// parseArgs turns --name=value arguments into a map; anything else fails the test.
func parseArgs(tb testing.TB, args []string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			tb.Fatalf("argument %q: want --name=value", a)
		}
		if _, dup := out[name]; dup {
			tb.Fatalf("argument --%s given twice", name)
		}
		out[name] = value
	}
	return out
}

// checkPolicies: the five ValidatingAdmissionPolicies are rendered, each with a binding that denies, and they
// recognise the webhook by its ServiceAccount's username and bind only the elector ClusterRole.
func checkPolicies(t *testing.T, objs objects, webhookUser, electorRole string) {
	t.Helper()
	policies := map[string]*admissionregistrationv1.ValidatingAdmissionPolicy{}
	for _, u := range objs.ofKind("ValidatingAdmissionPolicy") {
		policies[u.GetName()] = as[admissionregistrationv1.ValidatingAdmissionPolicy](t, u)
	}
	for _, suffix := range []string{"-webhook-pods", "-webhook-rolebindings", "-webhook-roles", "-elector-leases", "-pod-labels"} {
		found := false
		for name, p := range policies {
			if strings.HasSuffix(name, suffix) {
				found = true
				if *p.Spec.FailurePolicy != admissionregistrationv1.Fail {
					t.Errorf("policy %s: failurePolicy %s, want Fail", name, *p.Spec.FailurePolicy)
				}
			}
		}
		if !found {
			t.Errorf("no ValidatingAdmissionPolicy *%s rendered", suffix)
		}
	}
	bound := map[string]bool{}
	for _, u := range objs.ofKind("ValidatingAdmissionPolicyBinding") {
		b := as[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, u)
		if slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
			bound[b.Spec.PolicyName] = true
		}
	}
	for name, p := range policies {
		if !bound[name] {
			t.Errorf("policy %s has no binding with validationActions [Deny]", name)
		}
		text := toYAML(p.Spec)
		if strings.Contains(text, "system:serviceaccount:") && !strings.Contains(text, "'"+webhookUser+"'") {
			t.Errorf("policy %s names a webhook user other than %s:\n%s", name, webhookUser, text)
		}
		if strings.HasSuffix(name, "-webhook-rolebindings") && !strings.Contains(text, "object.roleRef.name == '"+electorRole+"'") {
			t.Errorf("policy %s does not limit bindings to ClusterRole %s", name, electorRole)
		}
	}
}

// checkPoliciesExclude: the policies on the webhook's RoleBindings and Roles refuse exactly the namespaces the
// handler refuses (--excluded-namespaces), so the webhook's token cannot bind anything where its handler would not.
func checkPoliciesExclude(t *testing.T, objs objects, excluded []string) {
	t.Helper()
	want := "!(request.namespace in ['" + strings.Join(excluded, "', '") + "'])"
	for _, u := range objs.ofKind("ValidatingAdmissionPolicy") {
		if !strings.HasSuffix(u.GetName(), "-webhook-rolebindings") && !strings.HasSuffix(u.GetName(), "-webhook-roles") {
			continue
		}
		p := as[admissionregistrationv1.ValidatingAdmissionPolicy](t, u)
		if !slices.ContainsFunc(p.Spec.Validations, func(v admissionregistrationv1.Validation) bool { return v.Expression == want }) {
			t.Errorf("policy %s does not refuse the excluded namespaces %v with %q", p.Name, excluded, want)
		}
	}
}

// checkParamsAreFlags: in admission mode policy the manager is given the parameter ConfigMap's values as its
// elector flags, which it checks at start (inject.Config.Validate): values the policies would refuse every
// annotated pod for stop the manager's rollout, as they stop the webhook's in webhook mode.
func checkParamsAreFlags(t *testing.T, objs objects, args map[string]string) {
	t.Helper()
	var params *corev1.ConfigMap
	for _, u := range objs.ofKind("ConfigMap") {
		if strings.HasSuffix(u.GetName(), "-injection") {
			params = as[corev1.ConfigMap](t, u)
		}
	}
	if params == nil {
		t.Fatal("no parameter ConfigMap (<name>-injection) rendered in admission mode policy")
	}
	for key, flag := range map[string]string{
		admissionpolicy.ParamImage: "elector-image", admissionpolicy.ParamLeaseDuration: "lease-duration",
		admissionpolicy.ParamRenewDeadline: "renew-deadline", admissionpolicy.ParamRetryPeriod: "retry-period",
		admissionpolicy.ParamPort: "elector-port", admissionpolicy.ParamTraffic: "traffic",
		admissionpolicy.ParamCPURequest: "elector-cpu-request", admissionpolicy.ParamCPULimit: "elector-cpu-limit",
		admissionpolicy.ParamMemoryRequest: "elector-memory-request", admissionpolicy.ParamMemoryLimit: "elector-memory-limit",
	} {
		if args[flag] != params.Data[key] {
			t.Errorf("--%s=%q, the parameter ConfigMap's %s is %q: the manager must check the values the policies inject with",
				flag, args[flag], key, params.Data[key])
		}
	}
}

// grants reports whether rules allow every verb on a resource of a group.
func grants(rules []rbacv1.PolicyRule, group, resource string, verbs ...string) bool {
	for _, v := range verbs {
		if !slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, v)
		}) {
			return false
		}
	}
	return true
}

// excludes reports whether a namespace selector refuses a namespace (by its kubernetes.io/metadata.name label).
func excludes(sel *metav1.LabelSelector, namespace string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return !s.Matches(labels.Set{"kubernetes.io/metadata.name": namespace, "leader-election/enforce": "true"})
}

// verifyServing checks that the Secret's certificate and key belong together and that the certificate is valid
// for name under the CA bundle, as the API server checks it.
func verifyServing(caBundle []byte, data map[string][]byte, name string) error {
	if _, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]); err != nil {
		return fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		return fmt.Errorf("caBundle holds no PEM certificate")
	}
	block, _ := pem.Decode(data[corev1.TLSCertKey])
	if block == nil {
		return fmt.Errorf("tls.crt holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// TestInstallDocListsEveryValue: docs/install.md has a row for every value in values.yaml (a value or one of its
// parents, such as `resources`), and every value it documents exists.
func TestInstallDocListsEveryValue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z0-9.]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	if len(documented) == 0 {
		t.Fatal("docs/install.md has no table of values")
	}
	known := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		known[prefix] = true
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			for p := prefix; ; {
				if documented[p] {
					return
				}
				i := strings.LastIndex(p, ".")
				if i < 0 {
					t.Errorf("value %s is not documented in docs/install.md", prefix)
					return
				}
				p = p[:i]
			}
		}
		for k, child := range m {
			walk(strings.TrimPrefix(prefix+"."+k, "."), child)
		}
	}
	walk("", values)
	for d := range documented {
		if !known[d] {
			t.Errorf("docs/install.md documents %s, which values.yaml does not have", d)
		}
	}
}

// TestChartCertManagerIssuer: by default the serving certificate comes from the chart's own CA chain (self-signed
// Issuer -> CA Certificate -> CA Issuer); certManager.issuerRef replaces the chain with an existing issuer.
func TestChartCertManagerIssuer(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		// wantIssuers are the Issuers rendered; wantRef is the serving certificate's issuerRef (kind/name).
		wantIssuers []string
		wantRef     string
	}{
		{"self-signed CA chain", "", []string{"leader-election-ca-issuer", "leader-election-selfsigned-issuer"}, "Issuer/leader-election-ca-issuer"},
		{"existing ClusterIssuer", "certManager: {issuerRef: {name: corp-ca, kind: ClusterIssuer}}", nil, "ClusterIssuer/corp-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, release{name: defaultRelease, namespace: defaultNamespace, values: tc.values})
			var issuers []string
			for _, u := range objs.ofKind("Issuer") {
				issuers = append(issuers, u.GetName())
			}
			slices.Sort(issuers)
			if !slices.Equal(issuers, tc.wantIssuers) {
				t.Errorf("Issuers %v, want %v", issuers, tc.wantIssuers)
			}
			cert := objs.one(t, "Certificate", "leader-election-serving-cert")
			kind, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
			name, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
			if got := kind + "/" + name; got != tc.wantRef {
				t.Errorf("serving Certificate issuerRef %s, want %s", got, tc.wantRef)
			}
			if tc.wantIssuers != nil {
				ca := objs.one(t, "Certificate", "leader-election-ca")
				if isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA"); !isCA {
					t.Errorf("Certificate %s is not a CA", ca.GetName())
				}
				caSecret, _, _ := unstructured.NestedString(ca.Object, "spec", "secretName")
				issuerSecret, _, _ := unstructured.NestedString(objs.one(t, "Issuer", "leader-election-ca-issuer").Object, "spec", "ca", "secretName")
				if caSecret != issuerSecret {
					t.Errorf("the CA Issuer reads Secret %q, the CA Certificate writes %q", issuerSecret, caSecret)
				}
			}
		})
	}
}
