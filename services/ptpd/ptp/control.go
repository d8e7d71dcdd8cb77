package ptp

import (
	"fmt"
	"math"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// The engine's side of a port: Status, and the calls of instance.Instance
// and the control commands that steer it from other goroutines, each
// under p.mu.

// Status implements instance.Instance.
func (p *Port) Status() instance.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := instance.Status{
		Name:         p.cfg.Name,
		Module:       "ptp",
		Interface:    p.cfg.Interface,
		State:        p.state,
		InSync:       p.disc.inSync,
		Disciplining: p.disc.adjusting(),
		Clock:        p.clk.Name(),
		OffsetNS:     p.disc.offset,
		FreqAdjPPB:   p.disc.freq,
		UserPriority: p.cfg.UserPriority,
		AccuracyNS:   math.Inf(1),
		LastUpdate:   p.disc.lastUpdate,
		Steps:        p.disc.steps,

		OutlierFilter:      true,
		Outliers:           p.disc.outliers,
		OutlierSamples:     p.disc.filtered,
		OutlierThresholdNS: p.disc.filter.Threshold(),
	}
	if d, ok := p.meas.delay.Value(); ok {
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
	if p.slaveState() && p.meas.missed >= missedRespAlarm {
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
	p.disc.setOn(on)
}

// StepClock implements instance.Instance: it steps the clock by the
// current offset (sfptpdctl stepclocks).
func (p *Port) StepClock() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.disc.haveOffset || !p.slaveState() {
		return fmt.Errorf("ptp %s: no offset from a master to step by", p.cfg.Name)
	}
	if p.cfg.ClockControl == servo.NoAdjust {
		return fmt.Errorf("ptp %s: clock_control no-adjust", p.cfg.Name)
	}
	d, err := p.disc.stepOffset()
	if err != nil {
		return err
	}
	p.meas.reset()
	p.log.Info("clock stepped on request", "by", d)
	return nil
}

// SetPID implements instance.Instance.
func (p *Port) SetPID(kp, ki, kd float64, reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.disc.servo.SetPID(kp, ki, kd, reset)
	c := p.disc.servo.Config()
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
