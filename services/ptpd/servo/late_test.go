package servo

import (
	"math"
	"testing"
	"time"
)

// TestLateStamps runs the servo on what software timestamps inside a
// virtual machine deliver: 1 µs of Gaussian noise, one Sync in a hundred
// stamped late by 10 µs to 1.7 ms (the vCPU was descheduled between the
// master's and the slave's stamp), sixteen Syncs a second, and, in the
// gap cases, Syncs missing for 440 ms every five seconds, each gap a
// holdover as the port starts one. The true offset over the last minute
// must stay within a fraction of a microsecond: a late stamp must not
// move the clock far, and a short holdover must not make the servo
// re-estimate the frequency from two samples.
func TestLateStamps(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed uint64
		gaps bool
	}{
		{"steady", 1, false},
		{"steady", 2, false},
		{"steady", 3, false},
		{"gaps", 1, true},
		{"gaps", 2, true},
		{"gaps", 3, true},
		{"gaps", 4, true},
		{"gaps", 5, true},
		{"gaps", 6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.SyncInterval = time.Second / 16
			s := New(cfg, 0)
			m := newSim(500e3, 30, 1000, tc.seed)
			m.dt, m.late = cfg.SyncInterval, 0.01
			var errs []float64
			for i := range 16 * 100 {
				m.advance()
				if tc.gaps && i%80 == 79 {
					m.adjPPB = s.Holdover()
					for range 7 {
						m.advance()
					}
				}
				m.apply(s.Sample(m.measure(), m.t))
				if i >= 16*40 {
					errs = append(errs, m.x)
				}
			}
			var sum, mx float64
			for _, e := range errs {
				sum += e * e
				mx = math.Max(mx, math.Abs(e))
			}
			rms := math.Sqrt(sum / float64(len(errs)))
			t.Logf("seed %d: true offset RMS %.0f ns, max %.0f ns, steps %d", tc.seed, rms, mx, m.steps)
			if rms > 500 || mx > 1500 || m.steps != 1 {
				t.Errorf("seed %d: true offset RMS %.0f ns (want ≤ 500), max %.0f ns (want ≤ 1500), steps %d (want 1)",
					tc.seed, rms, mx, m.steps)
			}
		})
	}
}
