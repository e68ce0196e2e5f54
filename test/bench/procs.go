package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs starts the benchmark's processes and ends every one still running when the benchmark stops, whether it
// finished, failed or was interrupted: a leftover elector would keep writing to a Lease of the next run.
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

func newProcs() *procs { return &procs{live: map[*proc]struct{}{}} }

// proc is one running process.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// start runs bin with args and env added to ours; its output goes to logPath, and each line to onLine if set.
func (ps *procs) start(name, bin string, args, env []string, logPath string, onLine func(string)) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out = &lineWriter{file: f, onLine: onLine}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so a Ctrl-C in the terminal reaches the benchmark, which then ends the processes
		// in order, instead of reaching every elector at once (a graceful release would be counted as a failover).
		Setpgid: true,
		// If the benchmark itself is killed, the kernel kills its children.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	ps.live[p] = struct{}{}
	ps.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		out.flush()
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// killAll ends every process still running and waits for them.
func (ps *procs) killAll() {
	ps.mu.Lock()
	live := make([]*proc, 0, len(ps.live))
	for p := range ps.live {
		live = append(live, p)
	}
	ps.mu.Unlock()
	for _, p := range live {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	for _, p := range live {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the exit, then kills the process; it reports whether it exited in time.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) bool {
	_ = p.signal(sig)
	return p.awaitExit(grace)
}

// awaitExit waits up to grace for the process to exit, then kills it; it reports whether it exited in time.
func (p *proc) awaitExit(grace time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		_ = p.signal(syscall.SIGKILL)
		<-p.done
		return false
	}
}

// tail is the end of the process's output, for error messages.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// memory is a process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes.
type memory struct{ rss, peak int64 }

func readMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			m.rss = kb * 1024
		case "VmHWM":
			m.peak = kb * 1024
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	// The kernel updates the high-water mark lazily; it can trail the current RSS.
	m.peak = max(m.peak, m.rss)
	return m, nil
}

// lineWriter writes a process's output to its log file and hands each complete line to onLine.
type lineWriter struct {
	mu      sync.Mutex
	file    *os.File
	onLine  func(string)
	partial []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.file.Write(b)
	if w.onLine == nil {
		return n, err
	}
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.onLine(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return n, err
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.onLine != nil && len(w.partial) > 0 {
		w.onLine(string(w.partial))
	}
	w.partial = nil
}
