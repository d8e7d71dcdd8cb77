// Package binding is the contract between mctpd's MCTP core (packets,
// reassembly, routing) and its physical bindings: DSP0253 serial, DSP0237
// SMBus/I2C and the local null binding.
package binding

import (
	"context"
	"errors"
)

// Send errors a binding wraps, so that the core can tell a medium that
// is only busy or down for now (worth waiting for, see Backpressure)
// from a packet that cannot be sent at all.
var (
	// ErrBusy: the send queue is full; the medium is draining it.
	ErrBusy = errors.New("send queue full")
	// ErrLinkDown: the medium is not open now; it is being retried.
	ErrLinkDown = errors.New("link down")
)

// BaselineMTU is the MCTP baseline transmission unit: 64 bytes of payload
// after the 4-byte transport header (a 68-byte packet).
const BaselineMTU = 64

// Binding moves whole MCTP packets (the 4-byte transport header and its
// payload) over one physical medium.
type Binding interface {
	// Name identifies the binding in logs, routes and stats
	// ("serial:/dev/ttyS1", "i2c:1:0x1d", "null").
	Name() string
	// MTU is the largest payload per packet this binding carries.
	MTU() int
	// Send transmits one packet. It must not block the caller for long:
	// a binding queues (bounded) and reports overflow as an error.
	Send(pkt []byte) error
	// Run receives packets until ctx is cancelled, calling deliver for
	// each well-formed one (the slice is the callee's). A medium that
	// fails is retried inside Run; Run returns only when ctx ends.
	Run(ctx context.Context, deliver func(pkt []byte)) error
	// Stats returns the binding's counters (frames in/out, errors by
	// kind, reconnects) for stats-get.
	Stats() map[string]uint64
}

// BatchSender is a Binding that can queue every packet of one message
// in one call, all or none: the core then pays one hand-off per message
// instead of one per packet (channel operations showed in profiles of
// the sending side), and a full queue never sends half a message.
type BatchSender interface {
	Binding
	// SendBatch queues pkts in order, or none of them and an error.
	// Like Send it must not block for long.
	SendBatch(pkts [][]byte) error
}

// BatchBinding is a Binding that can hand over, in one call, every packet
// one receive (one read of the medium) completed. The core then reads the
// clock for reassembly timeouts once per batch instead of once per
// packet, which profiles of the serial path showed as a per-packet cost.
type BatchBinding interface {
	Binding
	// RunBatches is Run with deliver called once per receive batch,
	// never with an empty one. Each packet is the callee's; the slice
	// holding them is reused once deliver returns.
	RunBatches(ctx context.Context, deliver func(pkts [][]byte)) error
}

// Backpressure is a BatchSender whose full queue can be waited for, so
// that a message a local client handed over is held back rather than
// dropped while the line is busy: the core retries SendBatch whenever
// Room's channel closes, and meanwhile reads nothing more from the
// clients sending on this binding, whose sockets then push back.
type Backpressure interface {
	BatchSender
	// Room returns a channel that is closed the next time the binding
	// frees room in its send queue or its link comes up. Take it before
	// the SendBatch that may fail with ErrBusy or ErrLinkDown: a release
	// between the two then still wakes the caller.
	Room() <-chan struct{}
}
