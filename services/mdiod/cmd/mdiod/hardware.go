package main

import (
	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/mdiod/bitbang"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/miiioctl"
)

// openHardware opens the ioctl and gpio backends. A spec that does not
// parse is a usage error (exit status 2); failing to reach the interface
// or the pins is a runtime failure (exit status 1).
func openHardware(kind, params string) (mdio.PHY, error) {
	switch kind {
	case "ioctl":
		if _, err := miiioctl.ParseSpec(params); err != nil {
			return nil, cli.Usage("%v", err)
		}
		p, err := miiioctl.Open(params)
		if err != nil {
			return nil, err
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
