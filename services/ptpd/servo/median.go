package servo

import "slices"

// Median is a moving median over the last N values: path-delay samples
// carry occasional large outliers (a delayed Delay_Req, a busy host) that
// a mean would smear into the offset, and a median ignores.
type Median struct {
	buf    []float64
	pos, n int
	tmp    []float64
}

// NewMedian returns a filter over the last n values (n ≥ 1).
func NewMedian(n int) *Median {
	n = max(n, 1)
	return &Median{buf: make([]float64, n), tmp: make([]float64, 0, n)}
}

// Add adds a value and returns the new median.
func (m *Median) Add(v float64) float64 {
	m.buf[m.pos] = v
	m.pos = (m.pos + 1) % len(m.buf)
	if m.n < len(m.buf) {
		m.n++
	}
	med, _ := m.Value()
	return med
}

// Value returns the median, and false when there are no values. With an
// even count it is the mean of the two middle values.
func (m *Median) Value() (float64, bool) {
	if m.n == 0 {
		return 0, false
	}
	m.tmp = append(m.tmp[:0], m.buf[:m.n]...)
	slices.Sort(m.tmp)
	if m.n%2 == 1 {
		return m.tmp[m.n/2], true
	}
	return (m.tmp[m.n/2-1] + m.tmp[m.n/2]) / 2, true
}

// Len is the number of values held.
func (m *Median) Len() int { return m.n }

// Reset forgets all values.
func (m *Median) Reset() { m.n, m.pos = 0, 0 }
