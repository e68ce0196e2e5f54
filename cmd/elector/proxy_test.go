package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// tcpProxy forwards connections to a target, and plays the network faults of the scenarios and the soak:
//   - severed, it drops every live connection and holds new ones open without a byte in either direction, as
//     a network partition does (a refused connection would be kinder: the client would learn at once);
//   - frozen, it keeps every live connection open but forwards nothing more on it, while new connections work:
//     a watch that stays open and delivers nothing;
//   - holding replies, it forwards requests but not the answers on live connections: a write that lands on
//     the server while its client never learns the outcome.
//
// Healed, it closes every connection it holds (their clients see them fail) and forwards new ones normally.
type tcpProxy struct {
	listener net.Listener
	target   string

	mu             sync.Mutex
	severed        bool
	holdingReplies bool
	conns          map[net.Conn]*link // every connection it holds, both sides, with the link it belongs to
	reset          chan struct{}      // closed (and replaced) whenever every connection is closed
}

// link is one forwarded connection: a client side and a server side.
type link struct {
	frozenUp, frozenDown atomic.Bool // stop forwarding client->server, server->client
	// holdAfterHandshake holds the answers once the client has sent twice (its TLS ClientHello, then its
	// Finished or its request): the handshake completes, the answers to requests do not arrive.
	holdAfterHandshake bool
	clientSends        atomic.Int32
}

// startProxy listens on a free loopback port; it stops when the test ends.
func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{listener: l, target: target, conns: map[net.Conn]*link{}, reset: make(chan struct{})}
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

// freeze stops forwarding on every live connection, keeping it open; new connections are forwarded.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.conns {
		if l != nil {
			l.frozenUp.Store(true)
			l.frozenDown.Store(true)
		}
	}
}

// holdReplies forwards requests but no answers: on every live connection, and on new ones (once their TLS
// handshake is through) until stopHoldingReplies.
func (p *tcpProxy) holdReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdingReplies = true
	for _, l := range p.conns {
		if l != nil {
			l.frozenDown.Store(true)
		}
	}
}

// stopHoldingReplies forwards answers on new connections again; those already held stay held until heal.
func (p *tcpProxy) stopHoldingReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdingReplies = false
}

// heal releases the blackholed, frozen and held connections (their clients see them fail) and forwards new
// ones again.
func (p *tcpProxy) heal() {
	p.mu.Lock()
	p.severed, p.holdingReplies = false, false
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
		l := &link{holdAfterHandshake: p.holdingReplies}
		p.conns[client] = l
		p.mu.Unlock()
		if severed {
			continue // held, silent, until heal or the end of the test
		}
		go p.forward(client, l)
	}
}

func (p *tcpProxy) forward(client net.Conn, l *link) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(client)
		return
	}
	p.mu.Lock()
	p.conns[server] = l
	reset := p.reset
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn, frozen *atomic.Bool) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if src == client {
				if l.clientSends.Add(1) >= 2 && l.holdAfterHandshake {
					l.frozenDown.Store(true)
				}
			}
			if frozen.Load() {
				<-reset // forward nothing more, and keep both sides open until heal
				return
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		p.drop(dst)
		p.drop(src)
	}
	wg.Add(2)
	go pipe(server, client, &l.frozenUp)
	go pipe(client, server, &l.frozenDown)
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
	p.conns = map[net.Conn]*link{}
	close(p.reset)
	p.reset = make(chan struct{})
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}
