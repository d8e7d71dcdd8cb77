// Package i2c is mctpd's DSP0237 SMBus/I2C binding on a periph.io bus.
//
// Transmit follows DSP0237 exactly: each MCTP packet is an SMBus block
// write to the peer's 7-bit address with command code 0x0F, a byte count,
// the source slave address byte (own address << 1 | 1), the packet and an
// SMBus PEC (CRC-8, polynomial 0x07) over every byte on the wire starting
// with the destination address byte.
//
// Receive model: DSP0237 expects every endpoint to be an I2C target that
// the other side writes into, but periph.io on Linux drives the adapter
// only as controller (i2c-dev offers no target mode), so this binding
// cannot be written to. Instead it polls the peer with a block read of
// command 0x0F at a fixed interval and immediately again while packets
// are pending. The peer answers with the same layout it would have
// written: byte count N (0 when it has nothing queued), its source slave
// address byte, N-1 packet bytes and a PEC computed as for an SMBus block
// read, over the write address, 0x0F, the read address and the returned
// bytes. The read length is fixed (3 + MTU + 4 bytes) so the transaction
// is a plain I2C combined write/read that every adapter supports. Peers
// that only speak strict DSP0237 need a board-level target (for example
// the Linux mctp-i2c driver on an i2c-slave backend) instead of this
// binding.
package i2c

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	periphi2c "periph.io/x/conn/v3/i2c"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

const (
	// CommandCode is the SMBus command code DSP0237 assigns to MCTP.
	CommandCode = 0x0f
	// DefaultPoll is the idle poll interval for the peer's mailbox.
	DefaultPoll = 10 * time.Millisecond

	minPacket = 4
	// sendQueueLen bounds the packets queued for the bus. At 100 kHz a
	// baseline packet takes about 6.5 ms, so a full queue is under half
	// a second of bus time ahead of a control reply.
	sendQueueLen = 64
	// maxBatch is the most packets one SendBatch takes: a 64 KiB message
	// (the MCTP reassembly limit) at the baseline MTU. A batch larger
	// than sendQueueLen is taken only into an empty queue, so the queue
	// never holds more than one such message (about 74 KiB encoded).
	maxBatch = 64<<10/binding.BaselineMTU + 1
)

var (
	// ErrQueueFull is returned by Send and SendBatch while the packets
	// do not fit in the send queue. It wraps binding.ErrBusy: the core
	// waits on Room and tries again rather than drop a local client's
	// message.
	ErrQueueFull = fmt.Errorf("i2c: %w", binding.ErrBusy)
	// ErrLinkDown is returned by Send and SendBatch while the bus is
	// failing (the last transaction with the peer failed). It wraps
	// binding.ErrLinkDown; the next transaction that succeeds (a poll,
	// at the latest one poll interval later) brings the link up.
	ErrLinkDown = fmt.Errorf("i2c: %w", binding.ErrLinkDown)
)

// PEC is the SMBus packet error code: CRC-8, polynomial x^8+x^2+x+1,
// initial value 0, no reflection.
func PEC(p []byte) byte {
	return pecUpdate(0, p...)
}

func pecUpdate(crc byte, p ...byte) byte {
	for _, b := range p {
		crc ^= b
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// EncodeWrite returns the bytes that follow the address byte in the SMBus
// block write carrying pkt from ownAddr to peerAddr: 0x0F, byte count,
// source slave address, pkt, PEC. The byte count covers the source address
// byte and the packet, so pkt may be at most 254 bytes.
func EncodeWrite(ownAddr, peerAddr uint16, pkt []byte) []byte {
	w := make([]byte, 0, len(pkt)+4)
	w = append(w, CommandCode, byte(len(pkt)+1), byte(ownAddr<<1|1))
	w = append(w, pkt...)
	pec := pecUpdate(0, byte(peerAddr<<1))
	return append(w, pecUpdate(pec, w...))
}

// ReadLen is the fixed length of a mailbox poll read for an MTU.
func ReadLen(mtu int) int { return 3 + mtu + minPacket }

// DecodeRead parses a mailbox poll answer from peerAddr (see the package
// comment). It returns a nil packet and no error when the peer has nothing
// pending. Packets longer than maxLen are refused.
func DecodeRead(peerAddr uint16, r []byte, maxLen int) ([]byte, error) {
	if len(r) == 0 {
		return nil, errors.New("i2c: empty read")
	}
	n := int(r[0])
	if n == 0 {
		return nil, nil
	}
	if n < 1+minPacket || n > 1+maxLen || 1+n >= len(r) {
		return nil, fmt.Errorf("i2c: byte count %d outside %d..%d", n, 1+minPacket, min(1+maxLen, len(r)-2))
	}
	if want := byte(peerAddr<<1 | 1); r[1] != want {
		return nil, fmt.Errorf("i2c: source address byte %#02x, want %#02x", r[1], want)
	}
	pec := pecUpdate(0, byte(peerAddr<<1), CommandCode, byte(peerAddr<<1|1))
	pec = pecUpdate(pec, r[:1+n]...)
	if r[1+n] != pec {
		return nil, fmt.Errorf("%w: got %#02x, want %#02x", errBadPEC, r[1+n], pec)
	}
	return append([]byte(nil), r[2:1+n]...), nil
}

var errBadPEC = errors.New("i2c: bad PEC")

// Binding is the SMBus/I2C binding to one peer on one bus. A single
// goroutine (inside Run) owns the bus, interleaving queued writes with
// mailbox polls, so Send never waits for the bus.
type Binding struct {
	bus               periphi2c.Bus
	ownAddr, peerAddr uint16
	poll              time.Duration
	mtu               int
	log               *slog.Logger
	running           atomic.Bool

	// queue carries encoded block writes, one message's worth per
	// element; queued counts the writes in it or being written against
	// sendQueueLen. Reservations are made under txMu, so that the
	// elements enter the channel in the order they were admitted; Run
	// releases each write once its transaction has returned.
	queue  chan [][]byte
	queued atomic.Int64
	txMu   sync.Mutex
	// down is set while the bus is failing: the last transaction with
	// the peer failed. New messages are refused meanwhile (ErrLinkDown)
	// rather than queued into writes that would fail as well.
	down atomic.Bool
	// room is woken whenever Run frees queue room or the
	// bus recovers (see Room).
	room binding.RoomSignal

	txPackets, txErrors, txQueueFull, txLinkDown atomic.Uint64
	txBadLength, txTooBig                        atomic.Uint64
	rxPackets, rxPolls, rxErrors, rxBadPEC       atomic.Uint64
	outages                                      atomic.Uint64
}

var _ binding.Backpressure = (*Binding)(nil)

// New returns a binding on bus from ownAddr to peerAddr (7-bit addresses),
// polling the peer every poll (DefaultPoll if not positive).
func New(bus periphi2c.Bus, ownAddr, peerAddr uint16, poll time.Duration, log *slog.Logger) (*Binding, error) {
	if ownAddr > 0x7f || peerAddr > 0x7f {
		return nil, fmt.Errorf("i2c: addresses must be 7-bit, got own %#x peer %#x", ownAddr, peerAddr)
	}
	if ownAddr == peerAddr {
		return nil, fmt.Errorf("i2c: own and peer address are both %#x", ownAddr)
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	if log == nil {
		log = slog.Default()
	}
	b := &Binding{
		bus:      bus,
		ownAddr:  ownAddr,
		peerAddr: peerAddr,
		poll:     poll,
		mtu:      binding.BaselineMTU,
		// Every element holds at least one write, so a queue of
		// sendQueueLen writes never has more elements than this.
		queue: make(chan [][]byte, sendQueueLen),
	}
	b.log = log.With("binding", b.Name())
	return b, nil
}

// Name implements binding.Binding.
func (b *Binding) Name() string { return fmt.Sprintf("i2c:%s:0x%02x", b.bus, b.peerAddr) }

// MTU implements binding.Binding.
func (b *Binding) MTU() int { return b.mtu }

// Room implements binding.Backpressure.
func (b *Binding) Room() <-chan struct{} { return b.room.Wait() }

// Send implements binding.Binding: it encodes pkt and queues it, as a
// batch of one.
func (b *Binding) Send(pkt []byte) error {
	return b.SendBatch([][]byte{pkt})
}

// SendBatch implements binding.BatchSender: every packet is checked and
// encoded, then all are queued together or none is. They fit when the
// queue has room for all of them, or when it is empty: a message of
// more packets than the queue holds (up to a 64 KiB message) waits for
// the queue to drain and then goes in whole, so the caller never has to
// split it and the bus never carries half of it. A batch that does not
// fit is refused with ErrQueueFull, and every batch while the bus is
// failing with ErrLinkDown; Room says when to try again.
func (b *Binding) SendBatch(pkts [][]byte) error {
	for _, pkt := range pkts {
		if len(pkt) < minPacket || len(pkt) > b.mtu+minPacket {
			b.txBadLength.Add(1)
			return fmt.Errorf("i2c: packet of %d bytes outside 4..%d", len(pkt), b.mtu+minPacket)
		}
	}
	n := int64(len(pkts))
	switch {
	case n == 0:
		return nil
	case n > maxBatch:
		// Not ErrQueueFull: no amount of waiting makes room for it.
		b.txTooBig.Add(uint64(n))
		return fmt.Errorf("i2c: %d packets exceed the %d of a 64 KiB message", n, maxBatch)
	case b.down.Load():
		b.txLinkDown.Add(uint64(n))
		return ErrLinkDown
	}
	b.txMu.Lock()
	defer b.txMu.Unlock()
	// Run only ever lowers queued, so room seen here stays room.
	if q := b.queued.Load(); q != 0 && q+n > sendQueueLen {
		b.txQueueFull.Add(uint64(n))
		return ErrQueueFull
	}
	writes := make([][]byte, len(pkts))
	for i, pkt := range pkts {
		writes[i] = EncodeWrite(b.ownAddr, b.peerAddr, pkt)
	}
	b.queued.Add(n)
	// Cannot block: queued was at most sendQueueLen-1 writes, so fewer
	// than sendQueueLen elements are in the channel.
	b.queue <- writes
	return nil
}

// Run implements binding.Binding. Bus errors never end it: a failed write
// drops that packet (MCTP requesters time out and retry), a failed poll is
// retried at the next interval, and each run of failures is logged once.
// While the bus fails new messages are refused (ErrLinkDown); the first
// transaction that succeeds again wakes the senders waiting on Room.
//
// Writes go out one per loop, in order. The peer's mailbox is polled at
// every tick, also while writes are pending, so that a long message or
// a stream of them does not starve receiving; it is drained further,
// packet by packet, only while nothing waits to be written.
func (b *Binding) Run(ctx context.Context, deliver func(pkt []byte)) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("i2c: Run already active")
	}
	defer b.running.Store(false)
	t := time.NewTicker(b.poll)
	defer t.Stop()
	failing := false
	report := func(err error) {
		if err == nil {
			if failing {
				b.log.Info("i2c bus recovered")
				b.down.Store(false)
				b.room.Wake()
			}
			failing = false
			return
		}
		if !failing {
			b.outages.Add(1)
			b.log.Warn("i2c bus error", "err", err)
			b.down.Store(true)
		}
		failing = true
	}
	r := make([]byte, ReadLen(b.mtu))
	var cur [][]byte // the rest of the message being written
	poll := func() {
		for ctx.Err() == nil {
			pkt, err := b.pollOnce(r)
			report(err)
			if pkt == nil {
				return
			}
			deliver(pkt)
			if len(cur) > 0 || len(b.queue) > 0 {
				return
			}
		}
	}
	for {
		if len(cur) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case cur = <-b.queue:
			case <-t.C:
				poll()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			poll()
			continue
		default:
		}
		err := b.bus.Tx(b.peerAddr, cur[0], nil)
		cur[0] = nil
		cur = cur[1:]
		if err != nil {
			b.txErrors.Add(1)
			err = fmt.Errorf("write to %#02x: %w", b.peerAddr, err)
		} else {
			b.txPackets.Add(1)
		}
		report(err)
		// Released only now, after the transaction: a batch admitted
		// into an "empty" queue must not find a write still in flight
		// ahead of the room it was counted against.
		b.queued.Add(-1)
		b.room.Wake()
	}
}

func (b *Binding) pollOnce(r []byte) ([]byte, error) {
	b.rxPolls.Add(1)
	clear(r)
	if err := b.bus.Tx(b.peerAddr, []byte{CommandCode}, r); err != nil {
		b.rxErrors.Add(1)
		return nil, fmt.Errorf("poll %#02x: %w", b.peerAddr, err)
	}
	pkt, err := DecodeRead(b.peerAddr, r, b.mtu+minPacket)
	if err != nil {
		if errors.Is(err, errBadPEC) {
			b.rxBadPEC.Add(1)
		} else {
			b.rxErrors.Add(1)
		}
		return nil, err
	}
	if pkt != nil {
		b.rxPackets.Add(1)
	}
	return pkt, nil
}

// Stats implements binding.Binding. The tx_queue_full, tx_link_down and
// tx_too_big counters count the packets of each refused SendBatch; a
// message the core holds back and retries counts again at each refusal.
func (b *Binding) Stats() map[string]uint64 {
	return map[string]uint64{
		"tx_packets":    b.txPackets.Load(),
		"tx_errors":     b.txErrors.Load(),
		"tx_queue_full": b.txQueueFull.Load(),
		"tx_link_down":  b.txLinkDown.Load(),
		"tx_bad_length": b.txBadLength.Load(),
		"tx_too_big":    b.txTooBig.Load(),
		"rx_packets":    b.rxPackets.Load(),
		"rx_polls":      b.rxPolls.Load(),
		"rx_errors":     b.rxErrors.Load(),
		"rx_bad_pec":    b.rxBadPEC.Load(),
		"outages":       b.outages.Load(),
	}
}
