// Package mdio is the contract between mdiod's commands and its PHY
// backends (Linux MII ioctls, bit-banged GPIO, the simulated PHY), plus the
// IEEE 802.3 Clause 22 register numbers and bits that the commands decode.
//
// A backend reaches one PHY. Range checks are the command layer's job, but
// every backend also refuses out-of-range registers so that it is safe on
// its own.
package mdio

import "errors"

// PHY is one Ethernet PHY reached over MDIO. Methods may be called from
// several goroutines; a backend serialises access to its bus itself.
// Multi-step sequences (page select, access, page restore) are made atomic
// by the caller, which holds its own per-port lock.
type PHY interface {
	// Name is the backend spec as given, normalised, for hw_info and
	// logs: "sim:88e1512", "ioctl:eth0:1", "gpio:mdc=GPIO17,mdio=GPIO27,addr=1".
	Name() string
	// Read returns Clause 22 register reg (0..31).
	Read(reg uint8) (uint16, error)
	// Write sets Clause 22 register reg (0..31).
	Write(reg uint8, v uint16) error
	// ReadC45 returns Clause 45 register reg of MMD devad (0..31).
	ReadC45(devad uint8, reg uint16) (uint16, error)
	// WriteC45 sets Clause 45 register reg of MMD devad (0..31).
	WriteC45(devad uint8, reg uint16, v uint16) error
	// Close releases the bus (sockets, GPIO lines).
	Close() error
}

// Hotplug is implemented by backends bound to a network interface. mdiod
// watches that interface's carrier over netlink, and when the appliance
// agent reports the interface removed or inserted it calls Detach or
// Attach, so that a PHY whose interface came back is reached again.
type Hotplug interface {
	// Interface is the network interface name ("eth0").
	Interface() string
	// Attach (re)binds to the interface, e.g. after it reappeared;
	// without a fixed PHY address it asks the driver again.
	Attach() error
	// Detach marks the interface gone: requests fail with ErrDetached
	// until Attach succeeds.
	Detach()
	// Attached reports whether the backend is bound to its interface. A
	// backend may start detached when its interface did not exist yet;
	// mdiod then attaches it when netlink or the agent reports the
	// interface.
	Attached() bool
}

// ErrDetached is returned (wrapped) by a Hotplug backend whose interface is
// gone.
var ErrDetached = errors.New("interface is gone")

// ErrNoResponse is returned (wrapped) when a read finds no PHY answering:
// the data line stays high (all ones) through turnaround and data.
var ErrNoResponse = errors.New("no PHY answered")

// Clause 22 registers.
const (
	BMCR      = 0x00 // basic mode control
	BMSR      = 0x01 // basic mode status
	PHYID1    = 0x02
	PHYID2    = 0x03
	ANAR      = 0x04 // auto-negotiation advertisement
	ANLPAR    = 0x05 // link partner ability
	ANER      = 0x06 // auto-negotiation expansion
	CTRL1000  = 0x09 // 1000BASE-T control
	STAT1000  = 0x0a // 1000BASE-T status
	ESTATUS   = 0x0f // extended status
	PageSel   = 22   // page select register of Marvell-style PHYs (nose's "page")
	MaxReg    = 31
	MaxDevad  = 31
	MaxPage   = 255
	MaxPHYAdr = 31
)

// BMCR bits.
const (
	BMCRReset     = 1 << 15
	BMCRLoopback  = 1 << 14
	BMCRSpeed100  = 1 << 13
	BMCRANEnable  = 1 << 12
	BMCRPowerDown = 1 << 11
	BMCRANRestart = 1 << 9
	BMCRFullDup   = 1 << 8
	BMCRSpeed1000 = 1 << 6
)

// BMSR bits.
const (
	BMSRANComplete = 1 << 5
	BMSRRemoteFlt  = 1 << 4
	BMSRANAbility  = 1 << 3
	BMSRLinkUp     = 1 << 2 // latched low: read twice for the current state
)

// STAT1000 bits.
const (
	STAT1000MSFault   = 1 << 15
	STAT1000Master    = 1 << 14 // local PHY resolved as master
	STAT1000LPFull    = 1 << 11 // link partner 1000BASE-T full duplex
	STAT1000LPHalf    = 1 << 10
	STAT1000LocalRxOK = 1 << 13
)

// ANAR/ANLPAR ability bits.
const (
	Adv10Half  = 1 << 5
	Adv10Full  = 1 << 6
	Adv100Half = 1 << 7
	Adv100Full = 1 << 8
)

// CTRL1000 bits.
const (
	Adv1000Half = 1 << 8
	Adv1000Full = 1 << 9
)
