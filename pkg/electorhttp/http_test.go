package electorhttp

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leader-election/leader-election/pkg/elector"
)

// serve sends one request to the elector's handler as if it came from remoteAddr.
func serve(e Elector, metrics prometheus.Gatherer, method, path, remoteAddr string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remoteAddr
	rec := httptest.NewRecorder()
	Handler(e, metrics).ServeHTTP(rec, req)
	return rec
}

// leading is the Status of a fresh leader named me.
func leading() (elector.Snapshot, elector.Status) {
	return elector.Snapshot{Known: true, Holder: "me", Transitions: 2, Leading: true, LastRenewSent: epoch},
		elector.Status{Name: "me", IsLeader: true, LeaseTransitions: 2, Identity: "me", LeaseName: "demo", Namespace: "ns"}
}

// standby is the Status of a replica that sees other holding the Lease.
func standby() (elector.Snapshot, elector.Status) {
	return elector.Snapshot{Known: true, Holder: "other", Transitions: 1},
		elector.Status{Name: "other", LeaseTransitions: 1, Identity: "me", LeaseName: "demo", Namespace: "ns"}
}

// Defect 5 of issue 9: POST /stepdown accepted any 127.0.0.0/8 source, and service meshes deliver outside
// traffic from 127.0.0.6. Over TCP it is refused from every address now, with a real connection from 127.0.0.6
// as a mesh's would arrive; only the pod-local control socket accepts it.
func TestStepDownOverTCPIsRefusedFromEveryAddressAndServedOnTheControlSocketOnly(t *testing.T) {
	cfg := testConfig()
	e := newFakeElector(cfg)
	e.set(leading())

	server := httptest.NewServer(Handler(e, prometheus.NewRegistry()))
	t.Cleanup(server.Close)
	for _, from := range []string{"127.0.0.6", "127.0.0.1"} {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client := http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
		resp, err := client.Post(server.URL+"/stepdown", "", nil)
		if err != nil {
			t.Fatalf("POST /stepdown from %s: %v", from, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), cfg.ControlSocket) ||
			!strings.Contains(string(body), "curl --abstract-unix-socket") {
			t.Fatalf("step-down over TCP from %s: %d %q, want 403 naming the control socket with a curl example", from, resp.StatusCode, body)
		}
	}
	if n := e.stepDownCalls(); n != 0 {
		t.Fatalf("a refused step-down asked the election to step down (%d times)", n)
	}

	rec := httptest.NewRecorder()
	ControlHandler(e).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stepdown", nil))
	if rec.Code != http.StatusOK || e.stepDownCalls() != 1 {
		t.Fatalf("step-down on the control socket: %d %q after %d step-downs, want 200 after one", rec.Code, rec.Body, e.stepDownCalls())
	}
	var st elector.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Identity != "me" {
		t.Errorf("step-down answer %q (%v), want the Status", rec.Body, err)
	}
	rec = httptest.NewRecorder()
	ControlHandler(e).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stepdown", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /stepdown: %d, want 405 (it changes state, so POST only)", rec.Code)
	}
}

func TestStepDownOnAStandbyIsAConflict(t *testing.T) {
	e := newFakeElector(testConfig())
	e.set(standby())
	e.stepDown = elector.ErrNotLeader
	rec := httptest.NewRecorder()
	ControlHandler(e).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stepdown", nil))
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"other"`) {
		t.Fatalf("step-down on a standby: %d %q, want 409 naming the leader", rec.Code, rec.Body)
	}

	e.stepDown = errors.New("connection refused")
	rec = httptest.NewRecorder()
	ControlHandler(e).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stepdown", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "connection refused") {
		t.Fatalf("step-down whose release failed: %d %q, want 503 with the error", rec.Code, rec.Body)
	}
}

func TestProbesRootAndMetrics(t *testing.T) {
	e := newFakeElector(testConfig())
	e.set(standby())
	e.setReady(false, "not the leader: other holds the Lease")
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg, "demo")
	if err != nil {
		t.Fatal(err)
	}

	if rec := serve(e, reg, http.MethodGet, "/readyz", "10.0.0.1:1"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "other holds the Lease") {
		t.Errorf("standby /readyz: %d %q, want 503 with the reason", rec.Code, rec.Body)
	}
	if rec := serve(e, reg, http.MethodGet, "/healthz", "10.0.0.1:1"); rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d %q", rec.Code, rec.Body)
	}
	rec := serve(e, reg, http.MethodGet, "/", "10.0.0.1:1")
	var st elector.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d %q (%v)", rec.Code, rec.Body, err)
	}
	if st.Name != "other" || st.IsLeader || st.LeaseTransitions != 1 || st.Identity != "me" || st.LeaseName != "demo" {
		t.Errorf("GET / = %+v", st)
	}
	if rec := serve(e, reg, http.MethodGet, "/nope", "10.0.0.1:1"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", rec.Code)
	}

	e.set(leading())
	e.setReady(true, "leader")
	metrics.Leading(true)
	metrics.Renewed(epoch)
	if rec := serve(e, reg, http.MethodGet, "/readyz", "10.0.0.1:1"); rec.Code != http.StatusOK {
		t.Errorf("leader /readyz: %d %q, want 200", rec.Code, rec.Body)
	}
	page := serve(e, reg, http.MethodGet, "/metrics", "10.0.0.1:1").Body.String()
	for _, want := range []string{
		`leader_election_master_status{name="demo"} 1`,
		`leader_election_transitions_total{name="demo"} 1`,
		`leader_election_last_renewal_timestamp_seconds{name="demo"} 1.893456e+09`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestEventsStreamTheStatusOnConnectAndOnEveryChange(t *testing.T) {
	e := newFakeElector(testConfig())
	e.set(standby())
	server := httptest.NewServer(Handler(e, prometheus.NewRegistry()))
	defer server.Close()

	resp, err := http.Get(server.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan elector.Status, 16)
	go readEvents(resp.Body, events)
	next := func() elector.Status {
		t.Helper()
		select {
		case st := <-events:
			return st
		case <-time.After(progressTimeout):
			t.Fatal("no event")
			return elector.Status{}
		}
	}
	if first := next(); first.Name != "other" || first.IsLeader {
		t.Fatalf("first event %+v, want the current status (other leads)", first)
	}
	e.set(leading())
	if st := next(); !st.IsLeader || st.Name != "me" || st.LeaseTransitions != 2 {
		t.Fatalf("leadership event %+v, want name me, token 2", st)
	}
}

// readEvents decodes "data:" lines of a Server-Sent Events stream.
func readEvents(r io.Reader, out chan<- elector.Status) {
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		data, ok := strings.CutPrefix(scanner.Text(), "data: ")
		if !ok {
			continue
		}
		var st elector.Status
		if json.Unmarshal([]byte(data), &st) == nil {
			out <- st
		}
	}
	close(out)
}
