package ptp

import (
	"sort"

	"github.com/facebook/time/ptp/protocol"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// sfptpdSource is how sfptpd's realtime stats name a PTP instance's
// reference: the literal "gm", whatever the grandmaster's identity.
const sfptpdSource = "gm"

// e2eProfileID is IEEE 1588's Delay Request-Response default profile,
// the only one the port runs.
var e2eProfileID = [6]byte{0x00, 0x1b, 0x19, 0x00, 0x01, 0x00}

// fillSfptpd adds what the sfptpd-format outputs need to st; p.mu held.
func (p *Port) fillSfptpd(st *instance.Status) {
	st.Source = sfptpdSource
	st.ActiveInterface = p.cfg.Interface
	switch {
	case p.clk.Name() == "system":
		st.ClockID = "system" // sfptpd's identity of the system clock
	case p.self.ClockIdentity != 0:
		st.ClockID = sfptpdID(p.self.ClockIdentity)
	}
	if p.slaveState() {
		// Once the locked PI drives the clock, its output is the
		// frequency, split into its two terms.
		st.PTerm, st.ITerm, st.HasPI = p.disc.piTerms()
	}
	ps := &instance.PTPStatus{
		Domain:         int(p.cfg.Domain),
		Transport:      "IPv4",
		HWTimestamps:   p.hw,
		ProfileID:      e2eProfileID,
		ProfileName:    "default-e2e",
		ProfileVersion: "1.0",
		DelayMechanism: "end-to-end",
		TwoStep:        true, // the port sends two-step Syncs as master
		SlaveOnly:      p.cfg.Mode == ModeSlave,
		LocalPort:      int(p.self.PortNumber),
	}
	var ann *protocol.Announce
	switch {
	case p.slaveState() && p.parent != nil:
		ann = &p.parentAnn
		ps.ParentPort = int(p.parent.id.PortNumber)
		ps.TwoStep = p.meas.twoStep
	case p.state == instance.Master:
		ps.GMClockAccuracy = int(p.cfg.ClockAccuracy)
		ps.GMPriority1 = int(p.cfg.Priority1)
		ps.GMPriority2 = int(p.cfg.Priority2)
		flags, off := p.timeProperties()
		ps.PTPTimescale = flags&protocol.FlagPTPTimescale != 0
		if flags&protocol.FlagCurrentUtcOffsetValid != 0 {
			ps.UTCOffset = int(off)
		}
		ps.Leap59 = flags&protocol.FlagLeap59 != 0
		ps.Leap61 = flags&protocol.FlagLeap61 != 0
	}
	if ann != nil {
		ps.GMClockAccuracy = int(ann.GrandmasterClockQuality.ClockAccuracy)
		ps.GMPriority1 = int(ann.GrandmasterPriority1)
		ps.GMPriority2 = int(ann.GrandmasterPriority2)
		ps.PTPTimescale = ann.FlagField&protocol.FlagPTPTimescale != 0
		if ann.FlagField&protocol.FlagCurrentUtcOffsetValid != 0 {
			ps.UTCOffset = int(ann.CurrentUTCOffset)
		}
		ps.Leap59 = ann.FlagField&protocol.FlagLeap59 != 0
		ps.Leap61 = ann.FlagField&protocol.FlagLeap61 != 0
	}
	if p.foreign != nil {
		for id := range p.foreign.m {
			ps.Nodes = append(ps.Nodes, instance.Node{State: "master", ClockID: sfptpdID(id.ClockIdentity),
				PortNumber: int(id.PortNumber), Domain: int(p.cfg.Domain)})
		}
		// Map order is random; the file should not reshuffle each write.
		sort.Slice(ps.Nodes, func(i, j int) bool {
			if ps.Nodes[i].ClockID != ps.Nodes[j].ClockID {
				return ps.Nodes[i].ClockID < ps.Nodes[j].ClockID
			}
			return ps.Nodes[i].PortNumber < ps.Nodes[j].PortNumber
		})
	}
	st.PTP = ps
	p.fillLeap(st)
}
