package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Parameters, with nose's names and descriptions (nose's help lists them
// and its text-form errors quote them: "parameter 2/page (Register page)
// requires an integer, not '#'."; the commands' Usage explains them).
// Ranges are checked by the registry for every framing before a handler
// runs.
var (
	phyParam = ctl.Param{Name: "phy", Type: ctl.Int, Required: true, Ranged: true, Min: 1, Max: 3,
		Help:    "Port/PHY",
		Aliases: []ctl.Alias{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "AB", Value: "3"}, {Name: "none", Value: "0"}, {Name: "-", Value: "0"}}}
	addressParam = ctl.Param{Name: "address", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: mdio.MaxReg,
		Help: "MDIO register address"}
	valueParam = ctl.Param{Name: "value", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 0xffff,
		Help: "new register value"}
	pageParam = ctl.Param{Name: "page", Type: ctl.Int, Default: int64(NoPage), Ranged: true, Min: NoPage, Max: mdio.MaxPage,
		Help:    "Register page",
		Aliases: []ctl.Alias{{Name: "nop", Value: "-1"}}}
	devadParam = ctl.Param{Name: "devad", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: mdio.MaxDevad,
		Help: "Clause 45 MMD (device address)"}
	regParam = ctl.Param{Name: "reg", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 0xffff,
		Help: "Clause 45 register"}
)

// result is a read's result: the value as "result" for one port, or
// result_phy0 and result_phy1 for phy=3, as nose replies to JSON, and
// nose's text-form line "result: value=0x7949" (".../0x7949" for both).
func result(vals []uint16) ctl.Result {
	if len(vals) == 1 {
		return ctl.OK(fmt.Sprintf("result: value=0x%04x", vals[0]), int64(vals[0]))
	}
	return ctl.OK(fmt.Sprintf("result: value=0x%04x/0x%04x", vals[0], vals[1]),
		map[string]any{"result_phy0": int64(vals[0]), "result_phy1": int64(vals[1])})
}

// written is a write's result: nose logs "success".
var written = ctl.OK("success", nil)

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
			Comment: "List commands",
			Params:  []ctl.Param{ipc.HelpParam},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return ctl.OK(ipc.Help(reg.Commands(), c.Args.String("command"), false), nil)
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
				return result(vals[:len(ports)])
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
				return written
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
				return result(vals[:len(ports)])
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
				return written
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
			Comment: "Show hardware information",
			Usage:   "nose's text: the version, then each port's backend and PHY ID.\nhw-info-get has the same as data.",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK(m.hwInfoText(), nil)
			},
		},
		{
			Name:    "hw-info-get",
			Comment: "the configured ports, their backends and PHY IDs, as data",
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
				// No summary text: the text form then shows the events.
				return ctl.OK("", map[string]any{"events": evs, "last-seq": m.LastSeq()})
			},
		},
		{
			Name:    "links-get",
			Comment: "each port's link as the watcher last reported it, and its count of changes",
			Usage: "No register is read: link, speed and duplex are the state of the port's\n" +
				"last link event (down before the first poll), changes counts its link\n" +
				"events since start; events is the sequence number of the latest event.",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"ports": m.links(), "events": m.LastSeq()})
			},
		},
		m.hotplugCommand("interfaceinsert", "reattach the ports bound to an interface that came back", true),
		m.hotplugCommand("interfaceremove", "mark the ports bound to an interface as gone", false),
	}
	if m.opts.Exit != nil {
		cmds = append(cmds, &ctl.Command{
			Name:    "exit",
			Comment: "Exit program",
			Usage:   "Stops mdiod with exit status 0, as nose's exit ends nose.",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				// nose's exit logs nothing: the JSON form gets a bare
				// reply, the text form nothing.
				m.opts.Exit()
				return ctl.Result{}
			},
		})
	}
	return append(cmds, hardwareCommands()...)
}

// noseHardware are the commands of nose's table that drive the Ethernet
// Debugger itself (USB device, capture, disruptor, injector, port
// blocker, latency tester, device settings), with nose's descriptions.
var noseHardware = [][2]string{
	{"device_open", "Open USB device"},
	{"device_close", "Close USB device"},
	{"device_list", "List relevant USB devices"},
	{"capture_start", "Start capture"},
	{"capture_stop", "Stop capture"},
	{"speed", "Set Ethernet speed on both ports"},
	{"block_ports", "Port blocker"},
	{"disrupt", "Packet disruptor"},
	{"disrupt_stop", "Disable packet disruptor"},
	{"inject", "Packet injector"},
	{"inject_stop", "Disable packet injector"},
	{"reset_device_settings", "Reset settings stored on the device to defaults."},
	{"cfg_packet", "Write raw config command packet"},
	{"blink_led", "Cause the main LED to blink for a moment."},
	{"set", "Set a command line option."},
	{"set_device_phy_wait", "Set PHY link up wait time in ms"},
	{"latency_tester_sender", "setup latency testing (sender role)"},
	{"latency_tester_receiver", "setup latency testing (receiver role)"},
}

// HardwareCommandNames lists nose's commands that need the Ethernet
// Debugger hardware.
func HardwareCommandNames() []string {
	out := make([]string, len(noseHardware))
	for i, h := range noseHardware {
		out[i] = h[0]
	}
	return out
}

// hardwareCommands answers nose's hardware commands with one clear
// error, whatever their arguments, so that a nose script learns why
// rather than reading "not found".
func hardwareCommands() []*ctl.Command {
	cmds := make([]*ctl.Command, len(noseHardware))
	for i, h := range noseHardware {
		name := h[0]
		cmds[i] = &ctl.Command{
			Name:    name,
			Comment: h[1] + " (needs the Ethernet Debugger hardware)",
			AnyArgs: true,
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.Fail("%s needs the Ethernet Debugger hardware; mdiod drives the board's own PHYs over MDIO", name)
			},
		}
	}
	return cmds
}

// hwInfoText is hw_info's text in nose's shape: "Key: value" lines, the
// ports indented below.
func (m *MDIO) hwInfoText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Host tool version: mdiod %s\n", m.opts.Version)
	b.WriteString("Ports:\n")
	for _, info := range m.hwInfo() {
		p := info.(map[string]any)
		fmt.Fprintf(&b, "  Port %s:\n", p["port"])
		fmt.Fprintf(&b, "    Backend: %s\n", p["backend"])
		if ifname, ok := p["interface"]; ok {
			fmt.Fprintf(&b, "    Interface: %s\n", ifname)
		}
		if id, ok := p["phy_id"]; ok {
			fmt.Fprintf(&b, "    PHY ID: %s\n", id)
		} else {
			fmt.Fprintf(&b, "    error: %s\n", p["error"])
		}
	}
	return b.String()
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

// links returns links-get's port list.
func (m *MDIO) links() []any {
	out := []any{}
	for _, p := range m.ports {
		if p == nil {
			continue
		}
		p.lmu.Lock()
		st, n := p.link, p.changes
		p.lmu.Unlock()
		out = append(out, map[string]any{
			"port": p.Name, "phy": int64(p.Bit), "link": st.Link, "speed": int64(st.Speed),
			"duplex": st.Duplex(), "changes": n,
		})
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
