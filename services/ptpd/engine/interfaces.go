package engine

import (
	"fmt"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Interface is one network interface as sfptpd's interface database
// holds it: the interfaces state file and dumptables both show it.
type Interface struct {
	Index int
	Name  string
	// MAC is the permanent hardware address, lower-case hex with
	// colons ("00:0f:53:01:02:03"); "" if the interface has none.
	MAC string
	// Type is sfptpd's link type name: "phys" or "macvlan" (the only
	// kinds sfptpd keeps).
	Type string
	// BusAddr is the bus address ethtool reports ("0000:01:00.1"),
	// "" if unknown.
	BusAddr string
	// Class is the NIC class sfptpd derives from the PCI ids: "sfc"
	// (Solarflare), "xnet" (Xilinx X3522) or "non-sfc".
	Class string
	// PTPCaps and RxTimestampCaps are sfptpd's capability words: "-",
	// "sw", "hw" or "hw & sw".
	PTPCaps         string
	RxTimestampCaps string
}

// InterfaceLister lists the interfaces sfptpd's interface database
// would hold.
type InterfaceLister func() ([]Interface, error)

// SystemInterfaces lists the kernel's interfaces the way sfptpd fills
// its interface database: Ethernet links that are physical (no netlink
// kind) or macvlan, not wireless, and, unless macvlan, not virtual;
// each with its time stamping capabilities from the kernel
// (ETHTOOL_GET_TS_INFO), "-" where they cannot be read. They come in
// interface index order.
func SystemInterfaces() ([]Interface, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	var out []Interface
	for _, l := range links {
		a := l.Attrs()
		typ := ""
		switch l.Type() {
		case "device":
			typ = "phys"
		case "macvlan", "macvtap":
			typ = "macvlan"
		default:
			continue
		}
		if a.EncapType != "ether" || exists("/sys/class/net", a.Name, "wireless") || exists("/sys/class/net", a.Name, "phy80211") {
			continue
		}
		if typ == "phys" && exists("/sys/devices/virtual/net", a.Name) {
			continue
		}
		mac := a.PermHWAddr
		if len(mac) == 0 {
			mac = a.HardwareAddr
		}
		in := Interface{Index: a.Index, Name: a.Name, MAC: mac.String(), Type: typ,
			BusAddr: busAddr(a), Class: nicClass(a.Name), PTPCaps: "-", RxTimestampCaps: "-"}
		if ts, err := unix.IoctlGetEthtoolTsInfo(fd, a.Name); err == nil {
			in.PTPCaps, in.RxTimestampCaps = tsCaps(ts.So_timestamping, ts.Phc_index)
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// capsWords are sfptpd's capability words, indexed by sw (bit 0) and
// hw (bit 1).
var capsWords = [4]string{"-", "sw", "hw", "hw & sw"}

// tsCaps turns SO_TIMESTAMPING capabilities into sfptpd's words: PTP
// needs transmit and receive stamps (and a PHC for hardware ones), the
// packet time stamping column is about receive stamps only.
func tsCaps(flags uint32, phc int32) (ptp, rx string) {
	has := func(m uint32) bool { return flags&m == m }
	var p, r int
	if has(unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE) {
		p |= 1
	}
	if phc >= 0 && has(unix.SOF_TIMESTAMPING_TX_HARDWARE|unix.SOF_TIMESTAMPING_RX_HARDWARE|unix.SOF_TIMESTAMPING_RAW_HARDWARE) {
		p |= 2
	}
	if has(unix.SOF_TIMESTAMPING_RX_SOFTWARE) {
		r |= 1
	}
	if has(unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE) {
		r |= 2
	}
	return capsWords[p], capsWords[r]
}
