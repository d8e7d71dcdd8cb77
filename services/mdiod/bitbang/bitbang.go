// Package bitbang reaches a PHY by bit-banging IEEE 802.3 MDIO frames on
// two GPIO lines: the backend spec "gpio:mdc=PIN,mdio=PIN[,addr=N][,rate=HZ]".
//
// Clause 22 frames (22.2.4.5) are a preamble of 32 ones, ST=01, OP (10
// read, 01 write), PHYAD, REGAD, a turnaround and 16 data bits, MSB first.
// Clause 45 frames (45.3) have ST=00 and OP address(00), write(01),
// read(11) or post-read-increment-read(10), with PRTAD and DEVAD in place
// of PHYAD and REGAD; a register access is an address frame followed by a
// data frame.
//
// The controller sets MDIO while MDC is low and the PHY samples it on the
// rising edge. In a read the controller releases MDIO (switches the pin to
// input) before the first turnaround bit; the PHY drives each bit after a
// rising edge (output delay 0..300 ns, 22.3.4) and the controller samples
// it while MDC is high, at least 300 ns after that edge.
package bitbang

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// MDC frequencies in Hz.
const (
	// MaxRate is IEEE 802.3's limit for MDC (22.2.2.13).
	MaxRate = 2_500_000
	// DefaultRate is what a spec without rate= runs at.
	DefaultRate = MaxRate
	// MinRate keeps a frame (about 130 half periods) under 70 ms.
	MinRate = 1000
)

// phyOutputDelay is the longest time a PHY may take to drive MDIO after
// the rising edge of MDC (802.3 22.3.4).
const phyOutputDelay = 300 * time.Nanosecond

// spinLimit: shorter delays spin on the monotonic clock, because
// time.Sleep rounds anything this short up to tens of microseconds.
const spinLimit = 50 * time.Microsecond

const preambleBits = 32

// Frame fields.
const (
	stC22 = 0b01
	stC45 = 0b00

	opC22Read  = 0b10
	opC22Write = 0b01

	opC45Address = 0b00
	opC45Write   = 0b01
	opC45Read    = 0b11
)

// Options configure a bit-banged bus.
type Options struct {
	// Addr is the PHY address (PHYAD, or PRTAD for Clause 45), 0..31.
	Addr uint8
	// Rate is the MDC frequency in Hz, MinRate..MaxRate. Zero runs the
	// clock as fast as the pins allow, without any delay: for GPIO
	// controllers too slow to exceed 2.5 MHz anyway, and for tests.
	Rate int
	// Name is what Name returns; empty means the normalised spec built
	// from the pin names.
	Name string
}

// PHY is a PHY at one address on a bit-banged MDIO bus. It implements
// mdio.PHY.
type PHY struct {
	name   string
	mdc    gpio.PinOut
	mdio   gpio.PinIO
	addr   uint8
	half   time.Duration // half an MDC period; 0 when unthrottled
	sample time.Duration // MDC high time before sampling a PHY-driven bit

	mu     sync.Mutex
	pull   gpio.Pull // used when releasing MDIO
	err    error     // first pin error of the frame in progress
	closed bool
}

var _ mdio.PHY = (*PHY)(nil)

// New drives MDIO frames on mdc and mdio. It sets MDC low and releases
// MDIO (input with pull-up; the bus also needs its 802.3 pull-up
// resistor).
func New(mdc gpio.PinOut, mdioPin gpio.PinIO, opts Options) (*PHY, error) {
	if mdc == nil || mdioPin == nil {
		return nil, errors.New("gpio backend: nil pin")
	}
	if opts.Addr > mdio.MaxPHYAdr {
		return nil, fmt.Errorf("gpio backend: PHY address %d outside 0..%d", opts.Addr, mdio.MaxPHYAdr)
	}
	if err := checkRate(opts.Rate); err != nil {
		return nil, fmt.Errorf("gpio backend: %w", err)
	}
	p := &PHY{
		name: opts.Name,
		mdc:  mdc,
		mdio: mdioPin,
		addr: opts.Addr,
		pull: gpio.PullUp,
	}
	if p.name == "" {
		p.name = Spec{MDC: mdc.Name(), MDIO: mdioPin.Name(), Options: opts}.String()
	}
	if opts.Rate > 0 {
		p.half = time.Second / time.Duration(2*opts.Rate)
		p.sample = max(p.half, phyOutputDelay)
	}
	p.setMDC(gpio.Low)
	p.release()
	if p.err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, p.err)
	}
	return p, nil
}

// Open parses params (what follows "gpio:"), initialises periph's host
// drivers and looks the pins up by name.
func Open(params string) (*PHY, error) {
	spec, err := ParseSpec(params)
	if err != nil {
		return nil, err
	}
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("gpio backend %q: initialising GPIO drivers: %w", params, err)
	}
	mdc := gpioreg.ByName(spec.MDC)
	if mdc == nil {
		return nil, fmt.Errorf("gpio backend %q: unknown pin %q for mdc", params, spec.MDC)
	}
	mdioPin := gpioreg.ByName(spec.MDIO)
	if mdioPin == nil {
		return nil, fmt.Errorf("gpio backend %q: unknown pin %q for mdio", params, spec.MDIO)
	}
	// Aliases ("GPIO17", "17", "P1_11") resolve to one pin.
	if mdc.Name() == mdioPin.Name() {
		return nil, fmt.Errorf("gpio backend %q: mdc and mdio are the same pin %s", params, mdc.Name())
	}
	norm := spec
	norm.MDC, norm.MDIO = mdc.Name(), mdioPin.Name()
	return New(mdc, mdioPin, Options{Addr: spec.Addr, Rate: spec.Rate, Name: norm.String()})
}

// Name implements mdio.PHY.
func (p *PHY) Name() string { return p.name }

// Addr returns the PHY address.
func (p *PHY) Addr() uint8 { return p.addr }

// Close implements mdio.PHY: it leaves MDC low and MDIO released.
func (p *PHY) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.err = nil
	p.setMDC(gpio.Low)
	p.release()
	if p.err != nil {
		return fmt.Errorf("%s: close: %w", p.name, p.err)
	}
	return nil
}

// Read implements mdio.PHY.
func (p *PHY) Read(reg uint8) (uint16, error) {
	what := fmt.Sprintf("read reg %d at address %d", reg, p.addr)
	if reg > mdio.MaxReg {
		return 0, fmt.Errorf("%s: %s: register out of range 0..%d", p.name, what, mdio.MaxReg)
	}
	return p.transact(what, func() (uint16, bool) {
		return p.readFrame(stC22, opC22Read, reg)
	})
}

// Write implements mdio.PHY.
func (p *PHY) Write(reg uint8, v uint16) error {
	what := fmt.Sprintf("write reg %d at address %d", reg, p.addr)
	if reg > mdio.MaxReg {
		return fmt.Errorf("%s: %s: register out of range 0..%d", p.name, what, mdio.MaxReg)
	}
	_, err := p.transact(what, func() (uint16, bool) {
		p.writeFrame(stC22, opC22Write, reg, v)
		return 0, true
	})
	return err
}

// ReadC45 implements mdio.PHY: an address frame, then a read frame.
func (p *PHY) ReadC45(devad uint8, reg uint16) (uint16, error) {
	what := fmt.Sprintf("read devad %d reg %d at address %d", devad, reg, p.addr)
	if devad > mdio.MaxDevad {
		return 0, fmt.Errorf("%s: %s: devad out of range 0..%d", p.name, what, mdio.MaxDevad)
	}
	return p.transact(what, func() (uint16, bool) {
		p.writeFrame(stC45, opC45Address, devad, reg)
		return p.readFrame(stC45, opC45Read, devad)
	})
}

// WriteC45 implements mdio.PHY: an address frame, then a write frame.
func (p *PHY) WriteC45(devad uint8, reg uint16, v uint16) error {
	what := fmt.Sprintf("write devad %d reg %d at address %d", devad, reg, p.addr)
	if devad > mdio.MaxDevad {
		return fmt.Errorf("%s: %s: devad out of range 0..%d", p.name, what, mdio.MaxDevad)
	}
	_, err := p.transact(what, func() (uint16, bool) {
		p.writeFrame(stC45, opC45Address, devad, reg)
		p.writeFrame(stC45, opC45Write, devad, v)
		return 0, true
	})
	return err
}

// errBadTurnaround: something drove data but not the turnaround zero.
var errBadTurnaround = errors.New("turnaround bit not driven low by the PHY")

// transact runs frames under the bus lock. frames returns the data read
// and whether the PHY drove the turnaround zero.
func (p *PHY) transact(what string, frames func() (uint16, bool)) (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, fmt.Errorf("%s: %s: %w", p.name, what, os.ErrClosed)
	}
	p.err = nil
	v, taOK := frames()
	switch {
	case p.err != nil:
		// Leave the bus idle for the next request whatever failed.
		err := p.err
		p.err = nil
		p.setMDC(gpio.Low)
		p.release()
		return 0, fmt.Errorf("%s: %s: %w", p.name, what, err)
	case taOK:
		return v, nil
	case v == 0xffff:
		return 0, fmt.Errorf("%s: %s: %w", p.name, what, mdio.ErrNoResponse)
	default:
		return 0, fmt.Errorf("%s: %s: %w (data %#04x)", p.name, what, errBadTurnaround, v)
	}
}

// header sends the preamble, ST, OP and the two 5-bit addresses.
func (p *PHY) header(st, op, reg uint8) {
	for range preambleBits {
		p.writeBit(true)
	}
	p.writeBits(uint32(st), 2)
	p.writeBits(uint32(op), 2)
	p.writeBits(uint32(p.addr), 5)
	p.writeBits(uint32(reg), 5)
}

// writeFrame sends a frame whose turnaround and data the controller
// drives (C22 write, C45 address and write), then releases MDIO for one
// idle clock.
func (p *PHY) writeFrame(st, op, reg uint8, v uint16) {
	p.header(st, op, reg)
	p.writeBits(0b10, 2)
	p.writeBits(uint32(v), 16)
	p.release()
	p.readBit()
}

// readFrame sends a read header, releases MDIO, clocks in the turnaround
// and 16 data bits, then one more clock after which the PHY lets go.
// It reports whether the turnaround bit was 0.
func (p *PHY) readFrame(st, op, reg uint8) (uint16, bool) {
	p.header(st, op, reg)
	p.release()
	// The first turnaround bit is high impedance; during it the PHY
	// starts driving the second one, 0, which is sampled here.
	ta := p.readBit()
	var v uint16
	for range 16 {
		v <<= 1
		if p.readBit() {
			v |= 1
		}
	}
	p.readBit()
	return v, !ta
}

func (p *PHY) writeBits(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		p.writeBit(v>>i&1 == 1)
	}
}

// writeBit sets MDIO while MDC is low and clocks it out: the PHY samples
// it on the rising edge, and it stays put until MDC is low again.
func (p *PHY) writeBit(b bool) {
	l := gpio.Low
	if b {
		l = gpio.High
	}
	p.setMDIO(l)
	delay(p.half)
	p.setMDC(gpio.High)
	delay(p.half)
	p.setMDC(gpio.Low)
}

// readBit clocks one bit that the controller does not drive and samples
// MDIO after the rising edge, once the PHY's output delay has passed.
func (p *PHY) readBit() bool {
	delay(p.half)
	p.setMDC(gpio.High)
	delay(p.sample)
	l := gpio.High
	if p.err == nil {
		l = p.mdio.Read()
	}
	p.setMDC(gpio.Low)
	return l == gpio.High
}

// The pin helpers keep the first error of a frame in p.err and do
// nothing after it, so frames read straight through; transact reports it.

func (p *PHY) setMDC(l gpio.Level) {
	if p.err != nil {
		return
	}
	if err := p.mdc.Out(l); err != nil {
		p.err = fmt.Errorf("MDC %s: %w", p.mdc.Name(), err)
	}
}

func (p *PHY) setMDIO(l gpio.Level) {
	if p.err != nil {
		return
	}
	if err := p.mdio.Out(l); err != nil {
		p.err = fmt.Errorf("MDIO %s: %w", p.mdio.Name(), err)
	}
}

// release makes MDIO an input. Some GPIO drivers (sysfs) cannot set a
// pull; then the bus's own pull-up resistor has to do.
func (p *PHY) release() {
	if p.err != nil {
		return
	}
	err := p.mdio.In(p.pull, gpio.NoEdge)
	if err != nil && p.pull != gpio.PullNoChange {
		if err2 := p.mdio.In(gpio.PullNoChange, gpio.NoEdge); err2 == nil {
			p.pull, err = gpio.PullNoChange, nil
		}
	}
	if err != nil {
		p.err = fmt.Errorf("MDIO %s: release: %w", p.mdio.Name(), err)
	}
}

// delay waits d: spinning on the monotonic clock below spinLimit, where
// time.Sleep is far too coarse for a 200 ns half period.
func delay(d time.Duration) {
	switch {
	case d <= 0:
	case d >= spinLimit:
		time.Sleep(d)
	default:
		for start := time.Now(); time.Since(start) < d; {
		}
	}
}
