package controlplane

import (
	"net"
	"strconv"
	"testing"
)

// Ports handed to the processes under test come from below the ephemeral range, where no ":0" listener of another
// test can take them before the process binds; each is free, handed out once, and a port in use is passed over.
func TestNextFreePortIsBelowTheEphemeralRangeAndFree(t *testing.T) {
	high := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		port := FreePort(t)
		if port < lowestPort || port >= high {
			t.Fatalf("port %d outside %d-%d, below the ephemeral range", port, lowestPort, high-1)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		l.Close()
	}

	// Occupy the port the walk reaches next (or the first after it that nobody holds): it must be passed over.
	portsMu.Lock()
	next := portsNext
	portsMu.Unlock()
	var busy net.Listener
	for ; busy == nil && next < high; next++ {
		busy, _ = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(next))
	}
	if busy == nil {
		t.Fatal("no port left to occupy between the walk's position and the ephemeral range")
	}
	defer busy.Close()
	occupied := busy.Addr().(*net.TCPAddr).Port
	if port := FreePort(t); port == occupied {
		t.Fatalf("port %d handed out while a listener holds it", port)
	}
}
