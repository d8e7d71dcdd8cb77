package ptp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// Message lengths on the wire (IEEE 1588-2019 table 43 ff.), without
// TLVs.
const (
	lenAnnounce  = 64
	lenSync      = 44
	lenFollowUp  = 44
	lenDelayResp = 54
)

// Control field values (the obsolete IEEE 1588-2008 field that v2.0
// peers still read).
const (
	ctlSync      = 0
	ctlDelayReq  = 1
	ctlFollowUp  = 2
	ctlDelayResp = 3
	ctlOther     = 5
)

const (
	// defaultUTCOffset is TAI-UTC since 2017, announced by masters
	// whose clock counts UTC and assumed when a master gives none.
	defaultUTCOffset = 37
	// faultRetry is how long a FAULTY port waits before reopening.
	faultRetry = 5 * time.Second
	// missedRespAlarm is how many Delay_Reqs may go unanswered before
	// the no-delay-resps alarm.
	missedRespAlarm = 3
	// syncTimeoutIntervals is how many sync intervals without a Sync
	// raise no-sync-pkts.
	syncTimeoutIntervals = 6
	// inSyncSamples is how many consecutive offsets within the
	// threshold make the port in sync.
	inSyncSamples = 4
	// malformedLogEvery rate-limits the log line for bad packets.
	malformedLogEvery = 10 * time.Second
	// timeSourceInternal is "internal oscillator" (IEEE 1588 table 6).
	timeSourceInternal = 0xA0
)

// Alarm names. sfptpd has no alarm for missing Announces (its PTP
// port just falls back to listening); ptpd keeps one of its own.
const (
	AlarmNoAnnounce   = "no-announce-pkts"
	AlarmNoSync       = instance.AlarmNoSyncPkts
	AlarmNoDelayResps = instance.AlarmNoDelayResps
)

// Port is one PTP ordinary clock port. It owns the event loop, the state
// machine and the choice of master (BMCA, with the foreign master table
// of bmca.go), and holds one of each part a role runs: master (the
// master's sends), measurements (the slave's timestamp pipeline) and
// discipline (what the slave does to its clock). All protocol work
// happens in Run's goroutine; the mutex lets Status and the control
// calls (control.go) read and steer it from others.
type Port struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger
	// utcClock: the clock counts UTC (the system clock, a virtual
	// clock over it), not TAI like a PHC. A master whose clock counts
	// UTC does not claim the PTP timescale, and a slave of a master
	// that does takes the UTC offset out.
	utcClock bool
	// open makes the transport; tests replace it.
	open func() (transport, bool, protocol.ClockIdentity, error)

	mu      sync.Mutex
	tr      transport
	hw      bool
	state   instance.State
	self    protocol.PortIdentity
	foreign *foreignTable
	rng     *mrand.Rand

	parent    *foreign
	parentAnn protocol.Announce

	// The parts, run from the event loop: the master's sends
	// (master.go), the slave's timestamp pipeline (measure.go) and
	// its clock discipline (servo.go).
	master master
	meas   measurements
	disc   discipline

	syncAlarm   bool
	annAlarm    bool
	txErr       error
	badCount    uint64
	badSinceLog uint64
	badLogged   time.Time

	test testState // what sfptpd's test modes set (testmode.go)
	// leapGuard: the engine's leap second guard is on (leap.go).
	leapGuard bool
}

// New makes a port that disciplines clk. The interface is looked up when
// Run starts (and again after a fault), so a port can be made for an
// interface that is not there yet.
func New(cfg Config, clk clock.Clock, log *slog.Logger) (*Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ptp %s: %w", cfg.Name, err)
	}
	if clk == nil {
		return nil, errors.New("ptp: no clock")
	}
	if log == nil {
		log = slog.Default()
	}
	p := newPort(cfg, clk, log.With("instance", cfg.Name, "interface", cfg.Interface))
	p.open = p.openUDP
	return p, nil
}

func newPort(cfg Config, clk clock.Clock, log *slog.Logger) *Port {
	if cfg.SyncThreshold == 0 {
		cfg.SyncThreshold = 10 * time.Microsecond
		if cfg.Timestamping == TimestampingHardware {
			cfg.SyncThreshold = time.Microsecond
		}
	}
	_, isPHC := clk.(*clock.PHC)
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	return &Port{
		cfg:      cfg,
		clk:      clk,
		log:      log,
		utcClock: !isPHC,
		state:    instance.Initializing,
		foreign:  newForeignTable(),
		rng:      mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
		meas:     newMeasurements(cfg.DelayFilter),
		disc:     newDiscipline(cfg, clk, log),
	}
}

// openUDP resolves the interface, picks the timestamping and opens the
// sockets.
func (p *Port) openUDP() (transport, bool, protocol.ClockIdentity, error) {
	ifi, err := net.InterfaceByName(p.cfg.Interface)
	if err != nil {
		return nil, false, 0, fmt.Errorf("interface %s: %w", p.cfg.Interface, err)
	}
	hw := false
	switch p.cfg.Timestamping {
	case TimestampingHardware:
		ok, _ := hardwareCapable(ifi.Name)
		if !ok {
			return nil, false, 0, fmt.Errorf("interface %s has no hardware timestamping", ifi.Name)
		}
		hw = true
	case TimestampingAuto:
		hw, _ = hardwareCapable(ifi.Name)
		if _, isPHC := p.clk.(*clock.PHC); hw && !isPHC {
			// Hardware timestamps are on the PHC's timescale; a
			// port given another clock must use software ones.
			hw = false
		}
	}
	id, err := protocol.NewClockIdentity(ifi.HardwareAddr)
	if err != nil {
		var b [8]byte
		_, _ = rand.Read(b[:])
		b[0] |= 0x02 // locally administered
		id = protocol.ClockIdentity(binary.BigEndian.Uint64(b[:]))
		p.log.Warn("interface has no MAC address; using a random clock identity", "identity", sfptpdID(id))
	}
	tr, err := openUDP(ifi, hw)
	if err != nil {
		return nil, false, 0, err
	}
	return tr, hw, id, nil
}

// Name implements instance.Instance.
func (p *Port) Name() string { return p.cfg.Name }

// Run implements instance.Instance: it opens the sockets and runs the
// port until ctx ends. Failures put the port in FAULTY and it retries.
func (p *Port) Run(ctx context.Context) error {
	for {
		p.mu.Lock()
		p.setState(instance.Initializing, "starting")
		p.mu.Unlock()
		tr, hw, id, err := p.open()
		if err == nil {
			err = p.runWith(ctx, tr, hw, id)
			tr.close()
		}
		if ctx.Err() != nil {
			return nil
		}
		p.mu.Lock()
		p.tr = nil
		p.setState(instance.Faulty, err.Error())
		p.disc.enterHoldover()
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(faultRetry):
		}
	}
}

func (p *Port) runWith(ctx context.Context, tr transport, hw bool, id protocol.ClockIdentity) error {
	rctx, cancel := context.WithCancel(ctx)
	rx := make(chan packet, 64)
	errc := make(chan error, 1)
	go func() { errc <- tr.run(rctx, rx) }()
	defer func() {
		cancel()
		tr.close()
		<-errc
	}()

	now := time.Now()
	p.mu.Lock()
	p.start(tr, hw, id, now)
	next := p.tick(now)
	p.mu.Unlock()
	p.log.Info("port started", "mode", p.cfg.Mode, "clock", p.clk.Name(), "identity", sfptpdID(id),
		"timestamping", map[bool]string{true: "hardware", false: "software"}[hw])

	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			errc <- err // for the deferred wait
			if err == nil {
				err = errors.New("receiver stopped")
			}
			return err
		case pk := <-rx:
			now = time.Now()
			p.mu.Lock()
			p.handle(pk, now)
		case <-timer.C:
			now = time.Now()
			p.mu.Lock()
		}
		next = p.tick(now)
		err := p.txErr
		p.txErr = nil
		p.mu.Unlock()
		if err != nil {
			return err
		}
		timer.Reset(time.Until(next))
	}
}

// start resets the protocol state for a fresh transport; p.mu held.
func (p *Port) start(tr transport, hw bool, id protocol.ClockIdentity, now time.Time) {
	p.tr = tr
	p.hw = hw
	p.self = protocol.PortIdentity{ClockIdentity: id, PortNumber: 1}
	p.foreign = newForeignTable()
	p.parent = nil
	p.meas.restart(now)
	p.disc.newMaster()
	p.meas.dreqIvl = logInterval(p.cfg.DelayReqInterval)
	p.meas.syncIvl = logInterval(p.cfg.SyncInterval)
	p.master.nextSync, p.master.nextAnnounce = now, now
	p.decide(now)
}

// setState changes state and logs why; p.mu held.
func (p *Port) setState(s instance.State, why string) {
	if p.state == s {
		return
	}
	from := p.state
	p.state = s
	p.log.Log(context.Background(), levelNotice, p.stateLine())
	p.log.Debug("port state", "from", from, "to", s, "reason", why)
	if s != instance.Slave {
		p.disc.outOfSync()
	}
}

func (p *Port) slaveState() bool {
	return p.state == instance.Slave || p.state == instance.Uncalibrated
}

// defaultDS is our own data set (D0).
func (p *Port) defaultDS() Dataset {
	class, acc, variance := p.ownQuality()
	return Dataset{
		Priority1:  p.cfg.Priority1,
		ClockClass: class,
		Accuracy:   acc,
		Variance:   variance,
		Priority2:  p.cfg.Priority2,
		GM:         p.self.ClockIdentity,
		Sender:     p.self,
		Receiver:   p.self,
	}
}

// decide runs the state decision (IEEE 1588-2019 9.3.3) for our single
// port: a slave-only port follows the best qualified foreign master or
// listens; a master-only port is MASTER unless a foreign master beats
// our own data set, then PASSIVE.
func (p *Port) decide(now time.Time) {
	if p.state == instance.Faulty || p.tr == nil {
		return
	}
	best := p.foreign.best(now)
	switch p.cfg.Mode {
	case ModeMaster:
		if best == nil || Compare(p.defaultDS(), best.ds) < 0 {
			if p.state != instance.Master {
				p.master.begin(now, logInterval(p.cfg.SyncInterval))
				p.test.enterMaster()
			}
			p.setState(instance.Master, "our clock is the best master")
		} else {
			p.setState(instance.Passive, "better master "+best.id.String())
		}
		p.parent = nil
	default:
		if best == nil {
			if p.parent != nil {
				p.parent = nil
				p.disc.enterHoldover()
			}
			p.setState(instance.Listening, "no qualified master")
			return
		}
		if p.parent == nil || p.parent.id != best.id {
			old := "none"
			if p.parent != nil {
				old = p.parent.id.String()
				p.disc.enterHoldover()
			}
			p.parent = best
			p.parentAnn = *best.last
			p.meas.restart(now)
			p.disc.newMaster()
			p.log.Info("new master", "from", old, "to", best.id.String(),
				"grandmaster", sfptpdID(best.ds.GM), "priority1", best.ds.Priority1, "class", best.ds.ClockClass)
			p.setState(instance.Uncalibrated, "new master")
		}
		if p.state != instance.Slave && p.state != instance.Uncalibrated {
			p.setState(instance.Uncalibrated, "master selected")
		}
	}
}

// tick runs the timers and returns when it next needs to run; p.mu held.
func (p *Port) tick(now time.Time) time.Time {
	next := now.Add(time.Second)
	if p.tr == nil {
		return next
	}
	// Announce receipt timeout for every foreign master, the parent
	// included.
	changed := false
	for id, f := range p.foreign.m {
		last := f.times
		if len(last) == 0 || now.Sub(last[len(last)-1]) > time.Duration(p.cfg.AnnounceReceiptTimeout)*f.interval {
			if p.parent != nil && p.parent.id == id {
				p.log.Warn(fmt.Sprintf("ptp %s: failed to receive Announce within %.3f seconds", p.cfg.Name,
					(time.Duration(p.cfg.AnnounceReceiptTimeout) * f.interval).Seconds()))
			}
			p.foreign.remove(id)
			changed = true
		} else if d := last[len(last)-1].Add(time.Duration(p.cfg.AnnounceReceiptTimeout) * f.interval); d.Before(next) {
			next = d.Add(time.Millisecond)
		}
	}
	if changed {
		p.decide(now)
	}
	switch p.state {
	case instance.Master:
		next = earliest(next, p.master.tick(p, now))
	case instance.Slave, instance.Uncalibrated:
		if !now.Before(p.meas.nextDelayReq) {
			p.sendDelayReq()
			p.meas.scheduleDelayReq(now, p.rng.Float64())
		}
		next = earliest(next, p.meas.nextDelayReq)
		deadline := p.meas.syncDeadline()
		if now.After(deadline) {
			if !p.syncAlarm {
				p.log.Warn(fmt.Sprintf("ptp %s: failed to receive Sync for sequence number %d for %.1f seconds",
					p.cfg.Name, p.meas.syncSeq+1, now.Sub(p.meas.lastSync).Seconds()))
				p.syncAlarm = true
				p.disc.enterHoldover()
			}
		} else {
			next = earliest(next, deadline.Add(time.Millisecond))
		}
	}
	p.annAlarm = p.cfg.Mode == ModeSlave && (p.state == instance.Listening)
	return next
}

func earliest(t time.Time, more ...time.Time) time.Time {
	for _, m := range more {
		if m.Before(t) {
			t = m
		}
	}
	return t
}

// toClock maps a packet timestamp onto the port's clock: hardware
// timestamps are on the PHC already, software ones on CLOCK_REALTIME.
func (p *Port) toClock(ts time.Time) (time.Time, error) {
	if p.hw {
		return ts, nil
	}
	return clock.ToClock(p.clk, ts)
}

// header builds a message header from this port.
func (p *Port) header(t protocol.MessageType, length int, seq uint16, ctl uint8, logIvl int8) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, 0),
		Version:            protocol.Version,
		MessageLength:      uint16(length),
		DomainNumber:       p.cfg.Domain,
		SourcePortIdentity: p.self,
		SequenceID:         seq,
		ControlField:       ctl,
		LogMessageInterval: protocol.LogInterval(logIvl),
	}
}

func (p *Port) clockNow() time.Time {
	t, err := p.clk.Now()
	if err != nil {
		return time.Now()
	}
	return t
}

// sendEvent sends an event message, returning its transmit time on our
// clock (zero when the timestamp was lost).
func (p *Port) sendEvent(m protocol.BinaryMarshalerTo) time.Time {
	var buf [128]byte
	n, err := m.MarshalBinaryTo(buf[:])
	if err != nil {
		p.txErr = err
		return time.Time{}
	}
	ts, err := p.tr.sendEvent(buf[:n])
	if err != nil {
		if errors.Is(err, errNoTXTimestamp) {
			p.log.Warn("transmit timestamp lost", "err", err)
			return time.Time{}
		}
		p.txErr = err
		return time.Time{}
	}
	t, err := p.toClock(ts)
	if err != nil {
		p.log.Warn("mapping transmit timestamp", "err", err)
		return time.Time{}
	}
	return t
}

// errNoTXTimestamp marks a sent message whose timestamp never came: not
// a fault, the measurement is just skipped.
var errNoTXTimestamp = errors.New("no transmit timestamp")

func (p *Port) sendGeneral(m protocol.BinaryMarshalerTo) {
	var buf [128]byte
	n, err := m.MarshalBinaryTo(buf[:])
	if err == nil {
		err = p.tr.sendGeneral(buf[:n])
	}
	if err != nil {
		p.txErr = err
	}
}

// sendDelayReq sends a slave's Delay_Req and hands its transmit time to
// the timestamp pipeline.
func (p *Port) sendDelayReq() {
	seq := p.meas.nextDelayReqSeq()
	m := &protocol.SyncDelayReq{
		Header:           p.header(protocol.MessageDelayReq, lenSync, seq, ctlDelayReq, 0x7f),
		SyncDelayReqBody: protocol.SyncDelayReqBody{OriginTimestamp: protocol.NewTimestamp(p.clockNow())},
	}
	p.meas.delayReqSent(seq, p.txEvent(p.sendEvent(m)))
}

// bad counts a malformed packet and logs, at most every
// malformedLogEvery, how many there were.
func (p *Port) bad(now time.Time, why string, err error) {
	p.badCount++
	p.badSinceLog++
	if now.Sub(p.badLogged) < malformedLogEvery {
		return
	}
	p.log.Warn("malformed packets dropped", "count", p.badSinceLog, "total", p.badCount, "last", why, "err", err)
	p.badSinceLog = 0
	p.badLogged = now
}

// handle parses and acts on one received packet; p.mu held. Every
// length and field is checked before use: the packet may be anything.
func (p *Port) handle(pk packet, now time.Time) {
	b := pk.b
	if len(b) < 34 {
		p.bad(now, "short packet", fmt.Errorf("%d bytes", len(b)))
		return
	}
	if b[1]&protocol.MajorVersionMask != 2 {
		p.bad(now, "not PTPv2", fmt.Errorf("version %#x", b[1]))
		return
	}
	if b[0]>>4 != 0 {
		return // another transport-specific profile (802.1AS): not ours
	}
	l := int(binary.BigEndian.Uint16(b[2:]))
	if l < 34 || l > len(b) {
		p.bad(now, "bad message length", fmt.Errorf("length %d in %d bytes", l, len(b)))
		return
	}
	b = b[:l]
	if b[4] != p.cfg.Domain {
		return
	}
	if protocol.ClockIdentity(binary.BigEndian.Uint64(b[20:])) == p.self.ClockIdentity {
		return // our own message
	}
	switch protocol.MessageType(b[0] & 0x0f) {
	case protocol.MessageSync, protocol.MessageDelayReq:
		var m protocol.SyncDelayReq
		if err := m.UnmarshalBinary(b); err != nil {
			p.bad(now, "bad Sync/Delay_Req", err)
			return
		}
		if pk.ts.IsZero() {
			p.bad(now, "event message without timestamp", nil)
			return
		}
		if m.MessageType() == protocol.MessageSync {
			p.onSync(&m, pk.ts, now)
		} else if p.state == instance.Master {
			p.master.delayResp(p, &m, pk.ts)
		}
	case protocol.MessageFollowUp:
		var m protocol.FollowUp
		if err := m.UnmarshalBinary(b); err != nil {
			p.bad(now, "bad Follow_Up", err)
			return
		}
		p.onFollowUp(&m, now)
	case protocol.MessageDelayResp:
		var m protocol.DelayResp
		if err := m.UnmarshalBinary(b); err != nil {
			p.bad(now, "bad Delay_Resp", err)
			return
		}
		p.onDelayResp(&m)
	case protocol.MessageAnnounce:
		var m protocol.Announce
		if err := m.UnmarshalBinary(b); err != nil {
			p.bad(now, "bad Announce", err)
			return
		}
		p.onAnnounce(&m, now)
	}
}

func (p *Port) fromParent(h *protocol.Header) bool {
	return p.slaveState() && p.parent != nil && h.SourcePortIdentity == p.parent.id
}

func (p *Port) onAnnounce(a *protocol.Announce, now time.Time) {
	if a.StepsRemoved >= 255 {
		return
	}
	if a.GrandmasterIdentity == p.self.ClockIdentity {
		return // our own grandmaster coming back: a loop
	}
	if !p.foreign.add(a, p.self, now) {
		p.bad(now, "foreign master table full", nil)
		return
	}
	if p.parent != nil && a.SourcePortIdentity == p.parent.id {
		p.parentAnn = *a
		p.parentAnn.TLVs = nil
	}
	p.decide(now)
}

func (p *Port) onSync(m *protocol.SyncDelayReq, rx time.Time, now time.Time) {
	if !p.fromParent(&m.Header) {
		return
	}
	if v := int8(m.LogMessageInterval); v >= -7 && v <= 7 {
		p.meas.syncIvl = logInterval(v)
		p.disc.servo.SetSyncInterval(p.meas.syncIvl)
	}
	t2, err := p.toClock(rx)
	if err != nil {
		p.log.Warn("mapping receive timestamp", "err", err)
		return
	}
	t2 = p.rxEvent(t2, m.SequenceID, "sync")
	p.meas.syncSeq = m.SequenceID
	corr := m.CorrectionField.Nanoseconds()
	if math.IsInf(corr, 0) {
		p.bad(now, "Sync correction too big", nil)
		return
	}
	if c := p.tcCorrection("sync"); c != 0 {
		t2, corr = t2.Add(time.Duration(c)), corr+c
	}
	p.meas.twoStep = m.FlagField&protocol.FlagTwoStep != 0
	if p.meas.twoStep {
		if s, ok := p.meas.twoStepSync(m.SequenceID, t2, corr); ok {
			p.measure(s, now)
		}
		return
	}
	if m.OriginTimestamp.Empty() {
		p.bad(now, "one-step Sync without origin timestamp", nil)
		return
	}
	p.measure(syncTimes{t1: m.OriginTimestamp.Time(), corr: corr, t2: t2}, now)
}

func (p *Port) onFollowUp(m *protocol.FollowUp, now time.Time) {
	if !p.fromParent(&m.Header) {
		return
	}
	corr := m.CorrectionField.Nanoseconds()
	if m.PreciseOriginTimestamp.Empty() || math.IsInf(corr, 0) {
		p.bad(now, "Follow_Up without a usable timestamp", nil)
		return
	}
	t1 := m.PreciseOriginTimestamp.Time()
	c := p.tcCorrection("follow up")
	corr += c
	if s, ok := p.meas.followUp(m.SequenceID, t1, corr, time.Duration(c)); ok {
		p.measure(s, now)
	}
}

// utcShift is what to add to (slave - master) differences: a master on
// the PTP timescale counts TAI, ahead of our UTC clock by the offset.
func (p *Port) utcShift() float64 {
	if !p.utcClock || p.parent == nil || p.parentAnn.FlagField&protocol.FlagPTPTimescale == 0 {
		return 0
	}
	off := int64(p.parentAnn.CurrentUTCOffset)
	if p.parentAnn.FlagField&protocol.FlagCurrentUtcOffsetValid == 0 && off < defaultUTCOffset {
		off = defaultUTCOffset
	}
	return float64(off) * 1e9
}

// measure completes a Sync and, once the path delay is known, feeds the
// offset to the discipline.
func (p *Port) measure(s syncTimes, now time.Time) {
	p.meas.syncDone(s, p.utcShift(), now)
	if p.syncAlarm {
		p.syncAlarm = false
		p.log.Info("Sync messages back")
	}
	if p.leapGuard {
		// No offset, and (msValid false) no path delay, across a
		// leap second (leap.go).
		p.meas.msValid = false
		return
	}
	if off, ok := p.meas.offset(); ok {
		p.sample(off, now)
	}
}

func (p *Port) onDelayResp(m *protocol.DelayResp) {
	if !p.fromParent(&m.Header) || m.RequestingPortIdentity != p.self {
		return
	}
	var t4 time.Time
	if !m.ReceiveTimestamp.Empty() {
		t4 = m.ReceiveTimestamp.Time()
	}
	p.meas.delayResp(m.SequenceID, int8(m.LogMessageInterval), t4, m.CorrectionField.Nanoseconds(), p.utcShift())
}

// sample hands an offset to the discipline and moves the state on from
// what it did; p.mu held.
func (p *Port) sample(offset float64, now time.Time) {
	switch p.disc.sample(offset, now) {
	case sampleFailed, sampleOutlier:
		return
	case sampleRecorded:
		if p.state == instance.Uncalibrated {
			p.setState(instance.Slave, "measuring only")
		}
	case sampleStepped:
		p.meas.reset()
		p.setState(instance.Uncalibrated, "clock stepped")
	case sampleLocked:
		if p.state == instance.Uncalibrated {
			p.setState(instance.Slave, "servo locked")
		}
	}
	p.disc.settle(p.state == instance.Slave)
}
