package binding

import "sync"

// RoomSignal is what a Backpressure binding hands out from Room: a
// channel closed at the next Wake. The channel is made only when a
// sender asks for it, so that a binding whose senders are never held
// back allocates nothing on its write path. The zero value is ready.
type RoomSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns the channel the next Wake closes.
func (r *RoomSignal) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

// Wake wakes every sender waiting, if any.
func (r *RoomSignal) Wake() {
	r.mu.Lock()
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
	r.mu.Unlock()
}
