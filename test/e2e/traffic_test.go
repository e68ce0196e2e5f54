package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	// requestEvery is how often the client asks the Service.
	requestEvery = 40 * time.Millisecond
	// requestTimeout bounds one request; a request that times out counts as no answer.
	requestTimeout = 300 * time.Millisecond
	// inFlight is the in-flight window: an answer counts as the leader's if the pod held the Lease at some moment
	// from inFlight before the request was sent until the answer arrived. It absorbs the delay with which the
	// suite's own watch sees a Lease change; it is far shorter than any path by which traffic could follow a
	// change of holder (the label controller, the EndpointSlice, kube-proxy's rules).
	inFlight = 250 * time.Millisecond
)

// answer is one request to the Service's ClusterIP.
type answer struct {
	sent, got time.Time
	pod       string // empty: no answer
	leader    *bool  // what the pod's elector said when the app asked it; nil if it did not answer
	err       string
}

// holding is one observed holder of a Lease, from the moment the suite's watch saw it.
type holding struct {
	at     time.Time
	holder string
}

// traffic asks a Service's ClusterIP every requestEvery and follows its Lease, for the whole suite.
type traffic struct {
	service, url string
	mu           sync.Mutex
	answers      []answer
	leases       []holding
	stop         func()
}

func startTraffic(t *testing.T, cs kubernetes.Interface, ns, service, lease, clusterIP string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{service: service, url: "http://" + clusterIP + "/"}
	w, err := cs.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", lease).String()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok {
				tr.observe(ptr.Deref(l.Spec.HolderIdentity, ""))
			}
		}
	}()
	go func() {
		defer wg.Done()
		// A new connection per request: kube-proxy picks the endpoint when a connection starts, so a kept-alive
		// connection would hide where new traffic goes.
		hc := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(requestEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				tr.record(tr.ask(hc))
			}
		}
	}()
	tr.stop = func() { cancel(); w.Stop(); wg.Wait() }
	t.Cleanup(tr.stop)
	return tr
}

func (tr *traffic) ask(hc *http.Client) answer {
	a := answer{sent: time.Now()}
	resp, err := hc.Get(tr.url)
	a.got = time.Now()
	if err != nil {
		a.err = err.Error()
		return a
	}
	defer resp.Body.Close()
	var body struct {
		Pod    string `json:"pod"`
		Leader *bool  `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		a.err = fmt.Sprintf("status %d, body not JSON: %v", resp.StatusCode, err)
		return a
	}
	a.got, a.pod, a.leader = time.Now(), body.Pod, body.Leader
	return a
}

func (tr *traffic) record(a answer) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.answers = append(tr.answers, a)
}

func (tr *traffic) observe(holder string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n := len(tr.leases); n == 0 || tr.leases[n-1].holder != holder {
		tr.leases = append(tr.leases, holding{at: time.Now(), holder: holder})
	}
}

// heldBetween tells whether pod held the Lease at some moment in [from, to].
func (tr *traffic) heldBetween(pod string, from, to time.Time) bool {
	for i, h := range tr.leases {
		end := time.Now().Add(time.Hour)
		if i+1 < len(tr.leases) {
			end = tr.leases[i+1].at
		}
		if h.holder == pod && h.at.Before(to) && end.After(from) {
			return true
		}
	}
	return false
}

// lastAnswers returns the pods that answered the last n requests ("" for no answer).
func (tr *traffic) lastAnswers(n int) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for i := max(0, len(tr.answers)-n); i < len(tr.answers); i++ {
		out = append(out, tr.answers[i].pod)
	}
	return out
}

// window is the traffic of one scenario.
type window struct {
	name     string
	from, to time.Time
	requests int
	answered int
	byPod    map[string]int
	wrongPod []string // answers from a pod that did not hold the Lease then: the suite fails on any
	// selfDenied are answers from the Lease holder while its own elector said it was not leading: its last
	// renewal was older than the renew deadline (a slow API server, a loaded machine). Nobody else can hold the
	// Lease then, so they are counted and shown, not failed on; the readiness probe takes such a leader out of
	// the Service within its detection time.
	selfDenied []string
	noElector  int // answers whose elector did not answer the app
	longestGap time.Duration
	gapFrom    time.Time
}

// summarize checks every answer in [from, to] and measures the longest time without an answer.
func (tr *traffic) summarize(name string, from, to time.Time) window {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	w := window{name: name, from: from, to: to, byPod: map[string]int{}}
	last := from
	for _, a := range tr.answers {
		if a.sent.Before(from) || a.sent.After(to) {
			continue
		}
		w.requests++
		if a.pod == "" {
			continue
		}
		w.answered++
		w.byPod[a.pod]++
		if !tr.heldBetween(a.pod, a.sent.Add(-inFlight), a.got) {
			w.wrongPod = append(w.wrongPod, fmt.Sprintf("%s answered at %s; Lease holders: %s", a.pod, a.got.Format("15:04:05.000"), tr.holdersAround(a.got)))
		}
		switch {
		case a.leader == nil:
			w.noElector++
		case !*a.leader:
			w.selfDenied = append(w.selfDenied, fmt.Sprintf("%s answered at %s while its elector said it was not leading", a.pod, a.got.Format("15:04:05.000")))
		}
		if gap := a.got.Sub(last); gap > w.longestGap {
			w.longestGap, w.gapFrom = gap, last
		}
		last = a.got
	}
	if gap := to.Sub(last); gap > w.longestGap {
		w.longestGap, w.gapFrom = gap, last
	}
	return w
}

func (tr *traffic) holdersAround(at time.Time) string {
	var parts []string
	for _, h := range tr.leases {
		if h.at.After(at.Add(-10*time.Second)) && h.at.Before(at.Add(2*time.Second)) {
			parts = append(parts, fmt.Sprintf("%s from %s", orNobody(h.holder), h.at.Format("15:04:05.000")))
		}
	}
	return strings.Join(parts, ", ")
}

func orNobody(s string) string {
	if s == "" {
		return "(nobody)"
	}
	return s
}

func (w window) String() string {
	pods := make([]string, 0, len(w.byPod))
	for p, n := range w.byPod {
		pods = append(pods, fmt.Sprintf("%s:%d", p, n))
	}
	sort.Strings(pods)
	return fmt.Sprintf("%-58s %5d requests, %5d answered, from a non-leader %d (from the holder while its renewal was late: %d), longest without an answer %6s [%s]",
		w.name, w.requests, w.answered, len(w.wrongPod), len(w.selfDenied), w.longestGap.Round(time.Millisecond), strings.Join(pods, " "))
}

// firstSent is when the client sent its first request.
func (tr *traffic) firstSent() time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.answers) == 0 {
		return time.Now()
	}
	return tr.answers[0].sent
}

// firstHolderOtherThan is when the suite's watch first saw the Lease held by someone other than pod (or nobody)
// after since; zero if it has not.
func (tr *traffic) firstHolderOtherThan(pod string, since time.Time) time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, h := range tr.leases {
		if h.at.After(since) && h.holder != pod {
			return h.at
		}
	}
	return time.Time{}
}

// holdersBetween is the sequence of Lease holders the suite's watch saw from the holder at from (the last one seen
// before it) until to, "" for a moment without a holder.
func (tr *traffic) holdersBetween(from, to time.Time) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for i, h := range tr.leases {
		if h.at.After(to) {
			break
		}
		if h.at.Before(from) && i+1 < len(tr.leases) && tr.leases[i+1].at.Before(from) {
			continue
		}
		out = append(out, orNobody(h.holder))
	}
	return out
}

// lastAnswerFrom is when pod last answered a request sent after since; zero if it has not.
func (tr *traffic) lastAnswerFrom(pod string, since time.Time) time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var last time.Time
	for _, a := range tr.answers {
		if a.sent.After(since) && a.pod == pod {
			last = a.got
		}
	}
	return last
}

// firstAnswerOtherThan is the first pod other than pod that answered a request sent after since, and when.
func (tr *traffic) firstAnswerOtherThan(pod string, since time.Time) (string, time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, a := range tr.answers {
		if a.sent.After(since) && a.pod != "" && a.pod != pod {
			return a.pod, a.got
		}
	}
	return "", time.Time{}
}
