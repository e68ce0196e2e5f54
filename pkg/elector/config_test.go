package elector

import (
	"strings"
	"testing"
	"time"
)

func TestCheckDurationsNamesThePairOutOfOrder(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		lease, renew, retry time.Duration
		want                string // "" = valid
	}{
		{15 * s, 10 * s, 2 * s, ""},
		{2 * s, 1500 * time.Millisecond, 500 * time.Millisecond, ""},
		{15 * s, 10 * s, 0, "retry-period (0s) must be greater than zero"},
		{15 * s, 10 * s, -s, "retry-period (-1s) must be greater than zero"},
		{15 * s, 2 * s, 2 * s, "renew-deadline (2s) must be longer than retry-period (2s)"},
		{15 * s, s, 2 * s, "renew-deadline (1s) must be longer than retry-period (2s)"},
		{10 * s, 10 * s, 2 * s, "lease-duration (10s) must be longer than renew-deadline (10s)"},
		{5 * s, 10 * s, 2 * s, "lease-duration (5s) must be longer than renew-deadline (10s)"},
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
