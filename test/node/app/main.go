// Command app is the sample application the end-to-end suite and the demo run on the real node: an HTTP server
// that answers every request with its pod's name and whether the elector beside it says it leads, so a client
// of the Service can tell which pod answered and whether that pod was entitled to.
//
//	GET  /        {"pod": "<POD_NAME>", "leader": true|false|null}  (null: the elector did not answer)
//	GET  /ready   the container's readiness probe: 200, or 503 after POST /unready
//	POST /unready turn unready until POST /ready
//	POST /crash   exit at once with status 1, as a crashing application would
//
// On SIGTERM it keeps serving for --drain (an application finishing its work), then exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	elector := flag.String("elector", "http://127.0.0.1:8642/", "the elector's GET / in this pod")
	drain := flag.Duration("drain", time.Second, "how long to keep serving after SIGTERM")
	flag.Parse()
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod, _ = os.Hostname()
	}

	var unready atomic.Bool
	electorClient := &http.Client{Timeout: 300 * time.Millisecond}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"pod": pod, "leader": isLeader(r.Context(), electorClient, *elector)})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if unready.Load() {
			http.Error(w, "unready on request", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /unready", func(w http.ResponseWriter, _ *http.Request) { unready.Store(true) })
	mux.HandleFunc("POST /ready", func(w http.ResponseWriter, _ *http.Request) { unready.Store(false) })
	mux.HandleFunc("POST /crash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(os.Stderr, "app: crashing on request")
		os.Exit(1)
	})

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Fprintf(os.Stderr, "app: SIGTERM, serving %s more\n", *drain)
		time.Sleep(*drain)
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Fprintf(os.Stderr, "app: pod %s serving on %s\n", pod, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "app: exited")
}

// isLeader asks the elector; nil when it does not answer.
func isLeader(ctx context.Context, hc *http.Client, url string) *bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var state struct {
		IsLeader *bool `json:"isLeader"`
	}
	if json.NewDecoder(resp.Body).Decode(&state) != nil {
		return nil
	}
	return state.IsLeader
}
