package daemon

import (
	"fmt"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Status is a PHY's decoded state.
type Status struct {
	Link bool
	// Speed (10, 100, 1000) and FullDuplex are the resolved mode; 0
	// while the link is down.
	Speed      int
	FullDuplex bool
	Autoneg    bool
	ANComplete bool
	// Role is "master" or "slave" on a 1000BASE-T link, else empty.
	Role string
	// ID is PHYID1<<16 | PHYID2.
	ID uint32
	// BMCR and BMSR are the raw registers (BMSR as read the second time).
	BMCR, BMSR uint16
}

// OUI returns the organisationally unique identifier encoded in the PHY
// ID (bits 3..24 of the OUI), as "00:50:43".
func (s Status) OUI() string {
	oui := (s.ID >> 10) & 0x3fffff
	return fmt.Sprintf("%02x:%02x:%02x", byte(oui>>16), byte(oui>>8), byte(oui))
}

// Model returns the vendor's model number (PHYID2 bits 9..4).
func (s Status) Model() int { return int(s.ID>>4) & 0x3f }

// Rev returns the revision (PHYID2 bits 3..0).
func (s Status) Rev() int { return int(s.ID) & 0xf }

// Duplex returns "full", "half", or "" while the link is down.
func (s Status) Duplex() string {
	switch {
	case !s.Link:
		return ""
	case s.FullDuplex:
		return "full"
	}
	return "half"
}

// Map returns the status as phy_status reports it.
func (s Status) Map() map[string]any {
	m := map[string]any{
		"link":        s.Link,
		"speed":       int64(s.Speed),
		"duplex":      s.Duplex(),
		"autoneg":     s.Autoneg,
		"an_complete": s.ANComplete,
		"role":        s.Role,
		"phy_id":      fmt.Sprintf("0x%08x", s.ID),
		"oui":         s.OUI(),
		"model":       int64(s.Model()),
		"rev":         int64(s.Rev()),
		"bmcr":        fmt.Sprintf("0x%04x", s.BMCR),
		"bmsr":        fmt.Sprintf("0x%04x", s.BMSR),
	}
	return m
}

// Message is the log event text for the status, as nose words it:
// "link up 1000MBit (master)", "link up 100MBit half-duplex", "link down".
func (s Status) Message() string {
	if !s.Link {
		return "link down"
	}
	msg := fmt.Sprintf("link up %dMBit", s.Speed)
	if !s.FullDuplex {
		msg += " half-duplex"
	}
	if s.Role != "" {
		msg += " (" + s.Role + ")"
	}
	return msg
}

// same reports whether two statuses describe the same link.
func (s Status) same(o Status) bool {
	return s.Link == o.Link && s.Speed == o.Speed && s.FullDuplex == o.FullDuplex && s.Role == o.Role
}

// Decode reads a PHY's Clause 22 registers through read and decodes them
// the way Linux's generic PHY driver does: BMSR twice (the first read
// returns the latched link bit), the resolved mode from the highest
// ability both sides advertise (1000BASE-T from CTRL1000/STAT1000, then
// ANAR/ANLPAR), or BMCR's forced mode without auto-negotiation.
func Decode(read func(reg uint8) (uint16, error)) (Status, error) {
	var s Status
	regs := map[uint8]*uint16{}
	get := func(reg uint8) (uint16, error) {
		if p, ok := regs[reg]; ok {
			return *p, nil
		}
		v, err := read(reg)
		if err != nil {
			return 0, fmt.Errorf("read register %d: %w", reg, err)
		}
		regs[reg] = &v
		return v, nil
	}
	if _, err := read(mdio.BMSR); err != nil { // the latched value
		return s, fmt.Errorf("read register %d: %w", mdio.BMSR, err)
	}
	var err error
	if s.BMSR, err = get(mdio.BMSR); err != nil {
		return s, err
	}
	if s.BMCR, err = get(mdio.BMCR); err != nil {
		return s, err
	}
	id1, err := get(mdio.PHYID1)
	if err != nil {
		return s, err
	}
	id2, err := get(mdio.PHYID2)
	if err != nil {
		return s, err
	}
	s.ID = uint32(id1)<<16 | uint32(id2)
	s.Link = s.BMSR&mdio.BMSRLinkUp != 0
	s.Autoneg = s.BMCR&mdio.BMCRANEnable != 0
	s.ANComplete = s.BMSR&mdio.BMSRANComplete != 0
	if !s.Link {
		return s, nil
	}
	if !s.Autoneg {
		switch {
		case s.BMCR&mdio.BMCRSpeed1000 != 0 && s.BMCR&mdio.BMCRSpeed100 == 0:
			s.Speed = 1000
		case s.BMCR&mdio.BMCRSpeed100 != 0:
			s.Speed = 100
		default:
			s.Speed = 10
		}
		s.FullDuplex = s.BMCR&mdio.BMCRFullDup != 0
		return s, nil
	}
	// 1000BASE-T registers exist when BMSR says extended status is there
	// (bit 8) and ESTATUS lists a 1000BASE-T ability. Some PHYs set the
	// bit but do not answer ESTATUS (qemu's e1000 model fails the read):
	// then CTRL1000 and STAT1000 are tried, and a PHY that answers
	// neither is decoded from ANAR and ANLPAR alone.
	if s.BMSR&0x0100 != 0 {
		est, estErr := get(mdio.ESTATUS)
		if estErr != nil || est&0x3000 != 0 {
			c1000, err1 := get(mdio.CTRL1000)
			st1000, err2 := get(mdio.STAT1000)
			switch {
			case err1 == nil && err2 == nil:
				common := c1000 & (st1000 >> 2) // LP bits 11/10 line up with ours 9/8
				if common&(mdio.Adv1000Full|mdio.Adv1000Half) != 0 {
					s.Speed = 1000
					s.FullDuplex = common&mdio.Adv1000Full != 0
					s.Role = "slave"
					if st1000&mdio.STAT1000Master != 0 {
						s.Role = "master"
					}
					return s, nil
				}
			case estErr == nil:
				// ESTATUS promised the registers: a failing read is an
				// error, not a slower link.
				if err1 != nil {
					return s, err1
				}
				return s, err2
			}
		}
	}
	anar, err := get(mdio.ANAR)
	if err != nil {
		return s, err
	}
	lpa, err := get(mdio.ANLPAR)
	if err != nil {
		return s, err
	}
	common := anar & lpa
	switch {
	case common&mdio.Adv100Full != 0:
		s.Speed, s.FullDuplex = 100, true
	case common&mdio.Adv100Half != 0:
		s.Speed = 100
	case common&mdio.Adv10Full != 0:
		s.Speed, s.FullDuplex = 10, true
	default:
		s.Speed = 10
	}
	return s, nil
}
