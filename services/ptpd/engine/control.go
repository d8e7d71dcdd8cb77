package engine

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
)

// ErrIgnored wraps the errors of commands that sfptpd logs and ignores
// (a selection under an automatic policy, an unknown instance, an
// interface command in netlink mode).
var ErrIgnored = errors.New("ignored")

func (e *Engine) ignored(format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	e.log.Warn(msg)
	return fmt.Errorf("%s: %w", msg, ErrIgnored)
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
		return e.ignored(`step clocks signal blocked by "clock-control no-adjust"`)
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
	if err = inst.StepClock(); err != nil {
		e.log.Error("stepclocks failed", "instance", r.cfg.Name, "err", err)
		return fmt.Errorf("stepclocks: %s: %w", r.cfg.Name, err)
	}
	e.log.Info("stepclocks: clock stepped to the selected instance", "instance", r.cfg.Name, "clock", st.Clock, "offset_ns", st.OffsetNS)
	return nil
}

// SelectInstance is selectinstance: under selection_policy manual it
// switches to the named instance at once, with no holdoff. "a=b" names
// "a" (sfptpd stops at a second '=').
func (e *Engine) SelectInstance(name string) error {
	name, _, _ = strings.Cut(name, "=")
	if e.g.SelectionPolicy != config.PolicyManual {
		return e.ignored("Sync policy is %s, not manual, selection of '%s' ignored", e.g.SelectionPolicy, name)
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

// BlockClock is block_clock: block (or unblock) adjustments of the
// named clocks (clock names such as "system" or "phc0(eth0)", or
// interface names), or of every clock when none is named. A blocked
// clock's instance is told to stop disciplining even when selected.
func (e *Engine) BlockClock(block bool, clocks []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case len(clocks) == 0 && block:
		e.blockAll = true
	case len(clocks) == 0:
		e.blockAll = false
		clear(e.blocked)
	default:
		for _, c := range clocks {
			if block {
				e.blocked[c] = true
			} else {
				delete(e.blocked, c)
			}
		}
	}
	what := "all clocks"
	if len(clocks) > 0 {
		what = strings.Join(clocks, ",")
	}
	if block {
		e.log.Info("block_clock: clock adjustments blocked", "clocks", what)
	} else {
		e.log.Info("block_clock: clock adjustments unblocked", "clocks", what)
	}
	e.applyDisciplineLocked()
}

// PIDAdjust is pid_adjust: it sets the servo coefficients of the
// servos of the given types (all when none is given); nil keeps a
// coefficient. In ptpd every servo belongs to a PTP instance: "ptp"
// adjusts those, "local" and "pps" name servo types ptpd does not have
// and are logged.
func (e *Engine) PIDAdjust(kp, ki, kd *float64, types []string) {
	reset := false
	mask := map[string]bool{}
	for _, t := range types {
		if t == "reset" {
			reset = true
		} else {
			mask[t] = true
		}
	}
	all := len(mask) == 0
	for _, t := range []string{"local", "pps"} {
		if mask[t] {
			e.log.Info("pid_adjust: ptpd has no servos of this type", "type", t)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.recs {
		if r.cfg.Module != "ptp" || !(all || mask["ptp"]) {
			continue
		}
		if kp != nil {
			r.kp = *kp
		}
		if ki != nil {
			r.ki = *ki
		}
		if kd != nil {
			r.kd = *kd
		}
		if r.inst != nil {
			r.inst.SetPID(r.kp, r.ki, r.kd, reset)
			n++
		}
		e.log.Info("pid_adjust", "instance", r.cfg.Name, "kp", r.kp, "ki", r.ki, "kd", r.kd, "reset", reset)
	}
	if n == 0 {
		e.log.Info("pid_adjust: no running servo to adjust")
	}
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
		out = append(out, InstanceInfo{
			Name: r.cfg.Name, Module: r.cfg.Module, State: st.State.String(), Selected: r == e.selected,
			OffsetNS: finite(st.OffsetNS), FreqAdjPPB: finite(st.FreqAdjPPB), PathDelayNS: finite(st.PathDelayNS),
			Master: st.ParentID, Alarms: alarms,
		})
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

// DumpTables writes the instance table, ranked best first, with the
// rule that orders each row after the one above, to w and to the
// message log (dumptables).
func (e *Engine) DumpTables(w io.Writer) {
	e.mu.Lock()
	cs := e.candidatesLocked()
	sel, cand := e.selected, e.candidate
	blocked := make([]string, 0, len(e.blocked))
	for c := range e.blocked {
		blocked = append(blocked, c)
	}
	blockAll := e.blockAll
	e.mu.Unlock()
	sort.SliceStable(cs, func(i, j int) bool { c, _ := compare(cs[i], cs[j]); return c < 0 })
	sort.Strings(blocked)
	var b strings.Builder
	fmt.Fprintf(&b, "sync instances (policy %s, selected %s, candidate %s):\n", e.g.SelectionPolicy, nameOf(sel), nameOf(cand))
	fmt.Fprintf(&b, "  %-4s %-12s %-8s %-13s %-4s %-5s %-3s %-16s %-14s %s\n", "rank", "instance", "module", "state", "prio", "class", "sel", "clock", "offset-ns", "decided-by")
	for i, c := range cs {
		rule := "-"
		if i > 0 {
			_, rule = compare(cs[i-1], c)
		}
		s := ""
		if c.rec == sel {
			s = "*"
		}
		alarms := ""
		if len(c.st.Alarms) > 0 {
			alarms = " alarms=" + strings.Join(c.st.Alarms, ",")
		}
		fmt.Fprintf(&b, "  %-4d %-12s %-8s %-13s %-4d %-5d %-3s %-16s %-14.3f %s%s\n", i+1, c.st.Name, c.st.Module, c.st.State, c.st.UserPriority, c.st.ClockClass, s, c.st.Clock, finite(c.st.OffsetNS), rule, alarms)
	}
	switch {
	case blockAll:
		b.WriteString("blocked clocks: all\n")
	case len(blocked) > 0:
		fmt.Fprintf(&b, "blocked clocks: %s\n", strings.Join(blocked, ","))
	}
	io.WriteString(w, b.String())
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		e.log.Info("dumptables: " + l)
	}
}
