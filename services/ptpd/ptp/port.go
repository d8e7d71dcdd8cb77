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
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
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

// Port is one PTP ordinary clock port. All protocol work happens in Run's
// goroutine; the mutex lets Status and the control calls read and steer
// it from others.
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

	mu         sync.Mutex
	tr         transport
	hw         bool
	state      instance.State
	self       protocol.PortIdentity
	foreign    *foreignTable
	servo      *servo.Servo
	delay      *servo.Median
	discipline bool
	rng        *mrand.Rand

	parent    *foreign
	syncSeq   uint16 // the last Sync's sequence number, for the missing-Sync warning
	parentAnn protocol.Announce

	sync     syncRx
	fu       followUpRx
	ms       float64 // last master-to-slave difference (ns)
	msValid  bool
	lastSync time.Time
	syncIvl  time.Duration // the parent's sync interval
	dreq     delayReqTx
	missed   int
	dreqIvl  time.Duration

	seqSync, seqAnnounce, seqDelay uint16
	nextAnnounce, nextSync         time.Time
	nextDelayReq                   time.Time

	offset      float64
	haveOffset  bool
	freq        float64
	steps       int
	inSyncRun   int
	inSync      bool
	lastUpdate  time.Time
	holdover    bool
	syncAlarm   bool
	annAlarm    bool
	twoStep     bool // the parent's last Sync was two-step
	txErr       error
	badCount    uint64
	badSinceLog uint64
	badLogged   time.Time

	test testState // what sfptpd's test modes set (testmode.go)
	// leapGuard: the engine's leap second guard is on (leap.go).
	leapGuard bool
}

type syncRx struct {
	seq   uint16
	t2    time.Time
	corr  float64
	valid bool
}

type followUpRx struct {
	seq   uint16
	t1    time.Time
	corr  float64
	valid bool
	// t2Shift is what the transparent clock emulation added to corr,
	// to add to its Sync's receive time too.
	t2Shift time.Duration
}

type delayReqTx struct {
	seq   uint16
	t3    time.Time
	valid bool
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
	p := &Port{
		cfg:        cfg,
		clk:        clk,
		log:        log,
		utcClock:   !isPHC,
		state:      instance.Initializing,
		foreign:    newForeignTable(),
		delay:      servo.NewMedian(cfg.DelayFilter),
		discipline: cfg.Discipline,
		rng:        mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
	}
	f, err := clk.FreqPPB()
	if err != nil {
		f = 0
	}
	p.freq = f
	p.servo = servo.New(cfg.servoConfig(), f)
	return p
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
		p.holdoverLocked()
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
	p.resetMeasurements()
	p.delay.Reset()
	p.missed = 0
	p.nextAnnounce, p.nextSync, p.nextDelayReq = now, now, now
	p.dreqIvl = logInterval(p.cfg.DelayReqInterval)
	p.syncIvl = logInterval(p.cfg.SyncInterval)
	p.lastSync = now
	p.decide(now)
}

func (p *Port) resetMeasurements() {
	p.sync.valid, p.fu.valid, p.dreq.valid, p.msValid = false, false, false, false
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
		p.inSync, p.inSyncRun = false, 0
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
				// Announces half a sync interval off the Syncs: a
				// general message sent just before a Sync delays
				// the Sync's receive timestamp at the slave.
				p.nextSync = now
				p.nextAnnounce = now.Add(logInterval(p.cfg.SyncInterval) / 2)
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
				p.holdoverLocked()
			}
			p.setState(instance.Listening, "no qualified master")
			return
		}
		if p.parent == nil || p.parent.id != best.id {
			old := "none"
			if p.parent != nil {
				old = p.parent.id.String()
				p.holdoverLocked()
			}
			p.parent = best
			p.parentAnn = *best.last
			p.resetMeasurements()
			p.delay.Reset()
			p.missed = 0
			p.lastSync = now
			p.nextDelayReq = now
			p.log.Info("new master", "from", old, "to", best.id.String(),
				"grandmaster", sfptpdID(best.ds.GM), "priority1", best.ds.Priority1, "class", best.ds.ClockClass)
			p.setState(instance.Uncalibrated, "new master")
		}
		if p.state != instance.Slave && p.state != instance.Uncalibrated {
			p.setState(instance.Uncalibrated, "master selected")
		}
	}
}

// holdoverLocked puts the clock on the servo's mean frequency when the
// master goes away; p.mu held.
func (p *Port) holdoverLocked() {
	if p.holdover || !p.servo.Locked() {
		return
	}
	f := p.servo.Holdover()
	p.holdover = true
	p.inSync, p.inSyncRun = false, 0
	if p.adjusting() {
		if err := p.clk.AdjFreqPPB(f); err != nil {
			p.log.Warn("holdover: setting frequency", "err", err)
		}
		p.freq = f
	}
	p.log.Info("holdover", "freq_ppb", f)
}

// adjusting: this port may change its clock now.
func (p *Port) adjusting() bool {
	return p.discipline && p.cfg.ClockControl != servo.NoAdjust && p.cfg.Mode == ModeSlave
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
		if !now.Before(p.nextSync) {
			p.sendSync()
			p.nextSync = p.nextSync.Add(logInterval(p.cfg.SyncInterval))
			if p.nextSync.Before(now) {
				p.nextSync = now.Add(logInterval(p.cfg.SyncInterval))
			}
		}
		if !now.Before(p.nextAnnounce) {
			p.sendAnnounce()
			p.nextAnnounce = p.nextAnnounce.Add(logInterval(p.cfg.AnnounceInterval))
			if p.nextAnnounce.Before(now) {
				p.nextAnnounce = now.Add(logInterval(p.cfg.AnnounceInterval))
			}
		}
		next = earliest(next, p.nextAnnounce, p.nextSync)
	case instance.Slave, instance.Uncalibrated:
		if !now.Before(p.nextDelayReq) {
			p.sendDelayReq()
			// Randomised around the interval (IEEE 1588 9.5.11.2) so
			// that slaves do not synchronise their requests.
			d := time.Duration(float64(p.dreqIvl) * (0.5 + p.rng.Float64()))
			p.nextDelayReq = now.Add(d)
		}
		next = earliest(next, p.nextDelayReq)
		deadline := p.lastSync.Add(syncTimeoutIntervals * p.syncIvl)
		if now.After(deadline) {
			if !p.syncAlarm {
				p.log.Warn(fmt.Sprintf("ptp %s: failed to receive Sync for sequence number %d for %.1f seconds",
					p.cfg.Name, p.syncSeq+1, now.Sub(p.lastSync).Seconds()))
				p.syncAlarm = true
				p.holdoverLocked()
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

func (p *Port) sendAnnounce() {
	if p.test.noAnnounce {
		return
	}
	ds := p.announced()
	flags, utcOffset := p.timeProperties()
	a := &protocol.Announce{
		Header: p.header(protocol.MessageAnnounce, lenAnnounce, p.seqAnnounce, ctlOther, p.cfg.AnnounceInterval),
		AnnounceBody: protocol.AnnounceBody{
			OriginTimestamp:      protocol.NewTimestamp(p.clockNow()),
			CurrentUTCOffset:     utcOffset,
			GrandmasterPriority1: ds.p1,
			GrandmasterClockQuality: protocol.ClockQuality{
				ClockClass:              protocol.ClockClass(ds.class),
				ClockAccuracy:           protocol.ClockAccuracy(ds.acc),
				OffsetScaledLogVariance: ds.variance,
			},
			GrandmasterPriority2: ds.p2,
			GrandmasterIdentity:  ds.gm,
			StepsRemoved:         ds.steps,
			TimeSource:           timeSourceInternal,
		},
	}
	a.FlagField = flags
	p.seqAnnounce++
	p.sendGeneral(a)
}

// sendSync sends a two-step Sync and its Follow_Up.
func (p *Port) sendSync() {
	if p.test.noSync {
		return // as in sfptpd, the sequence id does not advance
	}
	seq := p.seqSync
	p.seqSync++
	s := &protocol.SyncDelayReq{
		Header:           p.header(protocol.MessageSync, lenSync, seq, ctlSync, p.cfg.SyncInterval),
		SyncDelayReqBody: protocol.SyncDelayReqBody{OriginTimestamp: protocol.NewTimestamp(p.clockNow())},
	}
	s.FlagField = protocol.FlagTwoStep
	t1 := p.txEvent(p.sendEvent(s))
	if t1.IsZero() || p.txErr != nil || p.test.noFollowUps {
		return
	}
	fu := &protocol.FollowUp{
		Header:       p.header(protocol.MessageFollowUp, lenFollowUp, seq, ctlFollowUp, p.cfg.SyncInterval),
		FollowUpBody: protocol.FollowUpBody{PreciseOriginTimestamp: protocol.NewTimestamp(t1)},
	}
	p.sendGeneral(fu)
}

func (p *Port) sendDelayReq() {
	if p.dreq.valid {
		p.missed++
	}
	seq := p.seqDelay
	p.seqDelay++
	m := &protocol.SyncDelayReq{
		Header:           p.header(protocol.MessageDelayReq, lenSync, seq, ctlDelayReq, 0x7f),
		SyncDelayReqBody: protocol.SyncDelayReqBody{OriginTimestamp: protocol.NewTimestamp(p.clockNow())},
	}
	t3 := p.txEvent(p.sendEvent(m))
	p.dreq = delayReqTx{seq: seq, t3: t3, valid: !t3.IsZero()}
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
		} else {
			p.onDelayReq(&m, pk.ts)
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
		p.syncIvl = logInterval(v)
		p.servo.SetSyncInterval(p.syncIvl)
	}
	t2, err := p.toClock(rx)
	if err != nil {
		p.log.Warn("mapping receive timestamp", "err", err)
		return
	}
	t2 = p.rxEvent(t2, m.SequenceID, "sync")
	p.syncSeq = m.SequenceID
	corr := m.CorrectionField.Nanoseconds()
	if math.IsInf(corr, 0) {
		p.bad(now, "Sync correction too big", nil)
		return
	}
	if c := p.tcCorrection("sync"); c != 0 {
		t2, corr = t2.Add(time.Duration(c)), corr+c
	}
	p.twoStep = m.FlagField&protocol.FlagTwoStep != 0
	if p.twoStep {
		p.sync = syncRx{seq: m.SequenceID, t2: t2, corr: corr, valid: true}
		if p.fu.valid && p.fu.seq == m.SequenceID {
			p.fu.valid, p.sync.valid = false, false
			p.measure(p.fu.t1, corr+p.fu.corr, t2.Add(p.fu.t2Shift), now)
		}
		return
	}
	if m.OriginTimestamp.Empty() {
		p.bad(now, "one-step Sync without origin timestamp", nil)
		return
	}
	p.measure(m.OriginTimestamp.Time(), corr, t2, now)
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
	if p.sync.valid && p.sync.seq == m.SequenceID {
		p.sync.valid = false
		p.measure(t1, p.sync.corr+corr, p.sync.t2.Add(time.Duration(c)), now)
		return
	}
	// The Follow_Up beat its Sync here (they come in on different
	// sockets): keep it for the Sync.
	p.fu = followUpRx{seq: m.SequenceID, t1: t1, corr: corr, valid: true, t2Shift: time.Duration(c)}
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

// diffNS is a-b in ns, as a float, without time.Duration's saturation.
func diffNS(a, b time.Time) float64 {
	return float64(a.Unix()-b.Unix())*1e9 + float64(a.Nanosecond()-b.Nanosecond())
}

// measure completes a Sync: t1 master send time, corr the correction, t2
// our receive time.
func (p *Port) measure(t1 time.Time, corr float64, t2 time.Time, now time.Time) {
	p.ms = diffNS(t2, t1) - corr + p.utcShift()
	p.msValid = true
	p.lastSync = now
	if p.syncAlarm {
		p.syncAlarm = false
		p.log.Info("Sync messages back")
	}
	if p.leapGuard {
		// No offset, and (msValid false) no path delay, across a
		// leap second (leap.go).
		p.msValid = false
		return
	}
	d, ok := p.delay.Value()
	if !ok {
		return // no path delay yet: an offset would be off by it
	}
	p.sample(p.ms-d, now)
}

func (p *Port) onDelayResp(m *protocol.DelayResp) {
	if !p.fromParent(&m.Header) || m.RequestingPortIdentity != p.self {
		return
	}
	if !p.dreq.valid || m.SequenceID != p.dreq.seq {
		return
	}
	p.dreq.valid = false
	p.missed = 0
	if v := int8(m.LogMessageInterval); v >= -7 && v <= 7 {
		p.dreqIvl = logInterval(v)
	}
	corr := m.CorrectionField.Nanoseconds()
	if !p.msValid || m.ReceiveTimestamp.Empty() || math.IsInf(corr, 0) {
		return
	}
	sm := diffNS(m.ReceiveTimestamp.Time(), p.dreq.t3) - corr - p.utcShift()
	d := (p.ms + sm) / 2
	if math.Abs(d) > 1e9 {
		return // a second of path delay is a measurement across a step
	}
	p.delay.Add(d)
}

func (p *Port) onDelayReq(m *protocol.SyncDelayReq, rx time.Time) {
	if p.state != instance.Master {
		return
	}
	if p.test.noDelayResps {
		return
	}
	t4, err := p.toClock(rx)
	if err != nil {
		p.log.Warn("mapping receive timestamp", "err", err)
		return
	}
	t4 = p.rxEvent(t4, m.SequenceID, "delay req")
	// The transparent clock emulation moves the receive time and
	// accounts for it in the correction field (sfptpd replaces the
	// field; adding keeps a requester's own correction).
	tc := p.tcCorrection("delay resp")
	t4 = t4.Add(time.Duration(tc))
	r := &protocol.DelayResp{
		Header: p.header(protocol.MessageDelayResp, lenDelayResp, m.SequenceID, ctlDelayResp, p.cfg.DelayReqInterval),
		DelayRespBody: protocol.DelayRespBody{
			ReceiveTimestamp:       protocol.NewTimestamp(t4),
			RequestingPortIdentity: m.SourcePortIdentity,
		},
	}
	r.CorrectionField = m.CorrectionField
	if c := m.CorrectionField.Nanoseconds(); tc != 0 && !math.IsInf(c, 0) {
		r.CorrectionField = protocol.NewCorrection(c + tc)
	}
	p.sendGeneral(r)
}

// sample feeds an offset to the servo and applies the result; p.mu held.
func (p *Port) sample(offset float64, now time.Time) {
	p.offset = offset
	p.haveOffset = true
	p.lastUpdate = time.Now()
	if math.Abs(offset) <= float64(p.cfg.SyncThreshold) {
		p.inSyncRun++
	} else {
		p.inSyncRun = 0
		p.inSync = false
	}
	if !p.adjusting() {
		if p.state == instance.Uncalibrated {
			p.setState(instance.Slave, "measuring only")
		}
		p.inSync = p.state == instance.Slave && p.inSyncRun >= inSyncSamples
		return
	}
	p.holdover = false
	r := p.servo.Sample(int64(math.Round(offset)), now)
	switch r.State {
	case servo.Step:
		if err := p.clk.Step(r.Step); err != nil {
			p.log.Error("stepping clock", "err", err)
			return
		}
		p.steps++
		p.log.Info("clock stepped", "by", r.Step, "offset_ns", offset)
		p.setFreq(r.FreqPPB)
		p.resetMeasurements()
		p.inSyncRun = 0
		p.setState(instance.Uncalibrated, "clock stepped")
	case servo.Locked:
		p.setFreq(r.FreqPPB)
		if p.state == instance.Uncalibrated {
			p.setState(instance.Slave, "servo locked")
		}
	}
	p.inSync = p.state == instance.Slave && p.inSyncRun >= inSyncSamples
}

func (p *Port) setFreq(f float64) {
	if err := p.clk.AdjFreqPPB(f); err != nil {
		p.log.Error("adjusting clock frequency", "err", err)
		return
	}
	p.freq = f
}

// Status implements instance.Instance.
func (p *Port) Status() instance.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := instance.Status{
		Name:         p.cfg.Name,
		Module:       "ptp",
		Interface:    p.cfg.Interface,
		State:        p.state,
		InSync:       p.inSync,
		Disciplining: p.adjusting(),
		Clock:        p.clk.Name(),
		OffsetNS:     p.offset,
		FreqAdjPPB:   p.freq,
		UserPriority: p.cfg.UserPriority,
		AccuracyNS:   math.Inf(1),
		LastUpdate:   p.lastUpdate,
		Steps:        p.steps,
	}
	if d, ok := p.delay.Value(); ok {
		st.PathDelayNS = d
	}
	switch {
	case p.slaveState() && p.parent != nil:
		st.ParentID = sfptpdID(p.parent.id.ClockIdentity)
		st.GrandmasterID = sfptpdID(p.parentAnn.GrandmasterIdentity)
		st.ClockClass = uint8(p.parentAnn.GrandmasterClockQuality.ClockClass)
		st.AccuracyNS = p.localAccuracyNS() + accuracyNS(p.parentAnn.GrandmasterClockQuality.ClockAccuracy)
		st.StepsRemoved = int(p.parentAnn.StepsRemoved) + 1
	case p.state == instance.Master:
		ds := p.announced()
		st.ParentID = sfptpdID(p.self.ClockIdentity)
		st.GrandmasterID = sfptpdID(ds.gm)
		st.ClockClass = ds.class
		st.AccuracyNS = accuracyNS(protocol.ClockAccuracy(ds.acc))
		st.StepsRemoved = int(ds.steps)
	}
	if p.annAlarm {
		st.Alarms = append(st.Alarms, AlarmNoAnnounce)
	}
	if p.slaveState() && p.syncAlarm {
		st.Alarms = append(st.Alarms, AlarmNoSync)
	}
	if p.slaveState() && p.missed >= missedRespAlarm {
		st.Alarms = append(st.Alarms, AlarmNoDelayResps)
	}
	p.fillSfptpd(&st)
	return st
}

// Local accuracies sfptpd assigns a PTP instance by how it takes its
// timestamps; the selection compares the sum of the local and the
// grandmaster's accuracy, so that a hardware-timestamped instance wins
// over a software one on the same grandmaster.
const (
	LocalAccuracyHardwareNS = 50
	LocalAccuracySoftwareNS = 50e3
)

// localAccuracyNS is the port's local accuracy; p.mu held.
func (p *Port) localAccuracyNS() float64 {
	if p.hw {
		return LocalAccuracyHardwareNS
	}
	return LocalAccuracySoftwareNS
}

func accuracyNS(a protocol.ClockAccuracy) float64 {
	if a < protocol.ClockAccuracyNanosecond25 || a > protocol.ClockAccuracySecondGreater10 {
		return math.Inf(1)
	}
	return float64(a.Duration())
}

// ClockIdentity returns the port's clock identity in sfptpd's form, or ""
// before the port has opened its interface.
func (p *Port) ClockIdentity() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.self.ClockIdentity == 0 {
		return ""
	}
	return sfptpdID(p.self.ClockIdentity)
}

// SetDiscipline implements instance.Instance. Turning discipline on
// restarts the servo from the clock's current frequency, since another
// instance may have been steering it.
func (p *Port) SetDiscipline(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.discipline {
		return
	}
	p.discipline = on
	if on {
		if f, err := p.clk.FreqPPB(); err == nil {
			p.freq = f
		}
		p.servo.Reset(p.freq)
	}
	p.log.Info("discipline", "on", on)
}

// StepClock implements instance.Instance: it steps the clock by the
// current offset (sfptpdctl stepclocks).
func (p *Port) StepClock() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.haveOffset || !p.slaveState() {
		return fmt.Errorf("ptp %s: no offset from a master to step by", p.cfg.Name)
	}
	if p.cfg.ClockControl == servo.NoAdjust {
		return fmt.Errorf("ptp %s: clock_control no-adjust", p.cfg.Name)
	}
	d := -time.Duration(math.Round(p.offset))
	if err := p.clk.Step(d); err != nil {
		return err
	}
	p.steps++
	p.offset = 0
	p.resetMeasurements()
	p.log.Info("clock stepped on request", "by", d)
	return nil
}

// SetPID implements instance.Instance.
func (p *Port) SetPID(kp, ki, kd float64, reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.servo.SetPID(kp, ki, kd, reset)
	c := p.servo.Config()
	p.cfg.PIDKp, p.cfg.PIDKi = c.Kp, c.Ki
	p.log.Info("PI coefficients", "kp", c.Kp, "ki", c.Ki, "reset", reset)
}

// Malformed returns how many received packets were dropped as malformed.
func (p *Port) Malformed() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.badCount
}

var _ instance.Instance = (*Port)(nil)
