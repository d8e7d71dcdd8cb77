// Package daemon is mdiod's core: the ports (nose's PHY A and B, each a
// backend behind mdio.PHY), the commands that read and write their
// registers, the link watcher with its events, and the hotplug commands
// that reattach interface-bound backends.
//
// Commands are registered once in a ctl registry and so are reachable
// over nose IPC, the Kea channel, the console and the datagram socket
// alike.
package daemon

import (
	"errors"
	"fmt"
	"sync"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Port is one of nose's PHY ports: A (bitmask 1) or B (bitmask 2).
type Port struct {
	// Name is "A" or "B".
	Name string
	// Bit is the port's bit in nose's phy bitmask.
	Bit int
	phy mdio.PHY

	// mu makes multi-register sequences (page select, access, page
	// restore; the two BMSR reads of a poll) atomic with respect to
	// other clients and the link watcher.
	mu sync.Mutex
	// sawDown records a BMSR read, by anyone, that showed the link bit
	// clear. A client reading BMSR consumes the latch; this keeps the
	// link drop visible to the watcher's next poll.
	sawDown bool

	kick chan struct{}

	// lmu guards the link state the watcher last reported and the
	// number of changes it reported, for links-get.
	lmu     sync.Mutex
	link    Status
	changes uint64
}

// PortNames are the port names by index; the index is the bit number.
var PortNames = [2]string{"A", "B"}

func newPort(i int, phy mdio.PHY) *Port {
	return &Port{Name: PortNames[i], Bit: 1 << i, phy: phy, kick: make(chan struct{}, 1)}
}

// PHY returns the port's backend.
func (p *Port) PHY() mdio.PHY { return p.phy }

// NoPage is the page argument for an access without page selection.
const NoPage = -1

// Read reads Clause 22 register reg. With page ≥ 0 it selects that page
// in register 22 first and restores page 0 afterwards, all under the
// port's lock.
func (p *Port) Read(reg uint8, page int) (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if page < 0 {
		return p.read(reg, true)
	}
	var v uint16
	err := p.paged(page, func() error {
		var err error
		v, err = p.read(reg, page <= 0)
		return err
	})
	return v, err
}

// Write writes Clause 22 register reg, with page selection as Read.
func (p *Port) Write(reg uint8, v uint16, page int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paged(page, func() error { return p.phy.Write(reg, v) })
}

// ReadC45 reads register reg of MMD devad.
func (p *Port) ReadC45(devad uint8, reg uint16) (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phy.ReadC45(devad, reg)
}

// WriteC45 writes register reg of MMD devad.
func (p *Port) WriteC45(devad uint8, reg, v uint16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phy.WriteC45(devad, reg, v)
}

// paged runs op with page selected (page ≥ 0) and page 0 restored after
// it, even when op fails. p.mu is held.
func (p *Port) paged(page int, op func() error) error {
	if page < 0 {
		return op()
	}
	if err := p.phy.Write(mdio.PageSel, uint16(page)); err != nil {
		return fmt.Errorf("select page %d: %w", page, err)
	}
	err := op()
	if rerr := p.phy.Write(mdio.PageSel, 0); rerr != nil {
		err = errors.Join(err, fmt.Errorf("restore page 0: %w", rerr))
	}
	return err
}

// read reads a register; p.mu is held. ieee says the IEEE register set
// is selected, so that a BMSR read counts for the link latch.
func (p *Port) read(reg uint8, ieee bool) (uint16, error) {
	v, err := p.phy.Read(reg)
	if err == nil && ieee && reg == mdio.BMSR && v&mdio.BMSRLinkUp == 0 {
		p.sawDown = true
	}
	return v, err
}

// Kick asks the link watcher to poll the port now.
func (p *Port) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Status reads and decodes the port's state (see Decode).
func (p *Port) Status() (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Decode(func(reg uint8) (uint16, error) { return p.read(reg, true) })
}

// poll reads the link state for the watcher and reports whether the link
// dropped since the previous poll.
func (p *Port) poll() (Status, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := Decode(func(reg uint8) (uint16, error) { return p.read(reg, true) })
	dropped := p.sawDown
	p.sawDown = false
	return st, dropped, err
}
