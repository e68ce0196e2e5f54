package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// tcpProxy forwards connections to a target until it is severed. Severed, it drops every live connection and
// holds new ones open without a byte in either direction, as a network partition does (a refused connection
// would be kinder: the client would learn at once). Healed, it forwards again.
type tcpProxy struct {
	listener net.Listener
	target   string

	mu      sync.Mutex
	severed bool
	conns   map[net.Conn]struct{} // every connection it holds, both sides
}

// startProxy listens on a free loopback port; it stops when the test ends.
func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{listener: l, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.serve()
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		p.closeAll()
	})
	return p
}

// addr is where clients connect.
func (p *tcpProxy) addr() string { return p.listener.Addr().String() }

// sever cuts every connection and blackholes new ones.
func (p *tcpProxy) sever() {
	p.mu.Lock()
	p.severed = true
	p.mu.Unlock()
	p.closeAll()
}

// heal releases the blackholed connections (their clients see them fail) and forwards new ones again.
func (p *tcpProxy) heal() {
	p.mu.Lock()
	p.severed = false
	p.mu.Unlock()
	p.closeAll()
}

func (p *tcpProxy) serve() {
	for {
		client, err := p.listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		p.mu.Lock()
		severed := p.severed
		p.conns[client] = struct{}{}
		p.mu.Unlock()
		if severed {
			continue // held, silent, until heal or the end of the test
		}
		go p.forward(client)
	}
}

func (p *tcpProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(client)
		return
	}
	p.mu.Lock()
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		p.drop(dst)
		p.drop(src)
	}
	wg.Add(2)
	go pipe(server, client)
	go pipe(client, server)
	wg.Wait()
}

func (p *tcpProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}
