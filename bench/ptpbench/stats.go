package main

import (
	"math"
	"slices"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/ptp"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// summary describes a series of offsets or errors (ns). The spread is
// measured from the median, which one late-stamped sample does not move:
// Med, P95 and Max are the median, 95th percentile and largest of
// |x − median|. SD is the standard deviation about the mean, RMS the
// root mean square of x itself (bias included), MaxAbs the largest |x|.
type summary struct {
	N             int
	Mean, SD      float64
	Center        float64
	Med, P95, Max float64
	RMS, MaxAbs   float64
}

func summarize(v []float64) summary {
	s := summary{N: len(v)}
	if len(v) == 0 {
		nan := math.NaN()
		return summary{Mean: nan, SD: nan, Center: nan, Med: nan, P95: nan, Max: nan, RMS: nan, MaxAbs: nan}
	}
	var sum, sq float64
	for _, x := range v {
		sum += x
		sq += x * x
		s.MaxAbs = math.Max(s.MaxAbs, math.Abs(x))
	}
	n := float64(len(v))
	s.Mean = sum / n
	s.RMS = math.Sqrt(sq / n)
	var ss float64
	for _, x := range v {
		ss += (x - s.Mean) * (x - s.Mean)
	}
	s.SD = math.Sqrt(ss / n)
	s.Center = quantile(v, 0.5)
	dev := make([]float64, len(v))
	for i, x := range v {
		dev[i] = math.Abs(x - s.Center)
	}
	s.Med = quantile(dev, 0.5)
	s.P95 = quantile(dev, 0.95)
	s.Max = slices.Max(dev)
	return s
}

// quantile is the q-quantile of v by linear interpolation between the
// order statistics; v is not changed.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	i := int(math.Floor(pos))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// samplesIn returns the offsets the helper measured from start on, all
// of them (the measurement before the outlier filter) or only those the
// filter kept, and every every-th one of them (1: all).
func samplesIn(rs []ptptest.Report, start time.Time, keptOnly bool, every int) []float64 {
	var out []float64
	i := 0
	for _, r := range rs {
		for _, s := range r.Samples {
			if s.At.Before(start) || (keptOnly && s.Outlier) {
				continue
			}
			if i%every == 0 {
				out = append(out, s.OffsetNS)
			}
			i++
		}
	}
	return out
}

// trueErrors returns the true errors reported from start on.
func trueErrors(rs []ptptest.Report, start time.Time) []float64 {
	var out []float64
	for _, r := range rs {
		if !r.At.Before(start) {
			out = append(out, r.TrueErr)
		}
	}
	return out
}

// lateEvent is a late-stamped Sync: an offset at least lateThreshold
// from the median of the offsets around it.
type lateEvent struct {
	At      time.Time
	Excess  float64 // the offset less that median (ns)
	Outlier bool    // the outlier filter rejected it
}

// lateThreshold separates late-stamped Syncs from the timestamp noise,
// which on a veth pair is a few hundred nanoseconds: a Sync stamped
// 5 µs or more late is one whose receive was held up.
const lateThreshold = 5000

// lateEvents finds the late-stamped Syncs among a slave's samples from
// start on, against the median of the 33 samples around each: a closed
// loop's own slow wander stays in that median.
func lateEvents(rs []ptptest.Report, start time.Time) []lateEvent {
	var all []ptp.Sample
	for _, r := range rs {
		all = append(all, r.Samples...)
	}
	const half = 16
	var out []lateEvent
	win := make([]float64, 0, 2*half+1)
	for i, s := range all {
		if s.At.Before(start) {
			continue
		}
		win = win[:0]
		for j := max(0, i-half); j < min(len(all), i+half+1); j++ {
			win = append(win, all[j].OffsetNS)
		}
		if d := s.OffsetNS - quantile(win, 0.5); math.Abs(d) >= lateThreshold {
			out = append(out, lateEvent{At: s.At, Excess: d, Outlier: s.Outlier})
		}
	}
	return out
}

// responseWindow is how long after a late-stamped Sync its effect on
// the closed-loop error is looked for: a few time constants of the loop
// would be longer, but a sample that got through moves the clock at
// once (the proportional term) and most in the first second.
const responseWindow = 2 * time.Second

// responses returns, for each event, the largest |true error − median
// true error| in the reports within responseWindow after it: how far
// the clock moved when the late-stamped Sync came.
func responses(rs []ptptest.Report, start time.Time, evs []lateEvent) []float64 {
	med := quantile(trueErrors(rs, start), 0.5)
	var out []float64
	for _, e := range evs {
		peak, seen := 0.0, false
		for _, r := range rs {
			if r.At.Before(e.At) || r.At.After(e.At.Add(responseWindow)) {
				continue
			}
			peak, seen = math.Max(peak, math.Abs(r.TrueErr-med)), true
		}
		if seen {
			out = append(out, peak)
		}
	}
	return out
}

// everySecond returns an event at each whole second of the window that
// starts at start, for the move a closed loop makes without a
// late-stamped Sync to blame.
func everySecond(start time.Time, window time.Duration) []lateEvent {
	var out []lateEvent
	for t := start; t.Add(responseWindow).Before(start.Add(window)); t = t.Add(time.Second) {
		out = append(out, lateEvent{At: t})
	}
	return out
}
