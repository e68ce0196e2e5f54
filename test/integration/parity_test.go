package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/leader-election/leader-election/pkg/admissionpolicy"
	"github.com/leader-election/leader-election/pkg/contract"
	"github.com/leader-election/leader-election/pkg/inject"
	"github.com/leader-election/leader-election/test/controlplane"
)

// policyDifferences lists the golden cases whose pod (or refusal message) differs between admission modes, and
// why; docs/policy-mode.md has the same table. A case listed here must differ, and a case that differs must be
// listed: a new golden case fails TestPolicyParity until both modes agree or the difference is explained here.
var policyDifferences = map[string]string{
	"health-bad-values": "several refusals are joined by \"; \", not line breaks: the API server allows no line break in a policy's message",
}

// parityConfig is the configuration both modes inject with: pkg/inject's golden tests' own.
func parityConfig(container bool) inject.Config {
	cfg := inject.DefaultConfig("v0.1.0", "leader-election/elector:v0.1.0")
	if container {
		cfg.Sidecar = inject.SidecarContainer
	}
	return cfg
}

// Namespaces of the parity test, by the label parity-mode: the policies' bindings are narrowed to them.
const (
	parityLabel     = "parity-mode"
	parityWebhook   = "webhook"   // no policy: the API server's own admission and defaulting only
	parityContainer = "container" // the policies with the regular-container configuration
)

// TestPolicyParity runs every golden case of pkg/inject through the admission policies of config/injection-policies on the
// real API server (a server-side dry run: admission policies mutate and validate all the same) and through
// inject.Mutate as the webhook runs it, on the pod the API server hands to admission; both pods are then compared
// as the API server stores them. Refusals must be refusals in both modes.
func TestPolicyParity(t *testing.T) {
	env := controlplane.Start(t)
	cs := env.Clientset

	installPolicyMode(t, cs)
	nsPolicy := newNamespace(t, cs, nil)
	nsEnforced := newNamespace(t, cs, map[string]string{contract.LabelEnforce: "true"})
	nsContainer := newNamespace(t, cs, map[string]string{parityLabel: parityContainer})
	nsWebhook := newNamespace(t, cs, map[string]string{parityLabel: parityWebhook})
	nsWebhookEnforced := newNamespace(t, cs, map[string]string{parityLabel: parityWebhook, contract.LabelEnforce: "true"})
	waitInjecting(t, cs, nsPolicy)
	waitInjecting(t, cs, nsContainer)
	waitInjecting(t, cs, nsEnforced)

	inputs, err := filepath.Glob(filepath.Join(controlplane.RepoRoot(), "pkg", "inject", "testdata", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 30 {
		t.Fatalf("found %d golden cases, want at least 30", len(inputs))
	}
	var tally parityTally
	seen := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			enforced := strings.HasPrefix(name, "enforced-")
			container := strings.HasPrefix(name, "container-")
			policyNS, webhookNS := nsPolicy, nsWebhook
			switch {
			case enforced:
				policyNS, webhookNS = nsEnforced, nsWebhookEnforced
			case container:
				policyNS = nsContainer
			}
			reason, isListed := policyDifferences[name]
			outcome, differences := compareModes(t, cs, readGoldenPod(t, in), policyNS, webhookNS, parityConfig(container), enforced)
			switch {
			case len(differences) == 0 && isListed:
				t.Errorf("listed in policyDifferences (%s) but both modes agree: remove it from the table and docs/policy-mode.md", reason)
			case len(differences) > 0 && !isListed:
				t.Errorf("the modes differ; make them agree or list the case in policyDifferences and docs/policy-mode.md with the reason:\n%s",
					strings.Join(differences, "\n"))
				outcome = differentOutcome
			case len(differences) > 0:
				outcome = listedDifference
				t.Logf("listed difference (%s):\n%s", reason, strings.Join(differences, "\n"))
			}
			tally[outcome]++
		})
	}
	for name := range policyDifferences {
		if !seen[name] {
			t.Errorf("policyDifferences lists %q, which is not a golden case", name)
		}
	}
	t.Logf("parity over %d golden cases: %d identical, %d listed differences, %d refused in both with the same message, %d differing",
		len(inputs), tally[identicalPods], tally[listedDifference], tally[refusedAlike], tally[differentOutcome])

	// Every annotation's accepted and refused values beyond the golden cases: the same pod or the same refusal.
	var annotationTally parityTally
	cases := annotationCases()
	for _, tc := range cases {
		t.Run("annotations/"+tc.name, func(t *testing.T) {
			base := tc.base
			if base == "" {
				base = "plain"
			}
			pod := readGoldenPod(t, filepath.Join(controlplane.RepoRoot(), "pkg", "inject", "testdata", base+".in.yaml"))
			for k, v := range tc.annotations {
				pod.Annotations[k] = v
			}
			outcome, differences := compareModes(t, cs, pod, nsPolicy, nsWebhook, parityConfig(false), false)
			switch {
			case len(differences) > 0 && tc.difference == "":
				t.Errorf("the modes differ:\n%s", strings.Join(differences, "\n"))
				outcome = differentOutcome
			case len(differences) == 0 && tc.difference != "":
				t.Errorf("listed as a difference (%s) but both modes agree", tc.difference)
			case len(differences) > 0:
				outcome = listedDifference
				t.Logf("listed difference (%s):\n%s", tc.difference, strings.Join(differences, "\n"))
			}
			annotationTally[outcome]++
			if refused := outcome == refusedAlike || (outcome == listedDifference && policyRefused(t, cs, pod, nsPolicy)); outcome != differentOutcome && refused != tc.refused {
				t.Errorf("refused %v in both modes, want %v", refused, tc.refused)
			}
		})
	}
	// A large pod: the policies' CEL stays within the API server's cost budget, and the free volume names are found.
	t.Run("large-pod", func(t *testing.T) {
		pod := readGoldenPod(t, filepath.Join(controlplane.RepoRoot(), "pkg", "inject", "testdata", "plain.in.yaml"))
		app := pod.Spec.Containers[0]
		pod.Spec.Containers = nil
		for i := range 60 {
			c := app.DeepCopy()
			c.Name = fmt.Sprintf("app-%d", i)
			c.Ports = []corev1.ContainerPort{{Name: fmt.Sprintf("p-%d", i), ContainerPort: int32(10000 + i)}}
			c.Env = []corev1.EnvVar{{Name: "N", Value: fmt.Sprint(i)}}
			pod.Spec.Containers = append(pod.Spec.Containers, *c)
			name := "leader-election-token"
			if i > 0 {
				name = fmt.Sprintf("leader-election-token-%d", i+1)
			}
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}
		pod.Spec.AutomountServiceAccountToken = ptr.To(false)
		outcome, differences := compareModes(t, cs, pod, nsPolicy, nsWebhook, parityConfig(false), false)
		if outcome != identicalPods || len(differences) > 0 {
			t.Errorf("a pod of 60 containers and 60 taken volume names: outcome %d, differences:\n%s", outcome, strings.Join(differences, "\n"))
		}
	})
	t.Logf("parity over %d annotation cases: %d identical, %d listed differences, %d refused in both with the same message, %d differing",
		len(cases), annotationTally[identicalPods], annotationTally[listedDifference], annotationTally[refusedAlike], annotationTally[differentOutcome])

	// readinessProbes the golden cases do not hold: what the check's JSON must escape, and what the elector
	// cannot run, by default (not gated, the gate saying why) and asked for by annotation (refused).
	probeTally := map[int]int{}
	probes := probeCases()
	for _, tc := range probes {
		t.Run("probes/"+tc.name, func(t *testing.T) {
			pod := readGoldenPod(t, filepath.Join(controlplane.RepoRoot(), "pkg", "inject", "testdata", "plain.in.yaml"))
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
			pod.Spec.Containers[0].ReadinessProbe = &tc.probe
			for k, v := range tc.annotations {
				pod.Annotations[k] = v
			}
			outcome, differences := compareModes(t, cs, pod, nsPolicy, nsWebhook, parityConfig(false), false)
			if len(differences) > 0 {
				t.Errorf("the modes differ:\n%s", strings.Join(differences, "\n"))
				outcome = differentOutcome
			}
			probeTally[outcome]++
		})
	}
	t.Logf("parity over %d readinessProbe cases: %d identical, %d refused in both with the same message, %d differing",
		len(probes), probeTally[identicalPods], probeTally[refusedAlike], probeTally[differentOutcome])
}

// probeCase is a readinessProbe of the plain golden pod's container (which declares port http=8080), with
// annotations.
type probeCase struct {
	name        string
	probe       corev1.Probe
	annotations map[string]string
}

func probeCases() []probeCase {
	httpGet := func(path, host string, headers ...corev1.HTTPHeader) corev1.Probe {
		return corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Host: host, Port: intstr.FromString("http"), HTTPHeaders: headers}}}
	}
	grpc := func(service string) corev1.Probe {
		return corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090, Service: &service}}, InitialDelaySeconds: 4}
	}
	tcp := func(host string) corev1.Probe {
		return corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5432), Host: host}}, PeriodSeconds: 7}
	}
	readiness := map[string]string{contract.AnnotationHealthCheck: contract.HealthCheckReadiness}
	return []probeCase{
		{"header-escaped", httpGet("/r?a=1&b=<2>", "", corev1.HTTPHeader{Name: "X-A", Value: "a\t\"b\" \\ &<c>"}), nil},
		{"header-control-character", httpGet("/", "", corev1.HTTPHeader{Name: "X-A", Value: "ok"}, corev1.HTTPHeader{Name: "X-B", Value: "a\x01b"}), nil},
		{"header-control-character-asked", httpGet("/", "", corev1.HTTPHeader{Name: "X-B", Value: "a\x01b"}), readiness},
		{"path-query-unvalidated", httpGet("/r?x=%zz", "127.0.0.1"), nil},
		{"path-bad-escape", httpGet("/a%zz", ""), nil},
		{"path-fragment-asked", httpGet("/a#frag", ""), readiness},
		{"grpc-service-escaped", grpc("svc\"\\\n\x02\u2028"), nil},
		{"grpc-no-service", corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}, nil},
		{"tcp-host-loopback", tcp("localhost"), nil},
		{"tcp-host-outside", tcp("198.18.0.1"), nil},
		{"tcp-host-outside-asked", tcp("198.18.0.1"), readiness},
		{"exec-two-args", corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/\"ready\""}}}}, nil},
	}
}

// policyRefused reports whether the policies refuse pod in ns.
func policyRefused(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, ns string) bool {
	_, err := dryRunCreate(t.Context(), t, cs, ns, pod)
	return err != nil
}

// Outcomes of a case run in both modes.
const (
	identicalPods = iota
	listedDifference
	refusedAlike
	differentOutcome
)

// parityTally counts the cases by outcome.
type parityTally [4]int

// compareModes creates pod in both modes and lists how the results differ: the stored pods field by field, or the
// refusals' messages. The policies' own pod, sent again, must be left as it is (idempotence under reinvocation).
func compareModes(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, policyNS, webhookNS string, cfg inject.Config, enforced bool) (int, []string) {
	t.Helper()
	ctx := t.Context()
	viaPolicy, policyErr := dryRunCreate(ctx, t, cs, policyNS, pod)
	viaWebhook, webhookErr := webhookMode(ctx, t, cs, webhookNS, pod, cfg, enforced)
	switch {
	case policyErr != nil && webhookErr != nil:
		if policyErr.Error() == webhookErr.Error() {
			return refusedAlike, nil
		}
		return refusedAlike, []string{fmt.Sprintf("refusal messages differ:\n  webhook: %s\n  policy:  %s", webhookErr, policyErr)}
	case policyErr != nil:
		return differentOutcome, []string{fmt.Sprintf("refused in policy mode only: %v", policyErr)}
	case webhookErr != nil:
		return differentOutcome, []string{fmt.Sprintf("refused in webhook mode only: %v", webhookErr)}
	}
	// A later webhook's change makes the API server run the policies again on their own pod: they must
	// recognise it and leave it as it is.
	again, err := dryRunCreate(ctx, t, cs, policyNS, viaPolicy)
	if err != nil {
		t.Errorf("the policies refuse their own pod sent again: %v", err)
	} else if d := comparePods("", toMap(t, normalizePod(viaPolicy)), toMap(t, normalizePod(again))); len(d) > 0 {
		t.Errorf("the policies change their own pod sent again:\n%s", strings.Join(d, "\n"))
	}
	// While `helm upgrade` switches admission modes both are installed, and the webhook of the same version sees
	// the pods the policies injected first: it must accept them as they are (docs/policy-mode.md, "Switching
	// modes"), never inject twice.
	if out, changed, err := inject.Mutate(viaPolicy, cfg, enforced); err != nil {
		t.Errorf("the webhook refuses the policies' pod: %v", err)
	} else if changed {
		t.Errorf("the webhook changes the policies' pod:\n%s", strings.Join(comparePods("", toMap(t, normalizePod(viaPolicy)), toMap(t, normalizePod(out))), "\n"))
	}
	// And the other way round: the policies accept the webhook's pod as it is (reinvoked after the webhook, or
	// a pod the webhook injected created again in policy mode).
	if again, err := dryRunCreate(ctx, t, cs, policyNS, viaWebhook); err != nil {
		t.Errorf("the policies refuse the webhook's pod: %v", err)
	} else if d := comparePods("", toMap(t, normalizePod(viaWebhook)), toMap(t, normalizePod(again))); len(d) > 0 {
		t.Errorf("the policies change the webhook's pod:\n%s", strings.Join(d, "\n"))
	}
	return identicalPods, comparePods("", toMap(t, normalizePod(viaWebhook)), toMap(t, normalizePod(viaPolicy)))
}

// annotationCase is one set of annotations on a golden case's pod (base, "plain" when empty), whether pkg/inject
// refuses it, and why the modes differ where they do (docs/policy-mode.md).
type annotationCase struct {
	name        string
	annotations map[string]string
	refused     bool
	difference  string
	base        string
}

// annotationCases are every annotation's edge values: Go's duration and quantity formats the policies must print
// as the webhook does, and every kind of bad value, alone and together.
func annotationCases() []annotationCase {
	a := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const (
		lease, renew, retry = contract.AnnotationLeaseDuration, contract.AnnotationRenewDeadline, contract.AnnotationRetryPeriod
		hc, thr             = contract.AnnotationHealthCheck, contract.AnnotationHealthFailureThreshold
	)
	return []annotationCase{
		{"minutes", a(lease, "90s", renew, "1m", retry, "1500ms"), false, "", ""},
		{"bounds", a(lease, "5m", renew, "4m58s", retry, "2s"), false, "", ""},
		{"shortest", a(lease, "3s", renew, "1s", retry, "250ms"), false, "", ""},
		{"fractions", a(lease, "4s", renew, "2s", retry, "1.005s"), false, "", ""},
		{"fraction-tens", a(lease, "4s", renew, "1.05s", retry, "0.5s"), false, "", ""},
		{"micro-units", a(lease, "4000ms", renew, "2000000us", retry, "500000µs"), false, "", ""},
		{"hour-units", a(lease, "0.05h", renew, "0.02h", retry, "1s"), false, "", ""},
		{"sub-millisecond", a(lease, "4s", renew, "2s", retry, "250500us"), false,
			"a duration finer than a millisecond is written into the elector's env as annotated (250500us), where the webhook prints it as Go does (250.5ms): CEL gives durations to the millisecond only; the elector parses both to the same duration", ""},
		{"sub-millisecond-order", a(lease, "4s", renew, "1000500us", retry, "1s"), false,
			"as sub-millisecond", ""},
		{"lease-nanosecond", a(lease, "4000000001ns"), true, "as sub-millisecond", ""},
		{"quantities", a(contract.AnnotationCPURequest, "0.005", contract.AnnotationCPULimit, "1", contract.AnnotationMemoryRequest, "16777216", contract.AnnotationMemoryLimit, "1.5Gi"), false, "", ""},
		{"port-signed", a(contract.AnnotationPort, "+9000"), false, "", ""},
		{"port-leading-zero", a(contract.AnnotationPort, "08080"), false, "", ""},
		{"mesh-istio-without-proxy", a(contract.AnnotationMesh, contract.MeshIstio), false, "", ""},
		{"readiness", a(contract.AnnotationTraffic, contract.TrafficReadiness), false, "", ""},
		{"image-digest", a(contract.AnnotationImage, "example/elector@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), false, "", ""},
		{"lease-name-dots", a(contract.AnnotationLeaseName, "a.b-c"), false, "", ""},
		{"enabled-yes", a(contract.AnnotationEnabled, "yes"), true, "", ""},
		{"lease-name-upper", a(contract.AnnotationLeaseName, "Web"), true, "", ""},
		{"lease-name-dash", a(contract.AnnotationLeaseName, "-"), true, "", ""},
		{"lease-name-long", a(contract.AnnotationLeaseName, strings.Repeat("a", 254)), true, "", ""},
		{"lease-name-long-upper", a(contract.AnnotationLeaseName, strings.Repeat("A", 254)), true, "", ""},
		{"duration-no-unit", a(lease, "15"), true, "", ""},
		{"duration-negative", a(lease, "-1s"), true, "", ""},
		{"duration-zero", a(retry, "0s"), true, "", ""},
		{"duration-word", a(renew, "soon"), true, "", ""},
		{"lease-fraction", a(lease, "15.5s"), true, "", ""},
		{"lease-too-long", a(lease, "301s", renew, "10s"), true, "", ""},
		{"lease-too-short", a(lease, "2s", renew, "1s", retry, "500ms"), true, "", ""},
		{"renew-not-below-lease", a(renew, "15s"), true, "", ""},
		{"renew-too-short", a(lease, "3s", renew, "500ms", retry, "250ms"), true, "", ""},
		{"retry-too-short", a(retry, "100ms"), true, "", ""},
		{"retry-not-below-renew", a(retry, "10s"), true, "", ""},
		{"margin", a(lease, "4s", renew, "3s", retry, "1s"), true, "", ""},
		{"port-zero", a(contract.AnnotationPort, "0"), true, "", ""},
		{"port-too-high", a(contract.AnnotationPort, "65536"), true, "", ""},
		{"port-name", a(contract.AnnotationPort, "http"), true, "", ""},
		{"port-exponent", a(contract.AnnotationPort, "1e3"), true, "", ""},
		{"traffic-case", a(contract.AnnotationTraffic, "Label"), true, "", ""},
		{"image-empty", a(contract.AnnotationImage, ""), true, "", ""},
		{"image-space", a(contract.AnnotationImage, "a b"), true, "", ""},
		{"image-no-break-space", a(contract.AnnotationImage, "example/elector:v1\u00a0"), true, "", ""},
		{"cpu-word", a(contract.AnnotationCPURequest, "abc"), true, "", ""},
		{"cpu-negative", a(contract.AnnotationCPURequest, "-1"), true, "", ""},
		{"cpu-zero", a(contract.AnnotationCPULimit, "0"), true, "", ""},
		{"memory-milli", a(contract.AnnotationMemoryRequest, "100m"), true, "", ""},
		{"memory-fraction", a(contract.AnnotationMemoryLimit, "1.5"), true, "", ""},
		{"cpu-limit-below-request", a(contract.AnnotationCPULimit, "5m"), true, "", ""},
		{"cpu-limit-below-request-decimal", a(contract.AnnotationCPULimit, "0.005"), true,
			"a quantity in a refusal is printed as annotated (0.005), where the webhook prints Kubernetes' canonical form (5m): CEL has no canonical form of a quantity", ""},
		{"memory-limit-below-request", a(contract.AnnotationMemoryRequest, "128Mi"), true, "", ""},
		{"mesh-other", a(contract.AnnotationMesh, "linkerd"), true, "", ""},
		{"pod-level-fits", a(contract.AnnotationMemoryRequest, "32Mi"), false, "", "pod-level-resources"},
		{"pod-level-limit-above-pod", a(contract.AnnotationCPULimit, "2"), true, "", "pod-level-resources"},
		{"pod-level-request-above-budget", a(contract.AnnotationCPURequest, "200m"), true,
			"the requests beyond a pod-level budget are refused by the API server's own validation of the pod, with its message: CEL cannot add up the containers' quantities", "pod-level-resources"},
		{"guaranteed-limit", a(contract.AnnotationMemoryLimit, "128Mi"), false, "", "guaranteed"},
		{"istio-mesh-none", a(contract.AnnotationMesh, contract.MeshNone), false, "", "istio-classic-sidecar"},
		{"handover-true", a(contract.AnnotationHandover, "true"), false, "", ""},
		{"handover-word", a(contract.AnnotationHandover, "yes"), true, "", ""},
		{"check-http-query", a(hc, "http://:8080/ready?a=1&b=<2>"), false, "", ""},
		{"check-https-localhost", a(hc, "https://localhost:8443/x", thr, "+05"), false, "", ""},
		{"check-tcp-ipv6-loopback", a(hc, "tcp://[::1]:5432"), false, "", ""},
		{"check-tcp-ipv4-loopback", a(hc, "tcp://127.0.0.2:5432"), false, "", ""},
		{"check-grpc-no-service", a(hc, "grpc://:9090"), false, "", ""},
		{"check-grpc-service-escaped", a(hc, "grpc://:9090/a\"b\\c\td"), false, "", ""},
		{"check-port-name", a(hc, "http://:http/x"), false, "", "health-http-readiness"},
		{"check-ipv4-mapped-loopback", a(hc, "tcp://[::ffff:127.0.0.1]:80"), true,
			"an IPv4-mapped IPv6 host is refused as outside the pod: the API server's CEL ip() refuses IPv4-mapped addresses, as it does in every IP field; write 127.0.0.1", ""},
		{"check-port-beyond-int32", a(hc, "tcp://:4294975392"), true, "", ""},
		{"check-port-int32", a(hc, "tcp://:2147483647"), true, "", ""},
		{"check-port-leading-zeros", a(hc, "tcp://:+000000000080"), false, "", ""},
		{"check-localhost-upper", a(hc, "tcp://LocalHost:80"), false, "", ""},
		{"check-no-scheme", a(hc, "8080"), true, "", ""},
		{"check-no-port", a(hc, "http://localhost/x"), true, "", ""},
		{"check-empty-port", a(hc, "tcp://localhost:"), true, "", ""},
		{"check-host-outside", a(hc, "tcp://198.18.0.1:80"), true, "", ""},
		{"check-tcp-path", a(hc, "tcp://:80/x"), true, "", ""},
		{"check-grpc-host", a(hc, "grpc://localhost:9090"), true, "", ""},
		{"check-grpc-bad-service", a(hc, "grpc://:9090/a?b"), true, "", ""},
		{"check-scheme", a(hc, "ftp://:21"), true, "", ""},
		{"check-port-zero", a(hc, "http://:0/"), true, "", ""},
		{"check-port-range-and-path", a(hc, "http://:70000//x/y"), true, "", ""},
		{"check-port-name-unknown", a(hc, "tcp://:nope"), true, "", ""},
		{"check-port-name-unknown-named", a(hc, "tcp://:nope"), true, "", "health-http-readiness"},
		{"check-bad-escape", a(hc, "http://:80/a%zz"), true, "", ""},
		{"check-none-with-container", a(hc, contract.HealthCheckNone, contract.AnnotationHealthContainer, "app"), true, "", ""},
		{"check-none-with-threshold", a(hc, contract.HealthCheckNone, thr, "2"), true, "", ""},
		{"check-readiness-without-probe", a(hc, contract.HealthCheckReadiness), true, "", ""},
		{"container-without-probe", a(contract.AnnotationHealthContainer, "app"), true, "", ""},
		{"container-explicit-check", a(contract.AnnotationHealthContainer, "app", hc, "tcp://:http"), false, "", "health-http-readiness"},
		{"threshold-zero", a(thr, "0"), true, "", "health-http-readiness"},
		{"threshold-high", a(thr, "101"), true, "", "health-http-readiness"},
		{"threshold-signed", a(thr, "+7"), false, "", "health-http-readiness"},
		{"threshold-without-check", a(thr, "2"), true, "", ""},
		{"threshold-exec-probe", a(thr, "2"), true, "", "health-exec-readiness"},
		{"tcp-probe-threshold", a(thr, "9"), false, "", "health-tcp-readiness"},
		{"grpc-probe-none", a(hc, contract.HealthCheckNone), false, "", "health-grpc-readiness"},
		{"several", a(contract.AnnotationPort, "0", contract.AnnotationTraffic, "x", lease, "x"), true,
			"several refusals are joined by \"; \", not line breaks: the API server allows no line break in a policy's message", ""},
	}
}

// installPolicyMode installs config/injection-policies's policies, bindings and parameters, with the bindings narrowed
// away from the namespaces labelled parity-mode, and a second set of bindings for the regular-container
// configuration in the namespaces labelled parity-mode=container.
func installPolicyMode(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: admissionpolicy.DefaultNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, file := range []string{"params.yaml", "injection_policies.yaml", "bindings.yaml"} {
		data, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), admissionpolicy.ConfigDir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			objs = append(objs, obj)
		}
	}
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			if err == nil {
				c := o.DeepCopy()
				c.Name = containerParams
				c.Data = admissionpolicy.Params(parityConfig(true))
				_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, c, metav1.CreateOptions{})
			}
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			_, err = cs.AdmissionregistrationV1().MutatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
			c := o.DeepCopy()
			narrow(&o.Name, o.Spec.ParamRef, o.Spec.MatchResources, false)
			narrow(&c.Name, c.Spec.ParamRef, c.Spec.MatchResources, true)
			if _, err = cs.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{}); err == nil {
				_, err = cs.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Create(ctx, c, metav1.CreateOptions{})
			}
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			c := o.DeepCopy()
			narrow(&o.Name, o.Spec.ParamRef, o.Spec.MatchResources, false)
			narrow(&c.Name, c.Spec.ParamRef, c.Spec.MatchResources, true)
			if _, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{}); err == nil {
				_, err = cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, c, metav1.CreateOptions{})
			}
		default:
			t.Fatalf("config/injection-policies holds an unexpected %T", obj)
		}
		if err != nil {
			t.Fatalf("installing %T: %v", obj, err)
		}
	}
}

// containerParams is the parameter ConfigMap of the regular-container configuration.
const containerParams = admissionpolicy.ParamsName + "-container"

// narrow keeps a binding away from the namespaces labelled parity-mode or, for the container copy, renames it and
// points it at those labelled parity-mode=container, with the regular-container parameters.
func narrow(name *string, ref *admissionregistrationv1.ParamRef, match *admissionregistrationv1.MatchResources, container bool) {
	sel := match.NamespaceSelector
	if !container {
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: parityLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{parityWebhook, parityContainer}})
		return
	}
	*name += "-container"
	if ref != nil { // the guards take no parameters
		ref.Name = containerParams
	}
	sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
		Key: parityLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{parityContainer}})
}

// waitInjecting waits until the policies inject in ns: they take effect once the API server's informers saw them.
func waitInjecting(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	pod := annotated("probe")
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := dryRunCreate(ctx, t, cs, ns, pod)
		if err != nil {
			return false, nil
		}
		return out.Annotations[contract.AnnotationInjected] != "" && out.Labels[contract.LabelMember] == "true", nil
	})
	if err != nil {
		out, perr := dryRunCreate(t.Context(), t, cs, ns, pod)
		t.Fatalf("the policies do not inject in namespace %s within 30s: %v %v", ns, perr, describePod(out))
	}
}

func describePod(p *corev1.Pod) string {
	if p == nil {
		return "<nil>"
	}
	b, _ := yaml.Marshal(p)
	return string(b)
}

func readGoldenPod(t *testing.T, path string) *corev1.Pod {
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

// deniedBy strips the API server's framing from a refusal: what remains is the webhook's or the policy's message.
var deniedBy = regexp.MustCompile(`^(?s).*?(?:denied the request|denied request): `)

// dryRunCreate creates a copy of pod in ns as a server-side dry run (its ServiceAccount is created for real, as
// the ServiceAccount admission plugin requires it) and returns what the API server would store, or its refusal.
func dryRunCreate(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	p := pod.DeepCopy()
	p.Namespace = ns
	p.ResourceVersion = ""
	p.Status = corev1.PodStatus{}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	out, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		// One policy refuses a refused pod, the guard, so the message does not depend on the order in which the
		// API server evaluates the policies (it reports the first denial).
		if m := refusingPolicy.FindStringSubmatch(err.Error()); m != nil && !strings.Contains(m[1], "-guard") {
			t.Errorf("pod %s refused by %s, want the guard alone to refuse: %v", pod.Name, m[1], err)
		}
		return nil, fmt.Errorf("%s", deniedBy.ReplaceAllString(err.Error(), ""))
	}
	return out, nil
}

// refusingPolicy finds the name of the ValidatingAdmissionPolicy the API server reports a refusal from.
var refusingPolicy = regexp.MustCompile(`ValidatingAdmissionPolicy '([^']+)' with binding`)

// webhookMode is what the webhook makes of pod: the API server's defaulting and its own admission plugins first (a
// dry run in a namespace the policies do not see), then the webhooks as config/webhook registers them (the opt-in
// one for an annotated pod, then the enforcing one in an enforcing namespace for a replica), then what the API
// server stores of their result.
func webhookMode(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod, cfg inject.Config, enforced bool) (*corev1.Pod, error) {
	t.Helper()
	admitted, err := dryRunCreate(ctx, t, cs, ns, pod)
	if err != nil {
		return nil, err
	}
	admitted.Name = pod.Name // the pod the webhook sees has no name yet when it has a generateName
	out := admitted
	if _, annotated := out.Annotations[contract.AnnotationEnabled]; annotated {
		if out, _, err = inject.Mutate(out, cfg, false); err != nil {
			return nil, err
		}
	}
	if enforced && workloadReplica(out) {
		if out, _, err = inject.Mutate(out, cfg, true); err != nil {
			return nil, err
		}
	}
	return dryRunCreate(ctx, t, cs, ns, out)
}

// workloadReplica is the enforcing webhook's match condition.
func workloadReplica(pod *corev1.Pod) bool {
	for _, r := range pod.OwnerReferences {
		if r.Controller != nil && *r.Controller && (r.Kind == "ReplicaSet" || r.Kind == "StatefulSet") {
			return true
		}
	}
	return false
}

// serviceAccountVolume is the name the ServiceAccount admission plugin gives its token volume, random per pod.
var serviceAccountVolume = regexp.MustCompile(`^kube-api-access-[a-z0-9]{5}$`)

// normalizePod drops what differs between any two creations of one pod (generated name, UID, timestamps, the
// random name of the ServiceAccount token volume) and the settings hash of leader-election/injected, which CEL
// cannot compute (docs/policy-mode.md).
func normalizePod(p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	p.Name, p.Namespace, p.UID, p.ResourceVersion = "", "", "", ""
	p.CreationTimestamp = metav1.Time{}
	p.ManagedFields = nil
	rename := func(name string) string {
		if serviceAccountVolume.MatchString(name) {
			return "kube-api-access-xxxxx"
		}
		return name
	}
	for i := range p.Spec.Volumes {
		p.Spec.Volumes[i].Name = rename(p.Spec.Volumes[i].Name)
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			for j := range list[i].VolumeMounts {
				list[i].VolumeMounts[j].Name = rename(list[i].VolumeMounts[j].Name)
			}
		}
	}
	if v, ok := p.Annotations[contract.AnnotationInjected]; ok {
		version, _, _ := strings.Cut(v, "/")
		p.Annotations[contract.AnnotationInjected] = version + "/<settings>"
	}
	return p
}

func toMap(t *testing.T, p *corev1.Pod) map[string]any {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// comparePods lists the leaves where the webhook's pod (a) and the policy's (b) differ, with their paths.
func comparePods(path string, a, b any) []string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: webhook %v, policy %v", path, a, b)}
		}
		keys := map[string]bool{}
		for k := range a {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var names []string
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		var out []string
		for _, k := range names {
			out = append(out, comparePods(path+"."+k, a[k], bm[k])...)
		}
		return out
	case []any:
		bl, ok := b.([]any)
		if !ok || len(bl) != len(a) {
			return []string{fmt.Sprintf("%s: webhook %s, policy %s", path, compact(a), compact(b))}
		}
		var out []string
		for i := range a {
			out = append(out, comparePods(fmt.Sprintf("%s[%d]", path, i), a[i], bl[i])...)
		}
		return out
	default:
		if !reflect.DeepEqual(a, b) {
			return []string{fmt.Sprintf("%s: webhook %v, policy %v", path, compact(a), compact(b))}
		}
		return nil
	}
}

func compact(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(b))
}
