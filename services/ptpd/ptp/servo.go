package ptp

import (
	"log/slog"
	"math"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// discipline is what a port does to its clock: it owns the outlier
// filter and the PI servo, the frequency last set, the steps made, the
// last offset from the master, the run of offsets within the sync
// threshold that makes the port in sync, and holdover when the master
// goes away. It is apart from Port
// so that every change to the clock goes through one place, which also
// knows when the clock must be left alone: discipline switched off
// (SetDiscipline), clock_control no-adjust, or a master-only port. Then
// it only records the offsets. It never changes the port's state; the
// port does that from what sample reports.
type discipline struct {
	clk   clock.Clock
	log   *slog.Logger
	servo *servo.Servo
	// filter is sfptpd's outlier filter, which every offset passes
	// before anything else sees it; outliers and filtered count what
	// it rejected and what it judged (sfptpd's outliers and
	// outliers_num_samples).
	filter   *servo.Peirce
	noFilter bool
	outliers uint64
	filtered uint64
	// observe, when set, sees every offset and whether the filter
	// rejected it (Port.ObserveSamples).
	observe func(Sample)
	// threshold is the |offset| in ns within which a sample counts
	// towards being in sync.
	threshold float64
	// mayAdjust: the configuration lets the port steer its clock (a
	// slave-only port without clock_control no-adjust); on: the
	// engine has it do so now.
	mayAdjust bool
	on        bool

	freq       float64 // the frequency last set (ppb)
	offset     float64 // the last offset from the master (ns)
	haveOffset bool
	lastUpdate time.Time
	steps      int
	holdover   bool
	inSyncRun  int // consecutive offsets within the threshold
	inSync     bool
}

// newDiscipline starts the servo from the clock's current frequency, so
// that a restart does not throw away what another run had settled on.
func newDiscipline(cfg Config, clk clock.Clock, log *slog.Logger) discipline {
	f, err := clk.FreqPPB()
	if err != nil {
		f = 0
	}
	filter, err := servo.NewPeirce(cfg.OutlierFilterSize, cfg.OutlierFilterAdaption)
	if err != nil {
		// Config.Validate refuses this; a port built without it
		// gets sfptpd's defaults.
		log.Warn("outlier filter: using the defaults", "err", err)
		filter, _ = servo.NewPeirce(servo.DefaultPeirceSize, servo.DefaultPeirceAdaption)
	}
	filter.SetHoldLone(!cfg.OutlierFilterPlain)
	return discipline{
		clk:       clk,
		log:       log,
		servo:     servo.New(cfg.servoConfig(), f),
		filter:    filter,
		noFilter:  cfg.NoOutlierFilter,
		threshold: float64(cfg.SyncThreshold),
		mayAdjust: cfg.ClockControl != servo.NoAdjust && cfg.Mode == ModeSlave,
		on:        cfg.Discipline,
		freq:      f,
	}
}

// adjusting: the clock may be changed now.
func (d *discipline) adjusting() bool {
	return d.on && d.mayAdjust
}

// sampleResult is what one offset did to the clock.
type sampleResult int

const (
	// sampleRecorded: not adjusting; the offset was only recorded.
	sampleRecorded sampleResult = iota
	// sampleHeld: the servo took the offset but had nothing to set
	// yet (collecting its first samples, or a spike it ignored).
	sampleHeld
	// sampleLocked: the servo set the frequency.
	sampleLocked
	// sampleStepped: the clock was stepped; measurements taken before
	// the step are stale.
	sampleStepped
	// sampleFailed: the step the servo asked for failed (logged).
	sampleFailed
	// sampleOutlier: the outlier filter rejected the offset; it was
	// counted and dropped, and nothing else changed.
	sampleOutlier
)

// sample passes an offset (ns) from the master through the outlier
// filter and, if it is kept, records it and, when adjusting, feeds it to
// the servo and applies what the servo says. An outlier changes nothing
// but the filter and its count: as in sfptpd, the offset reported stays
// the last one kept, and the servo does not see it.
func (d *discipline) sample(offset float64, now time.Time) sampleResult {
	d.filtered++
	outlier := !d.noFilter && d.filter.Sample(offset)
	if d.observe != nil {
		d.observe(Sample{At: now, OffsetNS: offset, Outlier: outlier})
	}
	if outlier {
		d.outliers++
		d.log.Debug("outlier discarded", "offset_ns", offset, "threshold_ns", d.filter.Threshold())
		return sampleOutlier
	}
	d.offset = offset
	d.haveOffset = true
	d.lastUpdate = time.Now()
	if math.Abs(offset) <= d.threshold {
		d.inSyncRun++
	} else {
		d.inSyncRun = 0
		d.inSync = false
	}
	if !d.adjusting() {
		return sampleRecorded
	}
	d.holdover = false
	r := d.servo.Sample(int64(math.Round(offset)), now)
	switch r.State {
	case servo.Step:
		if err := d.step(r.Step); err != nil {
			d.log.Error("stepping clock", "err", err)
			return sampleFailed
		}
		d.log.Info("clock stepped", "by", r.Step, "offset_ns", offset)
		d.filter.Reset()
		d.applyFreq(r.FreqPPB)
		d.inSyncRun = 0
		return sampleStepped
	case servo.Locked:
		d.applyFreq(r.FreqPPB)
		return sampleLocked
	}
	return sampleHeld
}

// settle decides in-sync after a sample: enough offsets in a row within
// the threshold, and the port (slave says) in the SLAVE state.
func (d *discipline) settle(slave bool) {
	d.inSync = slave && d.inSyncRun >= inSyncSamples
}

// outOfSync forgets the run of good offsets: the port left SLAVE.
func (d *discipline) outOfSync() {
	d.inSync, d.inSyncRun = false, 0
}

// step steps the clock by by and counts it.
func (d *discipline) step(by time.Duration) error {
	if err := d.clk.Step(by); err != nil {
		return err
	}
	d.steps++
	return nil
}

// stepOffset steps the clock by the last offset (sfptpdctl stepclocks),
// returning by how much.
func (d *discipline) stepOffset() (time.Duration, error) {
	by := -time.Duration(math.Round(d.offset))
	if err := d.step(by); err != nil {
		return 0, err
	}
	d.offset = 0
	d.filter.Reset()
	return by, nil
}

// newMaster forgets the offsets of the master before: the outlier
// filter judges the new one's from scratch.
func (d *discipline) newMaster() {
	d.filter.Reset()
}

// setFreq sets the clock's frequency (ppb) and records it.
func (d *discipline) setFreq(f float64) error {
	if err := d.clk.AdjFreqPPB(f); err != nil {
		return err
	}
	d.freq = f
	return nil
}

// applyFreq is setFreq for the servo's output: a failure is logged, and
// the servo's next sample tries again.
func (d *discipline) applyFreq(f float64) {
	if err := d.setFreq(f); err != nil {
		d.log.Error("adjusting clock frequency", "err", err)
	}
}

// enterHoldover puts the clock on the servo's mean frequency when the
// master goes away; a servo that never locked has no frequency to hold.
func (d *discipline) enterHoldover() {
	if d.holdover || !d.servo.Locked() {
		return
	}
	f := d.servo.Holdover()
	d.holdover = true
	d.outOfSync()
	if d.adjusting() {
		if err := d.clk.AdjFreqPPB(f); err != nil {
			d.log.Warn("holdover: setting frequency", "err", err)
		}
		d.freq = f
	}
	d.log.Info("holdover", "freq_ppb", f)
}

// setOn switches discipline on or off. Turning it on restarts the servo
// from the clock's current frequency, since another instance may have
// been steering it.
func (d *discipline) setOn(on bool) {
	if on == d.on {
		return
	}
	d.on = on
	if on {
		if f, err := d.clk.FreqPPB(); err == nil {
			d.freq = f
		}
		d.servo.Reset(d.freq)
	}
	d.log.Info("discipline", "on", on)
}

// piTerms splits the frequency a locked servo set into its proportional
// part, -Kp·offset (a clock ahead of the master is slowed), and the
// integral the servo has accumulated; ok is false until the locked PI
// drives the clock.
func (d *discipline) piTerms() (pTerm, iTerm float64, ok bool) {
	if !d.haveOffset || !d.adjusting() || !d.servo.Locked() {
		return 0, 0, false
	}
	pTerm = -d.servo.Config().Kp * d.offset
	return pTerm, d.freq - pTerm, true
}

// Sample is one offset from the master as the port measured it, before
// the outlier filter, and the filter's verdict.
type Sample struct {
	At       time.Time
	OffsetNS float64
	Outlier  bool
}

// ObserveSamples has f called with every offset the port measures, from
// the port's event loop with its lock held: f must return quickly and
// must not call the port. Benchmarks use it to see the measurement
// noise and the filter's decisions sample by sample. nil stops it.
func (p *Port) ObserveSamples(f func(Sample)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.disc.observe = f
}
