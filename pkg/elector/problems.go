package elector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonOf sorts an API error into a short, stable reason: the label of the error metric, and what decides
// whether a failure is news worth logging. Messages are not stable (they carry ephemeral ports and times).
func ReasonOf(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if r := status.Status().Reason; r != metav1.StatusReasonUnknown && r != "" {
			return string(r)
		}
		return "HTTP" + strconv.Itoa(int(status.Status().Code))
	}
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	switch {
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case notAnswered(err):
		return "Timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ConnectionRefused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "ConnectionReset"
	case errors.As(err, &dnsErr):
		return "DNS"
	case errors.As(err, &certErr), errors.As(err, &unknownAuthority):
		return "TLS"
	}
	return "Other"
}

// problemLog logs a failing operation when its reason changes, and its recovery, but not every retry: an API
// server that is down for an hour must not bury the log.
type problemLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]string // operation -> reason of its current failure
}

func newProblemLog(log *slog.Logger) *problemLog {
	return &problemLog{log: log, last: map[string]string{}}
}

// failed records a failure of an operation and logs it if its reason is new.
func (p *problemLog) failed(op string, err error) {
	reason := ReasonOf(err)
	p.mu.Lock()
	changed := p.last[op] != reason
	p.last[op] = reason
	p.mu.Unlock()
	if changed {
		p.log.Warn("API request failing; retrying quietly until the reason changes", "operation", op, "reason", reason, "error", err)
	}
}

// succeeded records a success and logs the recovery of an operation that was failing.
func (p *problemLog) succeeded(op string) {
	p.mu.Lock()
	reason, was := p.last[op]
	delete(p.last, op)
	p.mu.Unlock()
	if was {
		p.log.Info("API request succeeding again", "operation", op, "after", reason)
	}
}

// notAnswered reports whether a request ended without an answer from the server: cancelled, or timed out on
// the client's side. Its outcome is unknown: a write may have landed.
func notAnswered(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout())
}
