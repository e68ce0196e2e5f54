package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// machine describes where the numbers were measured; it names no path and no host.
type machine struct {
	cpu       string
	cores     int
	memory    int64 // bytes
	os        string
	kernel    string
	goVersion string
	apiServer string
	// loadBefore is the one-minute load average when the run started: anything else running on the machine
	// skews every number.
	loadBefore string
}

func (m machine) String() string {
	s := fmt.Sprintf("%s, %d cores, %.1f GiB memory, %s (kernel %s), %s", m.cpu, m.cores, float64(m.memory)/(1<<30), m.os, m.kernel, m.goVersion)
	if m.apiServer != "" {
		s += ", kube-apiserver " + m.apiServer
	}
	if m.loadBefore != "" {
		s += "; load average " + m.loadBefore + " when the run started"
	}
	return s
}

func describeMachine() (machine, error) {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version(), cpu: "unknown CPU", os: runtime.GOOS}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.memory = kb * 1024
				}
			}
		}
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.os = strings.Trim(v, `"`)
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			m.loadBefore = f[0]
		}
	}
	return m, nil
}

// serverVersion is the API server's version as it reports it.
func serverVersion(ws *workspace) (string, error) {
	v, err := ws.cs.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("reading the API server's version: %w", err)
	}
	return v.GitVersion, nil
}
