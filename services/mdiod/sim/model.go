package sim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Model is a PHY type: its identity, reset values, paged vendor
// registers and Clause 45 MMDs.
type Model struct {
	// Name is the spec name ("88e1512").
	Name string
	// Description is a one-line description for hw_info and usage.
	Description string
	// ID1 and ID2 are PHYID1/PHYID2 (OUI, model, revision).
	ID1, ID2 uint16
	// BMCR, ANAR and CTRL1000 are the reset values of those registers.
	BMCR, ANAR, CTRL1000 uint16
	// BMSR is the status with no link and AN incomplete; the link and AN
	// complete bits are added from the link state.
	BMSR uint16
	// ESTATUS is register 15.
	ESTATUS uint16
	// Gigabit models have 1000BASE-T control and status registers.
	Gigabit bool
	// Paged models select a page with register 22 (Marvell style).
	// Without paging, register 22 is a plain vendor register.
	Paged bool
	// Pages holds the reset values of the vendor registers (16..31,
	// register 22 excluded on paged models) by page. Page 0's registers
	// 0..15 are the live IEEE set; on other pages, registers 0..15 come
	// from this table too. Registers not listed read 0; pages not listed
	// read 0 and ignore writes.
	Pages map[uint8]map[uint8]uint16
	// CopperStatus, when not zero, is the page-0 register that holds a
	// Marvell-style live copper status (speed, duplex, resolved, link).
	CopperStatus uint8
	// MMDs are the Clause 45 devices present, with their registers' reset
	// values. PMA/PMD (1), PCS (3) and AN (7) devices get the PHY ID at
	// registers 2 and 3 and a live link bit added by the simulator.
	MMDs map[uint8]map[uint16]uint16
}

// Marvell copper specific status register bits (page 0, register 17).
const (
	csSpeed1000 = 2 << 14
	csSpeed100  = 1 << 14
	csFull      = 1 << 13
	csResolved  = 1 << 11
	csLink      = 1 << 10
)

// Models lists the built-in models. The first is the default.
var models = []Model{
	{
		Name:        "88e1512",
		Description: "Marvell 88E1512-like 10/100/1000BASE-T PHY with paging on register 22",
		ID1:         0x0141, ID2: 0x0dd1,
		BMCR: mdio.BMCRANEnable | mdio.BMCRFullDup | mdio.BMCRSpeed1000,
		BMSR: 0x7949,
		ANAR: 0x01e1, CTRL1000: mdio.Adv1000Full | mdio.Adv1000Half,
		ESTATUS: 0x3000,
		Gigabit: true, Paged: true,
		Pages: map[uint8]map[uint8]uint16{
			0: {16: 0x3070, 18: 0x0000, 19: 0x0000, 20: 0x8000, 21: 0x0000, 26: 0x000a},
			// Page 1: fiber. Its IEEE registers differ from the copper
			// set, which is what lets page tests tell pages apart.
			1:  {0: 0x1140, 1: 0x0149, 2: 0x0141, 3: 0x0dd1, 4: 0x0060, 15: 0x8000, 16: 0x4180},
			2:  {16: 0x0000, 21: 0x1046},
			3:  {16: 0x101e, 17: 0x4405, 18: 0x4a08},
			18: {20: 0x0200, 27: 0x0000},
		},
		CopperStatus: 17,
		MMDs: map[uint8]map[uint16]uint16{
			3: {0: 0x0000, 1: 0x0000, 20: 0x0006, 22: 0x0000},
			7: {0: 0x0000, 1: 0x0000, 60: 0x0006, 61: 0x0000},
		},
	},
	{
		Name:        "generic100",
		Description: "generic 10/100BASE-TX PHY (DP83848-like IDs), no paging, no Clause 45",
		ID1:         0x2000, ID2: 0x5c90,
		BMCR: mdio.BMCRANEnable | mdio.BMCRFullDup | mdio.BMCRSpeed100,
		BMSR: 0x7849,
		ANAR: 0x01e1,
		Pages: map[uint8]map[uint8]uint16{
			0: {16: 0x0000, 22: 0x0100, 23: 0x0000, 25: 0x8021},
		},
	},
}

// DefaultModel is the model of a spec that names none.
const DefaultModel = "88e1512"

// LookupModel returns the built-in model called name.
func LookupModel(name string) (Model, error) {
	for _, m := range models {
		if m.Name == name {
			return m, nil
		}
	}
	return Model{}, fmt.Errorf("sim: unknown model %q (have %s)", name, strings.Join(ModelNames(), ", "))
}

// ModelNames returns the built-in models' names, sorted.
func ModelNames() []string {
	var n []string
	for _, m := range models {
		n = append(n, m.Name)
	}
	sort.Strings(n)
	return n
}
