package ptp

import (
	"fmt"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// Leap seconds at the port. As a slave the port reports its parent's
// leap flags and UTC offset in its Status, from which the engine
// schedules the leap second; around it the engine turns on the port's
// leap guard, and at it steps the port's clock when that clock counts
// UTC. As a master the port announces the leap flags the engine's leap
// second state gives it, and the UTC offset utc_offset moves.

// UpdateLeapSecond implements engine.LeapAnnouncer: a master announces
// the pending leap second in its Announce flags. As in sfptpd's ptpd, a
// port in another state ignores it (a slave's flags are its parent's),
// and becoming master starts with no flag set. Safe for concurrent use.
func (p *Port) UpdateLeapSecond(leap59, leap61 bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != instance.Master {
		return
	}
	p.test.leap59, p.test.leap61 = leap59, leap61
}

// setLeapFlags is the leap_second_* test modes on a master; p.mu held.
func (p *Port) setLeapFlags(leap59, leap61 bool) {
	p.test.leap59, p.test.leap61 = leap59, leap61
	p.notice(fmt.Sprintf("test-mode: announcing leap59 %d, leap61 %d", b2i(leap59), b2i(leap61)))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// shiftUTCOffset is the utc_offset test mode: the announced UTC offset
// moves by n seconds (16-bit, wrapping as sfptpd's does) and is from
// then on flagged valid, as sfptpd's is; p.mu held.
func (p *Port) shiftUTCOffset(n int) {
	_, off := p.timeProperties()
	p.test.utcOffset = off + int16(n)
	p.test.utcOffsetSet = true
	p.notice(fmt.Sprintf("test-mode: set UTC offset = %d", p.test.utcOffset))
}

// timeProperties returns the Announce flags and UTC offset a master
// sends: a clock counting TAI (a PHC) is on the PTP timescale with the
// built-in offset flagged valid; one counting UTC announces the
// arbitrary timescale; utc_offset's offset and the leap flags come on
// top. p.mu held.
func (p *Port) timeProperties() (flags uint16, utcOffset int16) {
	utcOffset = defaultUTCOffset
	if !p.utcClock {
		flags |= protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid
	}
	t := &p.test
	if t.utcOffsetSet {
		utcOffset = t.utcOffset
		flags |= protocol.FlagCurrentUtcOffsetValid
	}
	if t.leap59 {
		flags |= protocol.FlagLeap59
	}
	if t.leap61 {
		flags |= protocol.FlagLeap61
	}
	return flags, utcOffset
}

// LeapGuard implements engine.LeapGuarder: while on, no measurement
// reaches the servo or the path delay filter (Syncs still count as
// received, so no alarm is raised), and the half-made measurements are
// dropped at each change, so that none straddles the leap second. Safe
// for concurrent use.
func (p *Port) LeapGuard(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leapGuard == on {
		return
	}
	p.leapGuard = on
	p.meas.reset()
	if on {
		p.log.Info(fmt.Sprintf("ptp %s: leap second guard: clock updates suspended", p.cfg.Name))
	} else {
		p.log.Info(fmt.Sprintf("ptp %s: leap second guard: clock updates resumed", p.cfg.Name))
	}
}

// StepLeap implements engine.LeapStepper: a clock counting UTC is
// stepped by d at the leap second; a PHC counts TAI, which has no leap
// seconds, and is left alone. Safe for concurrent use.
func (p *Port) StepLeap(d time.Duration) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.utcClock {
		return false, nil
	}
	if err := p.disc.step(d); err != nil {
		return false, fmt.Errorf("ptp %s: stepping clock %s for the leap second: %w", p.cfg.Name, p.clk.Name(), err)
	}
	p.meas.reset()
	return true, nil
}

// fillLeap adds the leap second flags, the UTC offset and the announce
// interval to st: a slave's from its parent's last Announce, a master's
// from what it announces; p.mu held.
func (p *Port) fillLeap(st *instance.Status) {
	st.AnnounceInterval = logInterval(p.cfg.AnnounceInterval)
	var flags uint16
	switch {
	case p.slaveState() && p.parent != nil:
		flags = p.parentAnn.FlagField
		st.UTCOffset = int(p.parentAnn.CurrentUTCOffset)
	case p.state == instance.Master:
		var off int16
		flags, off = p.timeProperties()
		st.UTCOffset = int(off)
	default:
		return
	}
	st.UTCOffsetValid = flags&protocol.FlagCurrentUtcOffsetValid != 0
	st.Leap59 = flags&protocol.FlagLeap59 != 0
	st.Leap61 = flags&protocol.FlagLeap61 != 0
}
