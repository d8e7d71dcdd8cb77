package main

import (
	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// openHardware opens the ioctl and gpio backends.
func openHardware(kind, params string) (mdio.PHY, error) {
	return nil, cli.Usage("backend %s is not built into this mdiod", kind)
}
