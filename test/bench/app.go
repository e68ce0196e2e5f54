package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// appEndpoint stands in for a replica's application as its health check sees it: an HTTP server on loopback
// whose /healthz answers 200 while healthy and 503 otherwise.
type appEndpoint struct {
	server  *http.Server
	port    int
	healthy atomic.Bool
}

// startApp starts a healthy application endpoint.
func startApp() (*appEndpoint, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &appEndpoint{port: l.Addr().(*net.TCPAddr).Port}
	a.healthy.Store(true)
	a.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !a.healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go func() { _ = a.server.Serve(l) }()
	return a, nil
}

func (a *appEndpoint) close() { _ = a.server.Close() }

// check is the --app-check value that probes this endpoint: the readinessProbe a webhook would hand over, every
// second, one failure or success enough.
func (a *appEndpoint) check() string {
	probe := corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Host: "127.0.0.1", Path: "/healthz", Port: intstr.FromInt(a.port)}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1,
	}
	data, _ := json.Marshal(probe) // a Probe always marshals
	return string(data)
}

// writeLabels writes a pod's labels in the downward API's format (key="value", one a line) to dir/<id>.labels
// and returns the file's path.
func writeLabels(dir, id string, labels map[string]string) (string, error) {
	var b []byte
	for _, k := range sortedKeys(labels) {
		b = append(b, k+"="+strconv.Quote(labels[k])+"\n"...)
	}
	path := filepath.Join(dir, id+".labels")
	return path, os.WriteFile(path, b, 0o644)
}
