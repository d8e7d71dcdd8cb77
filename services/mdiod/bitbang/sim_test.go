package bitbang

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// frame is one MDIO frame as the simulated bus decoded it. data is what
// was on the line during the data bits, whoever drove it.
type frame struct {
	st, op, pa, ra uint8
	data           uint16
}

func (f frame) String() string {
	return fmt.Sprintf("{st %02b op %02b pa %d ra %d data %#04x}", f.st, f.op, f.pa, f.ra, f.data)
}

// simPHY is one PHY on the simulated bus: a Clause 22 register file and
// Clause 45 MMDs with their address registers.
type simPHY struct {
	regs    [32]uint16
	c45addr [32]uint16
	c45     map[[2]uint16]uint16
	// brokenTA: the PHY does not drive the turnaround zero but still
	// sends its data, as some broken parts do.
	brokenTA bool
}

func newSimPHY() *simPHY { return &simPHY{c45: map[[2]uint16]uint16{}} }

// read answers a read frame (C22 read, C45 read or post-read-increment).
func (p *simPHY) read(st, op, ra uint8) uint16 {
	if st == wST22 {
		return p.regs[ra]
	}
	v := p.c45[[2]uint16{uint16(ra), p.c45addr[ra]}]
	if op == wReadInc45 {
		p.c45addr[ra]++
	}
	return v
}

// write applies a frame whose data the controller drove.
func (p *simPHY) write(f frame) {
	switch {
	case f.st == wST22:
		p.regs[f.ra] = f.data
	case f.op == wAddress45:
		p.c45addr[f.ra] = f.data
	case f.op == wWrite45:
		p.c45[[2]uint16{uint16(f.ra), p.c45addr[f.ra]}] = f.data
	}
}

// Frame fields as IEEE 802.3 22.2.4.5 and 45.3 define them, written out
// here rather than taken from the code under test.
const (
	wPreamble  = 32
	wST22      = 0b01
	wST45      = 0b00
	wRead22    = 0b10
	wWrite22   = 0b01
	wAddress45 = 0b00
	wWrite45   = 0b01
	wRead45    = 0b11
	wReadInc45 = 0b10
)

// Decoder states.
const (
	sIdle = iota
	sHeader
	sTurnaround
	sData
)

// simBus is an MDIO bus with a pull-up, PHYs at some addresses and a
// checker that decodes the controller's waveform edge by edge. Anything
// outside 802.3 Clause 22/45 framing is recorded in malformed.
type simBus struct {
	mu   sync.Mutex
	phys map[uint8]*simPHY

	mdc       gpio.Level
	ctrlDrive bool
	ctrlLevel gpio.Level
	phyDrive  bool
	phyLevel  gpio.Level

	state     int
	preamble  int
	n         int
	hdr       uint32
	cur       frame
	read      bool
	responder *simPHY
	readVal   uint16

	frames    []frame
	malformed []string

	// MDC timing: the shortest high and low phases seen, and the
	// shortest high phase of clocks the controller sampled.
	lastEdge                  time.Time
	minHigh, minLow, minReadH time.Duration
	highReleased              bool
}

func newSimBus() *simBus {
	return &simBus{phys: map[uint8]*simPHY{}, minHigh: time.Hour, minLow: time.Hour, minReadH: time.Hour}
}

func (b *simBus) flag(format string, a ...any) {
	b.malformed = append(b.malformed, fmt.Sprintf("edge in state %d bit %d: ", b.state, b.n)+fmt.Sprintf(format, a...))
}

// wire is the level on MDIO: a driver's, or the pull-up's.
func (b *simBus) wire() gpio.Level {
	switch {
	case b.ctrlDrive:
		return b.ctrlLevel
	case b.phyDrive:
		return b.phyLevel
	}
	return gpio.High
}

func (b *simBus) level() gpio.Level {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wire()
}

func (b *simBus) drive(l gpio.Level) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.phyDrive {
		b.flag("bus contention: controller drives MDIO while the PHY does")
	}
	if b.mdc == gpio.High && (!b.ctrlDrive || b.ctrlLevel != l) {
		b.flag("MDIO changed while MDC is high")
	}
	b.ctrlDrive, b.ctrlLevel = true, l
}

func (b *simBus) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mdc == gpio.High && b.ctrlDrive {
		b.flag("MDIO released while MDC is high")
	}
	b.ctrlDrive = false
}

func (b *simBus) clock(l gpio.Level) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l == b.mdc {
		return
	}
	now := time.Now()
	if !b.lastEdge.IsZero() {
		d := now.Sub(b.lastEdge)
		if b.mdc == gpio.High {
			b.minHigh = min(b.minHigh, d)
			if b.highReleased {
				b.minReadH = min(b.minReadH, d)
			}
		} else {
			b.minLow = min(b.minLow, d)
		}
	}
	b.lastEdge = now
	b.mdc = l
	if l == gpio.High {
		b.highReleased = !b.ctrlDrive
		b.rising()
	}
}

// phyBit sets what the answering PHY drives after this rising edge.
func (b *simBus) phyBit(v uint16, bit int) {
	b.phyLevel = gpio.Level(v>>bit&1 == 1)
}

// rising is one rising edge of MDC: the PHY samples MDIO, and in a read
// it drives the next bit.
func (b *simBus) rising() {
	bit := uint32(0)
	if b.wire() == gpio.High {
		bit = 1
	}
	switch b.state {
	case sIdle:
		switch {
		case !b.ctrlDrive:
			b.preamble = 0 // an idle clock, not part of a preamble
		case bit == 1:
			b.preamble++
		default:
			if b.preamble != wPreamble {
				b.flag("preamble of %d ones, want %d", b.preamble, wPreamble)
			}
			b.preamble = 0
			b.state, b.n, b.hdr = sHeader, 1, 0
		}
	case sHeader:
		if !b.ctrlDrive {
			b.flag("controller released MDIO in header bit %d", b.n)
		}
		b.hdr = b.hdr<<1 | bit
		b.n++
		if b.n < 14 {
			return
		}
		b.cur = frame{st: uint8(b.hdr >> 12), op: uint8(b.hdr >> 10 & 3), pa: uint8(b.hdr >> 5 & 31), ra: uint8(b.hdr & 31)}
		switch b.cur.st {
		case wST22:
			if b.cur.op != wRead22 && b.cur.op != wWrite22 {
				b.flag("clause 22 opcode %02b", b.cur.op)
			}
			b.read = b.cur.op == wRead22
		case wST45:
			b.read = b.cur.op == wRead45 || b.cur.op == wReadInc45
		}
		b.responder = nil
		if p := b.phys[b.cur.pa]; b.read && p != nil {
			b.responder = p
			b.readVal = p.read(b.cur.st, b.cur.op, b.cur.ra)
		}
		b.state, b.n = sTurnaround, 0
	case sTurnaround:
		if b.read {
			if b.ctrlDrive {
				b.flag("controller drives MDIO in read turnaround bit %d", b.n)
			}
			if r := b.responder; r != nil {
				if b.ctrlDrive && b.n == 0 && !r.brokenTA {
					b.flag("bus contention: the PHY starts driving MDIO while the controller does")
				}
				switch {
				case b.n == 0 && !r.brokenTA:
					b.phyDrive, b.phyLevel = true, gpio.Low
				case b.n == 1:
					b.phyDrive = true
					b.phyBit(b.readVal, 15)
				}
			}
		} else {
			if !b.ctrlDrive {
				b.flag("controller released MDIO in write turnaround bit %d", b.n)
			} else if want := uint32(1 - b.n); bit != want {
				b.flag("write turnaround bit %d is %d, want 10", b.n, bit)
			}
		}
		b.n++
		if b.n == 2 {
			b.state, b.n, b.cur.data = sData, 0, 0
		}
	case sData:
		if b.read == b.ctrlDrive {
			b.flag("controller drive %v in data bit %d of a read=%v frame", b.ctrlDrive, b.n, b.read)
		}
		b.cur.data = b.cur.data<<1 | uint16(bit)
		if b.responder != nil {
			if b.n < 15 {
				b.phyBit(b.readVal, 14-b.n)
			} else {
				b.phyDrive = false
			}
		}
		b.n++
		if b.n < 16 {
			return
		}
		if p := b.phys[b.cur.pa]; !b.read && p != nil {
			p.write(b.cur)
		}
		b.frames = append(b.frames, b.cur)
		b.state, b.n = sIdle, 0
	}
}

// takeFrames returns the frames decoded since the last call, and the
// problems found.
func (b *simBus) take() ([]frame, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, m := b.frames, b.malformed
	b.frames, b.malformed = nil, nil
	if b.state != sIdle {
		m = append(m, fmt.Sprintf("frame left unfinished in state %d after bit %d", b.state, b.n))
	}
	return f, m
}

// mdcPin is the controller's MDC line: every level it sets reaches the
// bus, which acts on the edges.
type mdcPin struct {
	*gpiotest.Pin
	bus  *simBus
	fail error // returned by Out when set
}

func (p *mdcPin) Out(l gpio.Level) error {
	if p.fail != nil {
		return p.fail
	}
	if err := p.Pin.Out(l); err != nil {
		return err
	}
	p.bus.clock(l)
	return nil
}

// mdioPin is the controller's MDIO line: Out drives it, In releases it,
// Read sees the wire.
type mdioPin struct {
	*gpiotest.Pin
	bus *simBus
	// stuck: In does not release the line, as with a pin that cannot
	// change direction; the bus must notice.
	stuck bool
}

func (p *mdioPin) Out(l gpio.Level) error {
	if err := p.Pin.Out(l); err != nil {
		return err
	}
	p.bus.drive(l)
	return nil
}

func (p *mdioPin) In(pull gpio.Pull, edge gpio.Edge) error {
	if p.stuck {
		return nil
	}
	if err := p.Pin.In(pull, edge); err != nil {
		return err
	}
	p.bus.release()
	return nil
}

func (p *mdioPin) Read() gpio.Level { return p.bus.level() }

func newPins(b *simBus) (*mdcPin, *mdioPin) {
	return &mdcPin{Pin: &gpiotest.Pin{N: "GPIO17", Num: 17}, bus: b},
		&mdioPin{Pin: &gpiotest.Pin{N: "GPIO27", Num: 27}, bus: b}
}

var errPin = errors.New("pin write failed")
