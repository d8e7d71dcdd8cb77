package clock

import (
	"math"
	"sync"
	"testing"
	"time"
)

// simSource is a simulated kernel: raw advances only when the test says,
// and realtime runs at raw's rate plus a fixed offset.
type simSource struct {
	mu     sync.Mutex
	raw    int64
	rtOff  int64
	tickNS int64 // each read advances raw by this much
}

func (s *simSource) Raw() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw += s.tickNS
	return s.raw
}

func (s *simSource) Realtime() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw += s.tickNS
	return s.raw + s.rtOff
}

func (s *simSource) advance(d time.Duration) {
	s.mu.Lock()
	s.raw += int64(d)
	s.mu.Unlock()
}

func TestParseVirtual(t *testing.T) {
	for _, tc := range []struct {
		in     string
		off    time.Duration
		ppm    float64
		hasErr bool
	}{
		{"500us,30", 500 * time.Microsecond, 30, false},
		{"-2ms,-12.5", -2 * time.Millisecond, -12.5, false},
		{" 0s , 0 ", 0, 0, false},
		{"1s,1000", time.Second, 1000, false},
		{"1s,1000.1", 0, 0, true},
		{"500us", 0, 0, true},
		{"500,30", 0, 0, true},
		{"500us,abc", 0, 0, true},
		{"500us,NaN", 0, 0, true},
		{"500us,Inf", 0, 0, true},
		{"", 0, 0, true},
	} {
		off, ppm, err := ParseVirtualSpec(tc.in)
		if (err != nil) != tc.hasErr {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.hasErr)
			continue
		}
		if err == nil && (off != tc.off || ppm != tc.ppm) {
			t.Errorf("%q: got %v,%v want %v,%v", tc.in, off, ppm, tc.off, tc.ppm)
		}
	}
	v, err := ParseVirtual("500us,30")
	if err != nil {
		t.Fatal(err)
	}
	if e := v.TrueError(); e < 499*time.Microsecond || e > 501*time.Microsecond {
		t.Errorf("fresh 500us clock: true error %v", e)
	}
}

func TestVirtualModel(t *testing.T) {
	src := &simSource{raw: 1e9, rtOff: 1_700_000_000e9, tickNS: 0}
	v, err := NewVirtualSource(src, 500*time.Microsecond, 30)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.TrueError(); got != 500*time.Microsecond {
		t.Fatalf("initial error %v", got)
	}
	src.advance(10 * time.Second) // 30 ppm over 10 s: +300 us
	if got := v.TrueError(); got != 800*time.Microsecond {
		t.Fatalf("after 10 s: %v, want 800us", got)
	}
	if err := v.Step(-800 * time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if got := v.TrueError(); got != 0 {
		t.Fatalf("after step: %v", got)
	}
	// Cancel the error exactly: rate (1+30e-6)(1+a·1e-9) = 1.
	adj := (1/(1+30e-6) - 1) * 1e9
	if err := v.AdjFreqPPB(adj); err != nil {
		t.Fatal(err)
	}
	src.advance(100 * time.Second)
	if got := v.TrueError(); got < -1 || got > 1 {
		t.Fatalf("after cancelling the error: %v", got)
	}
	if f, _ := v.FreqPPB(); f != adj {
		t.Fatalf("FreqPPB %v want %v", f, adj)
	}
	if err := v.AdjFreqPPB(1e9); err != nil {
		t.Fatal(err)
	}
	if f, _ := v.FreqPPB(); f != VirtualMaxFreqPPB {
		t.Fatalf("clamp: %v", f)
	}
	if err := v.AdjFreqPPB(math.NaN()); err == nil {
		t.Fatal("NaN accepted")
	}
	if v.Steps() != 1 {
		t.Fatalf("steps %d", v.Steps())
	}
}

func TestVirtualFromRealtime(t *testing.T) {
	src := &simSource{raw: 5e9, rtOff: 1_700_000_000e9}
	v, err := NewVirtualSource(src, time.Millisecond, -20)
	if err != nil {
		t.Fatal(err)
	}
	src.advance(time.Second)
	// A timestamp taken 3 ms ago on realtime maps to the virtual
	// reading 3 ms of raw ago.
	rt := time.Unix(0, src.Realtime()-3e6)
	got, err := v.FromRealtime(rt)
	if err != nil {
		t.Fatal(err)
	}
	now, _ := v.Now()
	want := now.Add(-time.Duration(3e6 * (1 - 20e-6)))
	if d := got.Sub(want); d < -2 || d > 2 {
		t.Fatalf("mapped %v want %v (diff %v)", got, want, d)
	}
	if m, err := ToClock(v, rt); err != nil || !m.Equal(got) {
		t.Fatalf("ToClock %v %v", m, err)
	}
}

// TestVirtualKernel runs the real kernel source: the mapping of a fresh
// realtime reading must agree with Now to within a few microseconds.
func TestVirtualKernel(t *testing.T) {
	v, err := NewVirtual(0, 50)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		now, _ := v.Now()
		m, _ := v.FromRealtime(time.Now())
		if d := m.Sub(now); d < -50*time.Microsecond || d > 50*time.Microsecond {
			t.Fatalf("mapped realtime differs from Now by %v", d)
		}
	}
	if e := v.TrueError(); e < -50*time.Microsecond || e > 50*time.Microsecond {
		t.Fatalf("fresh clock true error %v", e)
	}
}

// TestSystemReadOnly reads, never adjusts, the host clock.
func TestSystemReadOnly(t *testing.T) {
	s, err := NewSystem()
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxFreqPPB() <= 0 || s.Name() != "system" {
		t.Fatalf("max %v name %q", s.MaxFreqPPB(), s.Name())
	}
	if _, err := s.FreqPPB(); err != nil {
		t.Fatal(err)
	}
	var _ Clock = s
	var _ Clock = (*PHC)(nil)
	var _ Clock = (*Virtual)(nil)
	if got, _ := ToClock(s, time.Unix(5, 0)); !got.Equal(time.Unix(5, 0)) {
		t.Fatal("system clock must not remap")
	}
	if _, err := OpenPHC("/nonexistent/ptp9", ""); err == nil {
		t.Fatal("opening a missing PHC succeeded")
	}
	if stripPTP("ptp3") != "phc3" {
		t.Fatal(stripPTP("ptp3"))
	}
}
