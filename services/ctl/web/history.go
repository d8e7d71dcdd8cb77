package web

import "time"

// maxHistory bounds the history ring whatever Options say: with the
// default interval of 1 s, 10 minutes are 600 samples.
const maxHistory = 1 << 16

// History is the selected PTP instance's offset and frequency
// adjustment over time, as three columns (uPlot's layout). T is in
// seconds since the epoch; an offset or adjustment is null where ptpd
// was down or had no selected instance.
type History struct {
	// Full is true when the columns hold the whole history, false when
	// they hold only the samples after a given time.
	Full     bool       `json:"full"`
	T        []float64  `json:"t"`
	OffsetNS []*float64 `json:"offset-ns"`
	FreqPPB  []*float64 `json:"freq-adj-ppb"`
}

type sample struct {
	t            float64
	offset, freq *float64
}

// history is a ring of the samples of the last span.
type history struct {
	span  time.Duration
	ring  []sample
	start int // index of the oldest sample
	n     int
}

func newHistory(span, interval time.Duration) *history {
	n := maxHistory
	if interval > 0 {
		if want := int(span/interval) + 2; want < n {
			n = want
		}
	}
	return &history{span: span, ring: make([]sample, n)}
}

func (h *history) at(i int) *sample { return &h.ring[(h.start+i)%len(h.ring)] }

// add appends s, dropping the oldest sample when the ring is full and
// every sample older than the span before s.
func (h *history) add(s sample) {
	if h.n == len(h.ring) {
		h.start = (h.start + 1) % len(h.ring)
		h.n--
	}
	h.ring[(h.start+h.n)%len(h.ring)] = s
	h.n++
	oldest := s.t - h.span.Seconds()
	for h.n > 0 && h.at(0).t < oldest {
		*h.at(0) = sample{}
		h.start = (h.start + 1) % len(h.ring)
		h.n--
	}
}

// since returns the samples after t (all of them when t is 0).
func (h *history) since(t float64) History {
	out := History{Full: t <= 0, T: []float64{}, OffsetNS: []*float64{}, FreqPPB: []*float64{}}
	for i := 0; i < h.n; i++ {
		s := h.at(i)
		if s.t <= t {
			continue
		}
		out.T = append(out.T, s.t)
		out.OffsetNS = append(out.OffsetNS, s.offset)
		out.FreqPPB = append(out.FreqPPB, s.freq)
	}
	return out
}

// len is the number of samples kept.
func (h *history) len() int { return h.n }
