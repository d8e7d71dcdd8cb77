package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Parameters, with nose's names. Ranges are checked by the registry for
// every framing before a handler runs.
var (
	phyParam = ctl.Param{Name: "phy", Type: ctl.Int, Required: true, Ranged: true, Min: 1, Max: 3,
		Help: "port bitmask: 1 = A, 2 = B, 3 = both"}
	addressParam = ctl.Param{Name: "address", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: mdio.MaxReg,
		Help: "Clause 22 register"}
	valueParam = ctl.Param{Name: "value", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 0xffff,
		Help: "16-bit register value"}
	pageParam = ctl.Param{Name: "page", Type: ctl.Int, Default: int64(NoPage), Ranged: true, Min: NoPage, Max: mdio.MaxPage,
		Help: "select this page in register 22 for the access, then restore page 0; -1 or absent: no paging"}
	devadParam = ctl.Param{Name: "devad", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: mdio.MaxDevad,
		Help: "Clause 45 MMD (device address)"}
	regParam = ctl.Param{Name: "reg", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 0xffff,
		Help: "Clause 45 register"}
)

// result is a read's reply: the value as "result" for one port, or
// result_phy0 and result_phy1 for phy=3, as nose replies.
func result(vals []uint16) any {
	if len(vals) == 1 {
		return int64(vals[0])
	}
	return map[string]any{"result_phy0": int64(vals[0]), "result_phy1": int64(vals[1])}
}

// portErr names the port in a backend error.
func portErr(p *Port, err error) ctl.Result {
	return ctl.Fail("PHY %s (%s): %v", p.Name, p.phy.Name(), err)
}

// Commands returns mdiod's commands: help, mdio_read, mdio_write,
// mdio_read_c45, mdio_write_c45, phy_status, hw_info, events-get,
// interfaceinsert, interfaceremove and, with Options.Exit, exit. reg is
// the registry the help command lists.
func (m *MDIO) Commands(reg *ctl.Registry) []*ctl.Command {
	cmds := []*ctl.Command{
		{
			Name:    "help",
			Comment: "list commands, optionally only those whose name or comment contains SEARCH",
			Params:  []ctl.Param{{Name: "search", Type: ctl.String, Ranged: true, Max: 256, Help: "text to look for (case-insensitive)"}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return ctl.OK("", ctl.MatchUsages(reg.Commands(), c.Args.String("search")))
			},
		},
		{
			Name:    "mdio_read",
			Syntax:  "phy address [page]",
			Comment: "read a PHY register",
			Usage: "phy is nose's port bitmask: 1 = A, 2 = B, 3 = both (the reply then has\n" +
				"result_phy0 and result_phy1). With page, register 22 is set to the page\n" +
				"for the read and back to 0 after it.",
			Params: []ctl.Param{phyParam, addressParam, pageParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				ports, err := m.selected(c.Args.Int("phy"))
				if err != nil {
					return ctl.Fail("%v", err)
				}
				reg, page := uint8(c.Args.Int("address")), int(c.Args.Int("page"))
				var vals [2]uint16
				for i, p := range ports {
					v, err := p.Read(reg, page)
					if err != nil {
						return portErr(p, err)
					}
					vals[i] = v
				}
				return ctl.Result{Args: result(vals[:len(ports)])}
			},
		},
		{
			Name:    "mdio_write",
			Syntax:  "phy address value [page]",
			Comment: "write a PHY register",
			Usage:   "phy and page as for mdio_read.",
			Params:  []ctl.Param{phyParam, addressParam, valueParam, pageParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				ports, err := m.selected(c.Args.Int("phy"))
				if err != nil {
					return ctl.Fail("%v", err)
				}
				reg, v, page := uint8(c.Args.Int("address")), uint16(c.Args.Int("value")), int(c.Args.Int("page"))
				for _, p := range ports {
					if err := p.Write(reg, v, page); err != nil {
						return portErr(p, err)
					}
				}
				return ctl.Result{}
			},
		},
		{
			Name:    "mdio_read_c45",
			Syntax:  "phy devad reg",
			Comment: "read a Clause 45 MMD register",
			Params:  []ctl.Param{phyParam, devadParam, regParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				ports, err := m.selected(c.Args.Int("phy"))
				if err != nil {
					return ctl.Fail("%v", err)
				}
				devad, reg := uint8(c.Args.Int("devad")), uint16(c.Args.Int("reg"))
				var vals [2]uint16
				for i, p := range ports {
					v, err := p.ReadC45(devad, reg)
					if err != nil {
						return portErr(p, err)
					}
					vals[i] = v
				}
				return ctl.Result{Args: result(vals[:len(ports)])}
			},
		},
		{
			Name:    "mdio_write_c45",
			Syntax:  "phy devad reg value",
			Comment: "write a Clause 45 MMD register",
			Params:  []ctl.Param{phyParam, devadParam, regParam, valueParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				ports, err := m.selected(c.Args.Int("phy"))
				if err != nil {
					return ctl.Fail("%v", err)
				}
				devad, reg, v := uint8(c.Args.Int("devad")), uint16(c.Args.Int("reg")), uint16(c.Args.Int("value"))
				for _, p := range ports {
					if err := p.WriteC45(devad, reg, v); err != nil {
						return portErr(p, err)
					}
				}
				return ctl.Result{}
			},
		},
		{
			Name:    "phy_status",
			Syntax:  "phy",
			Comment: "decoded link, speed, duplex, auto-negotiation, master/slave and PHY ID",
			Usage: "Reads BMSR twice (the link bit latches low), BMCR, the PHY ID and the\n" +
				"advertisement registers. With phy=3 the reply has phy0 and phy1.",
			Params: []ctl.Param{phyParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				ports, err := m.selected(c.Args.Int("phy"))
				if err != nil {
					return ctl.Fail("%v", err)
				}
				out := map[string]any{}
				for i, p := range ports {
					st, err := p.Status()
					if err != nil {
						return portErr(p, err)
					}
					if len(ports) == 1 {
						return ctl.OK("", st.Map())
					}
					out[fmt.Sprintf("phy%d", i)] = st.Map()
				}
				return ctl.OK("", out)
			},
		},
		{
			Name:    "hw_info",
			Comment: "the configured ports, their backends and PHY IDs",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"ports": m.hwInfo()})
			},
		},
		{
			Name:    "events-get",
			Comment: "recent link events, oldest first",
			Usage:   "Each event has a sequence number (seq), a timestamp and the broadcast text.",
			Params: []ctl.Param{
				{Name: "since", Type: ctl.Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 62, Help: "only events with a larger seq"},
				{Name: "limit", Type: ctl.Int, Default: int64(0), Ranged: true, Min: 0, Max: 1 << 20, Help: "only the last N (0: all kept)"},
			},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				evs := m.Events(uint64(c.Args.Int("since")), int(c.Args.Int("limit")))
				return ctl.OK(fmt.Sprintf("%d events", len(evs)), map[string]any{"events": evs, "last-seq": m.LastSeq()})
			},
		},
		m.hotplugCommand("interfaceinsert", "reattach the ports bound to an interface that came back", true),
		m.hotplugCommand("interfaceremove", "mark the ports bound to an interface as gone", false),
	}
	if m.opts.Exit != nil {
		cmds = append(cmds, &ctl.Command{
			Name:    "exit",
			Comment: "stop mdiod (exit status 0), like shutdown",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				m.opts.Exit()
				return ctl.OK("Shutting down.", nil)
			},
		})
	}
	return cmds
}

func (m *MDIO) hwInfo() []any {
	var out []any
	for _, p := range m.ports {
		if p == nil {
			continue
		}
		info := map[string]any{"port": p.Name, "phy": int64(p.Bit), "backend": p.phy.Name()}
		if h, ok := p.phy.(mdio.Hotplug); ok {
			info["interface"] = h.Interface()
		}
		p.mu.Lock()
		id1, err1 := p.phy.Read(mdio.PHYID1)
		id2, err2 := p.phy.Read(mdio.PHYID2)
		p.mu.Unlock()
		if err := errors.Join(err1, err2); err != nil {
			info["error"] = err.Error()
		} else {
			info["phy_id"] = fmt.Sprintf("0x%04x%04x", id1, id2)
		}
		out = append(out, info)
	}
	return out
}

// hotplugCommand is interfaceinsert or interfaceremove, as the appliance
// agent sends them over the datagram socket: the ports bound to the
// interface are reattached or detached.
func (m *MDIO) hotplugCommand(name, comment string, insert bool) *ctl.Command {
	return &ctl.Command{
		Name:    name,
		Comment: comment,
		Params:  []ctl.Param{{Name: "interface", Type: ctl.String, Required: true, Ranged: true, Max: 15, Help: "network interface name"}},
		Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			ifname := c.Args.String("interface")
			var done []string
			for _, p := range m.ports {
				if p == nil {
					continue
				}
				h, ok := p.phy.(mdio.Hotplug)
				if !ok || h.Interface() != ifname {
					continue
				}
				if insert {
					p.mu.Lock()
					err := h.Attach()
					p.mu.Unlock()
					if err != nil {
						m.log.Warn("reattach failed", "port", p.Name, "interface", ifname, "err", err)
						return portErr(p, fmt.Errorf("attach %s: %w", ifname, err))
					}
					m.log.Info("port reattached", "port", p.Name, "interface", ifname)
				} else {
					p.mu.Lock()
					h.Detach()
					p.mu.Unlock()
					m.log.Info("port detached", "port", p.Name, "interface", ifname)
				}
				p.Kick()
				done = append(done, p.Name)
			}
			if len(done) == 0 {
				m.log.Debug("no port on interface", "command", name, "interface", ifname)
				return ctl.OK(fmt.Sprintf("no port is bound to %s", ifname), nil)
			}
			return ctl.OK(fmt.Sprintf("%s: ports %v", name, done), nil)
		},
	}
}
