package elector

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

type connKey struct{}

// A fault that swallows one answer can kill the pool's idle connections silently. The request that follows an
// unanswered one (the read before a release on shutdown) must not wait out its timeout on such a connection.
func TestUnansweredRequestLeavesNoDeadConnectionBehind(t *testing.T) {
	var (
		mu      sync.Mutex
		dead    = map[net.Conn]bool{} // connections that answer nothing more
		arrived = make(chan struct{}, 2)
		both    = make(chan struct{})
		stop    = make(chan struct{})
		served  int
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		isDead := dead[r.Context().Value(connKey{}).(net.Conn)]
		mu.Unlock()
		if isDead {
			select { // the answer never comes
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		served++
		first := served <= 2
		mu.Unlock()
		if first {
			arrived <- struct{}{}
			<-both // the first two requests wait for each other: the pool opens two connections
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&coordinationv1.Lease{
			TypeMeta:   metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
			ObjectMeta: metav1.ObjectMeta{Name: "election", Namespace: "ns", ResourceVersion: "1"},
		})
	}))
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	var conns []net.Conn
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}
	srv.StartTLS()
	t.Cleanup(func() { close(stop); srv.Close() })

	leases, _, err := NewAPIs(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, "ns", "election")
	if err != nil {
		t.Fatal(err)
	}
	// Two reads at once leave two idle connections in the pool.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := leases.Get(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	<-arrived
	<-arrived
	close(both)
	wg.Wait()

	// The fault: every connection open now stops answering.
	mu.Lock()
	if len(conns) != 2 {
		t.Fatalf("the pool opened %d connections, want 2", len(conns))
	}
	for _, c := range conns {
		dead[c] = true
	}
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := leases.Update(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "election", ResourceVersion: "1"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the write on a dead connection returned %v, want a timeout", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := leases.Get(ctx); err != nil {
		t.Fatalf("the read after an unanswered write failed (%v): it went to the other dead connection in the pool", err)
	}
}
