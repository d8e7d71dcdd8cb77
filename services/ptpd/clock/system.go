package clock

import (
	"fmt"
	"time"

	fbclock "github.com/facebook/time/clock"
	"golang.org/x/sys/unix"
)

// System is CLOCK_REALTIME, adjusted with clock_adjtime. It is the clock a
// port disciplines when the interface has no hardware timestamping.
type System struct {
	maxPPB float64
}

// NewSystem returns the system clock. The largest frequency adjustment is
// the kernel's tolerance (500 ppm on Linux).
func NewSystem() (*System, error) {
	max, _, err := fbclock.MaxFreqPPB(unix.CLOCK_REALTIME)
	if err != nil {
		return nil, fmt.Errorf("system clock: reading tolerance: %w", err)
	}
	return &System{maxPPB: max}, nil
}

// Name implements Clock.
func (s *System) Name() string { return "system" }

// Now implements Clock.
func (s *System) Now() (time.Time, error) { return time.Now(), nil }

// FreqPPB implements Clock.
func (s *System) FreqPPB() (float64, error) {
	f, _, err := fbclock.FrequencyPPB(unix.CLOCK_REALTIME)
	if err != nil {
		return 0, fmt.Errorf("system clock: reading frequency: %w", err)
	}
	return f, nil
}

// AdjFreqPPB implements Clock.
func (s *System) AdjFreqPPB(ppb float64) error {
	if _, err := fbclock.AdjFreqPPB(unix.CLOCK_REALTIME, clampPPB(ppb, s.maxPPB)); err != nil {
		return fmt.Errorf("system clock: adjusting frequency: %w", err)
	}
	return nil
}

// Step implements Clock.
func (s *System) Step(d time.Duration) error {
	if _, err := fbclock.Step(unix.CLOCK_REALTIME, d); err != nil {
		return fmt.Errorf("system clock: stepping by %v: %w", d, err)
	}
	return nil
}

// MaxFreqPPB implements Clock.
func (s *System) MaxFreqPPB() float64 { return s.maxPPB }
