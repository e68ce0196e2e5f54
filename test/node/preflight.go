package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// packages are the Debian packages the node needs; the harness installs the missing ones.
var packages = map[string]string{ // program -> package
	"containerd": "containerd", "ctr": "containerd", "runc": "runc", "iptables": "iptables", "nft": "nftables",
	"conntrack": "conntrack", cniBin + "/bridge": "containernetworking-plugins",
}

// Check tells why this machine cannot run the node, or nil: it needs root, the kernel's overlay filesystem,
// bridges and cgroups, and the container runtime's programs.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root (it creates a bridge, firewall rules, cgroups and mounts); run as root")
	}
	fs, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(fs), "overlay") {
		return errors.New("the kernel has no overlay filesystem, which containerd's snapshotter needs")
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if _, err := os.Stat("/sys/module/bridge"); err != nil {
			return errors.New("the kernel has no bridge support (/sys/module/bridge), which the CNI bridge plugin needs")
		}
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "memory")); err != nil {
		if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
			return fmt.Errorf("no cgroup hierarchy under %s", cgroupRoot)
		}
	}
	if missing := missingPrograms(); len(missing) > 0 {
		return fmt.Errorf("missing %s (Debian packages: %s; .ci/run installs them)", strings.Join(missing, ", "), strings.Join(missingPackages(missing), " "))
	}
	return nil
}

func missingPrograms() []string {
	var missing []string
	for prog := range packages {
		if strings.HasPrefix(prog, "/") {
			if _, err := os.Stat(prog); err != nil {
				missing = append(missing, prog)
			}
		} else if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, prog)
		}
	}
	return missing
}

func missingPackages(progs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range progs {
		if pkg := packages[p]; !seen[pkg] {
			seen[pkg] = true
			out = append(out, pkg)
		}
	}
	return out
}

// EnsurePackages installs the missing Debian packages with hack/node-packages.sh, as root on a Debian machine;
// elsewhere it does nothing and Check says what is missing.
func EnsurePackages(repoRoot string, logf func(string, ...any)) error {
	missing := missingPrograms()
	if len(missing) == 0 || os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil
	}
	logf("node: installing %s", strings.Join(missingPackages(missing), " "))
	cmd := exec.Command("bash", filepath.Join(repoRoot, "hack", "node-packages.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("installing the node's packages: %v\n%s", err, out)
	}
	return nil
}

// Preflight installs the node's missing packages where it can (EnsurePackages) and then tells, as Check does, why
// this machine cannot run the node, or nil. Callers run it before any slow build.
func Preflight(repoRoot string, logf func(string, ...any)) error {
	if err := EnsurePackages(repoRoot, logf); err != nil {
		return err
	}
	return Check()
}
