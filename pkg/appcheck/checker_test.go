package appcheck

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	testclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// AppHealth is contract 1's interface (pkg/elector/health.go, from the elector's side of issue 13), repeated
// here so this package's tests prove the Checker satisfies it without depending on the elector.
type AppHealth interface {
	Healthy() (healthy bool, reason string)
	Changed() <-chan struct{}
}

var _ AppHealth = (*Checker)(nil)

// portOf is the port of a test server's URL or listener address.
func portOf(t *testing.T, hostport string) int32 {
	t.Helper()
	if u, err := url.Parse(hostport); err == nil && u.Host != "" {
		hostport = u.Host
	}
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// checkOnceWith builds a Checker for the probe (pod IP 127.0.0.1) and runs one check, returning its failure.
func checkOnceWith(t *testing.T, p corev1.Probe) string {
	t.Helper()
	c, err := New(p, Options{PodIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(WithDefaults(p).TimeoutSeconds)*time.Second)
	defer cancel()
	return c.check(ctx)
}

func httpProbe(port int32, path string) corev1.Probe {
	return corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(port), Path: path}}}
}

func TestHTTPCheckSucceedsFrom200To399LikeTheKubelet(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var lastHeader http.Header
	var lastHost string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastHeader, lastHost = r.Header.Clone(), r.Host
		switch r.URL.Path {
		case "/redirect-here":
			http.Redirect(w, r, "/status/500", http.StatusFound)
			return
		case "/big":
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(make([]byte, 1<<20)) // far beyond what the check reads
			return
		}
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
	}))
	defer srv.Close()
	port := portOf(t, srv.URL)

	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/status/200", true}, {"/status/204", true}, {"/status/302", true}, {"/status/399", true},
		{"/status/400", false}, {"/status/404", false}, {"/status/500", false}, {"/status/503", false},
		// A redirect within the pod is followed; its target's answer decides.
		{"/redirect-here", false},
		{"/big", true},
	} {
		failure := checkOnceWith(t, httpProbe(port, tc.path))
		if (failure == "") != tc.ok {
			t.Errorf("%s: failure %q, want ok=%v", tc.path, failure, tc.ok)
		}
		if !tc.ok && !strings.Contains(failure, "httpGet http://127.0.0.1:"+strconv.Itoa(int(port))) {
			t.Errorf("%s: reason %q does not name the URL", tc.path, failure)
		}
	}

	p := httpProbe(port, "/status/200?verbose=1")
	p.HTTPGet.HTTPHeaders = []corev1.HTTPHeader{{Name: "X-Probe", Value: "elector"}, {Name: "Host", Value: "app.example"}}
	if failure := checkOnceWith(t, p); failure != "" {
		t.Fatal(failure)
	}
	if lastHeader.Get("X-Probe") != "elector" || lastHost != "app.example" || !strings.HasPrefix(lastHeader.Get("User-Agent"), "leader-election-elector/") {
		t.Errorf("headers %v, host %q: the probe's headers were not sent", lastHeader, lastHost)
	}
}

func TestHTTPSCheckSkipsCertificateVerificationLikeTheKubelet(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	p := httpProbe(portOf(t, srv.URL), "/")
	p.HTTPGet.Scheme = corev1.URISchemeHTTPS
	if failure := checkOnceWith(t, p); failure != "" {
		t.Error(failure)
	}
}

// A redirect to another host is never followed: the application (or whoever controls its answers) cannot make
// the elector send requests elsewhere. Like the kubelet, the redirect itself counts as success.
func TestHTTPRedirectToAnotherHostIsNotFollowed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var elsewhereHits atomic.Int32
	elsewhere := &httptest.Server{
		Listener: listenOn(t, "127.0.0.2:0"),
		Config:   &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhereHits.Add(1) })},
	}
	elsewhere.Start()
	defer elsewhere.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusFound)
	}))
	defer app.Close()

	if failure := checkOnceWith(t, httpProbe(portOf(t, app.URL), "/")); failure != "" {
		t.Errorf("failure %q, want the redirect counted as success", failure)
	}
	if n := elsewhereHits.Load(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
	// The same holds at the lowest level: the check's dialer refuses any other host.
	if _, err := dialer("127.0.0.1")(context.Background(), "tcp", elsewhere.Listener.Addr().String()); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("dialer connected to another host: %v", err)
	}
}

func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestHTTPCheckTimesOutWithAStableReason(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(httpProbe(portOf(t, srv.URL), "/slow"), Options{PodIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.checkOnce(context.Background())
	healthy, reason := c.Healthy()
	if healthy || !strings.Contains(reason, "no answer within 1s (timeoutSeconds)") {
		t.Errorf("verdict %v %q, want a timeout", healthy, reason)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("the check gave up after %v, before its 1s timeout", elapsed)
	}
}

func TestTCPCheck(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := listenOn(t, "127.0.0.1:0")
	port := portOf(t, l.Addr().String())
	probe := corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
	if failure := checkOnceWith(t, probe); failure != "" {
		t.Errorf("open port: %s", failure)
	}
	_ = l.Close()
	if failure := checkOnceWith(t, probe); !strings.Contains(failure, "tcpSocket 127.0.0.1:"+strconv.Itoa(int(port))) || !strings.Contains(failure, "refused") {
		t.Errorf("closed port: failure %q, want connection refused naming the address", failure)
	}
}

func TestGRPCCheckAgainstGRPCGosHealthServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := listenOn(t, "127.0.0.1:0")
	port := portOf(t, l.Addr().String())
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()

	probe := func(service *string) corev1.Probe {
		return corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port, Service: service}}}
	}
	hs.SetServingStatus("ledger.v1.Ledger", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("ledger.v1.Admin", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, tc := range []struct {
		service *string
		want    string // "" = healthy, else a part of the reason
	}{
		{nil, ""}, // grpc-go's health server serves "" (the whole server) from the start
		{ptr.To("ledger.v1.Ledger"), ""},
		{ptr.To("ledger.v1.Admin"), `service "ledger.v1.Admin": NOT_SERVING`},
		{ptr.To("unknown.Service"), "gRPC status NOT_FOUND: unknown service"},
	} {
		failure := checkOnceWith(t, probe(tc.service))
		if (tc.want == "") != (failure == "") || !strings.Contains(failure, tc.want) {
			t.Errorf("service %v: failure %q, want %q", tc.service, failure, tc.want)
		}
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if failure := checkOnceWith(t, probe(nil)); !strings.Contains(failure, "grpc 127.0.0.1:"+strconv.Itoa(int(port))+": NOT_SERVING") {
		t.Errorf("server NOT_SERVING: failure %q", failure)
	}
	hs.Shutdown() // every service NOT_SERVING, as a draining server reports
	if failure := checkOnceWith(t, probe(ptr.To("ledger.v1.Ledger"))); !strings.Contains(failure, "NOT_SERVING") {
		t.Errorf("after Shutdown: failure %q", failure)
	}
}

func TestGRPCCheckInTLSMode(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	certSource := httptest.NewTLSServer(http.NotFoundHandler()) // only for its self-signed certificate
	cert := certSource.TLS.Certificates[0]
	certSource.Close()
	l := listenOn(t, "127.0.0.1:0")
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()
	probe := corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: portOf(t, l.Addr().String())}}}
	if failure := checkOnceWith(t, probe); failure == "" {
		t.Error("a plaintext check passed against a TLS server")
	}
	probe.GRPC.Mode = ptr.To(corev1.GRPCProbeModeTLS)
	if failure := checkOnceWith(t, probe); failure != "" {
		t.Errorf("mode TLS: %s", failure)
	}
}

func TestGRPCCheckFailsOnWhatIsNotAGRPCHealthServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// A server without the health service answers UNIMPLEMENTED.
	l := listenOn(t, "127.0.0.1:0")
	srv := grpc.NewServer()
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()
	grpcProbe := func(port int32) corev1.Probe {
		return corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port}}}
	}
	if failure := checkOnceWith(t, grpcProbe(portOf(t, l.Addr().String()))); !strings.Contains(failure, "UNIMPLEMENTED") {
		t.Errorf("no health service: failure %q", failure)
	}
	// A plain HTTP/1 server is no gRPC server.
	h1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer h1.Close()
	if failure := checkOnceWith(t, grpcProbe(portOf(t, h1.URL))); failure == "" {
		t.Error("an HTTP/1 server passed the gRPC check")
	}
}

func TestServingStatusOfRefusesMalformedAnswers(t *testing.T) {
	for _, body := range [][]byte{nil, {0, 0, 0}, {1, 0, 0, 0, 2, 8, 1}, {0, 0, 0, 0, 9, 8, 1}, {0, 0, 0, 0, 1, 8}} {
		if _, err := servingStatusOf(body); err == nil {
			t.Errorf("servingStatusOf(%v) accepted it", body)
		}
	}
	// Unknown fields are skipped; an absent status is UNKNOWN (0).
	if s, err := servingStatusOf([]byte{0, 0, 0, 0, 5, 0x12, 1, 'x', 8, 1}); err != nil || s != 1 {
		t.Errorf("with an unknown field: %d, %v", s, err)
	}
	if s, err := servingStatusOf([]byte{0, 0, 0, 0, 0}); err != nil || s != 0 {
		t.Errorf("empty message: %d, %v", s, err)
	}
}

// TestRunSchedulesLikeTheKubelet drives Run with a fake clock and scripted results: nothing before the initial
// delay, one check per period, the thresholds applied, Changed signalled on every change of verdict only, and
// Run gone once its context ends.
func TestRunSchedulesLikeTheKubelet(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	clk := testclock.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	p := httpProbe(8080, "/healthz")
	p.InitialDelaySeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold = 5, 2, 1, 2
	c, err := New(p, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan string)
	var checks atomic.Int32
	c.check = func(ctx context.Context) string {
		checks.Add(1)
		select {
		case r := <-results:
			return r
		case <-ctx.Done():
			return "interrupted"
		}
	}
	if h, reason := c.Healthy(); h || reason != notCheckedYet {
		t.Fatalf("before Run: %v %q", h, reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()

	waitForTimer := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !clk.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("Run never waited for its next check")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// step moves the clock to the next check, answers it, and waits until the verdict is recorded.
	step := func(d time.Duration, result string) {
		t.Helper()
		waitForTimer()
		clk.Step(d)
		results <- result
		waitForTimer()
	}
	changed := func() bool {
		select {
		case <-c.Changed():
			return true
		default:
			return false
		}
	}

	waitForTimer()
	clk.Step(4 * time.Second)
	if n := checks.Load(); n != 0 {
		t.Fatalf("%d checks before the initial delay of 5s", n)
	}
	step(time.Second, "")
	if h, _ := c.Healthy(); !h || !changed() {
		t.Fatalf("after a success: healthy %v, want true and a Changed signal", h)
	}
	step(2*time.Second, "HTTP 503")
	if h, _ := c.Healthy(); !h || changed() {
		t.Fatal("one failure under failureThreshold 2 changed the verdict")
	}
	step(2*time.Second, "HTTP 503")
	if h, reason := c.Healthy(); h || reason != "HTTP 503" || !changed() {
		t.Fatalf("after two failures: %v %q, want unhealthy with the failure and a Changed signal", h, reason)
	}
	step(2*time.Second, "HTTP 503")
	if changed() {
		t.Fatal("the same failure again signalled Changed")
	}
	// Two changes before the reader looks leave one signal, and the reader sees the newest verdict.
	step(2*time.Second, "")
	step(2*time.Second, "refused")
	step(2*time.Second, "refused")
	if !changed() || changed() {
		t.Fatal("want exactly one pending signal after several changes")
	}
	if h, reason := c.Healthy(); h || reason != "refused" {
		t.Fatalf("newest verdict %v %q", h, reason)
	}
	if n := checks.Load(); n != 7 {
		t.Errorf("%d checks, want 7 (one per period)", n)
	}

	// A check interrupted by the end of Run is not recorded.
	waitForTimer()
	clk.Step(2 * time.Second)
	for checks.Load() != 8 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if h, reason := c.Healthy(); h || reason != "refused" {
		t.Errorf("after an interrupted check: %v %q, want the verdict unchanged", h, reason)
	}
}

func TestNewDescribesTheCheckAndRefusesABadPodIP(t *testing.T) {
	p := httpProbe(8080, "")
	c, err := New(p, Options{PodIP: "fd00::7"})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); !strings.Contains(s, "httpGet http://[fd00::7]:8080/ every 10s") || !strings.Contains(s, "unhealthy after 3 failures") {
		t.Errorf("String() = %q", s)
	}
	c, err = New(corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}, Options{})
	if err != nil || !strings.Contains(c.String(), "grpc 127.0.0.1:9090") {
		t.Errorf("without a pod IP the check goes to loopback: %v, %v", c, err)
	}
	if _, err := New(p, Options{PodIP: "pod-7"}); err == nil || !strings.Contains(err.Error(), `"pod-7"`) {
		t.Errorf("bad pod IP: %v", err)
	}
}
