package clock

import (
	"fmt"
	"os"
	"time"

	"github.com/facebook/time/phc"
	"golang.org/x/sys/unix"
)

// PHC is a PTP hardware clock (/dev/ptpN), the clock a NIC with hardware
// timestamping stamps packets with.
type PHC struct {
	name   string
	dev    *phc.Device
	maxPPB float64
}

// OpenPHC opens a PHC device. iface only names it ("phc0(eth0)"); it may
// be empty.
func OpenPHC(path, iface string) (*PHC, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening PHC: %w", err)
	}
	dev := phc.FromFile(f)
	max, err := dev.MaxFreqAdjPPB()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("PHC %s: reading capabilities: %w", path, err)
	}
	name := path
	if len(path) > len("/dev/") && path[:5] == "/dev/" {
		name = path[5:]
	}
	name = stripPTP(name)
	if iface != "" {
		name += "(" + iface + ")"
	}
	return &PHC{name: name, dev: dev, maxPPB: max}, nil
}

// stripPTP turns "ptp0" into "phc0", as sfptpd names PHCs.
func stripPTP(s string) string {
	if len(s) > 3 && s[:3] == "ptp" {
		return "phc" + s[3:]
	}
	return s
}

// OpenPHCForInterface opens the PHC behind a network interface, found
// with ethtool's timestamping info.
func OpenPHCForInterface(iface string) (*PHC, error) {
	path, err := phc.IfaceToPHCDevice(iface)
	if err != nil {
		return nil, err
	}
	return OpenPHC(path, iface)
}

// Close releases the device.
func (p *PHC) Close() error { return p.dev.File().Close() }

// Name implements Clock.
func (p *PHC) Name() string { return p.name }

// Now implements Clock.
func (p *PHC) Now() (time.Time, error) {
	t, err := p.dev.Time()
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: reading time: %w", p.name, err)
	}
	return t, nil
}

// FreqPPB implements Clock.
func (p *PHC) FreqPPB() (float64, error) {
	f, err := p.dev.FreqPPB()
	if err != nil {
		return 0, fmt.Errorf("%s: reading frequency: %w", p.name, err)
	}
	return f, nil
}

// AdjFreqPPB implements Clock.
func (p *PHC) AdjFreqPPB(ppb float64) error {
	if err := p.dev.AdjFreq(clampPPB(ppb, p.maxPPB)); err != nil {
		return fmt.Errorf("%s: adjusting frequency: %w", p.name, err)
	}
	return nil
}

// Step implements Clock.
func (p *PHC) Step(d time.Duration) error {
	if err := p.dev.Step(d); err != nil {
		return fmt.Errorf("%s: stepping by %v: %w", p.name, d, err)
	}
	return nil
}

// MaxFreqPPB implements Clock.
func (p *PHC) MaxFreqPPB() float64 { return p.maxPPB }

// FromRealtime maps a software timestamp onto the PHC, for the rare port
// that runs software timestamping while disciplining a PHC. It samples
// the PHC between two CLOCK_REALTIME reads and takes the midpoint.
func (p *PHC) FromRealtime(rt time.Time) (time.Time, error) {
	var a, b unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &a); err != nil {
		return time.Time{}, fmt.Errorf("reading CLOCK_REALTIME: %w", err)
	}
	pt, err := p.Now()
	if err != nil {
		return time.Time{}, err
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &b); err != nil {
		return time.Time{}, fmt.Errorf("reading CLOCK_REALTIME: %w", err)
	}
	mid := (a.Nano() + b.Nano()) / 2
	return pt.Add(time.Duration(rt.UnixNano() - mid)), nil
}
