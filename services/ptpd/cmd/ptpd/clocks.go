package main

import "github.com/tickbox-fw/tickbox/services/ptpd/clock"

// openClock returns the virtual clock that -virtual-clock OFFSET,PPM
// asks for (every instance then runs on it and the host clock is never
// touched), or the system clock, which freerun uses; PTP instances pick
// their interface's clock themselves (see modules).
func openClock(virtual string) (clock.Clock, error) {
	if virtual == "" {
		return clock.NewSystem()
	}
	return clock.ParseVirtual(virtual)
}
