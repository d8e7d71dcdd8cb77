package servo

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// sim is a simulated clock disciplined by a servo: the true offset x (ns)
// grows by (errPPB + adjPPB) per second, and each sample sees x plus
// seeded Gaussian noise and, with probability late, a late stamp.
type sim struct {
	x, errPPB, adjPPB float64
	noise             float64
	// late is the share of samples stamped late, by 10 µs to 1.7 ms
	// (log-uniform), as software timestamps in a virtual machine are
	// when the vCPU is descheduled between the two stamps.
	late   float64
	rng    *rand.Rand
	t      time.Time
	dt     time.Duration
	steps  int
	states map[State]int
}

func newSim(offsetNS, errPPM, noiseNS float64, seed uint64) *sim {
	return &sim{
		x: offsetNS, errPPB: errPPM * 1000, noise: noiseNS,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		t:   time.Unix(1_700_000_000, 0), dt: time.Second / 8,
		states: map[State]int{},
	}
}

// advance lets one sample interval pass.
func (m *sim) advance() {
	m.t = m.t.Add(m.dt)
	m.x += (m.errPPB + m.adjPPB) * m.dt.Seconds()
}

// measure is what one sample sees of the true offset.
func (m *sim) measure() int64 {
	meas := m.x + m.rng.NormFloat64()*m.noise
	if m.late > 0 && m.rng.Float64() < m.late {
		meas += 10e3 * math.Pow(170, m.rng.Float64())
	}
	return int64(math.Round(meas))
}

// apply does to the clock what the servo's result says.
func (m *sim) apply(r Result) {
	m.states[r.State]++
	switch r.State {
	case Step:
		m.x += float64(r.Step)
		m.steps++
		m.adjPPB = r.FreqPPB
	case Locked, Spike:
		m.adjPPB = r.FreqPPB
	}
}

func (m *sim) run(s *Servo, n int) {
	for range n {
		m.advance()
		m.apply(s.Sample(m.measure(), m.t))
	}
}

func TestConvergence(t *testing.T) {
	for _, tc := range []struct {
		name          string
		offset, ppm   float64
		noise         float64
		seed          uint64
		wantSteps     int
		maxFinalErrNS float64
	}{
		{"+100ppm", 500e3, 100, 200, 1, 1, 1500},
		{"-100ppm", -500e3, -100, 200, 2, 1, 1500},
		{"+30ppm quiet", 500e3, 30, 20, 3, 1, 200},
		{"small offset no step", 5e3, -7, 100, 4, 0, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(DefaultConfig(), 0)
			m := newSim(tc.offset, tc.ppm, tc.noise, tc.seed)
			m.run(s, 800) // 100 s
			if m.steps != tc.wantSteps {
				t.Errorf("steps %d want %d", m.steps, tc.wantSteps)
			}
			if math.Abs(m.x) > tc.maxFinalErrNS {
				t.Errorf("final offset %.0f ns", m.x)
			}
			// The correction must cancel the error: (1+e)(1+a) ≈ 1.
			if d := math.Abs(m.adjPPB + m.errPPB); d > 1000 {
				t.Errorf("freq %.0f ppb, want ≈ %.0f", m.adjPPB, -m.errPPB)
			}
			if !s.Locked() {
				t.Error("not locked")
			}
		})
	}
}

func TestClockControl(t *testing.T) {
	for _, tc := range []struct {
		cc        ClockControl
		wantSteps int
		wantAdj   bool
	}{
		{SlewAndStep, 2, true},
		{StepAtStartup, 1, true},
		{NoStep, 0, true},
		{NoAdjust, 0, false},
	} {
		t.Run(tc.cc.String(), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ClockControl = tc.cc
			s := New(cfg, 0)
			m := newSim(200e3, 20, 50, 7)
			m.run(s, 400)
			m.x += 2e9 // the master jumps by 2 s: above the 900 ms threshold
			m.run(s, 40)
			if m.steps != tc.wantSteps {
				t.Errorf("steps %d want %d (states %v)", m.steps, tc.wantSteps, m.states)
			}
			if tc.wantAdj != (m.adjPPB != 0) {
				t.Errorf("adjustment %v, want adjusting %v", m.adjPPB, tc.wantAdj)
			}
			if tc.cc == NoAdjust && m.states[Measure] != 440 {
				t.Errorf("no-adjust states %v", m.states)
			}
			if tc.cc == NoStep && math.Abs(m.adjPPB) != cfg.MaxFreqPPB {
				t.Errorf("no-step after a 2 s jump: freq %v, want slewing at the limit", m.adjPPB)
			}
		})
	}
}

func TestFirstStepThreshold(t *testing.T) {
	for _, tc := range []struct {
		offset    float64
		threshold time.Duration
		wantSteps int
	}{
		{15e3, 20 * time.Microsecond, 0},
		{25e3, 20 * time.Microsecond, 1},
		{25e3, 0, 0},
	} {
		cfg := DefaultConfig()
		cfg.FirstStepThreshold = tc.threshold
		s := New(cfg, 0)
		m := newSim(tc.offset, 0, 10, 1)
		m.run(s, 20)
		if m.steps != tc.wantSteps {
			t.Errorf("offset %v threshold %v: steps %d want %d", tc.offset, tc.threshold, m.steps, tc.wantSteps)
		}
	}
}

func TestHoldover(t *testing.T) {
	s := New(DefaultConfig(), 0)
	m := newSim(100e3, 50, 100, 11)
	m.run(s, 800)
	f := s.Holdover()
	if math.Abs(f+50e3) > 300 {
		t.Fatalf("holdover frequency %.0f ppb, want ≈ -50000", f)
	}
	if !s.Locked() || s.FreqPPB() != f {
		t.Fatalf("after holdover: locked %v freq %v, want still locked at %v", s.Locked(), s.FreqPPB(), f)
	}
	// Samples come back an hour... of 10 s later: the servo takes up
	// from the held frequency, without a step for a small offset.
	m.adjPPB = f
	m.t = m.t.Add(10 * time.Second)
	m.x += (m.errPPB + f) * 10
	steps := m.steps
	m.run(s, 400)
	if m.steps != steps || math.Abs(m.x) > 1500 || math.Abs(m.adjPPB+50e3) > 1000 {
		t.Fatalf("after holdover: steps %d→%d offset %.0f freq %.0f", steps, m.steps, m.x, m.adjPPB)
	}
}

func TestSpikeFilter(t *testing.T) {
	s := New(DefaultConfig(), 0)
	m := newSim(0, 10, 100, 5)
	m.run(s, 200)
	before := s.FreqPPB()
	r := s.Sample(int64(m.x+1e6), m.t.Add(m.dt)) // 1 ms outlier
	if r.State != Spike || r.FreqPPB != before {
		t.Fatalf("1 ms outlier: %+v, want spike holding %v", r, before)
	}
	m.t = m.t.Add(m.dt)
	m.run(s, 1)
	if m.states[Locked] == 0 || s.FreqPPB() == before {
		t.Fatal("servo did not resume after the spike")
	}
	// A lasting shift is not a spike: after the filter's skip budget
	// the servo restarts and follows it without stepping (below the
	// step threshold) and without losing the frequency.
	m.x += 100e3
	m.run(s, 400)
	if math.Abs(m.x) > 2000 || math.Abs(m.adjPPB+10e3) > 1000 {
		t.Fatalf("after a lasting 100 us shift: offset %.0f freq %.0f", m.x, m.adjPPB)
	}
}

func TestSetPID(t *testing.T) {
	a := New(DefaultConfig(), 0)
	b := New(DefaultConfig(), 0)
	b.SetPID(0.2, 0.05, 0, false)
	if b.Config().Kp != 0.2 || b.Config().Ki != 0.05 {
		t.Fatalf("config %+v", b.Config())
	}
	ma, mb := newSim(5e3, 10, 100, 1), newSim(5e3, 10, 100, 1)
	ma.run(a, 60)
	mb.run(b, 60)
	if ma.adjPPB == mb.adjPPB {
		t.Fatal("coefficients had no effect")
	}
	b.SetPID(-1, math.Inf(1), 0, true)
	if b.Config().Kp != 0.2 || b.Config().Ki != 0.05 || b.Locked() {
		t.Fatalf("invalid values must be ignored and reset must unlock: %+v", b.Config())
	}
}

// TestGolden pins the servo's exact output for a fixed input, in the
// style of facebook/time's servo tests: any change in the arithmetic
// shows up here.
func TestGolden(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Kp, cfg.Ki = 0.7, 2.4 // 0.3 per sample at 8 samples a second
	s := New(cfg, 0)
	base := time.Unix(1_700_000_000, 0)
	offsets := []int64{30000, 31250, -1000, -600, -250, 40, 120, 90, -30, 10}
	// Worked by hand: the first two samples give a drift of
	// 1250 ns / 125 ms = 10000 ppb and a step of -31250 ns; then each
	// sample adds Ki·offset to the drift and applies
	// drift + (Kp+Ki)·offset, e.g. 10000 - 0.7·1000 - 0.3·1000 = 9000.
	want := []Result{
		{Init, 0, 0},
		{Step, -10000, -31250 * time.Nanosecond},
		{Locked, -9000, 0},
		{Locked, -9100, 0},
		{Locked, -9270, 0},
		{Locked, -9485, 0},
		{Locked, -9577, 0},
		{Locked, -9583, 0},
		{Locked, -9490, 0},
		{Locked, -9521, 0},
	}
	for i, off := range offsets {
		r := s.Sample(off, base.Add(time.Duration(i)*time.Second/8))
		r.FreqPPB = math.Round(r.FreqPPB)
		if r != want[i] {
			t.Errorf("sample %d (%d ns): got %+v want %+v", i, off, r, want[i])
		}
	}
}

func TestParseClockControl(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ClockControl
		err  bool
	}{
		{"slew-and-step", SlewAndStep, false},
		{"step-at-startup", StepAtStartup, false},
		{"No-Step", NoStep, false},
		{" no-adjust ", NoAdjust, false},
		{"step-forward", 0, true},
		{"", 0, true},
	} {
		got, err := ParseClockControl(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
		if err == nil && got.String() != controlNames[got] {
			t.Errorf("String %q", got.String())
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		n    int
		in   []float64
		want []float64
	}{
		{3, []float64{5, 1, 9, 2, 100, 3}, []float64{5, 3, 5, 2, 9, 3}},
		{4, []float64{4, 2, 8, 6, 1000}, []float64{4, 3, 4, 5, 7}},
		{1, []float64{7, -1}, []float64{7, -1}},
		{0, []float64{7}, []float64{7}},
	} {
		m := NewMedian(tc.n)
		if _, ok := m.Value(); ok {
			t.Fatal("empty filter has a value")
		}
		for i, v := range tc.in {
			if got := m.Add(v); got != tc.want[i] {
				t.Errorf("n=%d after %v: %v want %v", tc.n, tc.in[:i+1], got, tc.want[i])
			}
		}
		m.Reset()
		if m.Len() != 0 {
			t.Fatal("reset")
		}
	}
}
