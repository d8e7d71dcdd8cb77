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

	minPacket    = 4
	sendQueueLen = 64
)

// ErrQueueFull is returned by Send when the bus goroutine is a whole queue
// behind; the core drops the packet rather than wait for the bus.
var ErrQueueFull = fmt.Errorf("i2c: %w", binding.ErrBusy)

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
	queue             chan []byte
	running           atomic.Bool

	txPackets, txErrors, txQueueFull, txBadLength atomic.Uint64
	rxPackets, rxPolls, rxErrors, rxBadPEC        atomic.Uint64
	outages                                       atomic.Uint64
}

var _ binding.Binding = (*Binding)(nil)

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
		queue:    make(chan []byte, sendQueueLen),
	}
	b.log = log.With("binding", b.Name())
	return b, nil
}

// Name implements binding.Binding.
func (b *Binding) Name() string { return fmt.Sprintf("i2c:%s:0x%02x", b.bus, b.peerAddr) }

// MTU implements binding.Binding.
func (b *Binding) MTU() int { return b.mtu }

// Send implements binding.Binding: it encodes pkt and queues it.
func (b *Binding) Send(pkt []byte) error {
	if len(pkt) < minPacket || len(pkt) > b.mtu+minPacket {
		b.txBadLength.Add(1)
		return fmt.Errorf("i2c: packet of %d bytes outside 4..%d", len(pkt), b.mtu+minPacket)
	}
	select {
	case b.queue <- EncodeWrite(b.ownAddr, b.peerAddr, pkt):
		return nil
	default:
		b.txQueueFull.Add(1)
		return ErrQueueFull
	}
}

// Run implements binding.Binding. Bus errors never end it: a failed write
// drops that packet (MCTP requesters time out and retry), a failed poll is
// retried at the next interval, and each run of failures is logged once.
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
			}
			failing = false
			return
		}
		if !failing {
			b.outages.Add(1)
			b.log.Warn("i2c bus error", "err", err)
		}
		failing = true
	}
	r := make([]byte, ReadLen(b.mtu))
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-b.queue:
			err := b.bus.Tx(b.peerAddr, w, nil)
			if err != nil {
				b.txErrors.Add(1)
				err = fmt.Errorf("write to %#02x: %w", b.peerAddr, err)
			} else {
				b.txPackets.Add(1)
			}
			report(err)
		case <-t.C:
			// Drain the mailbox, but yield to pending writes and ctx
			// between reads so a chatty peer cannot starve them.
			for ctx.Err() == nil && len(b.queue) == 0 {
				pkt, err := b.pollOnce(r)
				report(err)
				if pkt == nil {
					break
				}
				deliver(pkt)
			}
		}
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

// Stats implements binding.Binding.
func (b *Binding) Stats() map[string]uint64 {
	return map[string]uint64{
		"tx_packets":    b.txPackets.Load(),
		"tx_errors":     b.txErrors.Load(),
		"tx_queue_full": b.txQueueFull.Load(),
		"tx_bad_length": b.txBadLength.Load(),
		"rx_packets":    b.rxPackets.Load(),
		"rx_polls":      b.rxPolls.Load(),
		"rx_errors":     b.rxErrors.Load(),
		"rx_bad_pec":    b.rxBadPEC.Load(),
		"outages":       b.outages.Load(),
	}
}
