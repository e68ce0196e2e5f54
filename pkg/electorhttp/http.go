// Package electorhttp is the elector's surface: its HTTP API (probes, status, Server-Sent Events, step-down on the
// control socket) and its Prometheus metrics. The election itself is pkg/elector's; this package only reads what
// it publishes, and asks it to step down.
package electorhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leader-election/leader-election/pkg/elector"
)

// sseKeepAlive is how often an idle /events stream carries a comment, so that proxies and clients can tell
// a quiet stream from a dead one.
const sseKeepAlive = 15 * time.Second

// Elector is the election as the HTTP API sees it; *elector.Elector implements it.
type Elector interface {
	// Status is the answer of GET / and of each /events message.
	Status() elector.Status
	// Subscribe streams the Status: the current one, then every change (see elector.Elector.Subscribe).
	Subscribe() (updates <-chan elector.Status, cancel func())
	// Snapshot is what the election loop last published.
	Snapshot() elector.Snapshot
	// Config is the configuration the elector runs with.
	Config() elector.Config
	// Ready decides /readyz.
	Ready() (bool, string)
	// Healthy decides /healthz.
	Healthy() (bool, string)
	// StepDown leaves the leadership (elector.ErrNotLeader on a replica that does not hold the Lease).
	StepDown(ctx context.Context) error
}

// Handler serves the elector's HTTP API: /readyz, /healthz, /metrics (from metrics), GET /, GET /events and
// POST /stepdown.
func Handler(e Elector, metrics prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		writeCheck(w, e.Ready)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeCheck(w, e.Healthy)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Status())
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) { serveEvents(e, w, r) })
	mux.HandleFunc("POST /stepdown", func(w http.ResponseWriter, r *http.Request) { serveStepDown(e, w, r) })
	return mux
}

// ControlHandler serves the state-changing calls on the pod-local control socket (elector.Config.ControlSocket):
// POST /stepdown, and GET / so that a caller can see the outcome on the same socket.
func ControlHandler(e Elector) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stepdown", func(w http.ResponseWriter, r *http.Request) { stepDownNow(e, w, r) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Status())
	})
	return mux
}

// writeCheck answers a probe: 200 or 503, with the reason as text either way.
func writeCheck(w http.ResponseWriter, check func() (bool, string)) {
	ok, reason := check()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, reason)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// serveEvents streams the Status as Server-Sent Events: once on connect, then on every change.
func serveEvents(e Elector, w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	updates, cancel := e.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx would otherwise hold events back
	w.WriteHeader(http.StatusOK)
	for {
		keepAlive := time.NewTimer(sseKeepAlive)
		select {
		case st, open := <-updates:
			keepAlive.Stop()
			if !open {
				return
			}
			data, err := json.Marshal(st)
			if err != nil {
				return
			}
			// Unnamed events, so that a browser's EventSource.onmessage sees them.
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
				return
			}
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			keepAlive.Stop()
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// serveStepDown refuses a step-down over TCP, from every address: a service mesh delivers outside traffic from
// loopback addresses (Istio: 127.0.0.6), so no TCP source proves that the caller is inside the pod. The answer
// says where to ask instead.
func serveStepDown(e Elector, w http.ResponseWriter, r *http.Request) {
	socket := e.Config().ControlSocket
	http.Error(w, fmt.Sprintf("step-down is not accepted over TCP (this request came from %s; a service mesh can forward outside traffic from loopback). "+
		"Ask on the pod-local Unix socket %s instead, from inside the pod: curl --abstract-unix-socket %s -X POST http://localhost/stepdown",
		r.RemoteAddr, socket, strings.TrimPrefix(socket, "@")), http.StatusForbidden)
}

// stepDownNow releases the Lease on request from inside the pod (the control socket).
func stepDownNow(e Elector, w http.ResponseWriter, r *http.Request) {
	err := e.StepDown(r.Context())
	switch {
	case errors.Is(err, elector.ErrNotLeader):
		http.Error(w, fmt.Sprintf("not the leader, nothing to step down from (the Lease names %q)", e.Snapshot().Holder), http.StatusConflict)
	case err != nil:
		http.Error(w, fmt.Sprintf("stopped leading, but the Lease could not be released (another replica takes over when it expires): %v", err), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, e.Status())
	}
}
