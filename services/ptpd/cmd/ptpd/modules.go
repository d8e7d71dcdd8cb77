package main

import (
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
)

// modules returns the sync modules this build offers, by sync_module
// name. This is the one place a module is wired in: the PTP module
// joins here as modules["ptp"] = its factory. A configuration naming a
// module missing from this map fails at start-up with
// "FILE:LINE: sync module 'NAME' is not available in this build".
func modules() map[string]engine.Factory {
	return map[string]engine.Factory{
		"freerun": engine.NewFreerun,
	}
}
