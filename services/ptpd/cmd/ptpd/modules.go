package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/ntp"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// modules returns the sync modules this build offers, by sync_module
// name. This is the one place a module is wired in. A configuration
// naming a module missing from this map fails at start-up with
// "FILE:LINE: sync module 'NAME' is not available in this build".
//
// With a virtual clock every instance runs on it; otherwise each PTP
// instance takes its interface's PHC when hardware timestamping works
// there, else the system clock.
func modules(file string, virtual bool, log *slog.Logger) map[string]engine.Factory {
	return map[string]engine.Factory{
		"freerun": engine.NewFreerun,
		"ptp":     ptpModule(virtual, log),
		"pps":     ppsModule(file),
		"ntp":     ntpModule(log),
		"crny":    ntpModule(log),
	}
}

// ntpModule builds the NTP client behind sync_module ntp and crny: the
// box has no ntpd or chronyd for sfptpd's modules to steer, so ptpd
// asks the servers itself (ntp_server, or those of ntp.conf/chrony.conf)
// and takes part in selection as sfptpd's NTP module does.
func ntpModule(log *slog.Logger) engine.Factory {
	return func(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
		cfg := ntp.DefaultConfig()
		cfg.Name, cfg.Module = sec.Name, sec.Module
		cfg.Servers = sec.NTPServers
		if sec.NTPPollInterval > 0 {
			cfg.PollInterval = sec.NTPPollInterval
		}
		sv, err := servoOf(sec)
		if err != nil {
			return nil, err
		}
		cfg.UserPriority = sec.Priority
		cfg.ClockControl, cfg.StepThreshold, cfg.PIDKp, cfg.PIDKi = sv.control, sv.step, sv.kp, sv.ki
		if sec.SyncThreshold > 0 {
			cfg.SyncThreshold = sec.SyncThreshold
		}
		if sec.MaxFreqPPB > 0 {
			cfg.MaxFreqPPB = sec.MaxFreqPPB
		}
		return ntp.New(cfg, clk, log)
	}
}

// servoSettings are the clock-control settings every disciplining
// module takes from its section.
type servoSettings struct {
	control servo.ClockControl
	step    time.Duration
	kp, ki  float64
}

func servoOf(sec config.Instance) (servoSettings, error) {
	cc, err := servo.ParseClockControl(sec.ClockControl)
	if err != nil {
		return servoSettings{}, fmt.Errorf("%s: %w", sec.Name, err)
	}
	return servoSettings{control: cc, step: sec.StepThreshold, kp: sec.PIDFilterP, ki: sec.PIDFilterI}, nil
}

// ptpModule builds a PTP port from an instance section.
func ptpModule(virtual bool, log *slog.Logger) engine.Factory {
	return func(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
		cfg := ptp.DefaultConfig()
		cfg.Name = sec.Name
		cfg.Interface = sec.Interface
		cfg.Domain = uint8(sec.Domain)
		if sec.Mode == "master" {
			cfg.Mode = ptp.ModeMaster
		}
		sv, err := servoOf(sec)
		if err != nil {
			return nil, err
		}
		cfg.UserPriority = sec.Priority
		cfg.ClockControl, cfg.StepThreshold, cfg.PIDKp, cfg.PIDKi = sv.control, sv.step, sv.kp, sv.ki
		if err := applyPTPOptions(&cfg, sec); err != nil {
			return nil, fmt.Errorf("%s: %w", sec.Name, err)
		}
		if !virtual {
			if clk, err = ptp.ClockFor(sec.Interface, cfg.Timestamping); err != nil {
				return nil, fmt.Errorf("%s: %w", sec.Name, err)
			}
		}
		return ptp.New(cfg, clk, log)
	}
}

// applyPTPOptions maps the sfptpd ptp options that the ptp package
// implements onto its Config; options left unset keep its defaults.
func applyPTPOptions(cfg *ptp.Config, sec config.Instance) error {
	ts, err := ptp.ParseTimestamping(sec.Timestamping)
	if err != nil {
		return err
	}
	cfg.Timestamping = ts
	cfg.TxLatency, cfg.RxLatency = sec.TxLatency, sec.RxLatency
	cfg.SyncThreshold = sec.SyncThreshold
	if sec.MaxFreqPPB > 0 && sec.MaxFreqPPB < cfg.MaxFreqPPB {
		cfg.MaxFreqPPB = sec.MaxFreqPPB
	}
	if sec.DelayFilter > 0 {
		cfg.DelayFilter = sec.DelayFilter
	}
	if sec.OutlierFilterSize > 0 {
		cfg.OutlierFilterSize = sec.OutlierFilterSize
	}
	if sec.OutlierFilterAdaption != nil {
		cfg.OutlierFilterAdaption = *sec.OutlierFilterAdaption
	}
	set8 := func(dst *int8, v *int) {
		if v != nil {
			*dst = int8(*v)
		}
	}
	set8(&cfg.AnnounceInterval, sec.AnnounceInterval)
	set8(&cfg.SyncInterval, sec.SyncInterval)
	set8(&cfg.DelayReqInterval, sec.DelayReqInterval)
	setU8 := func(dst *uint8, v *int) {
		if v != nil {
			*dst = uint8(*v)
		}
	}
	setU8(&cfg.AnnounceReceiptTimeout, sec.AnnounceTimeout)
	setU8(&cfg.Priority1, sec.Priority1)
	setU8(&cfg.Priority2, sec.Priority2)
	return nil
}

// checkInstance refuses, with one line naming the file and the
// instance's sync_module line, an instance this box cannot run whatever
// its configuration says. ptpd -t runs it too, so that a configuration
// check says what a start would.
//
// A pps instance takes its pulses from the external timestamp (PPS)
// input of its interface's PTP hardware clock, as sfptpd's pps module
// does; without one there is nothing to read. ptpd has no pps module
// even where such an input exists, and says that instead.
func checkInstance(file string, sec config.Instance) error {
	if sec.Module != "pps" {
		return nil
	}
	if sec.Interface == "" {
		return config.Errorf(file, sec.Line, "pps instance '%s': no PPS device: no interface names one (set \"interface IF\" in [%s] or [pps])", sec.Name, sec.Name)
	}
	dev := ppsInput(sec.Interface)
	if dev == "" {
		return config.Errorf(file, sec.Line, "pps instance '%s': no PPS device: interface %s has no PTP hardware clock with an external timestamp input", sec.Name, sec.Interface)
	}
	return config.Errorf(file, sec.Line, "pps instance '%s': sync module 'pps' is not available in this build (%s of %s has a PPS input ptpd does not read)", sec.Name, dev, sec.Interface)
}

// ppsInput returns the PTP hardware clock of iface that has external
// timestamp channels ("ptp0"), or "".
func ppsInput(iface string) string {
	clocks, _ := filepath.Glob(filepath.Join("/sys/class/net", iface, "device/ptp/ptp*"))
	for _, c := range clocks {
		b, err := os.ReadFile(filepath.Join(c, "n_external_timestamps"))
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return filepath.Base(c)
		}
	}
	return ""
}

// ppsModule is the factory behind sync_module pps: it only refuses,
// with checkInstance's line.
func ppsModule(file string) engine.Factory {
	return func(sec config.Instance, _ clock.Clock) (instance.Instance, error) {
		return nil, checkInstance(file, sec)
	}
}
