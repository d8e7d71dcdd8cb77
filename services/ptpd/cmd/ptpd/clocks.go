package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
)

// This file is the clock seam of cmd/ptpd: openClock picks the clock
// the sync instances run on. Package clock's own implementations
// (system clock, PHC, virtual clock and its ParseVirtual) replace the
// two small types below once they are in the tree; nothing else in
// ptpd depends on them.

// openClock returns a virtual clock for -virtual-clock OFFSET,PPM, the
// system clock otherwise.
func openClock(virtual string) (clock.Clock, error) {
	if virtual == "" {
		return systemClock{}, nil
	}
	off, ppm, err := parseVirtual(virtual)
	if err != nil {
		return nil, err
	}
	return newVirtualClock(off, ppm), nil
}

// parseVirtual parses "OFFSET,PPM": a Go duration (the clock's initial
// offset from the host clock) and its frequency error in ppm.
func parseVirtual(s string) (time.Duration, float64, error) {
	o, p, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("-virtual-clock %q: want OFFSET,PPM such as 500us,30", s)
	}
	off, err := time.ParseDuration(strings.TrimSpace(o))
	if err != nil {
		return 0, 0, fmt.Errorf("-virtual-clock %q: offset: %w", s, err)
	}
	ppm, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
	if err != nil || math.IsNaN(ppm) || math.Abs(ppm) > 1000 {
		return 0, 0, fmt.Errorf("-virtual-clock %q: ppm: want a number from -1000 to 1000", s)
	}
	return off, ppm, nil
}

// virtualClock is a clock that exists only in this process: the host's
// clock plus an offset, running fast or slow by a frequency error plus
// the adjustment a servo applies. Stepping and slewing it never touches
// the host.
type virtualClock struct {
	mu      sync.Mutex
	base    time.Time // host time at the last rebase (monotonic reading)
	value   time.Time // virtual time at base
	errPPB  float64   // built-in frequency error
	adjPPB  float64   // servo adjustment
	maxFreq float64
}

func newVirtualClock(off time.Duration, ppm float64) *virtualClock {
	now := time.Now()
	return &virtualClock{base: now, value: now.Add(off), errPPB: ppm * 1000, maxFreq: 500000}
}

func (v *virtualClock) Name() string { return "virtual" }

func (v *virtualClock) nowLocked(host time.Time) time.Time {
	el := host.Sub(v.base)
	rate := 1 + (v.errPPB+v.adjPPB)/1e9
	return v.value.Add(time.Duration(float64(el) * rate))
}

func (v *virtualClock) Now() (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.nowLocked(time.Now()).Round(0), nil
}

func (v *virtualClock) FreqPPB() (float64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.adjPPB, nil
}

func (v *virtualClock) AdjFreqPPB(ppb float64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	host := time.Now()
	v.value, v.base = v.nowLocked(host), host
	v.adjPPB = max(-v.maxFreq, min(v.maxFreq, ppb))
	return nil
}

func (v *virtualClock) Step(d time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.value = v.value.Add(d)
	return nil
}

func (v *virtualClock) MaxFreqPPB() float64 { return v.maxFreq }

// systemClock is CLOCK_REALTIME through adjtimex(2).
type systemClock struct{}

const (
	adjFrequency = 0x0002
	adjSetOffset = 0x0100
	adjNano      = 0x2000
	// maxSystemPPB is the kernel's frequency limit (500 ppm).
	maxSystemPPB = 500000
)

func (systemClock) Name() string { return "system" }

func (systemClock) Now() (time.Time, error) { return time.Now(), nil }

func (systemClock) FreqPPB() (float64, error) {
	var tx syscall.Timex
	if _, err := syscall.Adjtimex(&tx); err != nil {
		return 0, fmt.Errorf("adjtimex: %w", err)
	}
	// freq is in ppm with a 16-bit fraction.
	return float64(tx.Freq) * 1000 / 65536, nil
}

func (systemClock) AdjFreqPPB(ppb float64) error {
	ppb = max(-maxSystemPPB, min(maxSystemPPB, ppb))
	tx := syscall.Timex{Modes: adjFrequency, Freq: int64(ppb * 65536 / 1000)}
	if _, err := syscall.Adjtimex(&tx); err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	return nil
}

func (systemClock) Step(d time.Duration) error {
	if d == 0 {
		return nil
	}
	sec, nsec := int64(d/time.Second), int64(d%time.Second)
	if nsec < 0 {
		sec, nsec = sec-1, nsec+int64(time.Second)
	}
	tx := syscall.Timex{Modes: adjSetOffset | adjNano}
	tx.Time.Sec, tx.Time.Usec = sec, nsec // with ADJ_NANO the field holds nanoseconds
	if _, err := syscall.Adjtimex(&tx); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("step system clock: %w (needs CAP_SYS_TIME)", err)
		}
		return fmt.Errorf("step system clock: %w", err)
	}
	return nil
}

func (systemClock) MaxFreqPPB() float64 { return maxSystemPPB }
