// Package servo turns offset measurements into clock corrections: a PI
// servo (facebook/time's, with its spike filter) wrapped with sfptpd's
// clock_control policies, holdover on the mean frequency and run-time
// coefficient changes, plus the moving-median filter for path delay.
package servo

import (
	"fmt"
	"math"
	"strings"
	"time"

	fbservo "github.com/facebook/time/servo"
)

// ClockControl is sfptpd's clock_control setting: when a servo may step
// the clock and whether it may touch the clock at all.
type ClockControl int

// Clock control modes.
const (
	// SlewAndStep steps whenever |offset| exceeds the step threshold
	// (and, at start, the first-step threshold); otherwise it slews.
	SlewAndStep ClockControl = iota
	// StepAtStartup allows one step, at start; then it only slews.
	StepAtStartup
	// NoStep never steps: large offsets are slewed at up to MaxFreqPPB.
	NoStep
	// NoAdjust measures only and never changes the clock.
	NoAdjust
)

var controlNames = [...]string{"slew-and-step", "step-at-startup", "no-step", "no-adjust"}

// String returns the sfptpd spelling.
func (c ClockControl) String() string {
	if c >= 0 && int(c) < len(controlNames) {
		return controlNames[c]
	}
	return fmt.Sprintf("clock-control(%d)", int(c))
}

// ParseClockControl parses an sfptpd clock_control value. sfptpd's older
// spelling "step-forward" is not supported, since a virtual or system
// clock cannot be restricted to forward steps here.
func ParseClockControl(s string) (ClockControl, error) {
	for i, n := range controlNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return ClockControl(i), nil
		}
	}
	return 0, fmt.Errorf("clock_control %q: want one of %s", s, strings.Join(controlNames[:], ", "))
}

// Config configures a Servo.
type Config struct {
	ClockControl ClockControl
	// StepThreshold: under SlewAndStep, an offset larger than this is
	// stepped at any time. 0 disables stepping after start.
	StepThreshold time.Duration
	// FirstStepThreshold: the first offset larger than this is stepped
	// (SlewAndStep, StepAtStartup). 0 disables the start-up step.
	FirstStepThreshold time.Duration
	// MaxFreqPPB bounds the frequency correction; the clock's own limit
	// applies too.
	MaxFreqPPB float64
	// Kp and Ki are the PI coefficients (sfptpd's pid_filter_p,
	// pid_filter_i), normalised to time so that they mean the same at
	// any sync rate: Kp is ppb of correction per ns of offset, Ki ppb
	// per ns of offset per second. Per sample the integral gains
	// Ki·SyncInterval.
	Kp, Ki float64
	// SyncInterval is the expected time between samples.
	SyncInterval time.Duration
	// HoldoverSamples is how many recent locked samples the holdover
	// frequency is the mean of.
	HoldoverSamples int
}

// DefaultConfig returns the defaults: slew-and-step with a 900 ms step
// threshold (sfptpd's), a 20 µs first step (linuxptp's), 500 ppm at most,
// and a critically damped PI loop with a natural frequency of 0.3 rad/s:
// Kp = 2ζω = 0.6, Ki = ω² = 0.09. That settles in seconds and averages
// software-timestamp noise over many samples.
func DefaultConfig() Config {
	return Config{
		ClockControl:       SlewAndStep,
		StepThreshold:      900 * time.Millisecond,
		FirstStepThreshold: 20 * time.Microsecond,
		MaxFreqPPB:         500000,
		Kp:                 0.6,
		Ki:                 0.09,
		SyncInterval:       time.Second / 8,
		HoldoverSamples:    64,
	}
}

// State is what a sample did.
type State int

// Servo states.
const (
	// Init: still collecting the samples the first frequency estimate
	// needs; nothing to apply.
	Init State = iota
	// Step: step the clock by Result.Step and set Result.FreqPPB.
	Step
	// Locked: set Result.FreqPPB.
	Locked
	// Spike: the sample was an outlier and was ignored; Result.FreqPPB
	// is the frequency to hold.
	Spike
	// Measure: clock control forbids adjusting; nothing to apply.
	Measure
)

var stateNames = [...]string{"init", "step", "locked", "spike", "measure"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Result is the outcome of one sample. FreqPPB is in the clock's sense
// (clock.AdjFreqPPB): positive makes the clock run faster.
type Result struct {
	State   State
	FreqPPB float64
	Step    time.Duration
}

// Servo is not safe for concurrent use; the port calls it from one
// goroutine.
type Servo struct {
	cfg     Config
	piCfg   *fbservo.PiServoCfg
	pi      *fbservo.PiServo
	first   time.Time // local time of the sample the PI holds, while it holds one
	freq    float64   // last frequency handed out (clock sense)
	hist    []float64 // recent locked frequencies, a ring
	histPos int
	histN   int
	stepped bool
	locked  bool
}

// New returns a servo whose clock currently runs at freqPPB (clock sense),
// so the first correction starts from there.
func New(cfg Config, freqPPB float64) *Servo {
	if cfg.HoldoverSamples <= 0 {
		cfg.HoldoverSamples = DefaultConfig().HoldoverSamples
	}
	if cfg.MaxFreqPPB <= 0 {
		cfg.MaxFreqPPB = DefaultConfig().MaxFreqPPB
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultConfig().SyncInterval
	}
	s := &Servo{cfg: cfg, hist: make([]float64, cfg.HoldoverSamples)}
	s.reset(freqPPB)
	return s
}

// reset builds a fresh PI servo starting from freqPPB.
func (s *Servo) reset(freqPPB float64) {
	base := fbservo.DefaultServoConfig()
	switch s.cfg.ClockControl {
	case SlewAndStep:
		base.StepThreshold = int64(s.cfg.StepThreshold)
		base.FirstStepThreshold = int64(s.cfg.FirstStepThreshold)
		base.FirstUpdate = !s.stepped
	case StepAtStartup:
		base.FirstStepThreshold = int64(s.cfg.FirstStepThreshold)
		base.FirstUpdate = !s.stepped
	}
	s.piCfg = fbservo.DefaultPiServoCfg()
	// The facebook servo keeps the frequency in the opposite sense
	// (ppb to slow the clock down by).
	s.pi = fbservo.NewPiServo(base, s.piCfg, -freqPPB)
	s.pi.SetMaxFreq(s.cfg.MaxFreqPPB)
	fbservo.NewPiServoFilter(s.pi, fbservo.DefaultPiServoFilterCfg())
	s.applyPI()
	s.freq = freqPPB
	s.first = time.Time{}
	s.locked = false
}

// applyPI pins the PI coefficients. The facebook servo derives them from
// scales and the sync interval, and falls back to its own fast scales
// whenever it unlocks; pinning the scales with zero exponents makes Kp
// and Ki what the configuration says.
func (s *Servo) applyPI() {
	s.piCfg.PiKpScale = s.cfg.Kp
	s.piCfg.PiKiScale = s.kiSample()
	s.piCfg.PiKpExponent = 0
	s.piCfg.PiKiExponent = 0
	s.pi.SyncInterval(s.cfg.SyncInterval.Seconds())
}

// kiSample is the integral gain per sample.
func (s *Servo) kiSample() float64 { return s.cfg.Ki * s.cfg.SyncInterval.Seconds() }

// SetSyncInterval tells the servo the master's actual sync interval.
func (s *Servo) SetSyncInterval(d time.Duration) {
	if d <= 0 || d == s.cfg.SyncInterval {
		return
	}
	s.cfg.SyncInterval = d
	s.applyPI()
}

// Config returns the configuration in force.
func (s *Servo) Config() Config { return s.cfg }

// FreqPPB is the last frequency handed out (clock sense).
func (s *Servo) FreqPPB() float64 { return s.freq }

// Locked reports whether the servo is past its start-up samples.
func (s *Servo) Locked() bool { return s.locked }

// Sample feeds one offset (local clock minus master, in ns) measured at
// local time local.
func (s *Servo) Sample(offsetNS int64, local time.Time) Result {
	if s.cfg.ClockControl == NoAdjust {
		return Result{State: Measure, FreqPPB: s.freq}
	}
	// The PI estimates frequency from its first two samples and refuses
	// (with a warning) a pair closer than 0.016/Ki seconds; hold the
	// second sample back instead of tripping that.
	if !s.first.IsZero() && s.pi.GetState() == fbservo.StateJump {
		min := time.Duration(0.016 / s.kiSample() * 1.002 * float64(time.Second))
		if local.Sub(s.first) < min {
			return Result{State: Init, FreqPPB: s.freq}
		}
	}
	if s.pi.IsSpike(offsetNS) {
		if s.pi.GetState() == fbservo.StateInit {
			// Too many spikes in a row: the filter restarted the PI,
			// zeroing its frequency. Restart from the one in use.
			s.pi.InitLastFreq(-s.freq)
			s.applyPI()
			s.first = time.Time{}
			s.locked = false
		}
		return Result{State: Spike, FreqPPB: s.freq}
	}
	ppb, st := s.pi.Sample(offsetNS, uint64(local.UnixNano()))
	switch st {
	case fbservo.StateInit:
		if s.pi.GetState() == fbservo.StateJump {
			s.first = local
		} else {
			s.first = time.Time{}
			s.locked = false
		}
		return Result{State: Init, FreqPPB: s.freq}
	case fbservo.StateJump:
		s.first = time.Time{}
		s.freq = -ppb
		s.pi.UnsetFirstUpdate()
		if s.cfg.ClockControl == NoStep || (s.cfg.ClockControl == StepAtStartup && s.stepped) {
			s.locked = true
			s.record(s.freq)
			return Result{State: Locked, FreqPPB: s.freq}
		}
		s.stepped = true
		s.locked = true
		return Result{State: Step, FreqPPB: s.freq, Step: -time.Duration(offsetNS)}
	default:
		s.first = time.Time{}
		s.freq = -ppb
		if !s.locked && s.cfg.ClockControl == StepAtStartup {
			// Start-up is over: no step from now on.
			s.pi.UnsetFirstUpdate()
			s.stepped = true
		}
		s.locked = true
		s.record(s.freq)
		return Result{State: Locked, FreqPPB: s.freq}
	}
}

func (s *Servo) record(f float64) {
	s.hist[s.histPos] = f
	s.histPos = (s.histPos + 1) % len(s.hist)
	if s.histN < len(s.hist) {
		s.histN++
	}
}

// MeanFreqPPB is the mean frequency over the recent locked samples, or
// the current frequency before there are any.
func (s *Servo) MeanFreqPPB() float64 {
	if s.histN == 0 {
		return s.freq
	}
	var sum float64
	for i := range s.histN {
		sum += s.hist[i]
	}
	return sum / float64(s.histN)
}

// Holdover is called when samples stop (Syncs missing, the master
// lost): the clock should keep running at the mean frequency, which is
// returned. The loop stays locked, with its integral set to that
// frequency, so that when samples come back the servo takes up from it
// sample by sample. Restarting the frequency estimate instead would take
// it from two samples alone, and one late-stamped packet among them puts
// the clock parts per million off.
func (s *Servo) Holdover() float64 {
	f := s.MeanFreqPPB()
	if math.IsNaN(f) {
		f = 0
	}
	s.freq = f
	s.pi.InitLastFreq(-f)
	return f
}

// SetPID changes the coefficients (sfptpd's pid_adjust); kd is accepted
// for compatibility and ignored, as the servo is PI. reset restarts the
// servo from the current frequency.
func (s *Servo) SetPID(kp, ki, kd float64, reset bool) {
	_ = kd
	if kp > 0 && !math.IsInf(kp, 0) {
		s.cfg.Kp = kp
	}
	if ki > 0 && !math.IsInf(ki, 0) {
		s.cfg.Ki = ki
	}
	if reset {
		s.reset(s.freq)
		return
	}
	s.applyPI()
}

// Reset restarts the servo from freqPPB, forgetting the holdover history.
// A start-up step already taken stays taken.
func (s *Servo) Reset(freqPPB float64) {
	s.histN, s.histPos = 0, 0
	s.reset(freqPPB)
}
