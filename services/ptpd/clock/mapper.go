package clock

import "time"

// RealtimeMapper is implemented by clocks that are not CLOCK_REALTIME but
// must still use kernel software timestamps, which the kernel always takes
// on CLOCK_REALTIME. A port that runs software timestamping converts every
// RX and TX timestamp with FromRealtime before using it.
type RealtimeMapper interface {
	// FromRealtime returns the reading this clock had at the instant
	// CLOCK_REALTIME read rt.
	FromRealtime(rt time.Time) (time.Time, error)
}

// ToClock maps a kernel software timestamp onto clk: clocks without a
// mapper (the system clock) read CLOCK_REALTIME already.
func ToClock(clk Clock, rt time.Time) (time.Time, error) {
	if m, ok := clk.(RealtimeMapper); ok {
		return m.FromRealtime(rt)
	}
	return rt, nil
}

// clampPPB limits a frequency request to ±max, as every clock must.
func clampPPB(ppb, max float64) float64 {
	if ppb > max {
		return max
	}
	if ppb < -max {
		return -max
	}
	return ppb
}
