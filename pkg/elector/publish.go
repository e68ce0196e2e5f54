package elector

import (
	"sync"
	"time"
)

// board is where the election loop publishes its state for the HTTP handlers (pkg/electorhttp), and from where
// Status changes are pushed to /events subscribers. Handlers never talk to the loop except to step down.
type board struct {
	mu       sync.Mutex
	snapshot Snapshot
	last     Status
	subs     map[chan Status]struct{}
	closed   bool

	// heartbeat is the last time the loop ran, for /healthz.
	heartbeat time.Time

	// watching is the state of the Lease watch, for member readiness.
	watching watchState
	// advertising is set when this replica advertises itself in a candidate Lease; advertised once the
	// advertisement last written says it is healthy, so that a leader could hand over to it.
	advertising, advertised bool
}

// watchState is how well this replica follows the Lease.
type watchState struct {
	// synced is true while the Lease watch is established.
	synced bool
	// lastActivity is when the watch was established or last delivered an event or a bookmark.
	lastActivity time.Time
	// notAdvertised is set while this replica advertises itself but its candidate Lease does not (yet) say it is
	// a healthy candidate: a leader could not hand over to it.
	notAdvertised bool
}

// following reports whether the watch is established and not silent: a live election changes the Lease every
// retry period, and the server sends bookmarks, so a watch that delivered nothing for a lease duration is
// probably stalled (it is then restarted).
func (w watchState) following(now time.Time, cfg Config) bool {
	return w.synced && now.Sub(w.lastActivity) < cfg.LeaseDuration
}

// setWatch records that the watch was established (synced) or lost at now.
func (b *board) setWatch(synced bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watching = watchState{synced: synced, lastActivity: now}
}

// watchActive records that the watch delivered something at now.
func (b *board) watchActive(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watching.lastActivity = now
}

// watch is the state of the Lease watch and of the candidate advertisement.
func (b *board) watch() watchState {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.watching
	w.notAdvertised = b.advertising && !b.advertised
	return w
}

// setAdvertising records that this replica advertises itself in a candidate Lease.
func (b *board) setAdvertising() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advertising = true
}

// setAdvertised records what the last written advertisement says: healthy or not.
func (b *board) setAdvertised(healthy bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advertised = healthy
}

func newBoard() *board {
	return &board{subs: map[chan Status]struct{}{}}
}

// publish stores the loop's snapshot and pushes the Status to subscribers when it changed.
func (b *board) publish(s Snapshot, st Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snapshot = s
	if st == b.last {
		return
	}
	b.last = st
	for ch := range b.subs {
		offerLatest(ch, st)
	}
}

// offerLatest puts st in a one-slot channel, replacing an undelivered older value: a slow subscriber skips
// intermediate states but always ends on the current one, and never holds up the loop.
func offerLatest(ch chan Status, st Status) {
	for {
		select {
		case ch <- st:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// current is the latest snapshot.
func (b *board) current() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshot
}

// subscribe returns a channel that first holds the current Status (built by view from the current snapshot),
// then every change, and is closed when the board closes; cancel ends the subscription.
func (b *board) subscribe(view func(Snapshot) Status) (updates <-chan Status, cancel func()) {
	ch := make(chan Status, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	ch <- view(b.snapshot)
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// close ends every subscription, so that streaming handlers return and the server can shut down.
func (b *board) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}

// beat records that the loop ran at t.
func (b *board) beat(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.heartbeat = t
}

// lastBeat is when the loop last ran (the zero time before it first ran).
func (b *board) lastBeat() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.heartbeat
}
