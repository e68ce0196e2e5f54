package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
)

// eachSample calls fn for every sample of metric name in Prometheus text format. Label values here never hold
// commas or quotes, which keeps the parsing small.
func eachSample(text []byte, name string, fn func(labels map[string]string, v float64)) error {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := map[string]string{}
		if rest[0] == '{' {
			inner, after, ok := strings.Cut(rest[1:], "}")
			if !ok {
				continue
			}
			for _, pair := range strings.Split(inner, ",") {
				if k, v, ok := strings.Cut(pair, "="); ok {
					labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = after
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		fn(labels, v)
	}
	return sc.Err()
}

// sumSamples adds up the samples of name whose labels include every label of match.
func sumSamples(text []byte, name string, match map[string]string) float64 {
	sum := 0.0
	_ = eachSample(text, name, func(labels map[string]string, v float64) {
		for k, want := range match {
			if labels[k] != want {
				return
			}
		}
		sum += v
	})
	return sum
}

// apiServerMetrics is kube-apiserver's /metrics, read with the admin client.
func apiServerMetrics(ctx context.Context, cs kubernetes.Interface) ([]byte, error) {
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	return data, nil
}

// httpMetrics reads a plain HTTP metrics endpoint.
func httpMetrics(url string) ([]byte, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b.Bytes(), nil
}

// requestCounts reads kube-apiserver's apiserver_request_total, summed by "<verb> <resource>" with the verbs
// named as RBAC names them.
func requestCounts(ctx context.Context, cs kubernetes.Interface) (map[string]float64, error) {
	data, err := apiServerMetrics(ctx, cs)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	err = eachSample(data, "apiserver_request_total", func(l map[string]string, v float64) {
		verb := map[string]string{"POST": "create", "PUT": "update"}[l["verb"]]
		if verb == "" {
			verb = strings.ToLower(l["verb"])
		}
		out[verb+" "+l["resource"]] += v
	})
	return out, err
}

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat's CPU times; it is 100 on every Linux ABI Go
// supports (reading it properly needs sysconf, hence cgo).
const clockTick = 10 * time.Millisecond

// cpuTime is the user and system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After the command's closing parenthesis: state is field 3 of the line, utime 14 and stime 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}
