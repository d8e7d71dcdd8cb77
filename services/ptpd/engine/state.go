package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/facebook/time/ptp/protocol"

	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/freqcorr"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/msglog"
)

// State file names in state_path, as sfptpd names them.
const (
	StateFilePrefix   = "state-"
	SyncInstancesFile = "sync-instances"
	TopologyFile      = "topology"
	InterfacesFile    = "interfaces"
	PTPNodesFile      = "ptp-nodes"
	ConfigFile        = "config"
)

// topologyWidth is the width every topology field is centred in
// (sfptpd's SFPTPD_TOPOLOGY_FIELD_WIDTH).
const topologyWidth = 35

// alarmsText is sfptpd's alarm list in text files: "none", or each name
// followed by a space.
func alarmsText(alarms []string) string {
	if len(alarms) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, a := range instance.SortAlarms(alarms) {
		b.WriteString(a)
		b.WriteByte(' ')
	}
	return b.String()
}

// ctrlFlagsText is sfptpd's control-flags text. ptpd's instances always
// process timestamps; the selected one also controls its clock unless
// block_clock holds it.
func ctrlFlagsText(selected, clockCtrl bool) string {
	s := ""
	if selected {
		s += "selected "
	}
	s += "timestamp-processing "
	if clockCtrl {
		s += "clock-ctrl "
	}
	return s
}

func boolDigit(v bool) int {
	if v {
		return 1
	}
	return 0
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// clockHWID is the clock's identity for the state files: the PHC's
// EUI-64, "system" for the system clock, else the clock name.
func clockHWID(st instance.Status) string {
	if st.ClockID != "" {
		return st.ClockID
	}
	return st.Clock
}

// ptpStateText is sfptpd's name of a PTP port state in the state files.
func ptpStateText(st instance.Status) string {
	switch st.State {
	case instance.Initializing, instance.Listening:
		return "ptp-listening"
	case instance.Disabled:
		return "ptp-disabled"
	case instance.Master:
		return "ptp-master"
	case instance.Passive:
		return "ptp-passive"
	case instance.Slave:
		if len(st.Alarms) > 0 {
			return "ptp-slave-alarm"
		}
		return "ptp-slave"
	}
	return "ptp-faulty"
}

// accuracyText is the "(<Nns)" part of a clock-accuracy line: the
// IEEE 1588 enumeration's bound in ns, "inf" when unknown.
func accuracyText(a int) string {
	if a < 0x20 || a > 0x31 {
		return "inf"
	}
	return cFloat(float64(protocol.ClockAccuracy(a).Duration()), 0)
}

// stateText is an instance's state file, laid out as its sfptpd module
// writes it: the PTP module's per-state layouts, freerun's
// freerunning-clock record. clockCtrl says the instance may adjust its
// clock (selected and not blocked).
func stateText(st instance.Status, selected, clockCtrl bool) string {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f("instance: %s\n", st.Name)
	f("clock-name: %s\n", st.Clock)
	f("clock-id: %s\n", clockHWID(st))
	flags := ctrlFlagsText(selected, clockCtrl)
	p := st.PTP
	if p == nil {
		if st.Module == "freerun" {
			f("state: freerunning-clock\n")
		} else {
			f("state: %s\n", st.State)
			f("alarms: %s\n", alarmsText(st.Alarms))
		}
		f("control-flags: %s\n", flags)
		return b.String()
	}
	f("state: %s\n", ptpStateText(st))
	f("alarms: %s\n", alarmsText(st.Alarms))
	f("control-flags: %s\n", flags)
	f("interface: %s (%s)\n", st.ActiveInterface, st.Interface)
	f("transport: %s\n", p.Transport)
	ts := "sw"
	if p.HWTimestamps {
		ts = "hw"
	}
	switch st.State {
	case instance.Slave:
		f("profile: %s (%s) %s\n", net.HardwareAddr(p.ProfileID[:]), p.ProfileName, p.ProfileVersion)
		f("timestamping: %s\n", ts)
		f("offset-from-master: %s\n", float3(st.OffsetNS))
		f("one-way-delay: %s\n", float3(st.PathDelayNS))
		f("freq-adjustment-ppb: %s\n", float3(st.FreqAdjPPB))
		f("in-sync: %d\n", boolDigit(st.InSync))
		f("ptp-domain: %d\n", p.Domain)
		f("steps-removed: %d\n", st.StepsRemoved)
		f("parent-clock-id: %s\n", st.ParentID)
		f("parent-port-num: %d\n", p.ParentPort)
		f("delay-mechanism: %s\n", p.DelayMechanism)
		f("two-step: %s\n", yesNo(p.TwoStep))
		f("slave-only: %s\n", yesNo(p.SlaveOnly))
		f("grandmaster-id: %s\n", st.GrandmasterID)
		f("grandmaster-clock-class: %d\n", st.ClockClass)
		f("grandmaster-clock-accuracy: %d (<%sns)\n", p.GMClockAccuracy, accuracyText(p.GMClockAccuracy))
		f("grandmaster-bmc-priority1: %d\n", p.GMPriority1)
		f("grandmaster-bmc-priority2: %d\n", p.GMPriority2)
		f("timescale: %s\n", timescale(p.PTPTimescale))
		f("current-utc-offset: %d\n", p.UTCOffset)
		f("leap-59: %d\n", boolDigit(p.Leap59))
		f("leap-61: %d\n", boolDigit(p.Leap61))
		f("clustering-score: %d\n", 0)
		f("diff-method: %s\n", "none") // ptpd compares no clocks
	case instance.Master, instance.Passive:
		f("profile: %s (%s) %s\n", net.HardwareAddr(p.ProfileID[:]), p.ProfileName, p.ProfileVersion)
		f("timestamping: %s\n", ts)
		f("in-sync: %d\n", boolDigit(st.InSync))
		f("ptp-domain: %d\n", p.Domain)
		f("steps-removed: %d\n", st.StepsRemoved)
		f("delay-mechanism: %s\n", p.DelayMechanism)
		f("two-step: %s\n", yesNo(p.TwoStep))
		f("grandmaster-id: %s\n", st.GrandmasterID)
		f("clock-class: %d\n", st.ClockClass)
		f("clock-accuracy: %d (<%sns)\n", p.GMClockAccuracy, accuracyText(p.GMClockAccuracy))
		f("bmc-priority1: %d\n", p.GMPriority1)
		f("bmc-priority2: %d\n", p.GMPriority2)
		f("timescale: %s\n", timescale(p.PTPTimescale))
		f("current-utc-offset: %d\n", p.UTCOffset)
		f("leap-59: %d\n", boolDigit(p.Leap59))
		f("leap-61: %d\n", boolDigit(p.Leap61))
	default:
		f("timestamping: %s\n", ts)
		f("delay-mechanism: %s\n", p.DelayMechanism)
	}
	return b.String()
}

func timescale(ptp bool) string {
	if ptp {
		return "tai"
	}
	return "utc"
}

// syncModuleState is sfptpd's generic sync instance state (the
// sync-instances table): PTP's transitional states count as listening
// or faulty, and a freerun instance is a slave of its own clock.
func syncModuleState(st instance.State, running bool) (string, int) {
	if !running {
		return "disabled", 3
	}
	switch st {
	case instance.Slave, instance.Freerun:
		return "slave", 0
	case instance.Listening, instance.Initializing:
		return "listening", 1
	case instance.Master:
		return "master", 2
	case instance.Passive:
		return "passive", 2
	case instance.Disabled:
		return "disabled", 3
	}
	return "faulty", 3
}

// clockClassText is sfptpd's name for a clock class.
func clockClassText(c uint8) string {
	switch c {
	case 6, 13:
		return "locked"
	case 7, 14:
		return "holdover"
	case 248:
		return "freerunning"
	}
	return "unknown"
}

// tableRow writes one row and, when line is set, a rule of dashes as
// long as the row (sfptpd's table rows).
func tableRow(b *strings.Builder, line bool, row string) {
	b.WriteString(row)
	if line {
		b.WriteString(strings.Repeat("-", len(row)-1))
		b.WriteByte('\n')
	}
}

// selectionRules are ptpd's selection rules in order, by sfptpd's rule
// names (select.go's compare; the tie-break is implied, as in sfptpd).
var selectionRules = []string{ruleManual, ruleState, ruleAlarms, rulePriority, ruleClass, ruleAccuracy, ruleSteps}

// syncInstancesText is sfptpd's sync-instances table: instances in
// configuration order with their selection rank.
func syncInstancesText(snaps []snapshot) string {
	var b strings.Builder
	tableRow(&b, true, fmt.Sprintf("| %2s | %-12s%1s | %1s%1s |%-9s %1s | %1s | %8s | %1s | %-11s | %8s | %9s | %5s |\n",
		"R", "instance", "S", "M", "X", "state", "O", "A", "priority", "C", "gm class", "accuracy", "allan var", "steps"))
	for i, s := range snaps {
		sel := " "
		if s.selected {
			sel = "*"
		}
		man := '-'
		if s.manual {
			man = 'M'
		}
		state, order := syncModuleState(s.st.State, s.running)
		alarm := " "
		if len(s.st.Alarms) > 0 {
			alarm = "A"
		}
		// ptpd knows no Allan variance: sfptpd's unknown is NaN.
		tableRow(&b, i == len(snaps)-1, fmt.Sprintf("| %2d | %-12s%1s | %c%c |%-9s %1d | %1s | %s | %1d | %-11s | %s | %s | %5d |\n",
			s.rank, s.st.Name, sel, man, '-', state, order, alarm, fmt.Sprintf("%8s", cG(3, float64(s.st.UserPriority))), 0,
			clockClassText(s.st.ClockClass), fmt.Sprintf("%8s", cG(3, s.st.AccuracyNS)), fmt.Sprintf("%9s", cG(3, math.NaN())), s.st.StepsRemoved))
	}
	b.WriteString("\nKey: R = rank  S = selected  M = manual  O = state order  A = alarms  C = clustering score\n" +
		"     X = external constraint (m = must-be-selected  c = cannot-be-selected) \n")
	b.WriteString("\nSelection policy:\n")
	for i, r := range selectionRules {
		fmt.Fprintf(&b, " %d : %s\n", i, r)
	}
	return b.String()
}

// topoField writes s centred in the topology width (cut to width-1
// characters, as sfptpd's field buffer does).
func topoField(b *strings.Builder, s string, pre, post byte, newline bool) {
	if len(s) > topologyWidth-1 {
		s = s[:topologyWidth-1]
	}
	before := (topologyWidth - len(s)) / 2
	after := topologyWidth - len(s) - before
	b.WriteString(strings.Repeat(string(pre), before))
	b.WriteString(s)
	b.WriteString(strings.Repeat(string(post), after))
	if newline {
		b.WriteByte('\n')
	}
}

// topoConnector is sfptpd's one-to-one connector: two bars, an optional
// label, two bars, with optional arrow heads.
func topoConnector(b *strings.Builder, top, bottom bool, label string) {
	if top {
		topoField(b, "^", ' ', ' ', true)
	}
	topoField(b, "|", ' ', ' ', true)
	topoField(b, "|", ' ', ' ', true)
	if label != "" {
		topoField(b, label, ' ', ' ', true)
	}
	topoField(b, "|", ' ', ' ', true)
	topoField(b, "|", ' ', ' ', true)
	if bottom {
		topoField(b, "v", ' ', ' ', true)
	}
}

// topologyText is sfptpd's topology file for the selected instance:
// its module's diagram of the reference and the local clock. ptpd has
// no secondary servos, so nothing follows the local clock.
func topologyText(st instance.Status) string {
	var b strings.Builder
	p := st.PTP
	if p == nil {
		b.WriteString("====================\nstate: freerun\n====================\n\n")
		topoField(&b, st.Clock, ' ', ' ', true)
		topoField(&b, clockHWID(st), ' ', ' ', true)
		return b.String()
	}
	fmt.Fprintf(&b, "====================\nstate: %s\n", ptpStateText(st))
	if len(st.Alarms) > 0 {
		fmt.Fprintf(&b, "alarms: %s\n", alarmsText(st.Alarms))
	}
	ts := "sw"
	if p.HWTimestamps {
		ts = "hw"
	}
	fmt.Fprintf(&b, "interface: %s (%s)\ntimestamping: %s\n====================\n\n", st.ActiveInterface, st.Interface, ts)
	switch st.State {
	case instance.Listening, instance.Initializing:
		topoConnector(&b, false, false, "?")
	case instance.Slave, instance.Passive:
		topoField(&b, "grandmaster", ' ', ' ', true)
		if st.ParentID != st.GrandmasterID {
			// A boundary clock sits between the grandmaster and us.
			topoField(&b, st.GrandmasterID, ' ', ' ', true)
			label := ""
			if n := st.StepsRemoved - 1; n >= 2 {
				label = fmt.Sprintf("%d steps", n)
			}
			topoConnector(&b, false, true, label)
			topoField(&b, "parent", ' ', ' ', true)
		}
		topoField(&b, fmt.Sprintf("%s/%d", st.ParentID, p.ParentPort), ' ', ' ', true)
		if st.State == instance.Passive {
			topoConnector(&b, false, true, "zzz")
		} else {
			topoConnector(&b, false, true, float3(st.OffsetNS)+" ns")
		}
	case instance.Master:
		topoConnector(&b, true, false, "")
	default:
		topoConnector(&b, false, false, "X")
	}
	topoField(&b, st.Clock, ' ', ' ', true)
	topoField(&b, clockHWID(st), ' ', ' ', true)
	return b.String()
}

// ptpNodesText is sfptpd's ptp-nodes table: the PTP nodes each PTP
// instance has heard.
func ptpNodesText(snaps []snapshot) string {
	var b strings.Builder
	const head = "| %6s | %24s | %11s | %6s | %11s | %s\n"
	const row = "| %6s | %24s | %11d | %6d | %11d | %s\n"
	tableRow(&b, true, fmt.Sprintf(head, "state", "clock-id", "port-number", "domain", "local-port", "instance"))
	for _, s := range snaps {
		if s.st.PTP == nil || !s.running {
			continue
		}
		nodes := s.st.PTP.Nodes
		for i, n := range nodes {
			tableRow(&b, i == len(nodes)-1, fmt.Sprintf(row, n.State, n.ClockID, n.PortNumber, n.Domain, s.st.PTP.LocalPort, s.st.Name))
		}
	}
	return b.String()
}

// interfacesText is sfptpd's interfaces table.
func interfacesText(ifs []Interface) string {
	var b strings.Builder
	const f = "| %16s | %8s | %21s | %17s |\n"
	tableRow(&b, true, fmt.Sprintf(f, "interface", "ptp-caps", "pkt-timestamping-caps", "mac-address"))
	for i, in := range ifs {
		tableRow(&b, i == len(ifs)-1, fmt.Sprintf(f, in.Name, in.PTPCaps, in.RxTimestampCaps, in.MAC))
	}
	return b.String()
}

// ConfigText is the config file of state_path, as sfptpd writes it
// while it reads its configuration: "# Reconstructed from: FILE", then
// each section header and each option line of the file, as tokens
// joined by single blanks, with confidential values (ntp_key's)
// replaced by "********".
func ConfigText(c *config.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Reconstructed from: %s\n", c.File)
	for _, l := range c.Lexed {
		if l.Section != "" {
			fmt.Fprintf(&b, "\n[%s]\n", l.Section)
			continue
		}
		for i, tok := range l.Tokens {
			if i > 0 {
				b.WriteByte(' ')
				if config.Confidential(l.Tokens[0]) {
					tok = "********"
				}
			}
			b.WriteString(tok)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// writeAtomic writes data to dir/name through dir/.next.name and a
// rename, as sfptpd does, so a reader never sees a half-written file.
func writeAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, ".next."+name)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// rankSnapshots sets each snapshot's rank: its place (from 1) in the
// selection order.
func rankSnapshots(snaps []snapshot, cs []candidate) {
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		c, _ := compare(cs[idx[a]], cs[idx[b]])
		return c < 0
	})
	for r, i := range idx {
		snaps[i].rank = r + 1
	}
}

// staleStatePatterns are the files sfptpd deletes from state_path at
// start, so that nothing of an earlier run (an instance no longer
// configured) is mistaken for current state. Frequency corrections
// stay: they are meant to outlive a run.
var staleStatePatterns = []string{StateFilePrefix + "*", "stats-*", TopologyFile, InterfacesFile, PTPNodesFile, SyncInstancesFile, ".next.*"}

// cleanStateDir removes an earlier run's state files.
func (e *Engine) cleanStateDir() {
	dir := e.g.StatePath
	if dir == "" {
		return
	}
	for _, p := range staleStatePatterns {
		m, _ := filepath.Glob(filepath.Join(dir, p))
		for _, f := range m {
			if err := os.Remove(f); err != nil {
				e.log.Warn("could not remove old state file", "err", err)
			}
		}
	}
}

// writeState writes the state files for one interval, each atomically:
// state-NAME per instance, sync-instances, topology (for the selected
// instance), ptp-nodes (when there are PTP instances), interfaces, and
// once per start the config copy. A failure is logged once until the
// error changes, so that a read-only state_path does not flood the log.
func (e *Engine) writeState(snaps []snapshot) {
	dir := e.g.StatePath
	if dir == "" {
		return
	}
	err := os.MkdirAll(dir, 0o755)
	if err != nil {
		err = fmt.Errorf("create state_path: %w", err)
	}
	write := func(name, text string) {
		if err == nil {
			err = writeAtomic(dir, name, []byte(text))
		}
	}
	hasPTP := false
	for _, s := range snaps {
		st := s.st
		if !s.running {
			st.State = instance.Disabled
		}
		write(StateFilePrefix+s.st.Name, stateText(st, s.selected, s.selected && s.running && !s.blocked))
		if s.st.PTP != nil || s.st.Module == "ptp" {
			hasPTP = true
		}
		if s.selected {
			write(TopologyFile, topologyText(st))
		}
	}
	write(SyncInstancesFile, syncInstancesText(snaps))
	if hasPTP {
		write(PTPNodesFile, ptpNodesText(snaps))
	}
	list := e.opts.Interfaces
	if list == nil {
		list = SystemInterfaces
	}
	if ifs, lerr := list(); lerr == nil {
		write(InterfacesFile, interfacesText(ifs))
	} else if err == nil {
		err = fmt.Errorf("list interfaces: %w", lerr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil && !e.configWritten {
		if err = writeAtomic(dir, ConfigFile, []byte(ConfigText(e.cfg))); err == nil {
			e.configWritten = true
		}
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != e.lastStateErr {
		if err != nil {
			e.log.Error(fmt.Sprintf("cannot write state files in %s", dir), "err", err)
		} else {
			e.log.Info(fmt.Sprintf("state files in %s written again", dir))
		}
		e.lastStateErr = msg
	}
}

// logAlarmChangeLocked logs a change of r's alarms as sfptpd's engine
// does ("NAME: alarms changed: OLD -> NEW", notice); e.mu held.
func (e *Engine) logAlarmChangeLocked(r *record, alarms []string) {
	now := instance.SortAlarms(alarms)
	if slices.Equal(now, r.alarms) {
		return
	}
	e.log.Log(context.Background(), msglog.LevelNotice,
		fmt.Sprintf("%s: alarms changed: %s -> %s", r.cfg.Name, alarmsText(r.alarms), alarmsText(now)))
	r.alarms = now
}

// freqClockName is a clock's name in its freq-correction file, as
// sfptpd names it: a PHC ("phc0(eth0)") by its hardware identity, any
// other clock ("system", "virtual") by its name, the name restore uses.
func freqClockName(st instance.Status) string {
	if clockInterface(st.Clock) != "" && st.ClockID != "" {
		return st.ClockID
	}
	return st.Clock
}

// restoreFreqCorrection sets the daemon's clock to its saved frequency
// correction before any instance starts, so that the instances (whose
// servos start from the clock's current frequency) begin near the
// right frequency. A clock without a saved value keeps its frequency.
func (e *Engine) restoreFreqCorrection() {
	e.cleanStateDir()
	if !e.opts.PersistentCorrection || e.g.StatePath == "" || e.opts.Clock == nil {
		return
	}
	clk := e.opts.Clock
	ppb, err := freqcorr.Load(e.g.StatePath, clk.Name(), clk.MaxFreqPPB())
	if err != nil {
		if errors.Is(err, freqcorr.ErrNoData) {
			e.log.Info(fmt.Sprintf("clock %s: no saved frequency correction", clk.Name()), "err", err)
		} else {
			e.log.Warn(fmt.Sprintf("clock %s: could not load frequency correction", clk.Name()), "err", err)
		}
		return
	}
	if err := clk.AdjFreqPPB(ppb); err != nil {
		e.log.Error(fmt.Sprintf("clock %s: could not restore frequency correction", clk.Name()), "err", err)
		return
	}
	e.log.Info(fmt.Sprintf("clock %s: restored freq adj %.3f from file", clk.Name(), ppb))
}

// saveFreqCorrection saves the correction of each instance that
// disciplines its clock and is in sync, as sfptpd's PTP module does at
// every state save. Freerun touches no frequency and saves nothing.
func (e *Engine) saveFreqCorrection(snaps []snapshot) {
	if !e.opts.PersistentCorrection || e.g.StatePath == "" {
		return
	}
	for _, s := range snaps {
		st := s.st
		if !s.running || !s.selected || s.blocked || !st.Disciplining || !st.InSync || !hasFreqAdj(st) {
			continue
		}
		max := 0.0
		if e.opts.Clock != nil && e.opts.Clock.Name() == st.Clock {
			max = e.opts.Clock.MaxFreqPPB()
		}
		if err := freqcorr.Save(e.g.StatePath, freqClockName(st), st.FreqAdjPPB, max); err != nil {
			e.log.Debug("frequency correction not saved", "err", err)
		}
	}
}
