package main

import (
	"fmt"
	"log/slog"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
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
func modules(virtual bool, log *slog.Logger) map[string]engine.Factory {
	return map[string]engine.Factory{
		"freerun": engine.NewFreerun,
		"ptp":     ptpModule(virtual, log),
	}
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
		cfg.UserPriority = sec.Priority
		cc, err := servo.ParseClockControl(sec.ClockControl)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sec.Name, err)
		}
		cfg.ClockControl = cc
		cfg.StepThreshold = sec.StepThreshold
		cfg.PIDKp, cfg.PIDKi = sec.PIDFilterP, sec.PIDFilterI
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
	cfg.SyncThreshold = sec.SyncThreshold
	if sec.MaxFreqPPB > 0 && sec.MaxFreqPPB < cfg.MaxFreqPPB {
		cfg.MaxFreqPPB = sec.MaxFreqPPB
	}
	if sec.DelayFilter > 0 {
		cfg.DelayFilter = sec.DelayFilter
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
