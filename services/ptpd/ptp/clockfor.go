package ptp

import (
	"fmt"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
)

// ClockFor returns the clock a port on iface should discipline: the NIC's
// PHC when hardware timestamping is asked for (or, with auto, available),
// else the system clock.
func ClockFor(iface string, ts Timestamping) (clock.Clock, error) {
	switch ts {
	case TimestampingSoftware:
		return clock.NewSystem()
	case TimestampingHardware, TimestampingAuto:
		ok, dev := hardwareCapable(iface)
		if !ok {
			if ts == TimestampingHardware {
				return nil, fmt.Errorf("interface %s has no hardware timestamping", iface)
			}
			return clock.NewSystem()
		}
		return clock.OpenPHC(dev, iface)
	}
	return nil, fmt.Errorf("unknown timestamping %d", int(ts))
}
