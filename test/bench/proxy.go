package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// countingProxy stands between one replica and the API server and counts its requests by verb and resource.
// kube-apiserver's own apiserver_request_total does not say who asked, and per-replica counts are what tell a
// leader's writes from a standby's polling. It listens on loopback without TLS (the replica's kubeconfig points
// at it) and forwards over TLS with the implementation's client certificate, so the API server authenticates
// and authorizes the replica's requests exactly as it would without the proxy.
type countingProxy struct {
	server *http.Server
	addr   string
	// lease is the election's Lease; requests naming another Lease (a candidate's) are counted apart.
	lease string

	mu     sync.Mutex
	counts map[string]int
}

// startCountingProxy forwards to the API server of upstream with upstream's credentials; lease is the election's
// Lease.
func startCountingProxy(upstream *rest.Config, lease string) (*countingProxy, error) {
	target, err := url.Parse(upstream.Host)
	if err != nil {
		return nil, fmt.Errorf("API server address %q: %w", upstream.Host, err)
	}
	transport, err := rest.TransportFor(upstream)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String(), lease: lease, counts: map[string]int{}}
	forward := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: transport,
		// Watches stream: every event goes through at once.
		FlushInterval: -1,
		// A replica that exits mid-watch is normal here, not worth a log line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(r)
		forward.ServeHTTP(w, r)
	})}
	go func() { _ = p.server.Serve(l) }()
	return p, nil
}

func (p *countingProxy) count(r *http.Request) {
	key := classify(r.Method, r.URL)
	if name := objectName(r.URL); strings.HasSuffix(key, " leases") && name != "" && name != p.lease {
		key += " (other Leases)"
	}
	p.mu.Lock()
	p.counts[key]++
	p.mu.Unlock()
}

// take returns the counts since the last take and starts again from zero.
func (p *countingProxy) take() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.counts
	p.counts = map[string]int{}
	return out
}

func (p *countingProxy) close() { _ = p.server.Close() }

// writeKubeconfig writes a kubeconfig that reaches the API server through this proxy.
func (p *countingProxy) writeKubeconfig(dir, name string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: "http://" + p.addr}
	cfg.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	cfg.CurrentContext = "proxy"
	path := filepath.Join(dir, name+".proxy.kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// objectName is the object a request's path names ("" for a collection): the segment after the resource.
func objectName(u *url.URL) string {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := range parts {
		if parts[i] == "namespaces" && i+3 < len(parts) {
			return parts[i+3]
		}
	}
	return ""
}

// classify names a request as "<verb> <resource>" with the API server's verbs: a GET is a get, a list or a
// watch depending on its path and query.
func classify(method string, u *url.URL) string {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	// /api/v1/... or /apis/<group>/<version>/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(method) + " " + u.Path
	}
	watch := u.Query().Get("watch") == "true" || u.Query().Get("watch") == "1"
	if len(parts) > 0 && parts[0] == "watch" {
		watch, parts = true, parts[1:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	resource, named := "", false
	if len(parts) > 0 {
		resource, named = parts[0], len(parts) > 1
	}
	verb := ""
	switch method {
	case http.MethodGet:
		switch {
		case watch:
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = strings.ToLower(method)
	}
	return verb + " " + resource
}
