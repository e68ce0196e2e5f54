package appcheck

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestParseAcceptsWhatTheElectorCanRun(t *testing.T) {
	for _, raw := range []string{
		`{"httpGet":{"path":"/healthz","port":8080}}`,
		`{"httpGet":{"path":"/ready?full=1","port":8443,"scheme":"HTTPS","httpHeaders":[{"name":"X-Probe","value":"1"}]},"periodSeconds":2}`,
		`{"httpGet":{"port":8080,"host":"127.0.0.1"}}`,
		`{"httpGet":{"port":8080,"host":"localhost"}}`,
		`{"tcpSocket":{"port":5432,"host":"::1"}}`,
		`{"grpc":{"port":9090}}`,
		`{"grpc":{"port":9090,"mode":"TLS"}}`,
		`{"grpc":{"port":9090,"service":"ledger.v1.Ledger"},"initialDelaySeconds":5,"timeoutSeconds":2,"successThreshold":2,"failureThreshold":5}`,
	} {
		if _, err := Parse(raw); err != nil {
			t.Errorf("Parse(%s): %v", raw, err)
		}
	}
}

func TestParseRefusalsNameTheFieldTheValueAndWhatIsAccepted(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{`not json`, []string{"not a probe in JSON", "httpGet"}},
		{`{"httpGet":{"port":8080}} {}`, []string{"text follows"}},
		{`{"httpGet":{"port":8080,"hots":"x"}}`, []string{`unknown field "hots"`}},
		{`{}`, []string{"no check", "httpGet, tcpSocket or grpc"}},
		{`{"exec":{"command":["cat","/tmp/ready"]}}`, []string{"exec", `["cat" "/tmp/ready"]`, "cannot run a command", "use httpGet, tcpSocket or grpc"}},
		{`{"httpGet":{"port":8080},"tcpSocket":{"port":8080}}`, []string{"more than one check"}},
		{`{"httpGet":{"port":"http"}}`, []string{`httpGet.port: "http" is not accepted`, "port number from 1 to 65535", "named port"}},
		{`{"httpGet":{"port":0}}`, []string{"httpGet.port: 0 is not accepted"}},
		{`{"tcpSocket":{"port":70000}}`, []string{"tcpSocket.port: 70000"}},
		{`{"grpc":{"port":-1}}`, []string{"grpc.port: -1"}},
		{`{"grpc":{"port":9090,"mode":"mTLS"}}`, []string{`grpc.mode: "mTLS"`, `"Plaintext" (the default) or "TLS"`}},
		{`{"httpGet":{"port":80,"scheme":"FTP"}}`, []string{`httpGet.scheme: "FTP"`, `"HTTP" or "HTTPS"`}},
		{`{"httpGet":{"port":80,"path":"http://elsewhere/x"}}`, []string{`httpGet.path: "http://elsewhere/x"`}},
		{`{"httpGet":{"port":80,"httpHeaders":[{"name":"Bad Name","value":"v"}]}}`, []string{`httpGet.httpHeaders[0]: "Bad Name"`}},
		{`{"httpGet":{"port":80},"periodSeconds":-1,"failureThreshold":-2}`, []string{"periodSeconds: -1", "failureThreshold: -2"}},
	} {
		_, err := Parse(tc.raw)
		if err == nil {
			t.Errorf("Parse(%s) accepted it", tc.raw)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%s): %q does not say %q", tc.raw, err, w)
			}
		}
	}
}

// The elector runs with the pod's network position: a host chosen by whoever writes the pod template must not
// turn it into a prober (or, for httpGet, a request sender) against other addresses.
func TestAHostOutsideThePodIsRefused(t *testing.T) {
	for _, host := range []string{"10.0.0.1", "198.18.0.1", "kubernetes.default.svc", "169.254.169.254", "localhost.evil.example", "0.0.0.0", "::"} {
		for _, p := range []corev1.Probe{
			{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Host: host}}},
			{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80), Host: host}}},
		} {
			err := Validate(p)
			if err == nil || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "loopback") {
				t.Errorf("host %q: %v, want a refusal naming the host and what is accepted", host, err)
			}
			if _, err := New(p, Options{}); err == nil {
				t.Errorf("New accepted host %q", host)
			}
		}
	}
	for _, host := range []string{"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"} {
		if !IsLoopback(host) {
			t.Errorf("IsLoopback(%q) = false", host)
		}
	}
}

func TestWithDefaultsIsTheKubeletsDefaultsAndIdempotent(t *testing.T) {
	p := WithDefaults(corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}})
	if p.TimeoutSeconds != 1 || p.PeriodSeconds != 10 || p.SuccessThreshold != 1 || p.FailureThreshold != 3 || p.HTTPGet.Scheme != corev1.URISchemeHTTP || p.HTTPGet.Path != "/" {
		t.Errorf("defaults %+v", p)
	}
	if Encode(WithDefaults(p)) != Encode(p) {
		t.Errorf("WithDefaults changed a defaulted probe")
	}
	set := corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090, Service: ptr.To("x")}},
		TimeoutSeconds: 4, PeriodSeconds: 3, SuccessThreshold: 2, FailureThreshold: 7}
	if got := WithDefaults(set); Encode(got) != Encode(set) {
		t.Errorf("WithDefaults overrode set fields: %s", Encode(got))
	}
	if g := WithDefaults(corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}).GRPC; g.Service == nil || *g.Service != "" {
		t.Errorf("grpc service not defaulted to \"\": %v", g.Service)
	}
	if got, err := Parse(Encode(p)); err != nil || Encode(got) != Encode(p) {
		t.Errorf("Encode does not round-trip through Parse: %v", err)
	}
}
