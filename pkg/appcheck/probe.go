// Package appcheck runs one check of this pod's application from inside the pod, the way the kubelet runs a
// readiness probe (httpGet, tcpSocket or grpc; period, timeout, success and failure thresholds), and keeps the
// verdict for the elector (elector.AppHealth). Probe validation and defaults are pure functions; the webhook uses
// them so that it never hands the elector a check the elector would refuse.
package appcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The kubelet's defaults for a probe's timing (the API server fills them in; a probe written by hand may not).
const (
	DefaultTimeoutSeconds   = 1
	DefaultPeriodSeconds    = 10
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// FieldError is a refused probe field; its message names the field, the value and what is accepted.
type FieldError struct {
	Field, Value, Want string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s is not accepted: %s", e.Field, e.Value, e.Want)
}

// Parse decodes a probe from JSON (unknown fields refused) and validates it.
func Parse(raw string) (corev1.Probe, error) {
	var p corev1.Probe
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return corev1.Probe{}, fmt.Errorf("not a probe in JSON (the shape of a container's readinessProbe, e.g. {\"httpGet\":{\"path\":\"/healthz\",\"port\":8080}}): %w", err)
	}
	if dec.More() {
		return corev1.Probe{}, errors.New("not a probe in JSON: text follows the probe object")
	}
	if err := Validate(p); err != nil {
		return corev1.Probe{}, err
	}
	return p, nil
}

// Validate accepts a probe the elector can run: exactly one of httpGet, tcpSocket and grpc, every port a number
// from 1 to 65535, a host that is empty (the pod IP) or loopback, and no negative timing. Every problem is
// reported, each naming its field.
func Validate(p corev1.Probe) error {
	var errs []error
	bad := func(field, value, want string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Want: want})
	}

	handlers := 0
	if p.Exec != nil {
		bad("exec", fmt.Sprintf("%q", p.Exec.Command), "the elector runs in its own container and cannot run a command in the application's; use httpGet, tcpSocket or grpc")
	}
	if h := p.HTTPGet; h != nil {
		handlers++
		checkPort(bad, "httpGet.port", h.Port)
		checkHost(bad, "httpGet.host", h.Host)
		if h.Scheme != "" && h.Scheme != corev1.URISchemeHTTP && h.Scheme != corev1.URISchemeHTTPS {
			bad("httpGet.scheme", fmt.Sprintf("%q", h.Scheme), `want "HTTP" or "HTTPS"`)
		}
		if u, err := url.Parse(h.Path); err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Fragment != "" {
			bad("httpGet.path", fmt.Sprintf("%q", h.Path), "want a path with an optional query, such as /healthz or /ready?verbose=1")
		}
		for i, header := range h.HTTPHeaders {
			if !httpguts.ValidHeaderFieldName(header.Name) || !httpguts.ValidHeaderFieldValue(header.Value) {
				bad(fmt.Sprintf("httpGet.httpHeaders[%d]", i), fmt.Sprintf("%q: %q", header.Name, header.Value), "want an HTTP header name and a value without control characters")
			}
		}
	}
	if t := p.TCPSocket; t != nil {
		handlers++
		checkPort(bad, "tcpSocket.port", t.Port)
		checkHost(bad, "tcpSocket.host", t.Host)
	}
	if g := p.GRPC; g != nil {
		handlers++
		if g.Port < 1 || g.Port > 65535 {
			bad("grpc.port", fmt.Sprint(g.Port), "want a port number from 1 to 65535")
		}
		if g.Mode != nil && *g.Mode != corev1.GRPCProbeModePlaintext && *g.Mode != corev1.GRPCProbeModeTLS {
			bad("grpc.mode", fmt.Sprintf("%q", *g.Mode), fmt.Sprintf("want %q (the default) or %q", corev1.GRPCProbeModePlaintext, corev1.GRPCProbeModeTLS))
		}
	}
	switch {
	case handlers == 0 && p.Exec == nil:
		errs = append(errs, errors.New("no check: want one of httpGet, tcpSocket or grpc"))
	case handlers > 1:
		errs = append(errs, errors.New("more than one check: want exactly one of httpGet, tcpSocket or grpc"))
	}
	for _, t := range []struct {
		field string
		value int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds},
		{"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold},
		{"failureThreshold", p.FailureThreshold},
	} {
		if t.value < 0 {
			bad(t.field, fmt.Sprint(t.value), "want 0 (the kubelet's default) or more")
		}
	}
	return errors.Join(errs...)
}

// checkPort accepts a port number; a name means the webhook did not resolve it against the container's ports.
func checkPort(bad func(field, value, want string), field string, port intstr.IntOrString) {
	if port.Type != intstr.Int {
		bad(field, fmt.Sprintf("%q", port.StrVal), "want a port number from 1 to 65535 (a named port is resolved by the webhook against the container's ports)")
		return
	}
	if port.IntVal < 1 || port.IntVal > 65535 {
		bad(field, fmt.Sprint(port.IntVal), "want a port number from 1 to 65535")
	}
}

// checkHost refuses every host outside the pod: the elector runs with the pod's network position, and a check
// aimed at another address would let whoever writes the pod template use it to probe (and, for httpGet, send
// requests with chosen headers to) anything the pod can reach.
func checkHost(bad func(field, value, want string), field, host string) {
	if host != "" && !IsLoopback(host) {
		bad(field, fmt.Sprintf("%q", host), "want no host (the pod's own IP) or a loopback address (localhost, 127.0.0.1, ::1): the elector checks its own pod only")
	}
}

// IsLoopback reports whether host is "localhost" or a loopback IP literal. No name is looked up: "localhost" is
// dialled as 127.0.0.1, so no resolver can point it elsewhere.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

// WithDefaults returns the probe with the API server's defaults in every field it defaults (timing, an httpGet's
// scheme and path, a grpc service): the same probe before and after the API server's defaulting.
func WithDefaults(p corev1.Probe) corev1.Probe {
	p = *p.DeepCopy()
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = DefaultPeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultSuccessThreshold
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = DefaultFailureThreshold
	}
	if p.HTTPGet != nil && p.HTTPGet.Scheme == "" {
		p.HTTPGet.Scheme = corev1.URISchemeHTTP
	}
	if p.HTTPGet != nil && p.HTTPGet.Path == "" {
		p.HTTPGet.Path = "/"
	}
	if p.GRPC != nil && p.GRPC.Service == nil {
		p.GRPC.Service = new(string)
	}
	return p
}

// Encode is the probe as the elector's ELECTOR_APP_CHECK value: compact JSON, fields in a fixed order.
func Encode(p corev1.Probe) string {
	data, err := json.Marshal(p)
	if err != nil { // a corev1.Probe always marshals
		panic(err)
	}
	return string(bytes.TrimSpace(data))
}
