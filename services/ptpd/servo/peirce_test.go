package servo

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// TestPeirceRatio checks the computed criterion against Peirce's
// published values for one doubtful observation (Gould's table, as
// sfptpd and Ross 2003 give it, six decimals).
func TestPeirceRatio(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float64
	}{
		{2, 1.000000}, {3, 1.216262}, {4, 1.382943}, {5, 1.509276}, {6, 1.609828},
		{7, 1.692841}, {8, 1.763236}, {9, 1.824156}, {10, 1.877719}, {13, 2.007300},
		{15, 2.075718}, {20, 2.208544}, {25, 2.307353}, {30, 2.385452}, {37, 2.472468},
		{40, 2.504072}, {45, 2.551079}, {50, 2.592390}, {55, 2.629178}, {59, 2.655929},
		{60, 2.662291},
		{0, 0}, {1, 0}, {61, 0}, {-3, 0},
	} {
		if got := PeirceRatio(c.n); got != c.want {
			t.Errorf("PeirceRatio(%d) = %.7f, want %.6f", c.n, got, c.want)
		}
	}
	// The criterion grows with the number of samples.
	for n := 3; n <= PeirceMaxSamples; n++ {
		if PeirceRatio(n) <= PeirceRatio(n-1) {
			t.Fatalf("criterion not increasing at %d: %v <= %v", n, PeirceRatio(n), PeirceRatio(n-1))
		}
	}
}

func TestNewPeirceBounds(t *testing.T) {
	for _, c := range []struct {
		size     int
		adaption float64
		ok       bool
	}{
		{5, 0, true}, {60, 1, true}, {30, 0.5, true},
		{4, 1, false}, {61, 1, false}, {0, 1, false},
		{30, -0.01, false}, {30, 1.01, false}, {30, math.NaN(), false}, {30, math.Inf(1), false},
	} {
		f, err := NewPeirce(c.size, c.adaption)
		if (err == nil) != c.ok {
			t.Errorf("NewPeirce(%d, %v): err %v, want ok %v", c.size, c.adaption, err, c.ok)
		}
		if err == nil && (f.Size() != c.size || f.Adaption() != c.adaption || f.Len() != 0) {
			t.Errorf("NewPeirce(%d, %v) = size %d adaption %v len %d", c.size, c.adaption, f.Size(), f.Adaption(), f.Len())
		}
	}
}

// TestPeirceGolden feeds known sequences and checks which samples are
// rejected and what the window holds afterwards. The expected figures
// are worked by hand from the definition: population standard
// deviation, criterion PeirceRatio(n) for the n samples held before the
// new one, and outliers entering as mean + adaption·(sample − mean).
func TestPeirceGolden(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		name     string
		size     int
		adaption float64
		in       []float64
		rejected []int // indexes into in
		// the window after the sequence
		len              int
		mean, sd, thresh float64
	}{
		{
			// Fewer than five samples: nothing is judged.
			name: "warm-up", size: 5, adaption: 1,
			in:  []float64{0, 1e6, -1e6, 5},
			len: 4, mean: 1.25, sd: math.Sqrt((1.5625 + 999997500001.5625 + 1000002500001.5625 + 14.0625) / 4), thresh: 0,
		},
		{
			// Window {10,12,8,11,9}: mean 10, sd √2, threshold
			// 1.509276·√2 = 2.134; 40 is rejected and enters as it is,
			// so the window {40,12,8,11,9} has mean 16 and sd √146,
			// threshold 18.24, and 10 (6 from the mean) is kept and
			// replaces the 10 that came first.
			name: "spike adaption 1", size: 5, adaption: 1,
			in:       []float64{10, 12, 8, 11, 9, 40, 10},
			rejected: []int{5},
			// {40,10,8,11,9}: the 40 stays in the window
			len: 5, mean: 15.6, sd: math.Sqrt(749.2 / 5), thresh: 1.509276 * math.Sqrt(749.2/5),
		},
		{
			// Adaption 0: the outlier enters as the mean (10), the
			// window's spread never grows, and the same spike is
			// rejected again; NaN and Inf are rejected and not kept.
			name: "spike adaption 0", size: 5, adaption: 0,
			in:       []float64{10, 12, 8, 11, 9, 40, 40, nan, inf, -inf},
			rejected: []int{5, 6, 7, 8, 9},
			// {10(for 40),10(for 40),8,11,9}
			len: 5, mean: 9.6, sd: math.Sqrt((0.16 + 0.16 + 2.56 + 1.96 + 0.36) / 5), thresh: 1.509276 * math.Sqrt(5.2/5),
		},
		{
			// Adaption 0.5: 40 enters as 10 + 0.5·30 = 25.
			name: "spike adaption 0.5", size: 5, adaption: 0.5,
			in:       []float64{10, 12, 8, 11, 9, 40},
			rejected: []int{5},
			len:      5, mean: 13, sd: math.Sqrt((144 + 1 + 25 + 4 + 16) / 5.0), thresh: 1.509276 * math.Sqrt(190/5.0),
		},
		{
			// A constant window has no spread: any other value is an
			// outlier, and the value itself is not (|0| > 0 is false).
			// With adaption 1 the new level enters: {1,0,0,0,0} has
			// mean 0.2, sd 0.4, threshold 0.604 and 1 is rejected
			// again; {1,1,0,0,0} has mean 0.4, sd 0.490, threshold
			// 0.739 and 1 (0.6 off) is kept.
			name: "constant window", size: 5, adaption: 1,
			in:       []float64{0, 0, 0, 0, 0, 0, 1, 1, 1},
			rejected: []int{6, 7},
			len:      5, mean: 0.6, sd: math.Sqrt((3*0.16 + 2*0.36) / 5), thresh: 1.509276 * math.Sqrt(1.2/5),
		},
		{
			// A six-sample window judges with the criterion for the
			// samples held: after 5 samples 1.509276, after 6 1.609828.
			// {0,2,0,2,0}: mean 0.8, sd 0.980, threshold 1.479: 2.5 is
			// rejected (1.7 off). {0,2,0,2,0,2.5}: mean 1.083, sd
			// 1.096, threshold 1.765: -0.6 (1.683 off) is kept.
			name: "criterion follows fill", size: 6, adaption: 1,
			in:       []float64{0, 2, 0, 2, 0, 2.5, -0.6},
			rejected: []int{5},
			// {-0.6,2,0,2,0,2.5}
			len: 6, mean: 5.9 / 6, sd: popSD([]float64{-0.6, 2, 0, 2, 0, 2.5}), thresh: 1.609828 * popSD([]float64{-0.6, 2, 0, 2, 0, 2.5}),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewPeirce(c.size, c.adaption)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for i, x := range c.in {
				if f.Sample(x) {
					got = append(got, i)
				}
			}
			if !equalInts(got, c.rejected) {
				t.Errorf("rejected %v, want %v", got, c.rejected)
			}
			mean, sd, ok := f.Stats()
			if f.Len() != c.len || !ok || !near(mean, c.mean, 1e-9) || !near(sd, c.sd, 1e-9) || !near(f.Threshold(), c.thresh, 1e-9) {
				t.Errorf("after: len %d mean %v sd %v threshold %v; want %d %v %v %v",
					f.Len(), mean, sd, f.Threshold(), c.len, c.mean, c.sd, c.thresh)
			}
			f.Reset()
			if _, _, ok := f.Stats(); ok || f.Len() != 0 || f.Threshold() != 0 {
				t.Errorf("after Reset: len %d threshold %v", f.Len(), f.Threshold())
			}
		})
	}
}

// TestPeirceAgainstReference runs long random sequences, with noise
// changing level, spikes and steps, through the filter and through a
// plain reference that keeps the window in a slice, and requires the
// same verdict for every sample.
func TestPeirceAgainstReference(t *testing.T) {
	for _, c := range []struct {
		size     int
		adaption float64
		seed     uint64
	}{
		{5, 1, 1}, {8, 0, 2}, {30, 0.5, 3}, {60, 1, 4}, {60, 0.25, 5}, {17, 0.9, 6},
	} {
		f, err := NewPeirce(c.size, c.adaption)
		if err != nil {
			t.Fatal(err)
		}
		ref := refPeirce{size: c.size, adaption: c.adaption}
		rng := rand.New(rand.NewPCG(c.seed, 7))
		level, noise := 0.0, 100.0
		rejects := 0
		for i := range 20000 {
			switch {
			case i%3000 == 2999:
				noise = 10 * math.Pow(100, rng.Float64()) // the noise level changes
			case i%4500 == 4499:
				level += 1e5 * rng.NormFloat64() // the offset steps
			}
			x := level + noise*rng.NormFloat64()
			if rng.Float64() < 0.02 {
				x += 5e6 + 175e6*rng.Float64() // a late Sync: 5..180 ms
			}
			got, want := f.Sample(x), ref.sample(x)
			if got != want {
				t.Fatalf("size %d adaption %v sample %d (%v): filter says %v, reference %v", c.size, c.adaption, i, x, got, want)
			}
			if got {
				rejects++
			}
		}
		if rejects == 0 {
			t.Errorf("size %d adaption %v: nothing rejected", c.size, c.adaption)
		}
	}
}

// TestPeirceRejectsLateSyncs is the case the filter is for: a steady
// stream of offsets with a few microseconds of noise and single Syncs
// stamped 5 to 180 ms late, further apart than the window is long. With
// sfptpd's defaults every late one must be rejected, and few good ones.
func TestPeirceRejectsLateSyncs(t *testing.T) {
	f, err := NewPeirce(DefaultPeirceSize, DefaultPeirceAdaption)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	var late, lateRejected, good, goodRejected int
	for i := range 10000 {
		x := 3e3 * rng.NormFloat64()
		isLate := i%(DefaultPeirceSize+13) == DefaultPeirceSize
		if isLate {
			x += 5e6 + 175e6*rng.Float64()
		}
		out := f.Sample(x)
		switch {
		case isLate:
			late++
			if out {
				lateRejected++
			}
		case i >= PeirceMinSamples:
			good++
			if out {
				goodRejected++
			}
		}
	}
	if late < 100 || lateRejected != late {
		t.Errorf("late Syncs rejected %d of %d", lateRejected, late)
	}
	// Peirce's criterion for 60 samples is 2.66 σ: about 0.8% of
	// Gaussian samples lie further out; but while a late Sync is in the
	// window (adaption 1 lets it in as it is) the window is wide and
	// rejects none. Allow up to 1%.
	if goodRejected == 0 || goodRejected > good/100 {
		t.Errorf("good samples rejected %d of %d", goodRejected, good)
	}
}

// TestPeirceAdaptionAfterSpike shows what the adaption weight buys and
// costs. With adaption 1 a 150 ms spike enters the window as it is: for
// the next window's worth of samples the spread is tens of
// milliseconds, and a second, 10 ms late Sync is kept. With adaption 0
// the spike enters as the mean and the second one is rejected too.
func TestPeirceAdaptionAfterSpike(t *testing.T) {
	for _, c := range []struct {
		adaption     float64
		secondKept   bool
		thresholdMin float64 // the threshold after the spike, at least
		thresholdMax float64 // and at most
	}{
		{1, true, 2.5 * 150e6 / math.Sqrt(60), 2.7 * 150e6 / math.Sqrt(60)},
		{0, false, 0, 4 * 3e3},
	} {
		f, _ := NewPeirce(60, c.adaption)
		rng := rand.New(rand.NewPCG(5, 5))
		for range 60 {
			f.Sample(3e3 * rng.NormFloat64())
		}
		if !f.Sample(150e6) {
			t.Fatalf("adaption %v: 150 ms spike kept", c.adaption)
		}
		th := f.Threshold()
		if th < c.thresholdMin || th > c.thresholdMax {
			t.Errorf("adaption %v: threshold after the spike %v, want %v..%v", c.adaption, th, c.thresholdMin, c.thresholdMax)
		}
		for range 10 {
			f.Sample(3e3 * rng.NormFloat64())
		}
		if kept := !f.Sample(10e6); kept != c.secondKept {
			t.Errorf("adaption %v: second late Sync kept %v, want %v", c.adaption, kept, c.secondKept)
		}
	}
}

// TestPeirceAdaptsToStep: a lasting step of the offset is rejected only
// until the window has taken in enough of the new level, the longer the
// smaller the adaption; with adaption 0 it is rejected for ever.
func TestPeirceAdaptsToStep(t *testing.T) {
	run := func(adaption float64) (maxRun, last int) {
		f, _ := NewPeirce(60, adaption)
		rng := rand.New(rand.NewPCG(9, 9))
		for range 60 {
			f.Sample(rng.NormFloat64())
		}
		n := 0
		for range 300 {
			if f.Sample(1000 + rng.NormFloat64()) {
				n++
				maxRun = max(maxRun, n)
			} else {
				n = 0
			}
		}
		return maxRun, n
	}
	// For a noiseless window of 60, after k samples of a step D the
	// window's mean is kD/60 and its sd D·√(k/60·(1−k/60)), and the
	// next sample is rejected while 1−p > 2.662·√(p(1−p)), p = k/60,
	// i.e. for k ≤ 7: eight rejections; the noise of 1 against a step
	// of 1000 does not change that.
	if m, last := run(1); m != 8 || last != 0 {
		t.Errorf("adaption 1: %d rejected in a row, want 8; still rejecting %d", m, last)
	}
	m1, _ := run(1)
	if m, last := run(0.5); m <= m1 || last != 0 {
		t.Errorf("adaption 0.5: %d rejected in a row (adaption 1: %d), still rejecting %d", m, m1, last)
	}
	if m, last := run(0); last != 300 {
		t.Errorf("adaption 0: the new level was kept after %d rejections", m)
	}
}

// TestPeirceProperties: whatever it is fed, the filter never panics,
// holds at most its size, and its mean stays within the finite samples
// it was given.
func TestPeirceProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	specials := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, -0, 1e12, -1e12, 5e-324}
	for trial := range 200 {
		size := PeirceMinSamples + rng.IntN(PeirceMaxSamples-PeirceMinSamples+1)
		f, err := NewPeirce(size, rng.Float64())
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for range 300 {
			var x float64
			if rng.IntN(10) == 0 {
				x = specials[rng.IntN(len(specials))]
			} else {
				x = (rng.Float64()*2 - 1) * math.Pow(10, float64(rng.IntN(13)))
			}
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				lo, hi = min(lo, x), max(hi, x)
			}
			f.Sample(x)
			checkPeirceBounded(t, f, lo, hi)
		}
		_ = trial
	}
}

// FuzzPeirce feeds the filter the float64s a byte string spells.
func FuzzPeirce(f *testing.F) {
	f.Add(uint8(5), uint8(255), []byte{})
	f.Add(uint8(60), uint8(128), binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.NaN())))
	seq := []byte{}
	for _, x := range []float64{10, 12, 8, 11, 9, 40, 10, math.Inf(1), -3e9} {
		seq = binary.LittleEndian.AppendUint64(seq, math.Float64bits(x))
	}
	f.Add(uint8(5), uint8(0), seq)
	f.Fuzz(func(t *testing.T, size, adaption uint8, data []byte) {
		n := PeirceMinSamples + int(size)%(PeirceMaxSamples-PeirceMinSamples+1)
		p, err := NewPeirce(n, float64(adaption)/255)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for len(data) >= 8 {
			x := math.Float64frombits(binary.LittleEndian.Uint64(data))
			data = data[8:]
			if math.Abs(x) > 1e15 {
				// Offsets beyond 11 days are outside what a port
				// measures; sums of such squares overflow.
				continue
			}
			if !math.IsNaN(x) {
				lo, hi = min(lo, x), max(hi, x)
			}
			p.Sample(x)
			checkPeirceBounded(t, p, lo, hi)
		}
	})
}

func checkPeirceBounded(t *testing.T, f *Peirce, lo, hi float64) {
	t.Helper()
	if f.Len() > f.Size() {
		t.Fatalf("holds %d of %d", f.Len(), f.Size())
	}
	mean, sd, ok := f.Stats()
	if !ok {
		return
	}
	slack := 1e-9 * max(math.Abs(lo), math.Abs(hi), 1)
	if math.IsNaN(mean) || mean < lo-slack || mean > hi+slack || math.IsNaN(sd) || sd < 0 || sd > hi-lo+slack {
		t.Fatalf("mean %v sd %v outside the samples' range [%v, %v]", mean, sd, lo, hi)
	}
	if th := f.Threshold(); math.IsNaN(th) || th < 0 {
		t.Fatalf("threshold %v", th)
	}
}

// refPeirce is the filter written the plain way, as the reference.
type refPeirce struct {
	size     int
	adaption float64
	win      []float64
}

func (r *refPeirce) sample(x float64) bool {
	out := false
	if len(r.win) >= PeirceMinSamples {
		m := 0.0
		for _, v := range r.win {
			m += v
		}
		m /= float64(len(r.win))
		sd := popSD(r.win)
		if math.Abs(x-m) > PeirceRatio(len(r.win))*sd {
			out = true
			x = m + r.adaption*(x-m)
		}
	}
	r.win = append(r.win, x)
	if len(r.win) > r.size {
		r.win = r.win[1:]
	}
	return out
}

func popSD(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	s := 0.0
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(v)))
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*max(1, math.Abs(b)) }

// TestPeirceHoldLone: with hold, a lone late Sync cannot open the window
// for the moderately late ones after it, as it does in sfptpd's filter,
// and a lasting step is still followed, one sample later.
func TestPeirceHoldLone(t *testing.T) {
	for _, c := range []struct {
		name     string
		hold     bool
		secondOK bool // the 4 µs late Sync ten samples after a 144 µs one is kept
		stepRun  int  // rejections in a row of a lasting 1000σ step
	}{
		{"sfptpd", false, true, 8},
		{"hold", true, false, 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _ := NewPeirce(60, 1)
			f.SetHoldLone(c.hold)
			rng := rand.New(rand.NewPCG(5, 6))
			for range 60 {
				f.Sample(300 * rng.NormFloat64())
			}
			if !f.Sample(144000) {
				t.Fatal("144 µs late Sync kept")
			}
			for range 10 {
				f.Sample(300 * rng.NormFloat64())
			}
			if kept := !f.Sample(4000); kept != c.secondOK {
				t.Errorf("4 µs late Sync after the 144 µs one: kept %v, want %v (threshold %.0f ns)", kept, c.secondOK, f.Threshold())
			}

			f.Reset()
			for range 60 {
				f.Sample(rng.NormFloat64())
			}
			n, run := 0, 0
			for range 300 {
				if f.Sample(1000 + rng.NormFloat64()) {
					n++
					run = max(run, n)
				} else {
					n = 0
				}
			}
			if run != c.stepRun || n != 0 {
				t.Errorf("step: %d rejected in a row, want %d; still rejecting %d", run, c.stepRun, n)
			}
		})
	}
}
