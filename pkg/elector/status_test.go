package elector

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReadinessIsDerivedFromTheTimeOfTheLastRenewal(t *testing.T) {
	leader := testConfig("me")
	member := testConfig("me")
	member.Readiness = ReadinessMember
	sent := epoch
	leading := Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: sent}
	standby := Snapshot{Known: true, Holder: "other"}
	leavingLeader := leading
	leavingLeader.LeavingService = "the application is unhealthy (HTTP 503)"
	for _, tc := range []struct {
		name   string
		cfg    Config
		snap   Snapshot
		synced bool
		at     time.Duration // after sent
		want   bool
		reason string
	}{
		{"fresh leader", leader, leading, true, 1999 * time.Millisecond, true, "leader"},
		{"leader at its renew deadline", leader, leading, true, 2 * time.Second, false, "stale leader"},
		{"leader resumed long after", leader, leading, true, time.Hour, false, "stale leader"},
		{"leader without a watch is still the leader", leader, leading, false, time.Second, true, "leader"},
		{"standby", leader, standby, true, 0, false, "other holds the Lease"},
		{"nobody holds it", leader, Snapshot{Known: true}, true, 0, false, "nobody holds"},
		{"not read yet", leader, Snapshot{}, false, 0, false, "not been read"},
		{"member following the Lease", member, standby, true, 0, true, "member"},
		{"member without a watch", member, standby, false, 0, false, "watch is not established"},
		{"member that leads, fresh", member, leading, true, time.Second, true, "leader"},
		{"member that leads, fresh, watch down", member, leading, false, time.Second, true, "leader"},
		{"member that leads, stale", member, leading, true, 2 * time.Second, false, "stale leader"},
		{"fresh leader leaving the Service", leader, leavingLeader, true, time.Second, false, "leaving the Service: the application is unhealthy"},
		{"fresh member leader leaving the Service", member, leavingLeader, true, time.Second, false, "leaving the Service: the application is unhealthy"},
	} {
		ok, reason := ready(tc.snap, watchState{synced: tc.synced, lastActivity: sent.Add(tc.at)}, false, sent.Add(tc.at), tc.cfg)
		if ok != tc.want || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: ready = %v (%q), want %v (%q)", tc.name, ok, reason, tc.want, tc.reason)
		}
	}
}

func TestHealthzFailsOnlyWhenTheLoopIsSilentForALeaseDuration(t *testing.T) {
	cfg := testConfig("me")
	if ok, _ := healthy(epoch, epoch.Add(cfg.LeaseDuration-time.Millisecond), cfg); !ok {
		t.Error("unhealthy just before a lease duration of silence")
	}
	if ok, why := healthy(epoch, epoch.Add(cfg.LeaseDuration), cfg); ok || !strings.Contains(why, "stuck") {
		t.Errorf("healthy after a lease duration of silence (%q)", why)
	}
}

func TestStatusJSONStartsWithNameAndCarriesTheFencingToken(t *testing.T) {
	cfg := testConfig("me")
	st := statusOf(Snapshot{Known: true, Holder: "me", Transitions: 9, Leading: true, LastRenewSent: epoch}, epoch.Add(time.Second), cfg)
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"name":"me","isLeader":true,"leaseTransitions":9,"validUntil":"2030-01-01T00:00:02Z"`) {
		t.Errorf("GET / answer %s: want name first, then isLeader, leaseTransitions and validUntil = last renewal sent + renew deadline", raw)
	}
	stale := statusOf(Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: epoch}, epoch.Add(2*time.Second), cfg)
	if stale.IsLeader {
		t.Error("isLeader true past the renew deadline")
	}
	standby := statusOf(Snapshot{Known: true, Holder: "other", Transitions: 9, ObservedExpiry: epoch.Add(2 * time.Second)}, epoch, cfg)
	if standby.IsLeader || standby.ValidUntil != "2030-01-01T00:00:02Z" || standby.Name != "other" {
		t.Errorf("standby status %+v: want the holder's name and the observed expiry", standby)
	}
	if free := statusOf(Snapshot{Known: true}, epoch, cfg); free.ValidUntil != "" {
		t.Errorf("validUntil %q for a Lease nobody holds", free.ValidUntil)
	}
}

// A watch that stays open but delivers nothing is not following the Lease (defect 3 of issue 9).
func TestMemberIsNotReadyOnAWatchSilentForALeaseDuration(t *testing.T) {
	cfg := testConfig("me")
	cfg.Readiness = ReadinessMember
	standby := Snapshot{Known: true, Holder: "other"}
	w := watchState{synced: true, lastActivity: epoch}
	if ok, why := ready(standby, w, false, epoch.Add(cfg.LeaseDuration-time.Millisecond), cfg); !ok {
		t.Fatalf("unready with a watch that delivered %s ago: %s", cfg.LeaseDuration-time.Millisecond, why)
	}
	if ok, why := ready(standby, w, false, epoch.Add(cfg.LeaseDuration), cfg); ok || !strings.Contains(why, "silent") {
		t.Fatalf("ready (%q) with a watch silent for a lease duration", why)
	}
}

// Contract 3: a replica the label controller still labels leader, but that is not a fresh leader, is unready
// in member mode, so the Service selecting the label drops it.
func TestMemberLabelledLeaderButNotAFreshLeaderIsUnready(t *testing.T) {
	cfg := testConfig("me")
	cfg.Readiness = ReadinessMember
	w := watchState{synced: true, lastActivity: epoch}
	if ok, why := ready(Snapshot{Known: true, Holder: "other"}, w, true, epoch, cfg); ok || !strings.Contains(why, "labelled") {
		t.Fatalf("a standby labelled leader: ready %v (%q)", ok, why)
	}
	fresh := Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: epoch}
	if ok, why := ready(fresh, w, true, epoch.Add(time.Second), cfg); !ok {
		t.Fatalf("a fresh leader labelled leader is unready: %s", why)
	}
}

func TestLabelsFileIsReadAsTheDownwardAPIWritesItAndAMissingFileIsNotALeader(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/labels"
	var logged bytes.Buffer
	f := &labelsFile{path: path, log: slog.New(slog.NewTextHandler(&logged, nil))}
	for range 3 {
		if f.labelledLeader() {
			t.Fatal("a missing labels file counts as labelled leader")
		}
	}
	if n := strings.Count(logged.String(), "cannot read the pod's labels"); n != 1 {
		t.Fatalf("the unreadable file was logged %d times, want once:\n%s", n, logged.String())
	}
	if err := os.WriteFile(path, []byte("app=\"web\"\nleader-election/member=\"true\"\nleader-election/role=\"leader\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !f.labelledLeader() {
		t.Fatal("role=leader in the labels file not recognised")
	}
	if err := os.WriteFile(path, []byte("app=\"web\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f.labelledLeader() {
		t.Fatal("labelled leader without the label")
	}
}

// Defect 6 of issue 9: GET / kept naming a replica that had given up or was cut off; clients of the retired
// leader-elector compare name with their hostname, so name may be this replica only while it is a fresh leader.
func TestNameIsThisReplicaOnlyWhileItIsAFreshLeader(t *testing.T) {
	cfg := testConfig("me")
	for _, tc := range []struct {
		name string
		snap Snapshot
		at   time.Duration
		want string
	}{
		{"fresh leader", Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: epoch}, time.Second, "me"},
		{"stale leader", Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: epoch}, 2 * time.Second, ""},
		{"gave up, the Lease still names it", Snapshot{Known: true, Holder: "me"}, 0, ""},
		{"another pod of the same name holds it", Snapshot{Known: true, Holder: "me", Transitions: 3}, 0, ""},
		{"another replica holds it", Snapshot{Known: true, Holder: "other"}, 0, "other"},
	} {
		if got := statusOf(tc.snap, epoch.Add(tc.at), cfg).Name; got != tc.want {
			t.Errorf("%s: name %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMemberNotYetAdvertisedAsAHealthyCandidateIsUnready(t *testing.T) {
	cfg := testConfig("me")
	cfg.Readiness = ReadinessMember
	w := watchState{synced: true, lastActivity: epoch, notAdvertised: true}
	if ok, why := ready(Snapshot{Known: true, Holder: "other"}, w, false, epoch, cfg); ok || !strings.Contains(why, "candidate") {
		t.Errorf("a member whose candidate Lease is not written (or says unhealthy) is ready (%v, %q): a leader could not hand over to it", ok, why)
	}
	w.notAdvertised = false
	if ok, why := ready(Snapshot{Known: true, Holder: "other"}, w, false, epoch, cfg); !ok {
		t.Errorf("an advertised member is unready: %s", why)
	}
	fresh := Snapshot{Known: true, Holder: "me", Leading: true, LastRenewSent: epoch}
	if ok, why := ready(fresh, watchState{notAdvertised: true}, false, epoch, cfg); !ok {
		t.Errorf("a fresh leader must be ready whatever its advertisement says: %s", why)
	}
}
