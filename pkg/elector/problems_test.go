package elector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReasonOfIsStableAcrossRetries(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{apierrors.NewForbidden(leaseResource, "demo", errors.New("RBAC")), "Forbidden"},
		{apierrors.NewConflict(leaseResource, "demo", errors.New("changed")), "Conflict"},
		{&apierrors.StatusError{ErrStatus: metav1.Status{Code: 502}}, "HTTP502"},
		{fmt.Errorf("Get https://127.0.0.1:40123/...: %w", refused), "ConnectionRefused"},
		{fmt.Errorf("Put ...: %w", context.DeadlineExceeded), "Timeout"},
		{errors.New("something else"), "Other"},
	} {
		if got := ReasonOf(tc.err); got != tc.want {
			t.Errorf("ReasonOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestProblemsAreLoggedOncePerChangeOfReason(t *testing.T) {
	var buf bytes.Buffer
	p := newProblemLog(slog.New(slog.NewTextHandler(&buf, nil)))
	refused := func(port int) error {
		return fmt.Errorf("dial tcp 127.0.0.1:%d: %w", port, &net.OpError{Err: syscall.ECONNREFUSED})
	}
	for i := range 50 {
		p.failed("renew the Lease", refused(40000+i)) // the message differs every time, the reason does not
	}
	p.failed("renew the Lease", apierrors.NewForbidden(leaseResource, "demo", errors.New("RBAC")))
	p.failed("renew the Lease", apierrors.NewForbidden(leaseResource, "demo", errors.New("RBAC")))
	p.succeeded("renew the Lease")
	p.succeeded("renew the Lease")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (refused, forbidden, recovered), got %d:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"ConnectionRefused", "Forbidden", "succeeding again"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q does not mention %q", i+1, lines[i], want)
		}
	}
}

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second}
	var got []time.Duration
	for failures := 1; failures <= 6; failures++ {
		got = append(got, b.delay(failures))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}
