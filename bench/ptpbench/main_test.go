package main

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

func TestMain(m *testing.M) {
	if ptptest.IsHelper() {
		os.Exit(ptptest.HelperMain())
	}
	os.Exit(m.Run())
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want summary
	}{
		{"one", []float64{-3}, summary{N: 1, Mean: -3, SD: 0, Center: -3, Med: 0, P95: 0, Max: 0, RMS: 3, MaxAbs: 3}},
		{"symmetric", []float64{-2, -1, 0, 1, 2}, summary{N: 5, Mean: 0, SD: math.Sqrt2, Center: 0, Med: 1, P95: 2, Max: 2, RMS: math.Sqrt2, MaxAbs: 2}},
		// One late sample moves the mean and SD, not the median-based figures.
		{"one late", []float64{10, 10, 10, 10, 10, 10, 10, 10, 10, 1010}, summary{
			N: 10, Mean: 110, SD: 300, Center: 10, Med: 0, P95: 550, Max: 1000,
			RMS: math.Sqrt((9*100 + 1010*1010) / 10.0), MaxAbs: 1010}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize(tc.in)
			g := []float64{float64(got.N), got.Mean, got.SD, got.Center, got.Med, got.P95, got.Max, got.RMS, got.MaxAbs}
			w := []float64{float64(tc.want.N), tc.want.Mean, tc.want.SD, tc.want.Center, tc.want.Med, tc.want.P95, tc.want.Max, tc.want.RMS, tc.want.MaxAbs}
			for i := range g {
				if math.Abs(g[i]-w[i]) > 1e-9 {
					t.Fatalf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
				}
			}
		})
	}
	if s := summarize(nil); s.N != 0 || !math.IsNaN(s.SD) {
		t.Errorf("summarize(nil) = %+v, want N 0 and NaN figures", s)
	}
}

// TestQuick runs the benchmark's smoke test end to end: every row must
// have been measured. The figures themselves depend on the machine and
// are not checked.
func TestQuick(t *testing.T) {
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, why)
	}
	res, err := run(options{settle: 10 * time.Second, window: 10 * time.Second}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.print(&out)
	t.Log("\n" + out.String())
	rows := res.rows()
	if len(rows) != 9 {
		t.Fatalf("%d rows, want 9", len(rows))
	}
	for _, r := range rows {
		if r.s.N == 0 || math.IsNaN(r.s.SD) {
			t.Errorf("%s: no samples", r.name)
		}
		if !strings.Contains(out.String(), "| "+r.name+" |") {
			t.Errorf("%s: not in the tables", r.name)
		}
	}
	for _, l := range res.loops {
		if l.steps == 0 {
			t.Errorf("%s: the clock started 500 µs off and was never stepped", l.name)
		}
	}
	if res.rssIdleKiB == 0 || res.rssSlaveKiB == 0 {
		t.Errorf("RSS not measured: idle %d KiB, slave %d KiB", res.rssIdleKiB, res.rssSlaveKiB)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
