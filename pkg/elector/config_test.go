package elector

import (
	"strings"
	"testing"
	"time"
)

func TestCheckDurationsNamesThePairOutOfOrder(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	for _, tc := range []struct {
		lease, renew, retry time.Duration
		want                string // "" = valid
	}{
		{15 * s, 10 * s, 2 * s, ""},
		{4 * s, 2 * s, 500 * ms, ""},
		{3 * s, s, 250 * ms, ""},
		{300 * s, 10 * s, 2 * s, ""},
		{15 * s, 10 * s, 0, "retry-period (0s) must be greater than zero"},
		{15 * s, 10 * s, -s, "retry-period (-1s) must be greater than zero"},
		{15 * s, 10 * s, 249 * ms, "retry-period (249ms) must be at least 250ms"},
		{15 * s, 2 * s, 2 * s, "renew-deadline (2s) must be longer than retry-period (2s)"},
		{15 * s, s, 2 * s, "renew-deadline (1s) must be longer than retry-period (2s)"},
		{15 * s, 999 * ms, 500 * ms, "renew-deadline (999ms) must be at least 1s"},
		{10 * s, 10 * s, 2 * s, "lease-duration (10s) must be longer than renew-deadline (10s)"},
		{5 * s, 10 * s, 2 * s, "lease-duration (5s) must be longer than renew-deadline (10s)"},
		{2 * s, 1500 * ms, 500 * ms, "lease-duration (2s) must be between 3s and 5m0s"},
		{301 * s, 10 * s, 2 * s, "lease-duration (5m1s) must be between 3s and 5m0s"},
		{15500 * ms, 10 * s, 2 * s, "lease-duration (15.5s) must be a whole number of seconds (a Lease stores seconds)"},
		// The example: accepted before, though the probe could not see the leader turn unready in time.
		{3 * s, 1900 * ms, 500 * ms, "lease-duration (3s) must exceed renew-deadline (1.9s) by at least 2s, the readiness probe's detection time (period 1s + timeout 1s); the margin is 1.1s"},
		{15 * s, 14 * s, 2 * s, "lease-duration (15s) must exceed renew-deadline (14s) by at least 2s, the readiness probe's detection time (period 1s + timeout 1s); the margin is 1s"},
	} {
		err := CheckDurations(tc.lease, tc.renew, tc.retry)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckDurations(%s, %s, %s) = %v, want valid", tc.lease, tc.renew, tc.retry, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("CheckDurations(%s, %s, %s) = %v, want %q", tc.lease, tc.renew, tc.retry, err, tc.want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{Namespace: "Not_A_Namespace", LeaseName: "", LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second, Readiness: "sometimes"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("an invalid configuration validated")
	}
	for _, want := range []string{"identity", `namespace "Not_A_Namespace"`, `lease name ""`, "lease-duration (1s) must be longer than renew-deadline (2s)", `readiness "sometimes"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := testConfig("me").Validate(); err != nil {
		t.Errorf("a valid configuration was refused: %v", err)
	}
}
