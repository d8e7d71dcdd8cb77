package main

import (
	"log/slog"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/mdiod/bitbang"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/miiioctl"
)

// openHardware opens the ioctl and gpio backends. A spec that does not
// parse is a usage error (exit status 2); failing to reach the pins is a
// runtime failure (exit status 1). An ioctl port whose interface is not
// there (yet) starts detached and is attached when netlink or the
// appliance agent reports the interface: at boot the NIC driver may
// register it after mdiod starts, and exiting would only make the
// supervisor restart mdiod in a loop.
func openHardware(kind, params string, log *slog.Logger) (mdio.PHY, error) {
	switch kind {
	case "ioctl":
		if _, err := miiioctl.ParseSpec(params); err != nil {
			return nil, cli.Usage("%v", err)
		}
		p, err := miiioctl.OpenDetached(params)
		if err != nil {
			return nil, err
		}
		if err := p.Attach(); err != nil {
			log.Warn("interface not available; the port stays detached until it appears", "backend", p.Name(), "err", err)
		}
		return p, nil
	case "gpio":
		if _, err := bitbang.ParseSpec(params); err != nil {
			return nil, cli.Usage("%v", err)
		}
		p, err := bitbang.Open(params)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, cli.Usage("unknown backend %q (ioctl, gpio, sim)", kind)
}
