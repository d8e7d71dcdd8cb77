package hotplug

import (
	"net"

	"github.com/vishvananda/netlink"
)

// Link is what the agent knows about one network interface: the subset
// of the kernel's link attributes that interfaces-get reports and that
// decides whether a change is worth logging.
type Link struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Type is the kernel's link kind ("veth", "bridge", "device", ...).
	Type string `json:"type,omitempty"`
	// State is the RFC 2863 operational state as the kernel reports it:
	// up, down, unknown, dormant, lower-layer-down, not-present, testing.
	State string `json:"state"`
	// Flags are the interface flags, "up|broadcast|multicast|running".
	Flags string `json:"flags"`
	MAC   string `json:"mac"`
	MTU   int    `json:"mtu"`
}

// Update is one link message: a link that exists with these attributes,
// or (Deleted) a link that is gone.
type Update struct {
	Deleted bool
	Link    Link
}

// FromNetlink converts a netlink link into a Link.
func FromNetlink(l netlink.Link) Link {
	a := l.Attrs()
	return Link{
		Index: a.Index,
		Name:  a.Name,
		Type:  l.Type(),
		State: a.OperState.String(),
		Flags: flagsString(a.Flags),
		MAC:   a.HardwareAddr.String(),
		MTU:   a.MTU,
	}
}

// flagsString spells net.Flags; an interface with no flags gives "" (net
// prints "0").
func flagsString(f net.Flags) string {
	if f == 0 {
		return ""
	}
	return f.String()
}
