package ptp

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// failingClock is a fakeClock whose steps and frequency changes can be
// made to fail.
type failingClock struct {
	fakeClock
	stepErr, freqErr error
}

func (c *failingClock) Step(d time.Duration) error {
	if c.stepErr != nil {
		return c.stepErr
	}
	return c.fakeClock.Step(d)
}

func (c *failingClock) AdjFreqPPB(f float64) error {
	if c.freqErr != nil {
		return c.freqErr
	}
	return c.fakeClock.AdjFreqPPB(f)
}

func testDiscipline(t testing.TB, mutate func(*Config)) (*discipline, *failingClock) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Interface = "test0"
	cfg.SyncThreshold = 10 * time.Microsecond
	if mutate != nil {
		mutate(&cfg)
	}
	clk := &failingClock{fakeClock: fakeClock{now: t0}}
	d := newDiscipline(cfg, clk, quietLog)
	return &d, clk
}

// feed gives the discipline offset every sync interval (1/8 s) until it
// reports want, failing on any other result but sampleHeld; it returns
// the time of the last sample.
func feed(t *testing.T, d *discipline, now time.Time, offset float64, want sampleResult) time.Time {
	t.Helper()
	for range 200 {
		now = now.Add(time.Second / 8)
		switch r := d.sample(offset, now); r {
		case want:
			return now
		case sampleHeld:
		default:
			t.Fatalf("offset %v: result %d, want %d", offset, r, want)
		}
	}
	t.Fatalf("offset %v: no result %d in 200 samples", offset, want)
	return now
}

func TestDisciplineAdjusting(t *testing.T) {
	for _, tc := range []struct {
		mode    Mode
		control servo.ClockControl
		on      bool
		want    bool
	}{
		{ModeSlave, servo.SlewAndStep, true, true},
		{ModeSlave, servo.NoStep, true, true},
		{ModeSlave, servo.SlewAndStep, false, false},
		{ModeSlave, servo.NoAdjust, true, false},
		{ModeMaster, servo.SlewAndStep, true, false},
	} {
		d, _ := testDiscipline(t, func(c *Config) { c.Mode, c.ClockControl, c.Discipline = tc.mode, tc.control, tc.on })
		if got := d.adjusting(); got != tc.want {
			t.Errorf("mode %v, %v, on %v: adjusting %v, want %v", tc.mode, tc.control, tc.on, got, tc.want)
		}
	}
}

// TestDisciplineRecordsOnly checks that a discipline that may not adjust
// records offsets and counts the in-sync run, and leaves the clock
// alone.
func TestDisciplineRecordsOnly(t *testing.T) {
	d, clk := testDiscipline(t, func(c *Config) { c.ClockControl = servo.NoAdjust })
	now := t0
	for i, tc := range []struct {
		offset  float64
		wantRun int
	}{
		{5000, 1}, {-10000, 2}, {10001, 0}, {0, 1}, {1, 2}, {-2, 3}, {3, 4},
	} {
		now = now.Add(time.Second)
		if r := d.sample(tc.offset, now); r != sampleRecorded {
			t.Fatalf("sample %d: result %d", i, r)
		}
		if !d.haveOffset || d.offset != tc.offset || d.inSyncRun != tc.wantRun {
			t.Fatalf("sample %d: offset %v (%v), run %d want %d", i, d.offset, d.haveOffset, d.inSyncRun, tc.wantRun)
		}
	}
	d.settle(false)
	if d.inSync {
		t.Fatal("in sync outside the SLAVE state")
	}
	d.settle(true)
	if !d.inSync {
		t.Fatalf("not in sync after %d good offsets", d.inSyncRun)
	}
	// 20 µs after those is an outlier: it is discarded and changes
	// nothing. Repeated, it becomes the new level the outlier filter
	// keeps, and the first kept offset beyond the threshold ends
	// in-sync at once.
	kept := false
	for i := range 20 {
		if r := d.sample(20000, now); r != sampleOutlier {
			if r != sampleRecorded || i == 0 {
				t.Fatalf("20 µs offset %d: result %d", i, r)
			}
			kept = true
			break
		}
		if !d.inSync || d.inSyncRun != 4 || d.offset != 3 {
			t.Fatalf("outlier %d changed the discipline: in sync %v run %d offset %v", i, d.inSync, d.inSyncRun, d.offset)
		}
	}
	if !kept || d.inSync || d.inSyncRun != 0 || d.offset != 20000 {
		t.Fatalf("kept %v in sync %v run %d offset %v after a bad offset", kept, d.inSync, d.inSyncRun, d.offset)
	}
	if len(clk.steps) != 0 || clk.freq != 0 || d.steps != 0 {
		t.Fatalf("a no-adjust discipline changed the clock: steps %v freq %v", clk.steps, clk.freq)
	}
	if _, _, ok := d.piTerms(); ok {
		t.Fatal("PI terms without a servo driving the clock")
	}
}

// TestDisciplineStepsThenLocks drives the servo with a 1 ms offset: it
// steps the clock back by it once, then locks on small offsets.
func TestDisciplineStepsThenLocks(t *testing.T) {
	d, clk := testDiscipline(t, nil)
	now := feed(t, d, t0, 1e6, sampleStepped)
	if len(clk.steps) != 1 || clk.steps[0] != -time.Millisecond || d.steps != 1 {
		t.Fatalf("clock steps %v, counted %d", clk.steps, d.steps)
	}
	if d.inSyncRun != 0 || clk.freq != d.freq {
		t.Fatalf("after the step: run %d, clock freq %v, recorded %v", d.inSyncRun, clk.freq, d.freq)
	}
	now = feed(t, d, now, 100, sampleLocked)
	if clk.freq != d.freq || d.freq != d.servo.FreqPPB() {
		t.Fatalf("locked: clock freq %v, recorded %v, servo %v", clk.freq, d.freq, d.servo.FreqPPB())
	}
	p, i, ok := d.piTerms()
	if !ok || p != -d.servo.Config().Kp*100 || math.Abs(p+i-d.freq) > 1e-9 {
		t.Fatalf("PI terms %v + %v (ok %v), frequency %v", p, i, ok, d.freq)
	}
	// The locked servo takes no more steps for offsets under the
	// step threshold.
	for range inSyncSamples {
		now = now.Add(time.Second / 8)
		if r := d.sample(50, now); r != sampleLocked {
			t.Fatalf("result %d", r)
		}
	}
	d.settle(true)
	if !d.inSync || len(clk.steps) != 1 {
		t.Fatalf("in sync %v, steps %v", d.inSync, clk.steps)
	}
}

func TestDisciplineStepFails(t *testing.T) {
	d, clk := testDiscipline(t, nil)
	clk.stepErr = errors.New("no")
	feed(t, d, t0, 1e6, sampleFailed)
	if d.steps != 0 || clk.freq != 0 || d.freq != 0 {
		t.Fatalf("a failed step counted %d, set freq %v/%v", d.steps, clk.freq, d.freq)
	}
}

func TestDisciplineHoldover(t *testing.T) {
	d, clk := testDiscipline(t, nil)
	d.enterHoldover()
	if d.holdover {
		t.Fatal("holdover before the servo locked")
	}
	now := feed(t, d, t0, 1e6, sampleStepped)
	now = feed(t, d, now, 100, sampleLocked)
	for range 8 {
		now = now.Add(time.Second / 8)
		d.sample(100, now)
	}
	d.settle(true)
	mean := d.servo.MeanFreqPPB()
	d.enterHoldover()
	if !d.holdover || d.inSync || d.inSyncRun != 0 {
		t.Fatalf("holdover %v, in sync %v, run %d", d.holdover, d.inSync, d.inSyncRun)
	}
	if d.freq != mean || clk.freq != mean {
		t.Fatalf("holdover frequency %v (clock %v), want the mean %v", d.freq, clk.freq, mean)
	}
	// A sample ends it.
	d.sample(100, now.Add(time.Second))
	if d.holdover {
		t.Fatal("still in holdover after a sample")
	}
	// Not adjusting: holdover is noted, the clock is left alone.
	d.setOn(false)
	clk.freq = 12345
	f := d.freq
	d.enterHoldover()
	if !d.holdover || clk.freq != 12345 || d.freq != f {
		t.Fatalf("holdover %v, clock freq %v, recorded %v (was %v)", d.holdover, clk.freq, d.freq, f)
	}
}

func TestDisciplineStepOffset(t *testing.T) {
	for _, tc := range []struct {
		offset  float64
		want    time.Duration
		stepErr error
	}{
		{1234.4, -1234, nil},
		{1234.6, -1235, nil},
		{-0.5, 1, nil},
		{-2e9, 2 * time.Second, nil},
		{500, 0, errors.New("no")},
	} {
		d, clk := testDiscipline(t, nil)
		clk.stepErr = tc.stepErr
		d.offset, d.haveOffset = tc.offset, true
		by, err := d.stepOffset()
		if tc.stepErr != nil {
			if err == nil || d.steps != 0 || d.offset != tc.offset {
				t.Errorf("offset %v: failed step: err %v, steps %d, offset %v", tc.offset, err, d.steps, d.offset)
			}
			continue
		}
		if err != nil || by != tc.want || d.steps != 1 || d.offset != 0 || len(clk.steps) != 1 || clk.steps[0] != tc.want {
			t.Errorf("offset %v: stepped %v (%v), steps %d/%v, offset %v; want %v", tc.offset, by, err, d.steps, clk.steps, d.offset, tc.want)
		}
	}
}

func TestDisciplineSetOn(t *testing.T) {
	d, clk := testDiscipline(t, func(c *Config) { c.Discipline = false })
	clk.freq = 42
	d.setOn(false)
	if d.freq != 0 {
		t.Fatal("switching off an off discipline read the clock")
	}
	d.setOn(true)
	if !d.on || d.freq != 42 || d.servo.FreqPPB() != 42 {
		t.Fatalf("on %v, freq %v, servo from %v; want 42", d.on, d.freq, d.servo.FreqPPB())
	}
	// Setting the frequency records it only when the clock took it.
	clk.freqErr = errors.New("no")
	if err := d.setFreq(7); err == nil || d.freq != 42 {
		t.Fatalf("failed setFreq: %v, freq %v", err, d.freq)
	}
	clk.freqErr = nil
	if err := d.setFreq(7); err != nil || d.freq != 7 || clk.freq != 7 {
		t.Fatalf("setFreq: %v, freq %v, clock %v", err, d.freq, clk.freq)
	}
}
