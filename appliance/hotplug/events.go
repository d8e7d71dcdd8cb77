package hotplug

import (
	"maps"
	"sync"
	"time"
)

// DefaultEventLog is how many recent events events-get reports.
const DefaultEventLog = 256

// Delivery states of an event at one target.
const (
	DeliveryQueued   = "queued"   // waiting in the target's queue
	DeliveryRetrying = "retrying" // the target was unreachable; retrying
	DeliverySent     = "sent"     // handed to the target's socket
	DeliveryDropped  = "dropped"  // pushed out of a full queue
	// DeliverySuperseded: the target's daemon restarted before it was
	// sent, and the present interfaces were re-sent instead.
	DeliverySuperseded = "superseded"
)

// Event is one entry of the event log: a net change and, for inserts and
// removes, how far its datagram got at each target.
type Event struct {
	ID        uint64    `json:"id"`
	Time      time.Time `json:"time"`
	Kind      Kind      `json:"kind"`
	Interface string    `json:"interface"`
	Index     int       `json:"index"`
	MAC       string    `json:"mac,omitempty"`
	State     string    `json:"state,omitempty"`
	// Delivery maps each target's socket path to the datagram's state
	// there. Kinds that are not sent have none.
	Delivery map[string]string `json:"delivery,omitempty"`
}

// EventLog is a ring of the most recent events. It is safe for concurrent
// use: the agent adds events, targets update their delivery state, and
// events-get reads it.
type EventLog struct {
	mu   sync.Mutex
	ring []Event
	next int // index in ring of the next write
	full bool
	id   uint64
}

// NewEventLog returns a log keeping the last n events (DefaultEventLog if
// n is not positive).
func NewEventLog(n int) *EventLog {
	if n <= 0 {
		n = DefaultEventLog
	}
	return &EventLog{ring: make([]Event, n)}
}

// Add records e (its ID is assigned) with every target in targets at
// state DeliveryQueued, and returns the ID.
func (l *EventLog) Add(e Event, targets []string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.id++
	e.ID = l.id
	if len(targets) > 0 {
		e.Delivery = make(map[string]string, len(targets))
		for _, t := range targets {
			e.Delivery[t] = DeliveryQueued
		}
	}
	l.ring[l.next] = e
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
	return e.ID
}

// SetDelivery records the state of event id at target. Events that have
// left the ring are not tracked any more.
func (l *EventLog) SetDelivery(id uint64, target, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == 0 || id > l.id || l.id-id >= uint64(len(l.ring)) {
		return
	}
	// The newest event (l.id) is at next-1; id is l.id-id slots before it.
	pos := (l.next - 1 - int(l.id-id) + len(l.ring)) % len(l.ring)
	if e := &l.ring[pos]; e.ID == id && e.Delivery != nil {
		if _, ok := e.Delivery[target]; ok {
			e.Delivery[target] = state
		}
	}
}

// Events returns up to limit most recent events (all kept if limit is not
// positive), oldest first. The result is a copy.
func (l *EventLog) Events(limit int) []Event { return l.Since(0, limit) }

// Since is Events for the events with an ID above since only: a reader
// that passes the last ID it saw gets just the newer ones.
func (l *EventLog) Since(since uint64, limit int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	if since >= l.id {
		n = 0
	} else if newer := l.id - since; newer < uint64(n) {
		n = int(newer)
	}
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]Event, n)
	for k := range n {
		pos := (l.next - n + k + len(l.ring)) % len(l.ring)
		e := l.ring[pos]
		e.Delivery = maps.Clone(e.Delivery)
		out[k] = e
	}
	return out
}

// Total returns how many events were ever added.
func (l *EventLog) Total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}
