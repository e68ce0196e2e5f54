package elector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Closing the pool's idle connections after an unanswered request (unanswered) must leave the connections in use
// alone: the Lease watch goes on delivering events after a cancelled read and after a timed-out one.
func TestUnansweredRequestKeepsTheWatch(t *testing.T) {
	next := make(chan string)
	stop := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			select { // a read that is never answered
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		for {
			select {
			case rv := <-next:
				_ = enc.Encode(map[string]any{"type": "MODIFIED", "object": &coordinationv1.Lease{
					TypeMeta:   metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
					ObjectMeta: metav1.ObjectMeta{Name: "election", Namespace: "ns", ResourceVersion: rv},
				}})
				w.(http.Flusher).Flush()
			case <-stop:
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	srv.StartTLS()
	t.Cleanup(func() { close(stop); srv.Close() })

	leases, _, err := NewAPIs(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "ns", "election")
	if err != nil {
		t.Fatal(err)
	}
	w, err := leases.Watch(t.Context(), "1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	expect := func(rv string) {
		t.Helper()
		select {
		case next <- rv:
		case <-time.After(10 * time.Second):
			t.Fatalf("the watch's stream was gone before resourceVersion %s was sent", rv)
		}
		select {
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type != watch.Modified || ev.Object.(*coordinationv1.Lease).ResourceVersion != rv {
				t.Fatalf("the watch delivered %v (open %v), want resourceVersion %s", ev, ok, rv)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the watch delivered nothing for resourceVersion %s", rv)
		}
	}
	expect("2")

	cancelled, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := leases.Get(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled read returned %v, want context.Canceled", err)
	}
	expect("3")

	timed, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := leases.Get(timed); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the timed-out read returned %v, want context.DeadlineExceeded", err)
	}
	expect("4")
}
