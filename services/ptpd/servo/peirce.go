package servo

import (
	"fmt"
	"math"
)

// Bounds and defaults of the outlier filter's window and adaption, as
// sfptpd has them for its PTP servo (outlier_filter_size,
// outlier_filter_adaption).
const (
	// PeirceMinSamples is both the smallest window and the number of
	// samples the filter must hold before it rejects anything.
	PeirceMinSamples = 5
	// PeirceMaxSamples is the largest window.
	PeirceMaxSamples = 60
	// DefaultPeirceSize and DefaultPeirceAdaption are sfptpd's defaults.
	DefaultPeirceSize     = 60
	DefaultPeirceAdaption = 1.0
)

// peirceRatio[n] is Peirce's criterion for n observations with one
// doubtful observation and one unknown (the mean): the largest
// deviation from the mean, in standard deviations, that is kept. It is
// computed once, by Gould's iteration, and rounded to six decimals as
// the published tables (and sfptpd's) give it. Index 0 and 1 are unused.
var peirceRatio = func() [PeirceMaxSamples + 1]float64 {
	var t [PeirceMaxSamples + 1]float64
	for n := 2; n <= PeirceMaxSamples; n++ {
		t[n] = math.Round(peirceCriterion(n)*1e6) / 1e6
	}
	return t
}()

// peirceCriterion computes Peirce's ratio R for total observations with
// one doubtful observation and one unknown quantity, after B. A. Gould's
// (1855) solution: starting from R = 1, it alternates between the
// ratio λ of the deviation of the kept observations to that of all of
// them, which follows from the probability that the doubtful one is
// rejected rightly, and R² = 1 + (N−2)(1−λ²), until R stops changing.
func peirceCriterion(total int) float64 {
	const doubtful, unknowns = 1.0, 1.0
	N := float64(total)
	if total < 2 {
		return 0
	}
	// q^N is the probability of the whole system of errors with the
	// doubtful observation rejected, for R = 1.
	q := math.Pow(doubtful, doubtful/N) * math.Pow(N-doubtful, (N-doubtful)/N) / N
	qN := math.Pow(q, N)
	r := 1.0
	x2 := 0.0
	for range 200 {
		lambda := math.Pow(qN/math.Pow(r, doubtful), 1/(N-doubtful))
		x2 = 1 + (N-unknowns-doubtful)/doubtful*(1-lambda*lambda)
		if x2 < 0 {
			x2 = 0
			break
		}
		next := math.Exp((x2-1)/2) * math.Erfc(math.Sqrt(x2/2))
		if math.Abs(next-r) <= N*2e-16 {
			break
		}
		r = next
	}
	return math.Sqrt(x2)
}

// PeirceRatio returns the criterion the filter applies when it holds n
// samples; 0 outside 2..PeirceMaxSamples.
func PeirceRatio(n int) float64 {
	if n < 2 || n > PeirceMaxSamples {
		return 0
	}
	return peirceRatio[n]
}

// Peirce is sfptpd's adaptive outlier filter for offsets: it keeps the
// last Size samples, and once it holds at least PeirceMinSamples it
// calls a new sample an outlier when the sample's distance from their
// mean exceeds Peirce's criterion for that many samples times their
// (population) standard deviation.
//
// Every sample enters the window, outliers too, so that the filter
// follows a change in the noise level or a real change of the offset.
// An outlier enters moved towards the mean: as mean + adaption ×
// (sample − mean). With adaption 1 it enters as it is and the filter
// adapts fastest; with 0 it enters as the mean and outliers never
// widen the window's spread.
//
// A sample that is not a finite number is called an outlier and does
// not enter the window. Peirce is not safe for concurrent use.
type Peirce struct {
	adaption float64
	buf      []float64 // a ring of the last len(buf) samples
	pos, n   int
	// holdLone: a lone outlier enters the window no further from the
	// mean than the threshold (SetHoldLone); lastSide is the side
	// (+1, -1) of the previous sample if it was an outlier, else 0.
	holdLone bool
	lastSide int
}

// SetHoldLone changes how a lone outlier enters the window. sfptpd
// (and the filter by default) lets every outlier in as mean +
// adaption × (sample − mean): with adaption 1, one Sync stamped 100 µs
// late widens the window's spread for the next Size samples, and
// moderately late Syncs among them are kept. With hold on, an outlier
// whose predecessor was not an outlier on the same side enters as
// mean ± min(adaption × |sample − mean|, threshold): it cannot widen
// the window by more than a sample at the threshold would. The second
// and later outliers of a run on one side enter as sfptpd has them, so
// a lasting change of the offset is followed one sample later than
// without hold.
func (f *Peirce) SetHoldLone(on bool) { f.holdLone = on }

// NewPeirce returns a filter over the last size samples
// (PeirceMinSamples..PeirceMaxSamples) that lets outliers into the
// window with weight adaption (0..1).
func NewPeirce(size int, adaption float64) (*Peirce, error) {
	if size < PeirceMinSamples || size > PeirceMaxSamples {
		return nil, fmt.Errorf("outlier filter size %d outside allowed range [%d,%d]", size, PeirceMinSamples, PeirceMaxSamples)
	}
	if !(adaption >= 0 && adaption <= 1) {
		return nil, fmt.Errorf("outlier filter adaption %v outside allowed range of [0,1]", adaption)
	}
	return &Peirce{adaption: adaption, buf: make([]float64, size)}, nil
}

// Size is the window's length.
func (f *Peirce) Size() int { return len(f.buf) }

// Adaption is the weight outliers enter the window with.
func (f *Peirce) Adaption() float64 { return f.adaption }

// Len is the number of samples held.
func (f *Peirce) Len() int { return f.n }

// Reset forgets every sample.
func (f *Peirce) Reset() { f.pos, f.n, f.lastSide = 0, 0, 0 }

// Stats returns the mean and population standard deviation of the
// samples held; ok is false when there are none.
func (f *Peirce) Stats() (mean, sd float64, ok bool) {
	if f.n == 0 {
		return 0, 0, false
	}
	var sum float64
	for _, v := range f.buf[:f.n] {
		sum += v
	}
	mean = sum / float64(f.n)
	var ss float64
	for _, v := range f.buf[:f.n] {
		d := v - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss / float64(f.n)), true
}

// Threshold is the largest distance from the mean that the next sample
// may have and be kept, criterion × standard deviation; 0 before the
// filter holds PeirceMinSamples samples, when it rejects nothing.
func (f *Peirce) Threshold() float64 {
	if f.n < PeirceMinSamples {
		return 0
	}
	_, sd, _ := f.Stats()
	return PeirceRatio(f.n) * sd
}

// Sample takes the next sample and reports whether it is an outlier.
func (f *Peirce) Sample(x float64) (outlier bool) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return true
	}
	side := 0
	if f.n >= PeirceMinSamples {
		mean, sd, _ := f.Stats()
		dev := x - mean
		if th := PeirceRatio(f.n) * sd; math.Abs(dev) > th {
			outlier = true
			side = 1
			if dev < 0 {
				side = -1
			}
			enter := f.adaption * dev
			if f.holdLone && side != f.lastSide && math.Abs(enter) > th {
				enter = float64(side) * th
			}
			x = mean + enter
		}
	}
	f.lastSide = side
	f.buf[f.pos] = x
	f.pos = (f.pos + 1) % len(f.buf)
	if f.n < len(f.buf) {
		f.n++
	}
	return outlier
}
