package ptp

import (
	"math"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// measurements is a slave's timestamp pipeline: it pairs each Sync with
// its Follow_Up (in either order: they come in on different sockets) and
// each Delay_Req with its Delay_Resp, and turns the four timestamps into
// the master-to-slave difference, the path delay (through a moving
// median) and the offset from the master. It also keeps the Delay_Req
// sequence ids and schedule, and when the last Sync came, for the
// port's timers and alarms. It is apart from Port so that the arithmetic
// can be read and tested on its own: it does no I/O and knows nothing
// of the port's state. The port hands it timestamps already on the
// port's clock from the parent only, and decides what an offset does.
type measurements struct {
	sync    syncRx     // a two-step Sync waiting for its Follow_Up
	fu      followUpRx // a Follow_Up that came before its Sync
	twoStep bool       // the parent's last Sync was two-step

	ms      float64 // the last master-to-slave difference (ns)
	msValid bool
	delay   *servo.Median // path delay filter (ns)

	dreq         delayReqTx // the Delay_Req awaiting its Delay_Resp
	seqDelay     uint16
	missed       int           // Delay_Reqs in a row left unanswered
	dreqIvl      time.Duration // the mean Delay_Req interval
	nextDelayReq time.Time

	syncSeq  uint16        // the last Sync's sequence number, for the missing-Sync warning
	lastSync time.Time     // when the last Sync completed
	syncIvl  time.Duration // the parent's sync interval
}

// syncRx is a two-step Sync's receive time and correction.
type syncRx struct {
	seq   uint16
	t2    time.Time
	corr  float64
	valid bool
}

// followUpRx is a Follow_Up's precise origin time and correction.
type followUpRx struct {
	seq   uint16
	t1    time.Time
	corr  float64
	valid bool
	// t2Shift is what the transparent clock emulation added to corr,
	// to add to its Sync's receive time too.
	t2Shift time.Duration
}

// delayReqTx is a sent Delay_Req's transmit time.
type delayReqTx struct {
	seq   uint16
	t3    time.Time
	valid bool
}

// syncTimes is one completed Sync: t1 the master's send time, corr the
// correction (ns), t2 our receive time.
type syncTimes struct {
	t1   time.Time
	corr float64
	t2   time.Time
}

func newMeasurements(delayFilter int) measurements {
	return measurements{delay: servo.NewMedian(delayFilter)}
}

// reset drops the half-made measurements, which a clock step or a leap
// second would make wrong; the path delay stays.
func (m *measurements) reset() {
	m.sync.valid, m.fu.valid, m.dreq.valid, m.msValid = false, false, false, false
}

// restart starts over with a new master: no measurement, no path delay,
// nothing missed, and a Delay_Req at once.
func (m *measurements) restart(now time.Time) {
	m.reset()
	m.delay.Reset()
	m.missed = 0
	m.lastSync = now
	m.nextDelayReq = now
}

// twoStepSync takes a two-step Sync; when its Follow_Up came first, the
// measurement is complete and ok is true.
func (m *measurements) twoStepSync(seq uint16, t2 time.Time, corr float64) (s syncTimes, ok bool) {
	m.sync = syncRx{seq: seq, t2: t2, corr: corr, valid: true}
	if !m.fu.valid || m.fu.seq != seq {
		return syncTimes{}, false
	}
	m.fu.valid, m.sync.valid = false, false
	return syncTimes{t1: m.fu.t1, corr: corr + m.fu.corr, t2: t2.Add(m.fu.t2Shift)}, true
}

// followUp takes a Follow_Up (t2Shift: what the transparent clock
// emulation added to corr); when its Sync is waiting, the measurement is
// complete and ok is true, else the Follow_Up waits for its Sync.
func (m *measurements) followUp(seq uint16, t1 time.Time, corr float64, t2Shift time.Duration) (s syncTimes, ok bool) {
	if m.sync.valid && m.sync.seq == seq {
		m.sync.valid = false
		return syncTimes{t1: t1, corr: m.sync.corr + corr, t2: m.sync.t2.Add(t2Shift)}, true
	}
	m.fu = followUpRx{seq: seq, t1: t1, corr: corr, valid: true, t2Shift: t2Shift}
	return syncTimes{}, false
}

// syncDone records a completed Sync's master-to-slave difference,
// t2 - t1 - corr, plus utcShift (see Port.utcShift).
func (m *measurements) syncDone(s syncTimes, utcShift float64, now time.Time) {
	m.ms = diffNS(s.t2, s.t1) - s.corr + utcShift
	m.msValid = true
	m.lastSync = now
}

// offset is the last master-to-slave difference less the path delay:
// how far our clock is ahead of the master's. ok is false until both
// are known.
func (m *measurements) offset() (float64, bool) {
	if !m.msValid {
		return 0, false
	}
	d, ok := m.delay.Value()
	if !ok {
		return 0, false
	}
	return m.ms - d, true
}

// nextDelayReqSeq counts the previous Delay_Req as missed if it is still
// unanswered and returns the next one's sequence id.
func (m *measurements) nextDelayReqSeq() uint16 {
	if m.dreq.valid {
		m.missed++
	}
	seq := m.seqDelay
	m.seqDelay++
	return seq
}

// delayReqSent records a Delay_Req's transmit time t3; zero (the
// timestamp was lost) leaves nothing for its Delay_Resp to match.
func (m *measurements) delayReqSent(seq uint16, t3 time.Time) {
	m.dreq = delayReqTx{seq: seq, t3: t3, valid: !t3.IsZero()}
}

// scheduleDelayReq sets the next Delay_Req time, u (uniform in [0, 1))
// placing it between half and one and a half intervals from now (IEEE
// 1588 9.5.11.2) so that slaves do not synchronise their requests.
func (m *measurements) scheduleDelayReq(now time.Time, u float64) {
	m.nextDelayReq = now.Add(time.Duration(float64(m.dreqIvl) * (0.5 + u)))
}

// delayResp takes the Delay_Resp to seq: the master's receive time t4
// (zero when it sent none), its correction (ns) and log interval, and
// utcShift as for syncDone. A match clears the missed count and, with
// a master-to-slave difference in hand, adds
// ((t2 - t1 - c1) + (t4 - t3 - c4)) / 2 to the path delay filter.
func (m *measurements) delayResp(seq uint16, logIvl int8, t4 time.Time, corr, utcShift float64) {
	if !m.dreq.valid || seq != m.dreq.seq {
		return
	}
	m.dreq.valid = false
	m.missed = 0
	if logIvl >= -7 && logIvl <= 7 {
		m.dreqIvl = logInterval(logIvl)
	}
	if !m.msValid || t4.IsZero() || math.IsInf(corr, 0) {
		return
	}
	sm := diffNS(t4, m.dreq.t3) - corr - utcShift
	d := (m.ms + sm) / 2
	if math.Abs(d) > 1e9 {
		return // a second of path delay is a measurement across a step
	}
	m.delay.Add(d)
}

// syncDeadline is when, without another Sync, the Sync is missing.
func (m *measurements) syncDeadline() time.Time {
	return m.lastSync.Add(syncTimeoutIntervals * m.syncIvl)
}

// diffNS is a-b in ns, as a float, without time.Duration's saturation.
func diffNS(a, b time.Time) float64 {
	return float64(a.Unix()-b.Unix())*1e9 + float64(a.Nanosecond()-b.Nanosecond())
}
