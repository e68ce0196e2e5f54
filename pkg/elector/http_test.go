package elector

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"
)

// serve sends one request to the elector's handler as if it came from remoteAddr.
func serve(e *Elector, method, path, remoteAddr string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remoteAddr
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, req)
	return rec
}

// Defect 5 of issue 9: POST /stepdown accepted any 127.0.0.0/8 source, and service meshes deliver outside
// traffic from 127.0.0.6. Over TCP it is refused from every address now, with a real connection from 127.0.0.6
// as a mesh's would arrive; only the pod-local control socket accepts it.
func TestStepDownOverTCPIsRefusedFromEveryAddressAndServedOnTheControlSocketOnly(t *testing.T) {
	api := newFakeLeases()
	cfg := testConfig("me")
	cfg.ControlSocket = "@leader-election-test-" + strconv.Itoa(os.Getpid())
	clk := testclock.NewFakeClock(epoch)
	e, _, _ := startElector(t, cfg, api, clk)
	waitLeading(t, e, clk)

	server := httptest.NewServer(e.Handler())
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
	if holderOf(api.current()) != "me" || !e.Status().IsLeader {
		t.Fatal("a refused step-down changed the election")
	}

	rec := httptest.NewRecorder()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		e.ControlHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stepdown", nil))
	}()
	// The leader first leaves the Service for ServiceLeaveTime, renewing: move the clock on until it answers.
	for stepping := true; stepping; {
		select {
		case <-answered:
			stepping = false
		case <-time.After(10 * time.Millisecond):
			clk.Step(cfg.RetryPeriod)
			waitFor(t, "the loop to catch up with the clock", func() bool { return !e.board.lastBeat().Before(clk.Now()) })
		}
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("step-down on the control socket: %d %q, want 200", rec.Code, rec.Body)
	}
	if holderOf(api.current()) != "" || e.Status().IsLeader {
		t.Fatal("the Lease was not released by a step-down on the control socket")
	}
	rec = httptest.NewRecorder()
	e.ControlHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stepdown", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /stepdown: %d, want 405 (it changes state, so POST only)", rec.Code)
	}
}

func TestStepDownOnAStandbyIsAConflict(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 1, 2))
	e, _, _ := startElector(t, testConfig("me"), api, testclock.NewFakeClock(epoch))
	waitFor(t, "the holder", func() bool { return e.Status().Name == "other" })
	rec := httptest.NewRecorder()
	e.ControlHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/stepdown", nil))
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"other"`) {
		t.Fatalf("step-down on a standby: %d %q, want 409 naming the leader", rec.Code, rec.Body)
	}
}

func TestProbesRootAndMetrics(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 1, 2))
	e, _, _ := startElector(t, testConfig("me"), api, testclock.NewFakeClock(epoch))
	waitFor(t, "the holder", func() bool { return e.Status().Name == "other" })

	if rec := serve(e, http.MethodGet, "/readyz", "10.0.0.1:1"); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "other holds the Lease") {
		t.Errorf("standby /readyz: %d %q, want 503 with the reason", rec.Code, rec.Body)
	}
	if rec := serve(e, http.MethodGet, "/healthz", "10.0.0.1:1"); rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d %q", rec.Code, rec.Body)
	}
	rec := serve(e, http.MethodGet, "/", "10.0.0.1:1")
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d %q (%v)", rec.Code, rec.Body, err)
	}
	if st.Name != "other" || st.IsLeader || st.LeaseTransitions != 1 || st.Identity != "me" || st.LeaseName != "demo" {
		t.Errorf("GET / = %+v", st)
	}
	if rec := serve(e, http.MethodGet, "/nope", "10.0.0.1:1"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", rec.Code)
	}

	api.store(heldBy("", 1, 2))
	waitFor(t, "leadership", func() bool { return e.Status().IsLeader })
	if rec := serve(e, http.MethodGet, "/readyz", "10.0.0.1:1"); rec.Code != http.StatusOK {
		t.Errorf("leader /readyz: %d %q, want 200", rec.Code, rec.Body)
	}
	metrics := serve(e, http.MethodGet, "/metrics", "10.0.0.1:1").Body.String()
	for _, want := range []string{
		`leader_election_master_status{name="demo"} 1`,
		`leader_election_transitions_total{name="demo"} 1`,
		`leader_election_last_renewal_timestamp_seconds{name="demo"} 1.893456e+09`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestEventsStreamTheStatusOnConnectAndOnEveryChange(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 1, 2))
	e, _, _ := startElector(t, testConfig("me"), api, testclock.NewFakeClock(epoch))
	waitFor(t, "the holder", func() bool { return e.Status().Name == "other" })
	server := httptest.NewServer(e.Handler())
	defer server.Close()

	resp, err := http.Get(server.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan Status, 16)
	go readEvents(resp.Body, events)
	next := func() Status {
		t.Helper()
		select {
		case st := <-events:
			return st
		case <-time.After(progressTimeout):
			t.Fatal("no event")
			return Status{}
		}
	}
	if first := next(); first.Name != "other" || first.IsLeader {
		t.Fatalf("first event %+v, want the current status (other leads)", first)
	}
	api.store(heldBy("", 1, 2))
	for {
		st := next()
		if st.IsLeader {
			if st.Name != "me" || st.LeaseTransitions != 2 {
				t.Fatalf("leadership event %+v, want name me, token 2", st)
			}
			return
		}
	}
}

// readEvents decodes "data:" lines of a Server-Sent Events stream.
func readEvents(r io.Reader, out chan<- Status) {
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		data, ok := strings.CutPrefix(scanner.Text(), "data: ")
		if !ok {
			continue
		}
		var st Status
		if json.Unmarshal([]byte(data), &st) == nil {
			out <- st
		}
	}
	close(out)
}
