package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leader-election/leader-election/pkg/elector"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestAFlagWinsOverItsVariableWhichWinsOverTheDefault(t *testing.T) {
	s, err := parseSettings(
		[]string{"--lease-duration=30s", "--readiness=member", "--pod-name=from-flag"},
		envOf(map[string]string{
			"POD_NAME": "from-env", "POD_UID": "uid-1", "POD_NAMESPACE": "ns", "LEASE_NAME": "demo",
			"LEASE_DURATION": "20s", "RENEW_DEADLINE": "12s", "ELECTOR_READINESS": "not-even-valid",
			"ELECTOR_PORT": "9000", "ELECTOR_BIND_ADDRESS": "127.0.0.1", "KUBECONFIG": "/a:/b",
		}))
	if err != nil {
		t.Fatal(err)
	}
	want := elector.Config{
		Identity: "from-flag", UID: "uid-1", Namespace: "ns", LeaseName: "demo",
		LeaseDuration: 30 * time.Second, RenewDeadline: 12 * time.Second, RetryPeriod: 2 * time.Second,
		Readiness: elector.ReadinessMember, ControlSocket: "@leader-election",
	}
	if s.config != want {
		t.Errorf("config %+v, want %+v", s.config, want)
	}
	if s.port != 9000 || s.bindAddress != "127.0.0.1" || s.kubeconfig != "/a:/b" {
		t.Errorf("port %d, bind address %q, kubeconfig %q", s.port, s.bindAddress, s.kubeconfig)
	}
	if s.sources["port"] != `ELECTOR_PORT="9000"` || s.sources["retry-period"] != "default 2s" || s.sources["lease-duration"] != `--lease-duration="30s"` {
		t.Errorf("sources %v do not say where each value came from", s.sources)
	}
}

func TestDefaultsMatchTheContract(t *testing.T) {
	s, err := parseSettings(nil, envOf(map[string]string{"POD_NAME": "p", "POD_UID": "u", "POD_NAMESPACE": "ns", "LEASE_NAME": "demo"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.config.LeaseDuration != 15*time.Second || s.config.RenewDeadline != 10*time.Second || s.config.RetryPeriod != 2*time.Second ||
		s.port != 8642 || s.bindAddress != "" || s.config.Readiness != elector.ReadinessLeader || s.kubeconfig != "" {
		t.Errorf("defaults %+v, port %d, bind %q, kubeconfig %q differ from README's contract", s.config, s.port, s.bindAddress, s.kubeconfig)
	}
}

func TestAppCheckIsParsedAndLeftOffByDefault(t *testing.T) {
	base := map[string]string{"POD_NAME": "p", "POD_UID": "u", "POD_NAMESPACE": "ns", "LEASE_NAME": "demo"}
	s, err := parseSettings(nil, envOf(base))
	if err != nil || s.appCheck != nil || s.podIP != "" {
		t.Fatalf("default: check %+v, pod IP %q, err %v; want not gated", s.appCheck, s.podIP, err)
	}
	base["ELECTOR_APP_CHECK"] = `{"grpc":{"port":9090,"service":"ledger"},"periodSeconds":2,"failureThreshold":1}`
	base["POD_IP"] = "fd00::7"
	s, err = parseSettings(nil, envOf(base))
	if err != nil {
		t.Fatal(err)
	}
	if s.appCheck == nil || s.appCheck.GRPC == nil || s.appCheck.GRPC.Port != 9090 || *s.appCheck.GRPC.Service != "ledger" ||
		s.appCheck.PeriodSeconds != 2 || s.appCheck.FailureThreshold != 1 || s.podIP != "fd00::7" {
		t.Errorf("check %+v, pod IP %q", s.appCheck, s.podIP)
	}
	checker, err := newAppCheck(s)
	if err != nil || checker == nil || !strings.Contains(checker.String(), "grpc [fd00::7]:9090") {
		t.Errorf("checker %v, %v", checker, err)
	}
	if checker, err := newAppCheck(settings{}); checker != nil || err != nil {
		t.Errorf("without --app-check: %v, %v; want no checker", checker, err)
	}
}

func TestStatusRowsAndTable(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 10, 0, time.UTC)
	leases := []coordinationv1.Lease{
		{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns"}, Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("b-1"), LeaseTransitions: ptr.To[int32](4), LeaseDurationSeconds: ptr.To[int32](15),
			RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-1500 * time.Millisecond))),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("")}},
	}
	rows := leaseRows(leases, now)
	if len(rows) != 2 || rows[0].Name != "a" || rows[1].LastRenewalAgeSeconds == nil || *rows[1].LastRenewalAgeSeconds != 1.5 || rows[0].LastRenewalAgeSeconds != nil || rows[1].LeaseTransitions != 4 {
		t.Fatalf("rows %+v", rows)
	}
	var buf bytes.Buffer
	writeTable(&buf, rows)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "<none>") || !strings.Contains(lines[2], "b-1") || !strings.Contains(lines[2], "1.5s ago") || !strings.Contains(lines[2], "15s") {
		t.Errorf("table:\n%s", buf.String())
	}
}
