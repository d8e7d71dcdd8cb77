package ptp

import (
	"math"
	"time"

	"github.com/facebook/time/ptp/protocol"
)

// master is what a port in the MASTER state sends: a two-step Sync with
// its Follow_Up and an Announce, each on its interval, and a Delay_Resp
// to every Delay_Req. It owns the Sync and Announce sequence ids and
// the two timers; it is apart from Port so that the slave's code never
// sees them. It sends through the port (message headers, the transport,
// the test modes' suppressions and emulations, the announced data set),
// which runs it from its event loop while MASTER.
type master struct {
	seqSync, seqAnnounce   uint16
	nextSync, nextAnnounce time.Time
}

// begin schedules the first Sync now and the first Announce half a sync
// interval later: a general message sent just before a Sync delays the
// Sync's receive timestamp at the slave.
func (m *master) begin(now time.Time, syncIvl time.Duration) {
	m.nextSync = now
	m.nextAnnounce = now.Add(syncIvl / 2)
}

// tick sends what is due and returns when it next needs to run; p.mu
// held.
func (m *master) tick(p *Port, now time.Time) time.Time {
	if !now.Before(m.nextSync) {
		m.sendSync(p)
		ivl := logInterval(p.cfg.SyncInterval)
		m.nextSync = m.nextSync.Add(ivl)
		if m.nextSync.Before(now) {
			m.nextSync = now.Add(ivl)
		}
	}
	if !now.Before(m.nextAnnounce) {
		m.sendAnnounce(p)
		ivl := logInterval(p.cfg.AnnounceInterval)
		m.nextAnnounce = m.nextAnnounce.Add(ivl)
		if m.nextAnnounce.Before(now) {
			m.nextAnnounce = now.Add(ivl)
		}
	}
	return earliest(m.nextAnnounce, m.nextSync)
}

// sendAnnounce sends an Announce of what we announce as grandmaster.
func (m *master) sendAnnounce(p *Port) {
	if p.test.noAnnounce {
		return
	}
	ds := p.announced()
	flags, utcOffset := p.timeProperties()
	a := &protocol.Announce{
		Header: p.header(protocol.MessageAnnounce, lenAnnounce, m.seqAnnounce, ctlOther, p.cfg.AnnounceInterval),
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
	m.seqAnnounce++
	p.sendGeneral(a)
}

// sendSync sends a two-step Sync and, once its transmit timestamp is
// in, its Follow_Up.
func (m *master) sendSync(p *Port) {
	if p.test.noSync {
		return // as in sfptpd, the sequence id does not advance
	}
	seq := m.seqSync
	m.seqSync++
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

// delayResp answers a Delay_Req received at rx (the packet's timestamp)
// with our receive time.
func (m *master) delayResp(p *Port, req *protocol.SyncDelayReq, rx time.Time) {
	if p.test.noDelayResps {
		return
	}
	t4, err := p.toClock(rx)
	if err != nil {
		p.log.Warn("mapping receive timestamp", "err", err)
		return
	}
	t4 = p.rxEvent(t4, req.SequenceID, "delay req")
	// The transparent clock emulation moves the receive time and
	// accounts for it in the correction field (sfptpd replaces the
	// field; adding keeps a requester's own correction).
	tc := p.tcCorrection("delay resp")
	t4 = t4.Add(time.Duration(tc))
	r := &protocol.DelayResp{
		Header: p.header(protocol.MessageDelayResp, lenDelayResp, req.SequenceID, ctlDelayResp, p.cfg.DelayReqInterval),
		DelayRespBody: protocol.DelayRespBody{
			ReceiveTimestamp:       protocol.NewTimestamp(t4),
			RequestingPortIdentity: req.SourcePortIdentity,
		},
	}
	r.CorrectionField = req.CorrectionField
	if c := req.CorrectionField.Nanoseconds(); tc != 0 && !math.IsInf(c, 0) {
		r.CorrectionField = protocol.NewCorrection(c + tc)
	}
	p.sendGeneral(r)
}
