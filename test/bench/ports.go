package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ports hands out loopback ports for the electors' HTTP servers. A port the kernel picks with ":0" comes from the
// ephemeral range, where any outgoing connection (hundreds of electors talk to the API server) may take it
// between the check and the elector's bind; so ports come from below that range, each one at most once per run.
var ports struct {
	sync.Mutex
	next, low, high int
}

// freePort is a loopback port that was free a moment ago and that this run has not handed out before.
func freePort() int {
	ports.Lock()
	defer ports.Unlock()
	if ports.next == 0 {
		ports.low, ports.high = 15000, ephemeralLow()
		// Spread concurrent benchmark runs (make test runs the quick one) over the range.
		ports.next = ports.low + os.Getpid()%16*1000
	}
	for range ports.high - ports.low {
		p := ports.next
		if ports.next++; ports.next >= ports.high {
			ports.next = ports.low
		}
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			return p
		}
	}
	panic(fmt.Sprintf("no free loopback port in %d-%d", ports.low, ports.high))
}

// ephemeralLow is the lowest port the kernel gives outgoing connections (Linux's default is 32768). Where the
// range starts lower than ours, collisions remain possible; launch then notices a foreign GET / and retries.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > 20000 {
				return low
			}
		}
	}
	return 32768
}
