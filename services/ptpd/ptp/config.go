// Package ptp is ptpd's IEEE 1588-2019 ordinary clock: one port over UDPv4
// multicast (ports 319/320) with the end-to-end delay mechanism, as a
// slave (announce qualification, BMCA, one- and two-step Sync, Delay_Req)
// or a master (Announce, two-step Sync, Delay_Resp). A Port is an
// instance.Instance for the sfptpd-compatible engine.
//
// A Port (port.go) runs the event loop, the state machine and the BMCA
// (bmca.go); the master's sends (master.go), the slave's timestamp
// pipeline (measure.go) and the clock discipline (servo.go) are parts it
// holds. The sockets and timestamping are in net.go, the engine's calls
// in control.go, sfptpd's test modes in testmode.go and leap seconds in
// leap.go.
package ptp

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// Mode is the port's role.
type Mode int

// Modes, as sfptpd's ptp_mode spells them.
const (
	// ModeSlave is slave-only: it never sends Announce or Sync.
	ModeSlave Mode = iota
	// ModeMaster is master-only: it is MASTER unless a better master is
	// on the segment, then PASSIVE; it never disciplines its clock.
	ModeMaster
)

// String returns "slave" or "master".
func (m Mode) String() string {
	switch m {
	case ModeSlave:
		return "slave"
	case ModeMaster:
		return "master"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "slave" or "master".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "slave":
		return ModeSlave, nil
	case "master":
		return ModeMaster, nil
	}
	return 0, fmt.Errorf("ptp mode %q: want slave or master", s)
}

// Timestamping selects where packets are timestamped.
type Timestamping int

// Timestamping modes.
const (
	// TimestampingAuto uses hardware timestamps and the NIC's PHC when
	// ethtool reports them, else software timestamps.
	TimestampingAuto Timestamping = iota
	// TimestampingSoftware uses kernel software timestamps
	// (CLOCK_REALTIME, mapped onto the port's clock).
	TimestampingSoftware
	// TimestampingHardware requires hardware timestamps.
	TimestampingHardware
)

// String returns "auto", "software" or "hardware".
func (t Timestamping) String() string {
	switch t {
	case TimestampingAuto:
		return "auto"
	case TimestampingSoftware:
		return "software"
	case TimestampingHardware:
		return "hardware"
	}
	return fmt.Sprintf("timestamping(%d)", int(t))
}

// ParseTimestamping parses "auto", "software" or "hardware" (also "sw",
// "hw").
func ParseTimestamping(s string) (Timestamping, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto", "":
		return TimestampingAuto, nil
	case "software", "sw":
		return TimestampingSoftware, nil
	case "hardware", "hw":
		return TimestampingHardware, nil
	}
	return 0, fmt.Errorf("timestamping %q: want auto, software or hardware", s)
}

// Config configures one port. Intervals are log2 seconds, as in the PTP
// messages and in sfptpd's configuration (-3 is eight per second).
type Config struct {
	Name      string // instance name ("ptp1")
	Interface string
	// EthersFile is the ethers(5) file that names masters in the state
	// change lines; "" means DefaultEthersFile.
	EthersFile string
	Domain     uint8
	Mode       Mode

	// The default data set a master announces.
	Priority1     uint8
	Priority2     uint8
	ClockClass    uint8
	ClockAccuracy uint8
	// UserPriority is sfptpd's selection priority (lower wins); the
	// port only reports it.
	UserPriority int

	StepThreshold      time.Duration
	FirstStepThreshold time.Duration
	MaxFreqPPB         float64
	PIDKp, PIDKi       float64
	ClockControl       servo.ClockControl

	AnnounceInterval       int8
	SyncInterval           int8
	DelayReqInterval       int8
	AnnounceReceiptTimeout uint8

	Timestamping Timestamping

	// DelayFilter is the path-delay moving-median window.
	DelayFilter int
	// OutlierFilterSize and OutlierFilterAdaption are sfptpd's
	// outlier_filter_size and outlier_filter_adaption: every offset
	// goes through a Peirce's-criterion filter over that many recent
	// offsets (servo.Peirce), and one it calls an outlier is counted
	// and dropped, as sfptpd's PTP servo does: it is neither reported
	// nor fed to the servo. sfptpd's PTP module always runs the filter.
	OutlierFilterSize     int
	OutlierFilterAdaption float64
	// OutlierFilterPlain lets every outlier into the filter's window
	// as sfptpd does; by default a lone outlier enters no further out
	// than the threshold (servo.Peirce.SetHoldLone), so that one Sync
	// stamped far too late does not let the next moderately late ones
	// through. No sfptpd keyword sets it; ptpbench compares the two.
	OutlierFilterPlain bool
	// NoOutlierFilter passes every offset on unfiltered. No sfptpd
	// keyword sets it (sfptpd's PTP module has no switch for its
	// filter); ptpbench sets it to measure what the filter does.
	NoOutlierFilter bool
	// SyncThreshold is the |offset| under which the port reports in-sync;
	// 0 picks 1 µs with hardware timestamps, 10 µs with software.
	SyncThreshold time.Duration
	// Discipline is whether the port starts out adjusting its clock; the
	// engine changes it with SetDiscipline.
	Discipline bool

	// TxLatency and RxLatency are sfptpd's ptp_tx_latency and
	// ptp_rx_latency: the time between a transmit timestamp and the
	// message leaving on the wire, and between the message arriving
	// and its receive timestamp. TxLatency is added to our event
	// transmit timestamps (Sync, Delay_Req) and RxLatency subtracted
	// from our event receive timestamps (Sync, Delay_Req), as sfptpd
	// does. sfptpd holds them in a 32-bit nanosecond field.
	TxLatency time.Duration
	RxLatency time.Duration
}

// DefaultConfig returns a slave on domain 0 with linuxptp's data set
// defaults (priority 128, class 248), eight Syncs and Delay_Reqs a second,
// an Announce a second with a timeout of three, and the servo defaults.
func DefaultConfig() Config {
	sc := servo.DefaultConfig()
	return Config{
		Name:                   "ptp1",
		Mode:                   ModeSlave,
		Priority1:              128,
		Priority2:              128,
		ClockClass:             248,
		ClockAccuracy:          0xFE,
		StepThreshold:          sc.StepThreshold,
		FirstStepThreshold:     sc.FirstStepThreshold,
		MaxFreqPPB:             sc.MaxFreqPPB,
		PIDKp:                  sc.Kp,
		PIDKi:                  sc.Ki,
		ClockControl:           sc.ClockControl,
		AnnounceInterval:       0,
		SyncInterval:           -3,
		DelayReqInterval:       -3,
		AnnounceReceiptTimeout: 3,
		Timestamping:           TimestampingAuto,
		DelayFilter:            7,
		OutlierFilterSize:      servo.DefaultPeirceSize,
		OutlierFilterAdaption:  servo.DefaultPeirceAdaption,
		Discipline:             true,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Interface == "" {
		errs = append(errs, errors.New("interface is required"))
	}
	if c.Domain > 127 {
		errs = append(errs, fmt.Errorf("domain %d out of range 0..127", c.Domain))
	}
	for _, iv := range []struct {
		name string
		v    int8
	}{{"announce", c.AnnounceInterval}, {"sync", c.SyncInterval}, {"delay request", c.DelayReqInterval}} {
		if iv.v < -7 || iv.v > 7 {
			errs = append(errs, fmt.Errorf("%s interval 2^%d s out of range 2^-7..2^7", iv.name, iv.v))
		}
	}
	if c.AnnounceReceiptTimeout < 2 {
		errs = append(errs, fmt.Errorf("announce receipt timeout %d below 2", c.AnnounceReceiptTimeout))
	}
	if c.MaxFreqPPB <= 0 {
		errs = append(errs, fmt.Errorf("max frequency %v ppb must be positive", c.MaxFreqPPB))
	}
	if c.PIDKp <= 0 || c.PIDKi <= 0 {
		errs = append(errs, fmt.Errorf("PI coefficients %v, %v must be positive", c.PIDKp, c.PIDKi))
	}
	if c.StepThreshold < 0 || c.FirstStepThreshold < 0 {
		errs = append(errs, errors.New("step thresholds must not be negative"))
	}
	if c.DelayFilter < 1 || c.DelayFilter > 1024 {
		errs = append(errs, fmt.Errorf("delay filter window %d out of range 1..1024", c.DelayFilter))
	}
	if _, err := servo.NewPeirce(c.OutlierFilterSize, c.OutlierFilterAdaption); err != nil {
		errs = append(errs, err)
	}
	for _, l := range []struct {
		name string
		v    time.Duration
	}{{"tx", c.TxLatency}, {"rx", c.RxLatency}} {
		if l.v < math.MinInt32 || l.v > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("%s latency %d ns out of range %d..%d", l.name, int64(l.v), math.MinInt32, math.MaxInt32))
		}
	}
	if c.Mode != ModeSlave && c.Mode != ModeMaster {
		errs = append(errs, fmt.Errorf("unknown mode %d", c.Mode))
	}
	return errors.Join(errs...)
}

// logInterval turns a log2 interval into a duration.
func logInterval(l int8) time.Duration {
	if l >= 0 {
		return time.Second << uint(l)
	}
	return time.Second >> uint(-l)
}

func (c Config) servoConfig() servo.Config {
	sc := servo.DefaultConfig()
	sc.ClockControl = c.ClockControl
	sc.StepThreshold = c.StepThreshold
	sc.FirstStepThreshold = c.FirstStepThreshold
	sc.MaxFreqPPB = c.MaxFreqPPB
	sc.Kp, sc.Ki = c.PIDKp, c.PIDKi
	sc.SyncInterval = logInterval(c.SyncInterval)
	return sc
}
