package daemon

import (
	"sync"
	"time"
)

// Event is one link change, as events-get reports it.
type Event struct {
	// Seq numbers events from 1, so a client can ask only for newer
	// ones.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Port   string    `json:"port"`
	Link   bool      `json:"link"`
	Speed  int       `json:"speed,omitempty"`
	Duplex string    `json:"duplex,omitempty"`
	Role   string    `json:"role,omitempty"`
	// Msg is the broadcast text without its newline.
	Msg string `json:"msg"`
}

// eventLog is a ring of the most recent events.
type eventLog struct {
	mu   sync.Mutex
	ring []Event
	seq  uint64
}

func newEventLog(n int) *eventLog {
	if n <= 0 {
		n = DefaultEvents
	}
	return &eventLog{ring: make([]Event, n)}
}

func (l *eventLog) add(e Event) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	l.ring[(l.seq-1)%uint64(len(l.ring))] = e
	return e
}

// list returns, oldest first, the kept events with Seq > since, at most
// the last limit of them (all if limit ≤ 0).
func (l *eventLog) list(since uint64, limit int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := uint64(1)
	if n := uint64(len(l.ring)); l.seq > n {
		first = l.seq - n + 1
	}
	if since+1 > first {
		first = since + 1
	}
	if limit > 0 && l.seq >= first && l.seq-first+1 > uint64(limit) {
		first = l.seq - uint64(limit) + 1
	}
	out := []Event{}
	for s := first; s <= l.seq; s++ {
		out = append(out, l.ring[(s-1)%uint64(len(l.ring))])
	}
	return out
}

func (l *eventLog) total() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Events returns the kept link events with a sequence number above
// since, oldest first, at most the last limit (all if limit ≤ 0).
func (m *MDIO) Events(since uint64, limit int) []Event { return m.events.list(since, limit) }

// LastSeq returns the sequence number of the latest event (0: none yet).
func (m *MDIO) LastSeq() uint64 { return m.events.total() }
