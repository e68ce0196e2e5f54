package elector

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// sseKeepAlive is how often an idle /events stream carries a comment, so that proxies and clients can tell
// a quiet stream from a dead one.
const sseKeepAlive = 15 * time.Second

// Handler serves the elector's HTTP API: /readyz, /healthz, /metrics, GET /, GET /events and POST /stepdown.
func (e *Elector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		writeCheck(w, e.Ready)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeCheck(w, e.Healthy)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Status())
	})
	mux.HandleFunc("GET /events", e.serveEvents)
	mux.HandleFunc("POST /stepdown", e.serveStepDown)
	return mux
}

// ControlHandler serves the state-changing calls on the pod-local control socket (see Config.ControlSocket):
// POST /stepdown, and GET / so that a caller can see the outcome on the same socket.
func (e *Elector) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stepdown", e.stepDownNow)
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
func (e *Elector) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	updates, cancel := e.board.subscribe(func(s Snapshot) Status { return statusOf(s, e.clock.Now(), e.cfg) })
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx would otherwise hold events back
	w.WriteHeader(http.StatusOK)
	for {
		keepAlive := e.clock.NewTimer(sseKeepAlive)
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
		case <-keepAlive.C():
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
func (e *Elector) serveStepDown(w http.ResponseWriter, r *http.Request) {
	http.Error(w, fmt.Sprintf("step-down is not accepted over TCP (this request came from %s; a service mesh can forward outside traffic from loopback). "+
		"Ask on the pod-local Unix socket %s instead, from inside the pod: curl --abstract-unix-socket %s -X POST http://localhost/stepdown",
		r.RemoteAddr, e.cfg.ControlSocket, strings.TrimPrefix(e.cfg.ControlSocket, "@")), http.StatusForbidden)
}

// stepDownNow releases the Lease on request from inside the pod (the control socket).
func (e *Elector) stepDownNow(w http.ResponseWriter, r *http.Request) {
	err := e.StepDown(r.Context())
	switch {
	case errors.Is(err, ErrNotLeader):
		http.Error(w, fmt.Sprintf("not the leader, nothing to step down from (the Lease names %q)", e.board.current().Holder), http.StatusConflict)
	case err != nil:
		http.Error(w, fmt.Sprintf("stopped leading, but the Lease could not be released (another replica takes over when it expires): %v", err), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, e.Status())
	}
}
