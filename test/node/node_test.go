package node

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParseTaskExit(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       TaskExit
		ok         bool
	}{
		{
			name: "container exit",
			line: `2026-11-24 05:38:43.1 +0000 UTC k8s.io /tasks/exit {"container_id":"abc","id":"abc","pid":42,"exit_status":137,"exited_at":"2026-11-24T05:38:43.123456789Z"}`,
			want: TaskExit{ContainerID: "abc", ExitStatus: 137, At: time.Date(2026, 11, 24, 5, 38, 43, 123456789, time.UTC)},
			ok:   true,
		},
		{
			name: "an exec'd process inside the container is not the container",
			line: `2026-11-24 05:38:43.1 +0000 UTC k8s.io /tasks/exit {"container_id":"abc","id":"exec-1","pid":43,"exit_status":0,"exited_at":"2026-11-24T05:38:43Z"}`,
		},
		{name: "other topic", line: `2026-11-24 05:38:43.1 +0000 UTC k8s.io /tasks/start {"container_id":"abc","pid":42}`},
		{name: "not JSON", line: `2026-11-24 05:38:43.1 +0000 UTC k8s.io /tasks/exit {"container_id":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseTaskExit(tc.line)
			if ok != tc.ok || !got.At.Equal(tc.want.At) || got.ContainerID != tc.want.ContainerID || got.ExitStatus != tc.want.ExitStatus {
				t.Errorf("parseTaskExit = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSnapshotDiff(t *testing.T) {
	before := Snapshot{Sysctls: map[string]string{"kernel.panic": "1"}, Links: []string{"eth0", "lo"}}
	after := Snapshot{Sysctls: map[string]string{"kernel.panic": "10"}, Links: []string{"eth0", BridgeName, "lo"},
		Chains: []string{"iptables filter KUBE-FIREWALL"}}
	want := []string{
		`sysctl kernel.panic: "1" before, "10" now`,
		"network interface left behind: " + BridgeName,
		"iptables chain left behind: iptables filter KUBE-FIREWALL",
	}
	if got := before.Diff(after); !slices.Equal(got, want) {
		t.Errorf("Diff:\n got %q\nwant %q", got, want)
	}
	if got := before.Diff(before); len(got) != 0 {
		t.Errorf("a snapshot differs from itself: %q", got)
	}
}

// TestAliveTreatsZombiesAsGone: an exited child that nobody has reaped yet is a zombie, which kill(pid, 0) still
// reports; alive must not.
func TestAliveTreatsZombiesAsGone(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !alive(pid) {
		t.Fatalf("running process %d reported gone", pid)
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("killed, unreaped process %d still reported alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Wait()
}
