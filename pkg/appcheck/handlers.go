package appcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"

	"github.com/leader-election/leader-election/pkg/version"
)

// checkFunc runs one check and returns "" on success, or why it failed.
type checkFunc func(ctx context.Context) string

// userAgent tells the application's logs who is asking; the probe's own User-Agent header wins.
var userAgent = "leader-election-elector/" + version.Version

// bodyLimit is how much of an answer is read, as the kubelet does (10 KiB): enough to finish the exchange, never
// a memory risk however much the application sends.
const bodyLimit = 10 << 10

// dialer connects only to the checked host (any port): the one place every connection of a check is opened, so
// no redirect or future change can make the elector connect elsewhere. "localhost" is dialled as 127.0.0.1
// without asking a resolver.
func dialer(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dialHost := host
	if strings.EqualFold(host, "localhost") {
		dialHost = "127.0.0.1"
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(h, host) && h != dialHost {
			return nil, fmt.Errorf("refusing to connect to %s: the check may reach %s only", addr, host)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(dialHost, port))
	}
}

// transport is a fresh, connection-less client transport: no proxy from the environment (the check is for this
// pod, never for a proxy), no kept-alive connections (nothing lingers between checks), and no certificate
// verification for HTTPS, like the kubelet's probes (an application's serving certificate names its Service, not
// the pod IP).
func transport(host string) *http.Transport {
	return &http.Transport{
		Proxy:             nil,
		DialContext:       dialer(host),
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	}
}

// httpCheck is the kubelet's httpGet probe: success is a status from 200 to 399. Redirects are followed to the
// same host only; a redirect elsewhere is not followed and counts as success, as in the kubelet.
func httpCheck(get *corev1.HTTPGetAction, host string) (checkFunc, string) {
	target := httpURL(get, host)
	client := &http.Client{
		Transport: transport(host),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	what := "httpGet " + target.String()
	return func(ctx context.Context) string {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, err)
		}
		req.Header.Set("User-Agent", userAgent)
		req.Header.Set("Accept", "*/*")
		for _, h := range get.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
				continue
			}
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, unwrapURLError(err))
		}
		defer func() { _ = resp.Body.Close() }()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit))
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Sprintf("%s: HTTP %d", what, resp.StatusCode)
		}
		return ""
	}, what
}

// httpURL is the URL the kubelet would request: scheme, host and port from the probe, path and query as written.
func httpURL(get *corev1.HTTPGetAction, host string) *url.URL {
	u, err := url.Parse(get.Path)
	if err != nil { // Validate refused it; keep the path as text
		u = &url.URL{Path: get.Path}
	}
	u.Scheme = strings.ToLower(string(get.Scheme))
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(int(get.Port.IntVal)))
	if u.Path == "" {
		u.Path = "/"
	}
	return u
}

// unwrapURLError drops net/http's "Get <url>:" prefix, which the reason already carries.
func unwrapURLError(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

// tcpCheck is the kubelet's tcpSocket probe: success is an accepted connection, closed at once.
func tcpCheck(sock *corev1.TCPSocketAction, host string) (checkFunc, string) {
	addr := net.JoinHostPort(host, strconv.Itoa(int(sock.Port.IntVal)))
	dial := dialer(host)
	what := "tcpSocket " + addr
	return func(ctx context.Context) string {
		conn, err := dial(ctx, "tcp", addr)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, err)
		}
		_ = conn.Close()
		return ""
	}, what
}

// The gRPC health checking protocol (grpc.health.v1, grpc/grpc doc/health-checking.md): one unary call,
// Health/Check, whose answer's status SERVING (1) means healthy.
const (
	healthCheckPath = "/grpc.health.v1.Health/Check"
	servingStatus   = 1
)

// servingStatusNames are HealthCheckResponse.ServingStatus's names, for reasons.
var servingStatusNames = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

// grpcCodeNames are the gRPC status codes' names, for reasons.
var grpcCodeNames = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// grpcCheck is the kubelet's grpc probe: grpc.health.v1.Health/Check over plaintext HTTP/2 (or TLS without
// certificate verification, mode TLS) for the probe's service ("" = the server as a whole), healthy when the
// answer is SERVING. It is written on net/http's own
// HTTP/2 client and protobuf's wire encoding, both already in the elector, rather than on google.golang.org/grpc,
// which would add about 5.5 MB (a third) to the static binary for this one call; the tests run it against
// grpc-go's own health server.
func grpcCheck(g *corev1.GRPCAction, host string) (checkFunc, string) {
	target := net.JoinHostPort(host, strconv.Itoa(int(g.Port)))
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	t := transport(host)
	t.Protocols = new(http.Protocols)
	scheme := "http"
	if g.Mode != nil && *g.Mode == corev1.GRPCProbeModeTLS {
		scheme = "https"
		t.Protocols.SetHTTP2(true)
	} else {
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	client := &http.Client{Transport: t}
	what := "grpc " + target
	if service != "" {
		what += " service " + strconv.Quote(service)
	}

	// The request is a gRPC message frame: not compressed (0), length, then HealthCheckRequest{service = 1}.
	var msg []byte
	if service != "" {
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, service)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	frame = append(frame, msg...)

	return func(ctx context.Context) string {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+target+healthCheckPath, bytes.NewReader(frame))
		if err != nil {
			return fmt.Sprintf("%s: %v", what, err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		req.Header.Set("User-Agent", userAgent)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, unwrapURLError(err))
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(io.LimitReader(resp.Body, bodyLimit))
		if err != nil {
			return fmt.Sprintf("%s: reading the answer: %v", what, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("%s: HTTP %d, not a gRPC answer", what, resp.StatusCode)
		}
		// A call that fails at once answers with headers only ("Trailers-Only"), its status among them.
		code := resp.Trailer.Get("Grpc-Status")
		if code == "" {
			code = resp.Header.Get("Grpc-Status")
		}
		if code != "0" {
			name := code
			if n, err := strconv.Atoi(code); err == nil && n >= 0 && n < len(grpcCodeNames) {
				name = grpcCodeNames[n]
			}
			message := resp.Trailer.Get("Grpc-Message") + resp.Header.Get("Grpc-Message")
			if m, err := url.PathUnescape(message); err == nil {
				message = m
			}
			return strings.TrimSuffix(fmt.Sprintf("%s: gRPC status %s: %s", what, name, message), ": ")
		}
		status, err := servingStatusOf(body)
		if err != nil {
			return fmt.Sprintf("%s: %v", what, err)
		}
		if status != servingStatus {
			name, ok := servingStatusNames[status]
			if !ok {
				name = strconv.FormatUint(status, 10)
			}
			return fmt.Sprintf("%s: %s", what, name)
		}
		return ""
	}, what
}

// servingStatusOf reads HealthCheckResponse.status (field 1) from one uncompressed gRPC message frame.
func servingStatusOf(body []byte) (uint64, error) {
	if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
		return 0, fmt.Errorf("not one uncompressed gRPC message (%d bytes)", len(body))
	}
	msg := body[5:]
	var status uint64 // absent: 0, UNKNOWN
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return 0, fmt.Errorf("not a HealthCheckResponse: %v", protowire.ParseError(n))
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return 0, fmt.Errorf("not a HealthCheckResponse: %v", protowire.ParseError(m))
			}
			status, msg = v, msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return 0, fmt.Errorf("not a HealthCheckResponse: %v", protowire.ParseError(m))
		}
		msg = msg[m:]
	}
	return status, nil
}
