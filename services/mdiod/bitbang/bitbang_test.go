package bitbang

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// checkBus fails the test for every problem the bus found.
func checkBus(t *testing.T, b *simBus) []frame {
	t.Helper()
	frames, bad := b.take()
	for _, m := range bad {
		t.Errorf("malformed MDIO: %s", m)
	}
	return frames
}

func TestFrames(t *testing.T) {
	c45 := func(pa, devad uint8, reg uint16, op uint8, data uint16) []frame {
		return []frame{{wST45, wAddress45, pa, devad, reg}, {wST45, op, pa, devad, data}}
	}
	type setup func(phys map[uint8]*simPHY)
	for _, tc := range []struct {
		name    string
		phys    []uint8 // PHY addresses present on the bus
		setup   setup
		addr    uint8 // the controller's PHY address
		op      func(p *PHY) (uint16, error)
		want    uint16
		wantErr error
		frames  []frame
		check   func(t *testing.T, phys map[uint8]*simPHY)
	}{
		{
			name: "c22 read", phys: []uint8{1}, addr: 1,
			setup: func(m map[uint8]*simPHY) { m[1].regs[2] = 0x0141 },
			op:    func(p *PHY) (uint16, error) { return p.Read(mdio.PHYID1) },
			want:  0x0141, frames: []frame{{wST22, wRead22, 1, 2, 0x0141}},
		},
		{
			name: "c22 read all ones with a good turnaround", phys: []uint8{1}, addr: 1,
			setup: func(m map[uint8]*simPHY) { m[1].regs[31] = 0xffff },
			op:    func(p *PHY) (uint16, error) { return p.Read(31) },
			want:  0xffff, frames: []frame{{wST22, wRead22, 1, 31, 0xffff}},
		},
		{
			name: "c22 read zero", phys: []uint8{1}, addr: 1,
			op:   func(p *PHY) (uint16, error) { return p.Read(mdio.BMCR) },
			want: 0, frames: []frame{{wST22, wRead22, 1, 0, 0}},
		},
		{
			name: "c22 write", phys: []uint8{1}, addr: 1,
			op:     func(p *PHY) (uint16, error) { return 0, p.Write(mdio.BMCR, 0x9140) },
			frames: []frame{{wST22, wWrite22, 1, 0, 0x9140}},
			check: func(t *testing.T, m map[uint8]*simPHY) {
				if m[1].regs[0] != 0x9140 {
					t.Errorf("BMCR = %#04x, want 0x9140", m[1].regs[0])
				}
			},
		},
		{
			name: "c22 read at address 0 with PHYs at 0, 5 and 31", phys: []uint8{0, 5, 31}, addr: 0,
			setup: func(m map[uint8]*simPHY) { m[0].regs[3] = 0x0c00; m[5].regs[3] = 0x0c05; m[31].regs[3] = 0x0c1f },
			op:    func(p *PHY) (uint16, error) { return p.Read(3) },
			want:  0x0c00, frames: []frame{{wST22, wRead22, 0, 3, 0x0c00}},
		},
		{
			name: "c22 read at address 5 with PHYs at 0, 5 and 31", phys: []uint8{0, 5, 31}, addr: 5,
			setup: func(m map[uint8]*simPHY) { m[0].regs[3] = 0x0c00; m[5].regs[3] = 0x0c05; m[31].regs[3] = 0x0c1f },
			op:    func(p *PHY) (uint16, error) { return p.Read(3) },
			want:  0x0c05, frames: []frame{{wST22, wRead22, 5, 3, 0x0c05}},
		},
		{
			name: "c22 read at address 31 with PHYs at 0, 5 and 31", phys: []uint8{0, 5, 31}, addr: 31,
			setup: func(m map[uint8]*simPHY) { m[0].regs[3] = 0x0c00; m[5].regs[3] = 0x0c05; m[31].regs[3] = 0xa5a5 },
			op:    func(p *PHY) (uint16, error) { return p.Read(3) },
			want:  0xa5a5, frames: []frame{{wST22, wRead22, 31, 3, 0xa5a5}},
		},
		{
			name: "c22 write at address 5 leaves the others alone", phys: []uint8{0, 5, 31}, addr: 5,
			op:     func(p *PHY) (uint16, error) { return 0, p.Write(22, 0x00ff) },
			frames: []frame{{wST22, wWrite22, 5, 22, 0x00ff}},
			check: func(t *testing.T, m map[uint8]*simPHY) {
				if m[5].regs[22] != 0x00ff || m[0].regs[22] != 0 || m[31].regs[22] != 0 {
					t.Errorf("reg 22 at 0/5/31 = %#04x/%#04x/%#04x, want 0/0x00ff/0", m[0].regs[22], m[5].regs[22], m[31].regs[22])
				}
			},
		},
		{
			name: "c22 read with no PHY at the address", phys: []uint8{1}, addr: 2,
			setup:   func(m map[uint8]*simPHY) { m[1].regs[2] = 0x0141 },
			op:      func(p *PHY) (uint16, error) { return p.Read(2) },
			wantErr: mdio.ErrNoResponse, frames: []frame{{wST22, wRead22, 2, 2, 0xffff}},
		},
		{
			name: "c22 read on an empty bus", addr: 0,
			op:      func(p *PHY) (uint16, error) { return p.Read(1) },
			wantErr: mdio.ErrNoResponse, frames: []frame{{wST22, wRead22, 0, 1, 0xffff}},
		},
		{
			name: "c22 read from a PHY without the turnaround zero", phys: []uint8{1}, addr: 1,
			setup:   func(m map[uint8]*simPHY) { m[1].brokenTA = true; m[1].regs[1] = 0x796d },
			op:      func(p *PHY) (uint16, error) { return p.Read(1) },
			wantErr: errBadTurnaround, frames: []frame{{wST22, wRead22, 1, 1, 0x796d}},
		},
		{
			name: "c45 address and read", phys: []uint8{2}, addr: 2,
			setup: func(m map[uint8]*simPHY) { m[2].c45[[2]uint16{7, 0x3c}] = 0x1234 },
			op:    func(p *PHY) (uint16, error) { return p.ReadC45(7, 0x3c) },
			want:  0x1234, frames: c45(2, 7, 0x3c, wRead45, 0x1234),
		},
		{
			name: "c45 address and read of 0xffff", phys: []uint8{2}, addr: 2,
			setup: func(m map[uint8]*simPHY) { m[2].c45[[2]uint16{31, 0xffff}] = 0xffff },
			op:    func(p *PHY) (uint16, error) { return p.ReadC45(31, 0xffff) },
			want:  0xffff, frames: c45(2, 31, 0xffff, wRead45, 0xffff),
		},
		{
			name: "c45 address and write", phys: []uint8{3}, addr: 3,
			op:     func(p *PHY) (uint16, error) { return 0, p.WriteC45(1, 0xa000, 0xbeef) },
			frames: c45(3, 1, 0xa000, wWrite45, 0xbeef),
			check: func(t *testing.T, m map[uint8]*simPHY) {
				if v := m[3].c45[[2]uint16{1, 0xa000}]; v != 0xbeef || m[3].c45addr[1] != 0xa000 {
					t.Errorf("MMD 1 reg 0xa000 = %#04x (address register %#04x), want 0xbeef", v, m[3].c45addr[1])
				}
			},
		},
		{
			name: "c45 read with no PHY at the address", phys: []uint8{3}, addr: 4,
			op:      func(p *PHY) (uint16, error) { return p.ReadC45(1, 0) },
			wantErr: mdio.ErrNoResponse, frames: c45(4, 1, 0, wRead45, 0xffff),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newSimBus()
			for _, a := range tc.phys {
				b.phys[a] = newSimPHY()
			}
			if tc.setup != nil {
				tc.setup(b.phys)
			}
			mdc, mdioP := newPins(b)
			p, err := New(mdc, mdioP, Options{Addr: tc.addr})
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.op(p)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), fmt.Sprintf("at address %d", tc.addr)) {
					t.Errorf("got %#04x, %v; want %v naming address %d", got, err, tc.wantErr, tc.addr)
				}
			} else if err != nil || got != tc.want {
				t.Errorf("got %#04x, %v; want %#04x", got, err, tc.want)
			}
			if frames := checkBus(t, b); !slices.Equal(frames, tc.frames) {
				t.Errorf("frames on the bus:\n got %v\nwant %v", frames, tc.frames)
			}
			if tc.check != nil {
				tc.check(t, b.phys)
			}
			// The bus is left idle: MDC low, MDIO released.
			if b.mdc != gpio.Low || b.ctrlDrive || b.phyDrive {
				t.Errorf("bus left with MDC %v, controller driving %v, PHY driving %v", b.mdc, b.ctrlDrive, b.phyDrive)
			}
		})
	}
}

// TestCheckerCatchesMalformed drives bad waveforms by hand (and through a
// pin that cannot release MDIO) to show that the bus checker fails them.
func TestCheckerCatchesMalformed(t *testing.T) {
	// raw clocks out bits: '1'/'0' driven by the controller, 'z' released.
	raw := func(mdc *mdcPin, mdioP *mdioPin, bits string) {
		for _, c := range bits {
			if c == 'z' {
				mdioP.In(gpio.PullUp, gpio.NoEdge)
			} else {
				mdioP.Out(gpio.Level(c == '1'))
			}
			mdc.Out(gpio.High)
			mdc.Out(gpio.Low)
		}
	}
	pre := strings.Repeat("1", 32)
	for _, tc := range []struct {
		name string
		run  func(mdc *mdcPin, mdioP *mdioPin)
		want string
	}{
		{"short preamble", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre[1:]+"0110"+"00001"+"00001"+"10"+strings.Repeat("0", 16))
		}, "preamble of 31 ones"},
		{"long preamble", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"1"+"0110"+"00001"+"00001"+"10"+strings.Repeat("0", 16))
		}, "preamble of 33 ones"},
		{"clause 22 opcode 11", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"0111"+"00001"+"00001"+"zz"+strings.Repeat("z", 16))
		}, "clause 22 opcode 11"},
		{"write turnaround 11", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"0101"+"00001"+"00001"+"11"+strings.Repeat("0", 16))
		}, "write turnaround bit 1 is 1"},
		{"released in the header", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"0110"+"00z01"+"00001"+"zz"+strings.Repeat("z", 16))
		}, "released MDIO in header bit 6"},
		{"driving in a read turnaround", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"0110"+"00001"+"00001"+"1z"+strings.Repeat("z", 16))
		}, "drives MDIO in read turnaround bit 0"},
		{"truncated frame", func(c *mdcPin, d *mdioPin) {
			raw(c, d, pre+"0101"+"00001"+"00001"+"10"+strings.Repeat("0", 15))
		}, "unfinished"},
		{"data changed while MDC high", func(c *mdcPin, d *mdioPin) {
			d.Out(gpio.High)
			c.Out(gpio.High)
			d.Out(gpio.Low)
			c.Out(gpio.Low)
		}, "MDIO changed while MDC is high"},
		{"controller that cannot release MDIO", func(c *mdcPin, d *mdioPin) {
			d.stuck = true
			p, err := New(c, d, Options{Addr: 1})
			if err != nil {
				panic(err)
			}
			p.Read(1)
		}, "bus contention: the PHY starts driving"},
		{"controller that cannot release MDIO, read turnaround", func(c *mdcPin, d *mdioPin) {
			d.stuck = true
			p, err := New(c, d, Options{Addr: 1})
			if err != nil {
				panic(err)
			}
			p.Read(1)
		}, "controller drives MDIO in read turnaround bit 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newSimBus()
			b.phys[1] = newSimPHY()
			mdc, mdioP := newPins(b)
			tc.run(mdc, mdioP)
			_, bad := b.take()
			if !slices.ContainsFunc(bad, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("checker found %q, want a problem containing %q", bad, tc.want)
			}
		})
	}
}

func TestPinErrors(t *testing.T) {
	b := newSimBus()
	b.phys[1] = newSimPHY()
	b.phys[1].regs[1] = 0x7949
	mdc, mdioP := newPins(b)
	p, err := New(mdc, mdioP, Options{Addr: 1})
	if err != nil {
		t.Fatal(err)
	}
	mdc.fail = errPin
	if _, err := p.Read(1); !errors.Is(err, errPin) || err.Error() != "gpio:mdc=GPIO17,mdio=GPIO27,addr=1,rate=max: read reg 1 at address 1: MDC GPIO17: pin write failed" {
		t.Errorf("Read with a failing MDC = %v", err)
	}
	b.take()
	// The next request starts from a clean state.
	mdc.fail = nil
	if v, err := p.Read(1); err != nil || v != 0x7949 {
		t.Errorf("Read after the pin recovered = %#04x, %v", v, err)
	}
	checkBus(t, b)

	mdc.fail = errPin
	if _, err := New(mdc, mdioP, Options{}); !errors.Is(err, errPin) {
		t.Errorf("New with a failing MDC = %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	b := newSimBus()
	mdc, mdioP := newPins(b)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Addr: 32}, "PHY address 32 outside 0..31"},
		{Options{Rate: MaxRate + 1}, "rate 2500001 Hz outside"},
		{Options{Rate: MinRate - 1}, "rate 999 Hz outside"},
		{Options{Rate: -1}, "rate -1 Hz outside"},
	} {
		if _, err := New(mdc, mdioP, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	if _, err := New(nil, mdioP, Options{}); err == nil {
		t.Error("New with a nil MDC pin succeeded")
	}
	p, err := New(mdc, mdioP, Options{Addr: 4, Rate: 100_000, Name: "gpio:custom"})
	if err != nil || p.Name() != "gpio:custom" || p.Addr() != 4 {
		t.Fatalf("New = %v, %v", p, err)
	}
	p2, err := New(mdc, mdioP, Options{Addr: 4, Rate: DefaultRate})
	if err != nil || p2.Name() != "gpio:mdc=GPIO17,mdio=GPIO27,addr=4" {
		t.Fatalf("New = %q, %v", p2.Name(), err)
	}
	for _, q := range []*PHY{p, p2} {
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p2.Read(1); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	for _, tc := range []struct {
		op   func() error
		want string
	}{
		{func() error { _, err := p.Read(32); return err }, "read reg 32 at address 4: register out of range 0..31"},
		{func() error { return p.Write(33, 0) }, "write reg 33 at address 4: register out of range"},
		{func() error { _, err := p.ReadC45(32, 0); return err }, "read devad 32 reg 0 at address 4: devad out of range 0..31"},
		{func() error { return p.WriteC45(40, 1, 0) }, "devad out of range"},
	} {
		if err := tc.op(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	checkBus(t, b)
}

// TestRate checks MDC phases against the configured rate, on the spin
// path and on the sleep path, and the 300 ns PHY output delay before a
// sample at 2.5 MHz. Only lower bounds: a slow machine only stretches them.
func TestRate(t *testing.T) {
	for _, rate := range []int{MaxRate, 100_000, 4_000} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			b := newSimBus()
			b.phys[1] = newSimPHY()
			b.phys[1].regs[2] = 0x0022
			mdc, mdioP := newPins(b)
			p, err := New(mdc, mdioP, Options{Addr: 1, Rate: rate})
			if err != nil {
				t.Fatal(err)
			}
			if v, err := p.Read(2); err != nil || v != 0x0022 {
				t.Fatalf("Read = %#04x, %v", v, err)
			}
			checkBus(t, b)
			half := time.Second / time.Duration(2*rate)
			if b.minHigh < half || b.minLow < half {
				t.Errorf("MDC high %v low %v, want at least %v each", b.minHigh, b.minLow, half)
			}
			if b.minReadH < phyOutputDelay {
				t.Errorf("sampled %v after the rising edge, want at least %v", b.minReadH, phyOutputDelay)
			}
		})
	}
}

// TestConcurrent: requests from several goroutines never interleave on
// the wire.
func TestConcurrent(t *testing.T) {
	b := newSimBus()
	b.phys[1] = newSimPHY()
	mdc, mdioP := newPins(b)
	p, err := New(mdc, mdioP, Options{Addr: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				reg := uint8(g*4 + i%4)
				v := uint16(g<<8 | i)
				if err := p.Write(reg, v); err != nil {
					t.Error(err)
					return
				}
				if got, err := p.Read(reg); err != nil || got != v {
					t.Errorf("reg %d = %#04x, %v; want %#04x", reg, got, err, v)
					return
				}
				if err := p.WriteC45(uint8(g), uint16(i), v); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if frames := checkBus(t, b); len(frames) != 4*25*4 {
		t.Errorf("%d frames, want %d", len(frames), 4*25*4)
	}
}

// BenchmarkReadC22 reads a register at the unthrottled rate through the
// simulated bus and reports the ratio to the same pin operations done
// directly (the baseline, measured in the same run), i.e. the cost of the
// framing logic on top of the pins.
func BenchmarkReadC22(b *testing.B) {
	bus := newSimBus()
	bus.phys[1] = newSimPHY()
	bus.phys[1].regs[2] = 0x0141
	mdc, mdioP := newPins(bus)
	p, err := New(mdc, mdioP, Options{Addr: 1})
	if err != nil {
		b.Fatal(err)
	}
	baseline := func(n int) time.Duration {
		start := time.Now()
		for range n {
			for range 46 { // preamble and header: set MDIO, clock
				mdioP.Out(gpio.High)
				mdc.Out(gpio.High)
				mdc.Out(gpio.Low)
			}
			mdioP.In(gpio.PullUp, gpio.NoEdge)
			for range 18 { // turnaround, data, release: clock, sample
				mdc.Out(gpio.High)
				mdioP.Read()
				mdc.Out(gpio.Low)
			}
		}
		return time.Since(start)
	}
	n := 0
	start := time.Now()
	for b.Loop() {
		if v, err := p.Read(2); err != nil || v != 0x0141 {
			b.Fatalf("Read = %#04x, %v", v, err)
		}
		n++
	}
	elapsed := time.Since(start)
	if _, bad := bus.take(); len(bad) > 0 {
		b.Fatalf("malformed MDIO: %q", bad)
	}
	base := baseline(n)
	if base > 0 {
		b.ReportMetric(float64(elapsed)/float64(base), "x-raw-pins")
	}
}
