package elector

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/leader-election/leader-election/pkg/contract"
)

// labelsFile reads the pod's labels from the file the downward API keeps current, for the member-readiness rule.
// A file that cannot be read counts as "not labelled leader": it must never make a real leader unready. The
// problem is logged once, and its end once.
type labelsFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	failing bool
}

// labelledLeader reports whether the pod's labels say contract.LabelRole=contract.RoleLeader.
func (f *labelsFile) labelledLeader() bool {
	if f == nil || f.path == "" {
		return false
	}
	data, err := os.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err != nil && !f.failing:
		f.failing = true
		f.log.Warn("cannot read the pod's labels; a replica left labelled leader cannot be detected until it can", "file", f.path, "error", err)
	case err == nil && f.failing:
		f.failing = false
		f.log.Info("reading the pod's labels again", "file", f.path)
	}
	return err == nil && parseLabels(data)[contract.LabelRole] == contract.RoleLeader
}

// parseLabels reads the downward API's format: one key="value" per line, the value quoted as in Go.
func parseLabels(data []byte) map[string]string {
	labels := map[string]string{}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		key, quoted, ok := strings.Cut(scanner.Text(), "=")
		if !ok {
			continue
		}
		if value, err := strconv.Unquote(quoted); err == nil {
			labels[key] = value
		}
	}
	return labels
}
