// Package sim is a simulated Ethernet PHY behind the mdio.PHY contract:
// a register model with the reset values and IDs of a real part, IEEE
// 802.3 Clause 22 semantics (self-clearing reset and AN restart, the
// latched-low link bit, read-only status registers, a link partner that
// auto-negotiation resolves against), Marvell-style paging on register 22
// and a few Clause 45 MMDs. The link partner can be scripted over time.
//
// The simulator has no goroutines or timers: every access first brings
// the model up to the clock's current time, applying script steps and
// finishing auto-negotiation that is due. Tests inject a clock and never
// sleep.
//
// Unimplemented Clause 45 devices behave as on a real bus where no MMD
// drives MDIO: reads return 0xFFFF together with an error wrapping
// mdio.ErrNoResponse, and writes are ignored (MDIO writes are never
// acknowledged). Registers of an implemented MMD or page that the model
// does not list read 0 and keep what is written.
package sim

import (
	"fmt"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Clock returns the current time.
type Clock func() time.Time

// link is the resolved state of our side.
type link struct {
	up         bool
	anComplete bool
	speed      int
	full       bool
	master     bool
}

// PHY is one simulated PHY. It is safe for concurrent use.
type PHY struct {
	cfg   Config
	clock Clock

	mu       sync.Mutex
	start    time.Time
	step     int // next script step
	cycleN   int // cycles completed
	partner  State
	bmcr     uint16
	anar     uint16
	ctrl1000 uint16
	page     uint8
	pages    map[uint8]*[32]uint16
	mmds     map[uint8]map[uint16]uint16
	anUntil  time.Time
	lnk      link
	// linkLatchedDown is the Clause 22 latch: set when the link drops,
	// cleared by a BMSR read.
	linkLatchedDown bool
	closed          bool
}

// Open returns a PHY for a "sim" spec's parameters (see ParseSpec), on
// the real clock.
func Open(params string) (*PHY, error) {
	cfg, err := ParseSpec(params)
	if err != nil {
		return nil, err
	}
	return New(cfg, time.Now), nil
}

// New returns a PHY for cfg on clock. The script starts now.
func New(cfg Config, clock Clock) *PHY {
	if clock == nil {
		clock = time.Now
	}
	p := &PHY{cfg: cfg, clock: clock, start: clock()}
	p.partner = cfg.Initial
	p.pages = make(map[uint8]*[32]uint16)
	for pg, regs := range cfg.Model.Pages {
		var r [32]uint16
		for n, v := range regs {
			r[n&31] = v
		}
		p.pages[pg] = &r
	}
	if p.pages[0] == nil {
		p.pages[0] = new([32]uint16)
	}
	p.mmds = make(map[uint8]map[uint16]uint16)
	for d, regs := range cfg.Model.MMDs {
		m := make(map[uint16]uint16, len(regs))
		for r, v := range regs {
			m[r] = v
		}
		p.mmds[d] = m
	}
	p.resetRegs()
	// A partner present at power-up is negotiated with at once, so that a
	// "link=up" port is up from the first read.
	p.relink(p.start)
	return p
}

func (p *PHY) resetRegs() {
	m := p.cfg.Model
	p.bmcr, p.anar, p.ctrl1000 = m.BMCR, m.ANAR, m.CTRL1000
}

// Name implements mdio.PHY.
func (p *PHY) Name() string { return "sim:" + p.cfg.Model.Name }

// Model returns the PHY's model.
func (p *PHY) Model() Model { return p.cfg.Model }

// Config returns the parsed spec.
func (p *PHY) Config() Config { return p.cfg }

// Close implements mdio.PHY. Later accesses fail.
func (p *PHY) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

var errClosed = fmt.Errorf("sim: PHY closed")

// SetLink sets the link partner now: connected at speed (10, 100 or
// 1000) with our side resolving to master, or disconnected.
func (p *PHY) SetLink(up bool, speed int, master bool) {
	p.SetState(State{Up: up, Speed: speed, Master: master})
}

// SetState sets the link partner's state now. A script keeps running and
// may change it again.
func (p *PHY) SetState(s State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	p.advance(now)
	p.setPartner(s, now)
}

func (p *PHY) setPartner(s State, at time.Time) {
	changed := s != p.partner
	p.partner = s
	if changed && s.Up && !p.lnk.up {
		// A partner appearing is negotiated with at once: the model
		// does not simulate the AN time for a plugged cable, which
		// keeps scripted offsets exact.
		p.anUntil = time.Time{}
	}
	p.relink(at)
}

// advance applies the script steps due at now, each at its own time, so
// that a link that went down and up between two reads still latches.
func (p *PHY) advance(now time.Time) {
	sc := p.cfg.Script
	if c := p.cfg.Cycle; c > 0 && len(sc) > 0 {
		// After a long gap without accesses, skip whole cycles: replaying
		// the last complete one still latches a drop, and the work per
		// access stays bounded.
		if k := int(now.Sub(p.start) / c); k > p.cycleN+1 {
			p.cycleN, p.step = k-1, 0
		}
	}
	for len(sc) > 0 {
		if p.step == len(sc) {
			if p.cfg.Cycle == 0 {
				break
			}
			p.step, p.cycleN = 0, p.cycleN+1
		}
		at := p.start.Add(time.Duration(p.cycleN)*p.cfg.Cycle + sc[p.step].Offset)
		if at.After(now) {
			break
		}
		p.setPartner(sc[p.step].State, at)
		p.step++
	}
	p.relink(now)
}

// relink resolves our link from the partner and our registers at time t.
func (p *PHY) relink(t time.Time) {
	was := p.lnk
	p.lnk = p.resolve(t)
	if was.up && (!p.lnk.up || p.lnk.speed != was.speed || p.lnk.full != was.full) {
		p.linkLatchedDown = true
	}
}

// abilities are the AN technology bits, best first.
var abilities = []struct {
	speed int
	full  bool
}{{1000, true}, {1000, false}, {100, true}, {100, false}, {10, true}, {10, false}}

func (p *PHY) advertises(speed int, full bool) bool {
	switch {
	case speed == 1000 && full:
		return p.cfg.Model.Gigabit && p.ctrl1000&mdio.Adv1000Full != 0
	case speed == 1000:
		return p.cfg.Model.Gigabit && p.ctrl1000&mdio.Adv1000Half != 0
	case speed == 100 && full:
		return p.anar&mdio.Adv100Full != 0
	case speed == 100:
		return p.anar&mdio.Adv100Half != 0
	case full:
		return p.anar&mdio.Adv10Full != 0
	}
	return p.anar&mdio.Adv10Half != 0
}

func (p *PHY) resolve(t time.Time) link {
	if p.bmcr&mdio.BMCRPowerDown != 0 || (!p.partner.Up && !p.partner.AN) || t.Before(p.anUntil) {
		return link{}
	}
	if p.bmcr&mdio.BMCRANEnable == 0 {
		speed := 10
		switch {
		case p.bmcr&mdio.BMCRSpeed1000 != 0 && p.cfg.Model.Gigabit:
			speed = 1000
		case p.bmcr&mdio.BMCRSpeed100 != 0:
			speed = 100
		}
		if !p.partner.Up || p.partner.Speed < speed {
			return link{}
		}
		return link{up: true, speed: speed, full: p.bmcr&mdio.BMCRFullDup != 0, master: p.partner.Master}
	}
	l := link{anComplete: true}
	if !p.partner.Up {
		return l
	}
	for _, a := range abilities {
		if a.speed <= p.partner.Speed && p.advertises(a.speed, a.full) {
			l.up, l.speed, l.full = true, a.speed, a.full
			l.master = p.partner.Master && a.speed == 1000
			break
		}
	}
	return l
}

// renegotiate restarts auto-negotiation: the link drops and comes back
// after ANTime.
func (p *PHY) renegotiate(now time.Time) {
	p.anUntil = now.Add(p.cfg.ANTime)
	p.relink(now)
}

func checkReg(reg uint8) error {
	if reg > mdio.MaxReg {
		return fmt.Errorf("sim: register %d out of range 0..%d", reg, mdio.MaxReg)
	}
	return nil
}

// begin locks the PHY for one access and brings the model up to the
// clock; it returns with the lock held unless the PHY is closed.
func (p *PHY) begin() (time.Time, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return time.Time{}, errClosed
	}
	now := p.clock()
	p.advance(now)
	return now, nil
}

// Read implements mdio.PHY.
func (p *PHY) Read(reg uint8) (uint16, error) {
	if err := checkReg(reg); err != nil {
		return 0, err
	}
	if _, err := p.begin(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	m := &p.cfg.Model
	if m.Paged && reg == mdio.PageSel {
		return uint16(p.page), nil
	}
	if p.page != 0 && m.Paged {
		if r := p.pages[p.page]; r != nil {
			return r[reg], nil
		}
		return 0, nil
	}
	if reg >= 16 {
		if m.CopperStatus != 0 && reg == m.CopperStatus {
			return p.copperStatus(), nil
		}
		return p.pages[0][reg], nil
	}
	return p.ieee(reg), nil
}

// ieee returns a live Clause 22 register 0..15.
func (p *PHY) ieee(reg uint8) uint16 {
	m := &p.cfg.Model
	switch reg {
	case mdio.BMCR:
		return p.bmcr
	case mdio.BMSR:
		v := m.BMSR
		if p.lnk.anComplete || (p.lnk.up && p.bmcr&mdio.BMCRANEnable != 0) {
			v |= mdio.BMSRANComplete
		}
		if p.lnk.up && !p.linkLatchedDown {
			v |= mdio.BMSRLinkUp
		}
		// Reading clears the latch: the next read shows the live state.
		p.linkLatchedDown = false
		return v
	case mdio.PHYID1:
		return m.ID1
	case mdio.PHYID2:
		return m.ID2
	case mdio.ANAR:
		return p.anar
	case mdio.ANLPAR:
		if !p.lnk.anComplete || p.bmcr&mdio.BMCRANEnable == 0 {
			return 0
		}
		v := uint16(0x4001) // acknowledge, IEEE 802.3 selector
		if p.partner.Speed >= 100 {
			v |= mdio.Adv100Full | mdio.Adv100Half
		}
		return v | mdio.Adv10Full | mdio.Adv10Half
	case mdio.ANER:
		v := uint16(0x0004) // next page able
		if p.lnk.anComplete && p.bmcr&mdio.BMCRANEnable != 0 {
			v |= 0x0001 // link partner AN able
		}
		return v
	case mdio.CTRL1000:
		if !m.Gigabit {
			return 0
		}
		return p.ctrl1000
	case mdio.STAT1000:
		if !m.Gigabit || !p.lnk.anComplete || p.bmcr&mdio.BMCRANEnable == 0 {
			return 0
		}
		var v uint16
		if p.partner.Speed >= 1000 {
			v |= mdio.STAT1000LPFull | mdio.STAT1000LPHalf
		}
		if p.lnk.up && p.lnk.speed == 1000 {
			v |= mdio.STAT1000LocalRxOK | 1<<12 // remote receiver OK
			if p.lnk.master {
				v |= mdio.STAT1000Master
			}
		}
		return v
	case mdio.ESTATUS:
		return m.ESTATUS
	}
	return 0
}

// copperStatus is the 88E1512's page 0 register 17.
func (p *PHY) copperStatus() uint16 {
	if !p.lnk.up {
		return 0
	}
	v := uint16(csResolved | csLink)
	switch p.lnk.speed {
	case 1000:
		v |= csSpeed1000
	case 100:
		v |= csSpeed100
	}
	if p.lnk.full {
		v |= csFull
	}
	return v
}

// Write implements mdio.PHY.
func (p *PHY) Write(reg uint8, v uint16) error {
	if err := checkReg(reg); err != nil {
		return err
	}
	now, err := p.begin()
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	m := &p.cfg.Model
	if m.Paged && reg == mdio.PageSel {
		p.page = uint8(v)
		return nil
	}
	if p.page != 0 && m.Paged {
		if r := p.pages[p.page]; r != nil {
			r[reg] = v
		}
		return nil
	}
	if reg >= 16 {
		if m.CopperStatus == 0 || reg != m.CopperStatus {
			p.pages[0][reg] = v
		}
		return nil
	}
	switch reg {
	case mdio.BMCR:
		p.writeBMCR(v, now)
	case mdio.ANAR:
		p.anar = v
	case mdio.CTRL1000:
		if m.Gigabit {
			p.ctrl1000 = v
		}
	}
	// Status and ID registers are read-only: writes are ignored, as on
	// the real parts.
	return nil
}

func (p *PHY) writeBMCR(v uint16, now time.Time) {
	if v&mdio.BMCRReset != 0 {
		p.resetRegs()
		p.renegotiate(now)
		return
	}
	const mode = mdio.BMCRANEnable | mdio.BMCRPowerDown | mdio.BMCRSpeed100 | mdio.BMCRSpeed1000 | mdio.BMCRFullDup
	old := p.bmcr
	p.bmcr = v &^ mdio.BMCRANRestart // self-clearing
	if v&mdio.BMCRANRestart != 0 || (old^p.bmcr)&mode != 0 {
		p.renegotiate(now)
	}
}

// mmdLinkReg are the MMD status registers with a live link bit (bit 2),
// as PMA/PMD and PCS status 1 have.
func mmdLive(devad uint8, reg uint16) bool { return reg == 1 && (devad == 1 || devad == 3) }

func checkDevad(devad uint8) error {
	if devad > mdio.MaxDevad {
		return fmt.Errorf("sim: MMD %d out of range 0..%d", devad, mdio.MaxDevad)
	}
	return nil
}

// ReadC45 implements mdio.PHY.
func (p *PHY) ReadC45(devad uint8, reg uint16) (uint16, error) {
	if err := checkDevad(devad); err != nil {
		return 0, err
	}
	if _, err := p.begin(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	regs, ok := p.mmds[devad]
	if !ok {
		return 0xffff, fmt.Errorf("sim: MMD %d not present: %w", devad, mdio.ErrNoResponse)
	}
	switch {
	case reg == 2:
		return p.cfg.Model.ID1, nil
	case reg == 3:
		return p.cfg.Model.ID2, nil
	case mmdLive(devad, reg):
		v := regs[reg]
		if p.lnk.up {
			v |= 1 << 2
		}
		return v, nil
	case devad == 7 && reg == 61:
		// Link partner EEE ability: the partner advertises EEE for the
		// speeds it negotiated.
		if p.lnk.up && p.lnk.speed >= 100 {
			return 0x0006, nil
		}
		return 0, nil
	}
	return regs[reg], nil
}

// WriteC45 implements mdio.PHY.
func (p *PHY) WriteC45(devad uint8, reg uint16, v uint16) error {
	if err := checkDevad(devad); err != nil {
		return err
	}
	if _, err := p.begin(); err != nil {
		return err
	}
	defer p.mu.Unlock()
	regs, ok := p.mmds[devad]
	if !ok || reg == 2 || reg == 3 || mmdLive(devad, reg) || (devad == 7 && reg == 61) {
		return nil
	}
	// Bound what writes can add: a real MMD has a fixed register set,
	// and an unbounded map would let a client grow memory.
	if _, known := regs[reg]; known || len(regs) < 1024 {
		regs[reg] = v
	}
	return nil
}

var _ mdio.PHY = (*PHY)(nil)
