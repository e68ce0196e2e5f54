package elector

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"
)

func TestFromLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:40000":          true,
		"127.1.2.3:40000":          true,
		"[::1]:40000":              true,
		"[::ffff:127.0.0.1]:40000": true,
		"10.1.2.3:40000":           false,
		"192.0.2.7:40000":          false,
		"[fe80::1]:40000":          false,
		"[2001:db8::1]:40000":      false,
		"localhost:40000":          false, // a name is not an address: never trust it
		"garbage":                  false,
		"":                         false,
	} {
		if got := fromLoopback(addr); got != want {
			t.Errorf("fromLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// serve sends one request to the elector's handler as if it came from remoteAddr.
func serve(e *Elector, method, path, remoteAddr string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remoteAddr
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, req)
	return rec
}

func TestStepDownFromOutsideThePodIsRefusedAndChangesNothing(t *testing.T) {
	api := newFakeLeases()
	e, _, _ := startElector(t, testConfig("me"), api, testclock.NewFakeClock(epoch))
	waitFor(t, "leadership", func() bool { return e.Status().IsLeader })

	rec := serve(e, http.MethodPost, "/stepdown", "10.1.2.3:5555")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "loopback only") {
		t.Fatalf("step-down from 10.1.2.3: %d %q, want 403 naming the loopback rule", rec.Code, rec.Body)
	}
	if holderOf(api.current()) != "me" || !e.Status().IsLeader {
		t.Fatal("a refused step-down changed the election")
	}

	rec = serve(e, http.MethodPost, "/stepdown", "[::1]:5555")
	if rec.Code != http.StatusOK {
		t.Fatalf("step-down from ::1: %d %q, want 200", rec.Code, rec.Body)
	}
	if holderOf(api.current()) != "" || e.Status().IsLeader {
		t.Fatal("the Lease was not released by a step-down from loopback")
	}
	if rec := serve(e, http.MethodGet, "/stepdown", "127.0.0.1:5555"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /stepdown: %d, want 405 (it changes state, so POST only)", rec.Code)
	}
}

func TestStepDownOnAStandbyIsAConflict(t *testing.T) {
	api := newFakeLeases()
	api.store(heldBy("other", 1, 2))
	e, _, _ := startElector(t, testConfig("me"), api, testclock.NewFakeClock(epoch))
	waitFor(t, "the holder", func() bool { return e.Status().Name == "other" })
	rec := serve(e, http.MethodPost, "/stepdown", "127.0.0.1:5555")
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
