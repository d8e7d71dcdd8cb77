package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
)

// ErrIgnored wraps the errors of commands that sfptpd logs and ignores
// (a selection under an automatic policy, an unknown instance, an
// interface command in netlink mode).
var ErrIgnored = errors.New("ignored")

// ErrBadCommand wraps the errors of commands sfptpd rejects as it reads
// them (an unknown clock, an unexpected pid_adjust token, an unknown
// test mode): nothing of such a command is carried out.
var ErrBadCommand = errors.New("bad control command")

// ctlNotice is the level of sfptpd's NOTICE lines; slog has no notice
// level, and the message log's handler renders this one as "notice".
const ctlNotice = slog.LevelInfo + 2

func (e *Engine) ignored(format string, a ...any) error {
	return e.ignoredAt(slog.LevelWarn, format, a...)
}

func (e *Engine) ignoredAt(level slog.Level, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	e.log.Log(context.Background(), level, msg)
	return fmt.Errorf("%s: %w", msg, ErrIgnored)
}

// notice logs msg at sfptpd's NOTICE level.
func (e *Engine) notice(msg string) {
	e.log.Log(context.Background(), ctlNotice, msg)
}

// badCommand logs a rejected command the way sfptpd does, its reason
// prefixed "control: " and then "error receiving control command", both
// at error level, and returns the reason wrapping ErrBadCommand.
func (e *Engine) badCommand(format string, a ...any) error {
	msg := "control: " + fmt.Sprintf(format, a...)
	e.log.Error(msg)
	e.log.Error("error receiving control command")
	return fmt.Errorf("%s: %w", msg, ErrBadCommand)
}

// RotateLogs reopens the message, stats and json_stats log files.
func (e *Engine) RotateLogs() error {
	if err := e.opts.Logs.Rotate(); err != nil {
		e.log.Error("logrotate: reopening log files failed", "err", err)
		return fmt.Errorf("logrotate: %w", err)
	}
	e.log.Info("logrotate: log files reopened")
	return nil
}

// StepClocks steps the selected instance's clock by its offset from its
// master (stepclocks, SIGUSR1). Under clock_control no-adjust it only
// logs, as sfptpd does.
func (e *Engine) StepClocks() error {
	if e.g.ClockControl == config.ClockNoAdjust {
		return e.ignoredAt(ctlNotice, `step clocks signal blocked by "clock-control no-adjust"`)
	}
	e.mu.Lock()
	r := e.selected
	var err error
	if r == nil || r.inst == nil {
		e.mu.Unlock()
		return e.ignored("cannot step clocks with no selected sync instance")
	}
	inst := r.inst
	e.mu.Unlock()
	st := inst.Status()
	if e.readonly(r, st) {
		return e.ignored("not stepping read-only clock %s", st.Clock)
	}
	if err = inst.StepClock(); err != nil {
		e.log.Error("stepclocks failed", "instance", r.cfg.Name, "err", err)
		return fmt.Errorf("stepclocks: %s: %w", r.cfg.Name, err)
	}
	e.log.Info("stepclocks: clock stepped to the selected instance", "instance", r.cfg.Name, "clock", st.Clock, "offset_ns", st.OffsetNS)
	return nil
}

// MaxInstanceName is the longest instance name selectinstance passes
// on: sfptpd copies the name into a 64-byte buffer, so a longer one is
// cut to its first 63 bytes (and then, normally, not found).
const MaxInstanceName = 63

// SelectInstance is selectinstance: under selection_policy manual it
// switches to the named instance at once, with no holdoff. "a=b" names
// "a" (sfptpd stops at a second '=').
func (e *Engine) SelectInstance(name string) error {
	name, _, _ = strings.Cut(name, "=")
	if len(name) > MaxInstanceName {
		name = name[:MaxInstanceName]
	}
	if e.g.SelectionPolicy != config.PolicyManual {
		// sfptpd says "automatic" for manual-startup too.
		return e.ignored("Sync policy is automatic, not manual, selection of '%s' ignored", name)
	}
	r, ok := e.byName[name] // fixed after New
	if !ok {
		return e.ignored("Sync instance '%s' not found - can't select", name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.manual = r
	e.selectLocked(r, "selectinstance")
	return nil
}

// InterfaceInsert is interfaceinsert: in manual hotplug mode it starts
// the instances configured for the interface.
func (e *Engine) InterfaceInsert(ifname string) error {
	if e.g.Hotplug != config.HotplugManual {
		return e.ignored("interfaceinsert=%s ignored: hotplug_detection_mode is %s", ifname, e.g.Hotplug)
	}
	return e.linkPresent(ifname, "interfaceinsert")
}

// InterfaceRemove is interfaceremove: in manual hotplug mode it stops
// the instances configured for the interface.
func (e *Engine) InterfaceRemove(ifname string) error {
	if e.g.Hotplug != config.HotplugManual {
		return e.ignored("interfaceremove=%s ignored: hotplug_detection_mode is %s", ifname, e.g.Hotplug)
	}
	return e.linkGone(ifname, "interfaceremove")
}

func (e *Engine) recordsFor(ifname string) []*record {
	var rs []*record
	for _, r := range e.recs {
		if r.cfg.Interface == ifname {
			rs = append(rs, r)
		}
	}
	return rs
}

// noInstanceFor logs a link event for an interface no instance uses:
// worth a line for a command, noise for every netlink update.
func (e *Engine) noInstanceFor(ifname, via string) {
	if via == "netlink" {
		e.log.Debug("netlink: no sync instance uses the interface", "interface", ifname)
		return
	}
	e.log.Info(via+": no sync instance uses the interface", "interface", ifname)
}

// linkPresent starts the stopped instances of ifname.
func (e *Engine) linkPresent(ifname, via string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runCtx == nil || e.runCtx.Err() != nil {
		return errors.New("engine is not running")
	}
	rs := e.recordsFor(ifname)
	if len(rs) == 0 {
		e.noInstanceFor(ifname, via)
		return nil
	}
	var errs []error
	for _, r := range rs {
		if r.inst != nil {
			e.log.Debug(via+": sync instance already running", "instance", r.cfg.Name, "interface", ifname)
			continue
		}
		if err := e.startLocked(r); err != nil {
			e.log.Error(via+": cannot start sync instance", "instance", r.cfg.Name, "err", err)
			errs = append(errs, err)
		}
	}
	e.applyDisciplineLocked()
	return errors.Join(errs...)
}

// linkGone stops the instances of ifname. If the selected instance
// goes, an automatic policy selects the best remaining one at once: its
// reference is gone, there is nothing to hold off for.
func (e *Engine) linkGone(ifname, via string) error {
	e.mu.Lock()
	rs := e.recordsFor(ifname)
	if len(rs) == 0 {
		e.mu.Unlock()
		e.noInstanceFor(ifname, via)
		return nil
	}
	var waits []chan struct{}
	lostSelected := false
	for _, r := range rs {
		if d := e.stopLocked(r); d != nil {
			waits = append(waits, d)
			lostSelected = lostSelected || r == e.selected
		}
	}
	if lostSelected && e.g.SelectionPolicy != config.PolicyManual {
		if b := best(e.candidatesLocked()); b != nil {
			e.selectLocked(b.rec, "selected instance's interface removed")
		}
	}
	e.mu.Unlock()
	for _, d := range waits {
		<-d
	}
	return nil
}

// MaxBlockClocks is the most clocks one block_clock command names, as
// in sfptpd.
const MaxBlockClocks = 7

// clockNamesLocked returns the long names of the clocks ptpd knows:
// "system", the daemon's clock and each instance's clock ("phc0(eth0)").
func (e *Engine) clockNamesLocked() []string {
	names := []string{"system"}
	seen := map[string]bool{"system": true}
	add := func(n string) {
		if n != "" && n != "none" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if e.opts.Clock != nil {
		add(e.opts.Clock.Name())
	}
	for _, r := range e.recs {
		add(r.status().Clock)
	}
	return names
}

// findClockLocked finds a clock the way sfptpd does: by its short name
// ("phc0", "system") or its long name ("phc0(eth0)"). It returns the
// long name.
func (e *Engine) findClockLocked(name string) (string, bool) {
	for _, n := range e.clockNamesLocked() {
		if name == n || name == shortClockName(n) {
			return n, true
		}
	}
	return "", false
}

// BlockClock is block_clock: it blocks (or unblocks) adjustments of the
// named clocks. As in sfptpd, no names means no clock changes; a name
// that matches no clock, or an eighth clock, rejects the whole command.
// A blocked clock's instance is told to stop disciplining even when
// selected.
func (e *Engine) BlockClock(block bool, clocks []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var found []string
	for _, c := range clocks {
		long, ok := e.findClockLocked(c)
		if !ok {
			return e.badCommand("block_clock has unknown clock identifier: %s", c)
		}
		if len(found) >= MaxBlockClocks {
			return e.badCommand("too many clocks specified: %d", len(found)+1)
		}
		found = append(found, long)
	}
	e.notice("received 'block_clock' control command")
	for _, c := range found {
		if block {
			e.blocked[c] = true
			e.log.Info("block_clock: clock adjustments blocked", "clock", c)
		} else {
			delete(e.blocked, c)
			e.log.Info("block_clock: clock adjustments unblocked", "clock", c)
		}
	}
	e.applyDisciplineLocked()
	return nil
}

// ServoType is a bit of pid_adjust's servo type mask, with sfptpd's
// values (the mask is logged in octal, as sfptpd logs it).
type ServoType int

// Servo types. ptpd's servos are all PTP servos: it has no local
// clock-to-clock servos and no PPS instances.
const (
	ServoLocal ServoType = 1 << iota
	ServoPTP
	ServoPPS
	ServoAll = ServoLocal | ServoPTP | ServoPPS
)

// PIDAdjustment is one pid_adjust command. A NaN coefficient keeps the
// servo's current value, as an empty field does in sfptpd.
type PIDAdjustment struct {
	KP, KI, KD float64
	Mask       ServoType
	Reset      bool
}

// PIDAdjust is pid_adjust: it sets the coefficients of the servos of
// the types in the mask, keeping those given as NaN, and restarts them
// when Reset is set. Only PTP instances have servos in ptpd.
func (e *Engine) PIDAdjust(p PIDAdjustment) error {
	for _, v := range []float64{p.KP, p.KI, p.KD} {
		if math.IsInf(v, 0) {
			// sfptpd would hand an infinite coefficient to its servos
			// and wreck them; refusing it loses nothing.
			return e.badCommand("pid_adjust has an infinite coefficient: %s", cG(6, v))
		}
	}
	if p.Mask == 0 {
		p.Mask = ServoAll
	}
	reset := ""
	if p.Reset {
		reset = " reset"
	}
	e.notice(fmt.Sprintf("received 'pid_adjust' control command: (%s, %s, %s) @0%o%s", cG(6, p.KP), cG(6, p.KI), cG(6, p.KD), int(p.Mask), reset))
	if p.Mask&ServoPTP == 0 {
		e.log.Info("pid_adjust: no servo of the given types to adjust: ptpd's servos are all ptp servos")
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.recs {
		if r.cfg.Module != "ptp" {
			continue
		}
		if !math.IsNaN(p.KP) {
			r.kp = p.KP
		}
		if !math.IsNaN(p.KI) {
			r.ki = p.KI
		}
		if !math.IsNaN(p.KD) {
			r.kd = p.KD
		}
		if r.inst != nil {
			r.inst.SetPID(r.kp, r.ki, r.kd, p.Reset)
			n++
		}
		e.log.Info(fmt.Sprintf("%s: servo PID coefficients kp %s ki %s kd %s%s", r.cfg.Name, cG(6, r.kp), cG(6, r.ki), cG(6, r.kd), reset))
	}
	if n == 0 {
		e.log.Info("pid_adjust: no running ptp servo to adjust")
	}
	return nil
}

// InstanceInfo is one row of instances-get.
type InstanceInfo struct {
	Name        string   `json:"name"`
	Module      string   `json:"module"`
	State       string   `json:"state"`
	Selected    bool     `json:"selected"`
	OffsetNS    float64  `json:"offset-ns"`
	FreqAdjPPB  float64  `json:"freq-adj-ppb"`
	PathDelayNS float64  `json:"path-delay-ns"`
	Master      string   `json:"master"`
	Alarms      []string `json:"alarms"`
	// OutlierDiscards and OutlierThresholdNS are set for instances
	// with sfptpd's outlier filter (ptp): the offsets it discarded
	// (sfptpd's adaptive-outlier-filter-discards statistic) and its
	// current threshold (sfptpd's outlier-threshold).
	OutlierDiscards    *uint64  `json:"adaptive-outlier-filter-discards,omitempty"`
	OutlierThresholdNS *float64 `json:"outlier-threshold-ns,omitempty"`
}

// Instances returns every configured instance, in configuration order.
func (e *Engine) Instances() []InstanceInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]InstanceInfo, 0, len(e.recs))
	for _, r := range e.recs {
		st := r.status()
		alarms := st.Alarms
		if alarms == nil {
			alarms = []string{}
		}
		info := InstanceInfo{
			Name: r.cfg.Name, Module: r.cfg.Module, State: st.State.String(), Selected: r == e.selected,
			OffsetNS: finite(st.OffsetNS), FreqAdjPPB: finite(st.FreqAdjPPB), PathDelayNS: finite(st.PathDelayNS),
			Master: st.ParentID, Alarms: alarms,
		}
		if st.OutlierFilter {
			n, th := st.Outliers, finite(st.OutlierThresholdNS)
			info.OutlierDiscards, info.OutlierThresholdNS = &n, &th
		}
		out = append(out, info)
	}
	return out
}

// Selected returns the selected instance's name ("" for none).
func (e *Engine) Selected() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.selected == nil {
		return ""
	}
	return e.selected.cfg.Name
}
