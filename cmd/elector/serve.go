package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leader-election/leader-election/pkg/elector"
	"github.com/leader-election/leader-election/pkg/electorhttp"
	"github.com/leader-election/leader-election/pkg/version"
)

// httpShutdownTimeout bounds the HTTP server's shutdown once the Lease is released.
const httpShutdownTimeout = time.Second

// serve takes part in the election until SIGTERM or SIGINT, then releases the Lease (if held) and returns.
func serve(s settings, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With(
		"lease", s.config.Namespace+"/"+s.config.LeaseName, "identity", s.config.Identity)

	cfg, err := restConfig(s.kubeconfig, s.kubeconfigSource)
	if err != nil {
		fmt.Fprintf(stderr, "elector: %v\n", err)
		return exitUsage
	}
	addr := net.JoinHostPort(s.bindAddress, strconv.Itoa(s.port))
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "elector: cannot serve HTTP on %s (port from %s, bind address from %s): %v\n",
			addr, s.sources["port"], s.sources["bind-address"], err)
		return exitUsage
	}
	control, err := net.Listen("unix", s.config.ControlSocket)
	if err != nil {
		_ = listener.Close()
		fmt.Fprintf(stderr, "elector: cannot serve the control socket %s (from %s): %v\n", s.config.ControlSocket, s.sources["control-socket"], err)
		return exitUsage
	}
	leases, events, err := elector.NewAPIs(cfg, s.config.Namespace, s.config.LeaseName)
	if err != nil {
		fmt.Fprintf(stderr, "elector: %v\n", err)
		return exitUsage
	}
	checker, err := newAppCheck(s)
	if err != nil {
		fmt.Fprintf(stderr, "elector: application check (from %s): %v\n", s.sources["app-check"], err)
		return exitUsage
	}
	opts := electorOptions(log, checker)
	if s.config.Handover {
		// Candidates are advertised only for handovers: with --handover=false the elector makes the requests it
		// made before handover existed, the baseline the benchmarks compare with.
		if opts.Candidates, err = elector.NewCandidateAPI(cfg, s.config.Namespace, s.config.LeaseName); err != nil {
			fmt.Fprintf(stderr, "elector: %v\n", err)
			return exitUsage
		}
	}
	registry := prometheus.NewRegistry()
	if opts.Metrics, err = electorhttp.NewMetrics(registry, s.config.LeaseName); err != nil {
		fmt.Fprintf(stderr, "elector: registering metrics: %v\n", err)
		return exitUsage
	}
	e, err := elector.New(s.config, leases, events, opts)
	if err != nil {
		fmt.Fprintf(stderr, "elector: %v\n", err)
		return exitUsage
	}
	if err := registry.Register(electorhttp.NewStatusCollector(e)); err != nil {
		fmt.Fprintf(stderr, "elector: registering metrics: %v\n", err)
		return exitUsage
	}

	ctx, stop := signalContext(log)
	defer stop()
	checked := make(chan struct{})
	if checker != nil {
		go func() { defer close(checked); checker.Run(ctx) }()
		log.Info("leadership follows the application's health", "check", checker.String())
	} else {
		close(checked)
	}
	server := &http.Server{Handler: electorhttp.Handler(e, registry), ReadHeaderTimeout: 5 * time.Second}
	var code atomic.Int32 // exitOK unless the HTTP server fails
	controlServer := &http.Server{Handler: electorhttp.ControlHandler(e), ReadHeaderTimeout: 5 * time.Second}
	for srv, l := range map[*http.Server]net.Listener{server: listener, controlServer: control} {
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP server failed; stopping", "listener", l.Addr().String(), "error", err)
				code.Store(exitFailure)
				stop()
			}
		}()
	}
	log.Info("taking part in the election", "version", version.Version, "http", listener.Addr().String(),
		"controlSocket", s.config.ControlSocket, "podUID", s.config.UID,
		"leaseDuration", s.config.LeaseDuration, "renewDeadline", s.config.RenewDeadline,
		"retryPeriod", s.config.RetryPeriod, "renewInterval", s.config.RenewInterval, "handover", s.config.Handover,
		"readiness", s.config.Readiness)

	if err := e.Run(ctx); err != nil {
		// A standby still takes over, once the lease expires.
		log.Warn("stopped without releasing the Lease", "error", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	for _, srv := range []*http.Server{server, controlServer} {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			_ = srv.Close()
		}
	}
	<-checked // a check in flight ends with ctx
	log.Info("stopped")
	return int(code.Load())
}

// signalContext ends at the first SIGTERM or SIGINT, so that the Lease is released; a second signal exits
// at once, for an operator who does not want to wait.
func signalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case sig := <-signals:
			log.Info("stopping: releasing the Lease if held", "signal", sig.String())
			cancel()
		case <-ctx.Done():
			return
		}
		sig := <-signals
		log.Warn("second signal: exiting at once", "signal", sig.String())
		os.Exit(exitFailure)
	}()
	return ctx, cancel
}
