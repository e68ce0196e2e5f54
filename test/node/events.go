package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TaskExit is the container runtime's record of a container's process exiting.
type TaskExit struct {
	ContainerID string
	ExitStatus  int
	At          time.Time
}

// RuntimeEvents follows containerd's event stream (`ctr events`) and keeps every task exit.
type RuntimeEvents struct {
	mu    sync.Mutex
	exits []TaskExit
}

func (n *Node) watchRuntimeEvents() (*RuntimeEvents, error) {
	p, err := n.start("ctr-events", "ctr", "--address", n.socket(), "events")
	if err != nil {
		return nil, err
	}
	// The stream goes to the process's log, which also keeps it for a failing test; follow reads it from there.
	r := &RuntimeEvents{}
	go r.follow(p.log, p.done)
	return r, nil
}

// follow tails the raw event log until the process ends.
func (r *RuntimeEvents) follow(path string, done <-chan struct{}) {
	var offset int64
	for {
		offset = r.readFrom(path, offset)
		select {
		case <-done:
			r.readFrom(path, offset)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *RuntimeEvents) readFrom(path string, offset int64) int64 {
	f, err := openAt(path, offset)
	if err != nil {
		return offset
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	// Only whole lines: an incomplete last one is read again next time.
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return offset
	}
	for _, line := range strings.Split(string(data[:end]), "\n") {
		if exit, ok := parseTaskExit(line); ok {
			r.mu.Lock()
			r.exits = append(r.exits, exit)
			r.mu.Unlock()
		}
	}
	return offset + int64(end) + 1
}

// parseTaskExit reads one line of `ctr events`: "<time> <namespace> /tasks/exit {json}". A task exit whose id is
// not the container's is an exec'd process, not the container.
func parseTaskExit(line string) (TaskExit, bool) {
	i := strings.Index(line, " /tasks/exit ")
	if i < 0 {
		return TaskExit{}, false
	}
	var ev struct {
		ContainerID string    `json:"container_id"`
		ID          string    `json:"id"`
		ExitStatus  int       `json:"exit_status"`
		ExitedAt    time.Time `json:"exited_at"`
	}
	if err := json.Unmarshal([]byte(line[i+len(" /tasks/exit "):]), &ev); err != nil || ev.ContainerID == "" {
		return TaskExit{}, false
	}
	if ev.ID != "" && ev.ID != ev.ContainerID {
		return TaskExit{}, false
	}
	return TaskExit{ContainerID: ev.ContainerID, ExitStatus: ev.ExitStatus, At: ev.ExitedAt}, true
}

// Exits returns the exits of a container (its ID without the "containerd://" prefix), oldest first.
func (r *RuntimeEvents) Exits(containerID string) []TaskExit {
	containerID = strings.TrimPrefix(containerID, "containerd://")
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []TaskExit
	for _, e := range r.exits {
		if e.ContainerID == containerID {
			out = append(out, e)
		}
	}
	return out
}

// TaskPID returns the host PID of a running container's main process (its ID, with or without "containerd://").
func (n *Node) TaskPID(containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	out, err := n.ctr("tasks", "ls")
	if err != nil {
		return 0, fmt.Errorf("ctr tasks ls: %v: %s", err, out)
	}
	for _, l := range lines(string(out)) {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("container %s has no running task", id)
}
