package ptp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// levelNotice is the level of sfptpd's NOTICE lines, which slog lacks:
// between info and warning.
const levelNotice = slog.Level(2)

// Test modes the port carries out, named as sfptpd's testmode command
// names them.
const (
	testNoAnnounce     = "no_announce_pkts"
	testNoSync         = "no_sync_pkts"
	testNoFollowUps    = "no_follow_ups"
	testNoDelayResps   = "no_delay_resps"
	testJitter         = "timestamp_jitter"
	testTransparent    = "transparent_clock"
	testBoundaryChange = "boundary_clock_change"
	testGMChange       = "grandmaster_clock_change"
	testAdjustFreq     = "adjust_frequency"
	testLeap61         = "leap_second_61"
	testLeap59         = "leap_second_59"
	testLeapCancel     = "leap_second_cancel"
	testUTCOffset      = "utc_offset"
)

// Timestamp jitter types, in the order each timestamp_jitter command
// steps through them (sfptpd orders them so that the step after off
// is the rarest jitter).
const (
	jitterOff = iota
	jitterCorrupted
	jitterDefault
	jitterMild
	numJitterTypes
)

// jitterParams gives, for a jitter type, every how many sequence ids a
// timestamp is disturbed and the largest disturbance in ns, as sfptpd
// sets them.
func jitterParams(typ int) (every int, maxNS int) {
	switch typ {
	case jitterCorrupted:
		return 120, 500_000_000
	case jitterDefault:
		return 16, 50_000_000
	case jitterMild:
		return 1, 10_000
	}
	return 16, 0
}

// tcMaxCorrectionNS is the largest correction the transparent clock
// emulation adds (1 ms, as sfptpd's).
const tcMaxCorrectionNS = 1_000_000

// errNotMaster refuses a test mode that only a master can carry out.
var errNotMaster = errors.New("can only be used in PTP master mode")

// testState is what the test modes have set; p.mu guards it.
type testState struct {
	// Suppression of the messages a master sends.
	noAnnounce, noSync, noFollowUps, noDelayResps bool

	// timestamp_jitter: the type, and from it the period in
	// sequence ids and the bound in ns.
	jitterType  int
	jitterEvery int
	jitterMax   int

	// transparent_clock: on, corrections up to tcMaxCorrectionNS.
	transparent bool

	// boundary_clock_change: the step of its four-step cycle and,
	// while bcOn, the grandmaster identity and steps removed
	// announced instead of our own.
	bcState int
	bcOn    bool
	bcGM    protocol.ClockIdentity
	bcSteps uint16

	// grandmaster_clock_change: the step of its six-step cycle and
	// the clock quality (gmQualityOn) and priorities (gmPrioOn) it
	// set.
	gmState     int
	gmQualityOn bool
	gmClass     uint8
	gmAccuracy  uint8
	gmVariance  uint16
	gmPrioOn    bool
	gmP1, gmP2  uint8

	// The time properties a master announces (leap.go): the leap
	// second flags the engine's leap second state sets, and the UTC
	// offset utc_offset has moved (utcOffsetSet), which then counts as
	// valid.
	leap59, leap61 bool
	utcOffsetSet   bool
	utcOffset      int16
}

// enterMaster drops what becoming master resets in sfptpd's ptpd (its
// parent data set is rebuilt from the default data set): the emulated
// boundary clock's grandmaster and steps removed, and the announced
// priorities. The emulated clock quality is part of the default data
// set there and stays.
func (t *testState) enterMaster() {
	t.bcOn = false
	t.gmPrioOn = false
	// The leap flags are rebuilt too; the UTC offset utc_offset set is
	// kept in sfptpd's configuration and stays.
	t.leap59, t.leap61 = false, false
}

// TestMode carries out one of sfptpd's packet-level test modes (the
// engine's TestModer). Suppression modes toggle on each call; the
// others step through their cycles as sfptpd's do. On a master,
// utc_offset,N moves the announced UTC offset by N seconds, and
// leap_second_61/59/cancel set or clear the Announce's leap flag
// directly (the engine runs its leap second test itself and reaches the
// flags through UpdateLeapSecond). A mode the port does
// not implement returns an error wrapping errors.ErrUnsupported. Safe
// for concurrent use.
func (p *Port) TestMode(mode string, params [3]int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &p.test
	switch mode {
	case testNoAnnounce:
		return p.toggleSuppression(&t.noAnnounce, "No Announce Packets", "no announce pkts", true)
	case testNoSync:
		return p.toggleSuppression(&t.noSync, "No Sync Packets", "no sync pkts", true)
	case testNoFollowUps:
		return p.toggleSuppression(&t.noFollowUps, "No Follow Ups", "no follow ups", true)
	case testNoDelayResps:
		// A slave never sends Delay_Resps, but sfptpd sets the
		// suppression anyway, for when the port becomes master.
		if p.state != instance.Master {
			p.log.Warn(fmt.Sprintf("ptp %s: No Delay Responses test mode is generally only useful in PTP master mode", p.cfg.Name))
		}
		return p.toggleSuppression(&t.noDelayResps, "", "no delay resps", false)
	case testJitter:
		t.jitterType = (t.jitterType + 1) % numJitterTypes
		t.jitterEvery, t.jitterMax = jitterParams(t.jitterType)
		p.notice(fmt.Sprintf("test-mode: timestamp jitter set to type %d", t.jitterType))
		return nil
	case testTransparent:
		t.transparent = !t.transparent
		if t.transparent {
			p.notice("test-mode: transparent clock emulation enabled with up to 1ms correction field")
		} else {
			p.notice("test-mode: transparent clock emulation disabled")
		}
		return nil
	case testBoundaryChange:
		if err := p.masterOnly("Boundary clock"); err != nil {
			return err
		}
		p.boundaryClockChange()
		return nil
	case testGMChange:
		if err := p.masterOnly("Grandmaster clock"); err != nil {
			return err
		}
		p.grandmasterClockChange()
		return nil
	case testAdjustFreq:
		// sfptpd sets the local reference clock's frequency
		// adjustment to the value; the servo takes over again from
		// its next sample.
		if err := p.disc.setFreq(float64(params[0])); err != nil {
			return fmt.Errorf("ptp %s: adjusting clock %s frequency: %w", p.cfg.Name, p.clk.Name(), err)
		}
		return nil
	case testLeap61, testLeap59, testLeapCancel:
		if err := p.masterOnly("Leap second"); err != nil {
			return err
		}
		p.setLeapFlags(mode == testLeap59, mode == testLeap61)
		return nil
	case testUTCOffset:
		if err := p.masterOnly("UTC offset"); err != nil {
			return err
		}
		p.shiftUTCOffset(params[0])
		return nil
	}
	return fmt.Errorf("ptp %s: test mode %s: %w", p.cfg.Name, mode, errors.ErrUnsupported)
}

// masterOnly refuses a master-only test mode on a port in another
// state, with sfptpd's warning; p.mu held.
func (p *Port) masterOnly(what string) error {
	if p.state == instance.Master {
		return nil
	}
	p.log.Warn(fmt.Sprintf("ptp %s: %s test mode can only be used in PTP master mode", p.cfg.Name, what))
	return fmt.Errorf("ptp %s: %s test mode %w (port is %s)", p.cfg.Name, what, errNotMaster, p.state)
}

// toggleSuppression flips one message suppression; p.mu held.
func (p *Port) toggleSuppression(flag *bool, what, logName string, masterOnly bool) error {
	if masterOnly {
		if err := p.masterOnly(what); err != nil {
			return err
		}
	}
	*flag = !*flag
	state := "dis"
	if *flag {
		state = "en"
	}
	p.notice(fmt.Sprintf("test-mode: %s: %sabled", logName, state))
	return nil
}

// boundaryClockChange steps the emulated upstream: 0 announces us as
// grandmaster; 1, 2 and 3 another grandmaster (our identity with its
// first byte inverted) 0, 1 and 2 steps away; p.mu held.
func (p *Port) boundaryClockChange() {
	t := &p.test
	t.bcState = (t.bcState + 1) % 4
	gm := p.self.ClockIdentity
	steps := uint16(0)
	if t.bcState > 0 {
		gm ^= protocol.ClockIdentity(0xff) << 56
		steps = uint16(t.bcState - 1)
	}
	t.bcOn, t.bcGM, t.bcSteps = true, gm, steps
	rel := "="
	if t.bcState != 0 {
		rel = "!="
	}
	p.notice(fmt.Sprintf("test-mode: boundary clock emulation: gm %s parent and steps removed = %d", rel, steps))
}

// grandmasterClockChange steps through sfptpd's cycle, each step
// improving one attribute of the configured data set by two: 0 none,
// 1 priority2, 2 variance, 3 accuracy, 4 class, 5 priority1; p.mu held.
func (p *Port) grandmasterClockChange() {
	t := &p.test
	t.gmState = (t.gmState + 1) % 6
	class, acc, variance := p.cfg.ClockClass, p.cfg.ClockAccuracy, uint16(ourVariance)
	p1, p2 := p.cfg.Priority1, p.cfg.Priority2
	// The fields are unsigned, as on the wire: a configured 0 or 1
	// wraps, as it does in sfptpd.
	switch t.gmState {
	case 1:
		p2 -= 2
	case 2:
		variance -= 2
	case 3:
		acc -= 2
	case 4:
		class -= 2
	case 5:
		p1 -= 2
	}
	t.gmQualityOn, t.gmClass, t.gmAccuracy, t.gmVariance = true, class, acc, variance
	t.gmPrioOn, t.gmP1, t.gmP2 = true, p1, p2
	p.notice(fmt.Sprintf("test-mode: grandmaster clock change: class %d, accuracy %d, o.s.l.v %d, priority1 %d, priority2 %d",
		class, acc, variance, p1, p2))
}

// ourVariance is the offsetScaledLogVariance we announce: unknown.
const ourVariance = 0xFFFF

func (p *Port) notice(msg string) {
	p.log.Log(context.Background(), levelNotice, msg)
}

// ownQuality is our default data set's clock quality, as the
// grandmaster_clock_change test mode may have set it; p.mu held.
func (p *Port) ownQuality() (class, accuracy uint8, variance uint16) {
	if t := &p.test; t.gmQualityOn {
		return t.gmClass, t.gmAccuracy, t.gmVariance
	}
	return p.cfg.ClockClass, p.cfg.ClockAccuracy, ourVariance
}

// announcedDS is what a master announces about its grandmaster.
type announcedDS struct {
	gm         protocol.ClockIdentity
	steps      uint16
	p1, p2     uint8
	class, acc uint8
	variance   uint16
}

// announced is what we announce as master, with the boundary and
// grandmaster clock change emulations applied; p.mu held.
func (p *Port) announced() announcedDS {
	a := announcedDS{gm: p.self.ClockIdentity, p1: p.cfg.Priority1, p2: p.cfg.Priority2}
	a.class, a.acc, a.variance = p.ownQuality()
	t := &p.test
	if t.bcOn {
		a.gm, a.steps = t.bcGM, t.bcSteps
	}
	if t.gmPrioOn {
		a.p1, a.p2 = t.gmP1, t.gmP2
	}
	return a
}

// txEvent turns an event transmit timestamp into the time the message
// left, adding ptp_tx_latency as sfptpd does; a lost timestamp (zero)
// stays zero.
func (p *Port) txEvent(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(p.cfg.TxLatency)
}

// rxEvent turns an event receive timestamp into the time the message
// arrived, subtracting ptp_rx_latency as sfptpd does, and then applies
// the timestamp_jitter test mode to every jitterEvery-th sequence id;
// p.mu held.
func (p *Port) rxEvent(t time.Time, seq uint16, what string) time.Time {
	t = t.Add(-p.cfg.RxLatency)
	j := p.jitter(seq)
	if j != 0 {
		t = t.Add(time.Duration(j))
		p.log.Info(fmt.Sprintf("ptp %s: added jitter %d to %s RX timestamp", p.cfg.Name, j, what))
	}
	return t
}

// jitter returns the timestamp_jitter disturbance for a message, in
// ns: uniform in (-max, max), on sequence ids that are multiples of the
// period, 0 otherwise; p.mu held.
func (p *Port) jitter(seq uint16) int32 {
	t := &p.test
	if t.jitterType == jitterOff || t.jitterMax == 0 || int(seq)%t.jitterEvery != 0 {
		return 0
	}
	return int32((p.rng.Float64() - 0.5) * 2 * float64(t.jitterMax))
}

// tcCorrection returns, while the transparent clock emulation is on, a
// residence time in whole ns in [0, 1 ms) to add both to a timestamp and
// to the message's correction field, so that the measurement is
// unchanged but a transparent clock appears to be on the path; else 0.
// p.mu held.
func (p *Port) tcCorrection(what string) float64 {
	if !p.test.transparent {
		return 0
	}
	c := math.Floor(p.rng.Float64() * tcMaxCorrectionNS)
	p.log.Info(fmt.Sprintf("ptp %s: added %.3f ns to correction field of %s", p.cfg.Name, c, what))
	return c
}
