// Package clock puts every clock ptpd can discipline behind one interface:
// the system clock (clock_adjtime on CLOCK_REALTIME), a PTP hardware clock
// (/dev/ptpN) and a virtual clock (an offset and a frequency error over
// CLOCK_MONOTONIC_RAW) for tests and for running on a development host
// without touching its clock.
package clock

import "time"

// Clock is a clock a sync instance reads and disciplines.
type Clock interface {
	// Name is how logs and stats name the clock: "system", "phc0(eth0)",
	// "virtual".
	Name() string
	// Now reads the clock.
	Now() (time.Time, error)
	// FreqPPB returns the current frequency adjustment in parts per
	// billion (positive runs faster).
	FreqPPB() (float64, error)
	// AdjFreqPPB sets the frequency adjustment, clamped to MaxFreqPPB.
	AdjFreqPPB(ppb float64) error
	// Step moves the clock by d at once.
	Step(d time.Duration) error
	// MaxFreqPPB is the largest adjustment the clock accepts.
	MaxFreqPPB() float64
}
