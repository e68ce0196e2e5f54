package inject

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/contract"
)

// deploymentPod is a replica of Deployment "web" with the given annotations added to the opt-in.
func deploymentPod(annotations map[string]string) *corev1.Pod {
	ann := map[string]string{contract.AnnotationEnabled: "true"}
	for k, v := range annotations {
		ann[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-6b7c9d-", Namespace: "shop", Annotations: ann,
			Labels: map[string]string{"pod-template-hash": "6b7c9d"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6b7c9d", UID: "u1", Controller: ptrTo(true),
			}},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example/web:1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestRefusedAnnotations checks that every bad value is refused with a message naming the key, the value and
// what is accepted.
func TestRefusedAnnotations(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		wantAll     []string // substrings the error must contain
	}{
		{"enabled not a boolean", map[string]string{contract.AnnotationEnabled: "yes"},
			[]string{contract.AnnotationEnabled, `"yes"`, `"true" or "false"`}},
		{"enabled upper case", map[string]string{contract.AnnotationEnabled: "True"},
			[]string{contract.AnnotationEnabled, `"True"`}},
		{"lease name upper case", map[string]string{contract.AnnotationLeaseName: "Web"},
			[]string{contract.AnnotationLeaseName, `"Web"`, "DNS-1123 subdomain"}},
		{"lease name empty", map[string]string{contract.AnnotationLeaseName: ""},
			[]string{contract.AnnotationLeaseName, `""`, "DNS-1123 subdomain"}},
		{"lease name too long", map[string]string{contract.AnnotationLeaseName: strings.Repeat("a", 254)},
			[]string{contract.AnnotationLeaseName, "253"}},
		{"lease duration not a duration", map[string]string{contract.AnnotationLeaseDuration: "15"},
			[]string{contract.AnnotationLeaseDuration, `"15"`, "Go duration"}},
		{"lease duration negative", map[string]string{contract.AnnotationLeaseDuration: "-15s"},
			[]string{contract.AnnotationLeaseDuration, `"-15s"`, "positive"}},
		{"renew deadline zero", map[string]string{contract.AnnotationRenewDeadline: "0s"},
			[]string{contract.AnnotationRenewDeadline, `"0s"`, "positive"}},
		{"retry period garbage", map[string]string{contract.AnnotationRetryPeriod: "often"},
			[]string{contract.AnnotationRetryPeriod, `"often"`}},
		{"renew not shorter than lease", map[string]string{contract.AnnotationLeaseDuration: "10s"},
			[]string{contract.AnnotationLeaseDuration, "lease-duration (10s) must be longer than renew-deadline (10s)", "250ms <= retry-period < renew-deadline"}},
		{"retry not shorter than renew", map[string]string{contract.AnnotationRetryPeriod: "10s"},
			[]string{contract.AnnotationRetryPeriod, "renew-deadline (10s) must be longer than retry-period (10s)"}},
		{"lease duration fractional", map[string]string{contract.AnnotationLeaseDuration: "15500ms"},
			[]string{contract.AnnotationLeaseDuration, "whole number of seconds"}},
		{"margin the probe cannot see", map[string]string{contract.AnnotationLeaseDuration: "3s", contract.AnnotationRenewDeadline: "1900ms", contract.AnnotationRetryPeriod: "500ms"},
			[]string{contract.AnnotationLeaseDuration, contract.AnnotationRenewDeadline, "lease-duration (3s) must exceed renew-deadline (1.9s) by at least 2s", "readiness probe"}},
		{"the issue's 2s / 1.9s / 0.5s", map[string]string{contract.AnnotationLeaseDuration: "2s", contract.AnnotationRenewDeadline: "1900ms", contract.AnnotationRetryPeriod: "500ms"},
			[]string{contract.AnnotationLeaseDuration, "lease-duration (2s) must be between 3s and 5m0s"}},
		{"the old fast timings", map[string]string{contract.AnnotationLeaseDuration: "2s", contract.AnnotationRenewDeadline: "1500ms", contract.AnnotationRetryPeriod: "500ms"},
			[]string{contract.AnnotationLeaseDuration, "lease-duration (2s) must be between 3s and 5m0s"}},
		{"lease duration above 300s", map[string]string{contract.AnnotationLeaseDuration: "301s"},
			[]string{contract.AnnotationLeaseDuration, "lease-duration (5m1s) must be between 3s and 5m0s"}},
		{"retry period below 250ms", map[string]string{contract.AnnotationRetryPeriod: "100ms"},
			[]string{contract.AnnotationRetryPeriod, "retry-period (100ms) must be at least 250ms"}},
		{"renew deadline below 1s", map[string]string{contract.AnnotationLeaseDuration: "3s", contract.AnnotationRenewDeadline: "900ms", contract.AnnotationRetryPeriod: "500ms"},
			[]string{contract.AnnotationRenewDeadline, "renew-deadline (900ms) must be at least 1s"}},
		{"port zero", map[string]string{contract.AnnotationPort: "0"},
			[]string{contract.AnnotationPort, `"0"`, "1 to 65535"}},
		{"port too high", map[string]string{contract.AnnotationPort: "65536"},
			[]string{contract.AnnotationPort, `"65536"`, "1 to 65535"}},
		{"port not a number", map[string]string{contract.AnnotationPort: "http"},
			[]string{contract.AnnotationPort, `"http"`}},
		{"port used by the application", map[string]string{contract.AnnotationPort: "8080"},
			[]string{contract.AnnotationPort, `"8080"`, `container "app"`}},
		{"traffic unknown", map[string]string{contract.AnnotationTraffic: "dns"},
			[]string{contract.AnnotationTraffic, `"dns"`, `"label" or "readiness"`}},
		{"image empty", map[string]string{contract.AnnotationImage: ""},
			[]string{contract.AnnotationImage, `""`, "image reference"}},
		{"image with a space", map[string]string{contract.AnnotationImage: "a b"},
			[]string{contract.AnnotationImage, `"a b"`}},
		// The API server refuses an image with leading or trailing Unicode whitespace, naming a container the
		// user never wrote.
		{"image with a trailing no-break space", map[string]string{contract.AnnotationImage: "elector:v1\u00a0"},
			[]string{contract.AnnotationImage, `"elector:v1\u00a0"`, "image reference"}},
		{"image with a trailing carriage return", map[string]string{contract.AnnotationImage: "elector:v1\r"},
			[]string{contract.AnnotationImage, `"elector:v1\r"`, "image reference"}},
		{"cpu request garbage", map[string]string{contract.AnnotationCPURequest: "lots"},
			[]string{contract.AnnotationCPURequest, `"lots"`, "quantity"}},
		{"memory request negative", map[string]string{contract.AnnotationMemoryRequest: "-1Mi"},
			[]string{contract.AnnotationMemoryRequest, `"-1Mi"`, "positive"}},
		// Fractional bytes: the API server only warns, and the elector would get a tenth of a byte (100m meant 100Mi).
		{"memory request in millibytes", map[string]string{contract.AnnotationMemoryRequest: "100m"},
			[]string{contract.AnnotationMemoryRequest, `"100m"`, "whole number of bytes"}},
		{"memory limit with a fraction of a byte", map[string]string{contract.AnnotationMemoryLimit: "67108864.5"},
			[]string{contract.AnnotationMemoryLimit, `"67108864.5"`, "whole number of bytes"}},
		{"memory limit below request", map[string]string{contract.AnnotationMemoryLimit: "16Mi", contract.AnnotationMemoryRequest: "32Mi"},
			[]string{contract.AnnotationMemoryLimit, "16Mi is below memory request 32Mi"}},
		{"cpu limit garbage", map[string]string{contract.AnnotationCPULimit: "fast"},
			[]string{contract.AnnotationCPULimit, `"fast"`, "quantity"}},
		{"cpu limit zero", map[string]string{contract.AnnotationCPULimit: "0"},
			[]string{contract.AnnotationCPULimit, `"0"`, "positive"}},
		{"cpu limit below the default request", map[string]string{contract.AnnotationCPULimit: "5m"},
			[]string{contract.AnnotationCPULimit, contract.AnnotationCPURequest, "CPU limit 5m is below CPU request 10m"}},
		{"cpu limit below the annotated request", map[string]string{contract.AnnotationCPULimit: "50m", contract.AnnotationCPURequest: "200m"},
			[]string{contract.AnnotationCPULimit, contract.AnnotationCPURequest, "CPU limit 50m is below CPU request 200m"}},
		{"mesh unknown", map[string]string{contract.AnnotationMesh: "linkerd"},
			[]string{contract.AnnotationMesh, `"linkerd"`, `"istio" or "none"`}},
		{"mesh empty", map[string]string{contract.AnnotationMesh: ""},
			[]string{contract.AnnotationMesh, `""`}},
		{"health check unknown word", map[string]string{contract.AnnotationHealthCheck: "liveness"},
			[]string{contract.AnnotationHealthCheck, `"liveness"`, `"readiness", "none", or a check of the pod's own port`, "grpc://:9090[/service]"}},
		{"health check scheme unknown", map[string]string{contract.AnnotationHealthCheck: "ftp://:21"},
			[]string{contract.AnnotationHealthCheck, `"ftp://:21"`, `scheme "ftp"`}},
		{"health check without a port", map[string]string{contract.AnnotationHealthCheck: "http:///healthz"},
			[]string{contract.AnnotationHealthCheck, `"http:///healthz"`, "no port"}},
		{"health check port out of range", map[string]string{contract.AnnotationHealthCheck: "tcp://:70000"},
			[]string{contract.AnnotationHealthCheck, "tcpSocket.port: 70000"}},
		{"health check aimed outside the pod", map[string]string{contract.AnnotationHealthCheck: "http://10.0.0.1:8080/healthz"},
			[]string{contract.AnnotationHealthCheck, `host "10.0.0.1" is outside the pod`}},
		{"health check aimed at the metadata service", map[string]string{contract.AnnotationHealthCheck: "http://169.254.169.254:80/latest"},
			[]string{contract.AnnotationHealthCheck, `host "169.254.169.254" is outside the pod`}},
		{"health check by DNS name", map[string]string{contract.AnnotationHealthCheck: "tcp://db.shop.svc:5432"},
			[]string{contract.AnnotationHealthCheck, `host "db.shop.svc" is outside the pod`}},
		{"grpc check with a host", map[string]string{contract.AnnotationHealthCheck: "grpc://127.0.0.1:9090"},
			[]string{contract.AnnotationHealthCheck, "takes no host"}},
		{"tcp check with a path", map[string]string{contract.AnnotationHealthCheck: "tcp://:5432/db"},
			[]string{contract.AnnotationHealthCheck, "a tcp check has no path"}},
		{"grpc service with a slash", map[string]string{contract.AnnotationHealthCheck: "grpc://:9090/a/b"},
			[]string{contract.AnnotationHealthCheck, `"a/b" is not a gRPC service name`}},
		{"health check port name unknown", map[string]string{contract.AnnotationHealthCheck: "http://:web/healthz"},
			[]string{contract.AnnotationHealthCheck, `port "web" is not a port name of container "app"`}},
		{"health check readiness without any readinessProbe", map[string]string{contract.AnnotationHealthCheck: "readiness"},
			[]string{contract.AnnotationHealthCheck, `"readiness"`, "no regular container has a readinessProbe", "http://, tcp:// or grpc://"}},
		{"health container unknown", map[string]string{contract.AnnotationHealthContainer: "db"},
			[]string{contract.AnnotationHealthContainer, `"db"`, "one of the pod's regular containers: app"}},
		{"health container without a readinessProbe", map[string]string{contract.AnnotationHealthContainer: "app"},
			[]string{contract.AnnotationHealthContainer, `container "app" has no readinessProbe`}},
		{"failure threshold a duration", map[string]string{contract.AnnotationHealthFailureThreshold: "30s", contract.AnnotationHealthCheck: "tcp://:8080"},
			[]string{contract.AnnotationHealthFailureThreshold, `"30s"`, "from 1 to 100"}},
		{"failure threshold zero", map[string]string{contract.AnnotationHealthFailureThreshold: "0", contract.AnnotationHealthCheck: "tcp://:8080"},
			[]string{contract.AnnotationHealthFailureThreshold, `"0"`}},
		{"failure threshold with no check", map[string]string{contract.AnnotationHealthFailureThreshold: "2", contract.AnnotationHealthCheck: "none"},
			[]string{contract.AnnotationHealthFailureThreshold, `"2"`, "want it unset", `is "none"`}},
		{"failure threshold where nothing is checked", map[string]string{contract.AnnotationHealthFailureThreshold: "2"},
			[]string{contract.AnnotationHealthFailureThreshold, `"2"`, "want it only with a health check", "no regular container has a readinessProbe"}},
		{"handover not a boolean", map[string]string{contract.AnnotationHandover: "yes"},
			[]string{contract.AnnotationHandover, `"yes"`, `"true"`, `"false"`}},
		{"two bad values reported together", map[string]string{contract.AnnotationPort: "x", contract.AnnotationTraffic: "y"},
			[]string{contract.AnnotationPort, contract.AnnotationTraffic}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod(tt.annotations)
			out, changed, err := Mutate(pod, testConfig(), false)
			if err == nil {
				t.Fatalf("Mutate accepted %v", tt.annotations)
			}
			if changed || out != pod {
				t.Errorf("a refused pod must come back unchanged")
			}
			for _, want := range tt.wantAll {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestHealthCheckHandOver checks what each health setting gives the elector (the golden cases show whole pods).
func TestHealthCheckHandOver(t *testing.T) {
	withProbe := func(p *corev1.Probe, annotations map[string]string) *corev1.Pod {
		pod := deploymentPod(annotations)
		pod.Spec.Containers[0].Ports[0].Name = "http"
		pod.Spec.Containers[0].ReadinessProbe = p
		return pod
	}
	httpProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 2}
	for _, tt := range []struct {
		name      string
		pod       *corev1.Pod
		wantCheck string // ELECTOR_APP_CHECK, "" = absent
		wantGate  string
		wantPodIP bool
	}{
		{"readinessProbe by default, named port resolved, API defaults filled", withProbe(httpProbe, nil),
			`{"httpGet":{"path":"/ready","port":8080,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":2,"successThreshold":1,"failureThreshold":3}`,
			`gated: readinessProbe of container "app"`, true},
		{"failure threshold override", withProbe(httpProbe, map[string]string{contract.AnnotationHealthFailureThreshold: "1"}),
			`{"httpGet":{"path":"/ready","port":8080,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":2,"successThreshold":1,"failureThreshold":1}`,
			`gated: readinessProbe of container "app"`, true},
		{"none", withProbe(httpProbe, map[string]string{contract.AnnotationHealthCheck: "none"}), "", "not gated: leader-election/health-check is none", false},
		{"no readinessProbe", deploymentPod(nil), "", "not gated: no regular container has a readinessProbe", false},
		{"exec readinessProbe", withProbe(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}, nil),
			"", `not gated: container "app" has an exec readinessProbe, which the elector cannot run (set leader-election/health-check`, false},
		{"readinessProbe aimed outside the pod, by default", withProbe(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(5432), Host: "10.1.2.3"}}}, nil),
			"", `not gated: container "app" has a readinessProbe with tcpSocket.host "10.1.2.3", which the elector cannot run`, false},
		{"explicit check with a port name", withProbe(nil, map[string]string{contract.AnnotationHealthCheck: "https://localhost:http/live?full=1"}),
			`{"httpGet":{"path":"/live?full=1","port":8080,"host":"localhost","scheme":"HTTPS"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3}`,
			"gated: leader-election/health-check", true},
		{"explicit grpc check", withProbe(nil, map[string]string{contract.AnnotationHealthCheck: "grpc://:9090/ledger.v1.Ledger"}),
			`{"grpc":{"port":9090,"service":"ledger.v1.Ledger"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3}`,
			"gated: leader-election/health-check", true},
		{"explicit tcp check under Istio goes to loopback", withProbe(nil, map[string]string{contract.AnnotationHealthCheck: "tcp://:8080", contract.AnnotationMesh: contract.MeshIstio}),
			`{"tcpSocket":{"port":8080},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3}`,
			"gated: leader-election/health-check", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := Mutate(tt.pod, testConfig(), false)
			if err != nil {
				t.Fatal(err)
			}
			elector, _ := containerNamed(out, contract.ContainerName)
			env := map[string]corev1.EnvVar{}
			for _, e := range elector.Env {
				env[e.Name] = e
			}
			if got := env[contract.EnvAppCheck].Value; got != tt.wantCheck {
				t.Errorf("%s = %s\nwant %s", contract.EnvAppCheck, got, tt.wantCheck)
			}
			if tt.wantCheck != "" {
				if _, err := appcheck.Parse(tt.wantCheck); err != nil {
					t.Errorf("the elector would refuse the check: %v", err)
				}
			}
			if gate := out.Annotations[contract.AnnotationHealthGate]; !strings.HasPrefix(gate, tt.wantGate) {
				t.Errorf("%s = %q, want it to begin %q", contract.AnnotationHealthGate, gate, tt.wantGate)
			}
			if _, ok := env[contract.EnvPodIP]; ok != tt.wantPodIP {
				t.Errorf("%s present %v, want %v", contract.EnvPodIP, ok, tt.wantPodIP)
			}
			if env[contract.EnvHandover].Value != "true" {
				t.Errorf("%s = %q, want the default true", contract.EnvHandover, env[contract.EnvHandover].Value)
			}
		})
	}
}

// TestHealthSettingsChangeTheInjectedHash: a pod whose check differs is visibly a different injection.
func TestHealthSettingsChangeTheInjectedHash(t *testing.T) {
	hashes := map[string]string{}
	for _, ann := range []map[string]string{
		nil,
		{contract.AnnotationHealthCheck: "tcp://:8080"},
		{contract.AnnotationHealthCheck: "tcp://:8081"},
		{contract.AnnotationHealthCheck: "tcp://:8080", contract.AnnotationHealthFailureThreshold: "1"},
		{contract.AnnotationHandover: "false"},
	} {
		out, _, err := Mutate(deploymentPod(ann), testConfig(), false)
		if err != nil {
			t.Fatal(err)
		}
		h := out.Annotations[contract.AnnotationInjected]
		if other, seen := hashes[h]; seen {
			t.Errorf("%v and %s share the injected annotation %s", ann, other, h)
		}
		hashes[h] = fmt.Sprint(ann)
	}
}

// TestLeaseNameFromOwner covers every owner derivation documented in the README ("Which Lease").
func TestLeaseNameFromOwner(t *testing.T) {
	tests := []struct {
		name    string
		kind    string
		owner   string
		labels  map[string]string
		want    string
		wantErr []string
	}{
		{"deployment replica", "ReplicaSet", "web-6b7c9d", map[string]string{"pod-template-hash": "6b7c9d"}, "web", nil},
		{"deployment with dashes", "ReplicaSet", "my-web-app-6b7c9d", map[string]string{"pod-template-hash": "6b7c9d"}, "my-web-app", nil},
		{"replicaset not from a deployment", "ReplicaSet", "worker", nil, "worker", nil},
		{"hash label that is not the suffix", "ReplicaSet", "worker", map[string]string{"pod-template-hash": "abc"}, "worker", nil},
		{"argo rollout revision", "ReplicaSet", "checkout-7f9c5d8b4", map[string]string{"rollouts-pod-template-hash": "7f9c5d8b4"}, "checkout", nil},
		{"argo rollout canary revision shares the lease", "ReplicaSet", "checkout-5d4c3b2a1", map[string]string{"rollouts-pod-template-hash": "5d4c3b2a1"}, "checkout", nil},
		{"rollouts hash that is not the suffix", "ReplicaSet", "checkout", map[string]string{"rollouts-pod-template-hash": "abc"}, "checkout", nil},
		{"statefulset", "StatefulSet", "queue", nil, "queue", nil},
		{"daemonset", "DaemonSet", "node-agent", nil, "node-agent", nil},
		{"job refused", "Job", "nightly", nil, "", []string{contract.AnnotationLeaseName, `Job "nightly"`, "CronJob"}},
		{"cronjob run refused", "Job", "nightly-29415360", nil, "", []string{contract.AnnotationLeaseName, `Job "nightly-29415360"`, "jobTemplate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
				Labels:          tt.labels,
				OwnerReferences: []metav1.OwnerReference{{Kind: tt.kind, Name: tt.owner, Controller: ptrTo(true)}},
			}}
			got, err := leaseNameFromOwner(pod)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("leaseNameFromOwner = %q, want a refusal", got)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("leaseNameFromOwner = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestEnforcedNamespace(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		owned       bool
		wantChanged bool
		wantErr     string
	}{
		{"deployment replica without annotation takes part", nil, true, true, ""},
		{"deployment replica opting out is refused", map[string]string{contract.AnnotationEnabled: "false"}, true, false, "namespace policy leader-election/enforce"},
		{"bare pod without annotation is left alone", nil, false, false, ""},
		{"bare pod opting in with a lease name takes part", map[string]string{contract.AnnotationEnabled: "true", contract.AnnotationLeaseName: "x"}, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod(nil)
			pod.Annotations = tt.annotations
			if !tt.owned {
				pod.OwnerReferences = nil
			}
			_, changed, err := Mutate(pod, testConfig(), true)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || changed != tt.wantChanged {
				t.Errorf("changed = %v, err = %v; want changed = %v", changed, err, tt.wantChanged)
			}
		})
	}
}

func TestReservedContainerName(t *testing.T) {
	pod := deploymentPod(nil)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: contract.ContainerName, Image: "x"})
	if _, _, err := Mutate(pod, testConfig(), false); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("err = %v, want a refusal naming the reserved container name", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config refused: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no image", func(c *Config) { c.Image = "" }, "image"},
		{"unknown sidecar mode", func(c *Config) { c.Sidecar = "ambient" }, "sidecar mode"},
		{"renew >= lease", func(c *Config) { c.RenewDeadline = c.LeaseDuration }, "lease-duration"},
		{"port out of range", func(c *Config) { c.Port = 0 }, "port"},
		{"unknown traffic", func(c *Config) { c.Traffic = "x" }, "traffic"},
		{"cpu limit below request", func(c *Config) { c.CPULimit = resource.MustParse("1m") }, "CPU limit 1m is below CPU request 10m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.modify(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestNativeSidecarOrder checks the stop order under Istio's native sidecar: the kubelet stops native sidecars
// in reverse order, so the elector must come after istio-proxy to be stopped (and release) before the proxy.
func TestNativeSidecarOrder(t *testing.T) {
	pod := readPod(t, "testdata/istio-native-sidecar.in.yaml")
	out, changed, err := Mutate(pod, testConfig(), false)
	if err != nil || !changed {
		t.Fatalf("Mutate: changed=%v err=%v", changed, err)
	}
	proxy, elector := -1, -1
	for i, c := range out.Spec.InitContainers {
		switch c.Name {
		case istioProxyContainer:
			proxy = i
		case contract.ContainerName:
			elector = i
		}
	}
	if proxy < 0 || elector <= proxy {
		t.Errorf("init containers %v: want %s after %s", containerNames(out.Spec.InitContainers), contract.ContainerName, istioProxyContainer)
	}
	if got := *out.Spec.InitContainers[elector].SecurityContext.RunAsUser; got != nonRootUID {
		t.Errorf("elector runs as %d beside a native istio-proxy, want its own user %d (ordering suffices)", got, nonRootUID)
	}
}

// TestIstioClassicProxyUser checks that beside a classic istio-proxy the elector runs as the proxy's user,
// whichever user the proxy was given, so Istio's capture skips the elector's traffic.
func TestIstioClassicProxyUser(t *testing.T) {
	for _, uid := range []int64{1337, 1000770001} {
		pod := readPod(t, "testdata/istio-classic-sidecar.in.yaml")
		pod.Spec.Containers[1].SecurityContext.RunAsUser = &uid
		out, _, err := Mutate(pod, testConfig(), false)
		if err != nil {
			t.Fatal(err)
		}
		elector, _ := containerNamed(out, contract.ContainerName)
		if sc := elector.SecurityContext; *sc.RunAsUser != uid || *sc.RunAsGroup != uid || !*sc.RunAsNonRoot {
			t.Errorf("proxy user %d: elector runs as %d:%d", uid, *sc.RunAsUser, *sc.RunAsGroup)
		}
		if out.Annotations[contract.AnnotationMesh] != contract.MeshIstio {
			t.Errorf("annotation %s = %q, want %q", contract.AnnotationMesh, out.Annotations[contract.AnnotationMesh], contract.MeshIstio)
		}
	}
}

func containerNames(list []corev1.Container) []string {
	names := make([]string, len(list))
	for i, c := range list {
		names[i] = c.Name
	}
	return names
}

// TestPodLevelBudget: with pod-level resources, an elector whose annotated resources do not fit the pod's budget
// is refused by the webhook, naming the annotation, its value and the budget, rather than by the API server about
// spec.resources. The cases marked fits were checked against the real API server.
func TestPodLevelBudget(t *testing.T) {
	budget := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")}
	tests := []struct {
		name        string
		requests    corev1.ResourceList // the pod's; its limits are budget
		app         corev1.ResourceList // the app container's requests
		annotations map[string]string
		wantAll     []string // empty: the pod fits
	}{
		{"no annotations", budget, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, nil, nil},
		{"request within what the app leaves", budget, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("900m")},
			map[string]string{contract.AnnotationCPURequest: "100m"}, nil},
		{"request beyond what the app leaves", budget, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("950m")},
			map[string]string{contract.AnnotationCPURequest: "100m"},
			[]string{contract.AnnotationCPURequest, `"100m"`, "spec.resources.requests.cpu", "1", "950m"}},
		{"request beyond the pod's limit when it sets no request", nil, nil,
			map[string]string{contract.AnnotationMemoryRequest: "600Mi", contract.AnnotationMemoryLimit: "600Mi"},
			[]string{contract.AnnotationMemoryLimit, `"600Mi"`, "spec.resources.limits.memory", "512Mi"}},
		{"limit beyond the pod's limit", nil, nil, map[string]string{contract.AnnotationCPULimit: "2"},
			[]string{contract.AnnotationCPULimit, `"2"`, "spec.resources.limits.cpu"}},
		{"limit within the pod's limit", nil, nil, map[string]string{contract.AnnotationCPULimit: "500m"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := deploymentPod(tt.annotations)
			pod.Spec.Resources = &corev1.ResourceRequirements{Requests: tt.requests, Limits: budget}
			pod.Spec.Containers[0].Resources.Requests = tt.app
			_, _, err := Mutate(pod, testConfig(), false)
			if len(tt.wantAll) == 0 {
				if err != nil {
					t.Fatalf("Mutate refused a pod that fits its budget: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Mutate accepted %v beyond the pod's budget", tt.annotations)
			}
			for _, want := range tt.wantAll {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// TestGuaranteedRequestFollowsAnnotatedLimit: in a Guaranteed pod the elector's requests follow its limits, so a
// limit annotated below the webhook's default request is not "below the request": the request becomes that limit.
func TestGuaranteedRequestFollowsAnnotatedLimit(t *testing.T) {
	pod := deploymentPod(map[string]string{contract.AnnotationCPULimit: "5m", contract.AnnotationMemoryLimit: "16Mi"})
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	out, _, err := Mutate(pod, testConfig(), false)
	if err != nil {
		t.Fatalf("Mutate refused a Guaranteed pod whose elector limits are below the default requests: %v", err)
	}
	elector, _ := containerNamed(out, contract.ContainerName)
	r := elector.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if req, limit := r.Requests[name], r.Limits[name]; req.Cmp(limit) != 0 {
			t.Errorf("elector %s request %s, limit %s: want them equal (Guaranteed)", name, req.String(), limit.String())
		}
	}
}

// TestRoleLabelIsNeverAdmitted: the leader-label controller alone gives leader-election/role; a new pod carrying
// it loses it at injection, and so does an injected pod sent with it again (a copy of the leader pod).
func TestRoleLabelIsNeverAdmitted(t *testing.T) {
	pod := deploymentPod(nil)
	pod.Labels[contract.LabelRole] = contract.RoleLeader
	out, _, err := Mutate(pod, testConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, set := out.Labels[contract.LabelRole]; set {
		t.Errorf("injected pod keeps label %s", contract.LabelRole)
	}
	out.Labels[contract.LabelRole] = contract.RoleLeader
	copied := out.DeepCopy()
	again, changed, err := Mutate(out, testConfig(), true)
	if err != nil || !changed {
		t.Fatalf("an injected pod copied with %s=%s: changed=%v err=%v, want the label removed", contract.LabelRole, contract.RoleLeader, changed, err)
	}
	delete(copied.Labels, contract.LabelRole)
	if !equality.Semantic.DeepEqual(again, copied) {
		t.Errorf("reinvocation changed more than the role label")
	}
}
