package clock

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// VirtualMaxFreqPPB is the virtual clock's adjustment range, the same as
// the Linux system clock's, so a servo behaves on it as on the real one.
const VirtualMaxFreqPPB = 500000

// maxVirtualPPM bounds the built-in frequency error: more than a
// millisecond per second is not a clock any servo is meant to follow.
const maxVirtualPPM = 1000

// Source reads the two kernel clocks a virtual clock is built from. Tests
// substitute a simulated one; KernelSource reads the kernel.
type Source interface {
	// Raw reads CLOCK_MONOTONIC_RAW in nanoseconds: the free-running
	// oscillator that nobody (NTP, other ports) slews.
	Raw() int64
	// Realtime reads CLOCK_REALTIME in nanoseconds since the epoch: the
	// clock kernel software timestamps are taken on.
	Realtime() int64
}

type kernelSource struct{}

func (kernelSource) Raw() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &ts)
	return ts.Nano()
}

func (kernelSource) Realtime() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
	return ts.Nano()
}

// KernelSource returns the Source that reads the kernel's
// CLOCK_MONOTONIC_RAW and CLOCK_REALTIME.
func KernelSource() Source { return kernelSource{} }

// Virtual is a clock that exists only in this process: CLOCK_MONOTONIC_RAW
// plus an offset, running fast or slow by a fixed error, and adjustable
// (stepped, slewed) like a real clock. Tests and development hosts run a
// port on it so that the host's clock is never touched, and because it
// knows its true error against CLOCK_REALTIME, which is what a master
// with software timestamps serves, a test can measure how well the port
// really tracks the master.
type Virtual struct {
	src    Source
	errPPM float64

	mu      sync.Mutex
	baseRaw int64 // raw reading at the last rebase
	// The virtual reading at baseRaw, whole nanoseconds since the epoch
	// plus a fraction: a float64 alone would round epoch times to
	// hundreds of nanoseconds.
	baseV    int64
	baseFrac float64
	adjPPB   float64
	steps    int
}

// NewVirtual returns a virtual clock that reads CLOCK_REALTIME+offset now
// and runs ppm parts per million fast (negative: slow) before any
// adjustment.
func NewVirtual(offset time.Duration, ppm float64) (*Virtual, error) {
	return NewVirtualSource(kernelSource{}, offset, ppm)
}

// NewVirtualSource is NewVirtual over a given Source.
func NewVirtualSource(src Source, offset time.Duration, ppm float64) (*Virtual, error) {
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) || math.Abs(ppm) > maxVirtualPPM {
		return nil, fmt.Errorf("virtual clock: frequency error %v ppm out of range ±%d", ppm, maxVirtualPPM)
	}
	raw, rt := sampleRaw(src)
	return &Virtual{
		src:     src,
		errPPM:  ppm,
		baseRaw: raw,
		baseV:   rt + int64(offset),
	}, nil
}

// ParseVirtual parses the -virtual-clock flag: "OFFSET,PPM", a Go duration
// and a frequency error in parts per million, e.g. "500us,30" or "-2ms,-12.5".
func ParseVirtual(s string) (*Virtual, error) {
	off, ppm, err := ParseVirtualSpec(s)
	if err != nil {
		return nil, err
	}
	return NewVirtual(off, ppm)
}

// ParseVirtualSpec parses "OFFSET,PPM" without building a clock.
func ParseVirtualSpec(s string) (time.Duration, float64, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ",")
	if !ok {
		return 0, 0, fmt.Errorf("virtual clock %q: want OFFSET,PPM (e.g. 500us,30)", s)
	}
	off, err := time.ParseDuration(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, fmt.Errorf("virtual clock %q: offset: %w", s, err)
	}
	ppm, err := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err != nil {
		return 0, 0, fmt.Errorf("virtual clock %q: ppm: %w", s, err)
	}
	if math.IsNaN(ppm) || math.IsInf(ppm, 0) || math.Abs(ppm) > maxVirtualPPM {
		return 0, 0, fmt.Errorf("virtual clock %q: ppm out of range ±%d", s, maxVirtualPPM)
	}
	return off, ppm, nil
}

// sampleRaw reads raw between two realtime reads, three times, and keeps
// the tightest bracket: the midpoint of the realtime pair is then the
// realtime instant of the raw read to within a fraction of the bracket,
// typically tens of nanoseconds.
func sampleRaw(src Source) (raw, rt int64) {
	best := int64(math.MaxInt64)
	for range 3 {
		a := src.Realtime()
		m := src.Raw()
		b := src.Realtime()
		if b-a < best {
			best = b - a
			raw, rt = m, a+(b-a)/2
		}
	}
	return raw, rt
}

// rate is the virtual clock's speed relative to raw.
func (v *Virtual) rate() float64 {
	return (1 + v.errPPM*1e-6) * (1 + v.adjPPB*1e-9)
}

// at returns the virtual reading at raw reading raw, as whole
// nanoseconds since the epoch and a fraction in [0,1); v.mu held.
func (v *Virtual) at(raw int64) (int64, float64) {
	d := float64(raw-v.baseRaw)*v.rate() + v.baseFrac
	whole := math.Floor(d)
	return v.baseV + int64(whole), d - whole
}

// rebase moves the base to now so that a new rate applies from now on.
func (v *Virtual) rebase() {
	raw := v.src.Raw()
	v.baseV, v.baseFrac = v.at(raw)
	v.baseRaw = raw
}

// roundNS rounds a reading to the nearest nanosecond.
func roundNS(ns int64, frac float64) int64 {
	if frac >= 0.5 {
		return ns + 1
	}
	return ns
}

// Name implements Clock.
func (v *Virtual) Name() string { return "virtual" }

// Now implements Clock.
func (v *Virtual) Now() (time.Time, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Unix(0, roundNS(v.at(v.src.Raw()))), nil
}

// FreqPPB implements Clock: the adjustment only, as for a real clock.
func (v *Virtual) FreqPPB() (float64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.adjPPB, nil
}

// AdjFreqPPB implements Clock.
func (v *Virtual) AdjFreqPPB(ppb float64) error {
	if math.IsNaN(ppb) || math.IsInf(ppb, 0) {
		return errors.New("virtual clock: frequency is not a number")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rebase()
	v.adjPPB = clampPPB(ppb, VirtualMaxFreqPPB)
	return nil
}

// Step implements Clock.
func (v *Virtual) Step(d time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rebase()
	v.baseV += int64(d)
	v.steps++
	return nil
}

// MaxFreqPPB implements Clock.
func (v *Virtual) MaxFreqPPB() float64 { return VirtualMaxFreqPPB }

// Steps returns how many times the clock was stepped.
func (v *Virtual) Steps() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.steps
}

// FromRealtime implements RealtimeMapper: the realtime instant rt is
// placed on raw with a fresh realtime/raw sample, then read off the
// virtual clock. Timestamps are at most milliseconds old, so the
// difference in rate between realtime and raw adds well under a
// nanosecond.
func (v *Virtual) FromRealtime(rt time.Time) (time.Time, error) {
	raw, now := sampleRaw(v.src)
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Unix(0, roundNS(v.at(raw+(rt.UnixNano()-now)))), nil
}

// TrueError returns the virtual clock minus CLOCK_REALTIME, now: how far
// from real time the clock is, which no port can see by itself.
func (v *Virtual) TrueError() time.Duration {
	raw, rt := sampleRaw(v.src)
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Duration(roundNS(v.at(raw)) - rt)
}
