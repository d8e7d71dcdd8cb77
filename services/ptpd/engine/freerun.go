package engine

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// FreerunClockClass is the PTP clock class of a free-running local
// clock ("default" in IEEE 1588), so that any PTP instance locked to a
// real grandmaster outranks the freerun fallback.
const FreerunClockClass = 248

// Freerun is sfptpd's freerun sync module: the local clock is the
// reference. It disciplines nothing; it exists so that there is always
// an instance to select (a master-only or isolated box) and a fallback
// when every PTP instance has lost its master.
type Freerun struct {
	cfg config.Instance
	clk clock.Clock

	mu   sync.Mutex
	disc bool
	last time.Time
}

// NewFreerun is the "freerun" module's Factory.
func NewFreerun(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
	return &Freerun{cfg: sec, clk: clk}, nil
}

// Name implements instance.Instance.
func (f *Freerun) Name() string { return f.cfg.Name }

// Run implements instance.Instance: a freerun instance has no protocol
// to run; it reads the clock on demand.
func (f *Freerun) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Status implements instance.Instance. The offset is zero by
// definition: the clock is its own reference. Source stays empty:
// sfptpd's freerun module writes no realtime stats.
func (f *Freerun) Status() instance.Status {
	f.mu.Lock()
	disc := f.disc
	f.mu.Unlock()
	st := instance.Status{
		Name:         f.cfg.Name,
		Module:       "freerun",
		Interface:    f.cfg.Interface,
		State:        instance.Freerun,
		InSync:       true,
		Disciplining: disc,
		UserPriority: f.cfg.Priority,
		ClockClass:   FreerunClockClass,
		AccuracyNS:   math.Inf(1),
		Clock:        "none",
	}
	if f.clk != nil {
		st.Clock = f.clk.Name()
		if st.Clock == systemClock {
			st.ClockID = systemClock
		}
		if ppb, err := f.clk.FreqPPB(); err == nil {
			st.FreqAdjPPB = ppb
		}
		if now, err := f.clk.Now(); err == nil {
			st.LastUpdate = now
		} else {
			// sfptpd's name for a clock that cannot be operated.
			st.Alarms = []string{instance.AlarmClockCtrlFailure}
		}
	}
	return st
}

// SetDiscipline implements instance.Instance. Being selected changes
// nothing for freerun except what it reports.
func (f *Freerun) SetDiscipline(on bool) {
	f.mu.Lock()
	f.disc = on
	f.mu.Unlock()
}

// StepClock implements instance.Instance: the offset from the reference
// is always zero, so there is nothing to step.
func (f *Freerun) StepClock() error { return nil }

// SetPID implements instance.Instance: freerun has no servo.
func (f *Freerun) SetPID(kp, ki, kd float64, reset bool) {}
