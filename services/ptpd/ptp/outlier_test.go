package ptp

import (
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
	"github.com/tickbox-fw/tickbox/services/ptpd/servo"
)

// TestPortDiscardsLateSync runs a slave on a steady stream of Syncs, an
// offset of 500 ns with ±60 ns of noise, and stamps one Sync's arrival
// 50 ms late, as a descheduled virtual machine does. As in sfptpd, the
// outlier filter discards it: the reported offset stays the last good
// one, the servo does not see it (the clock's frequency is left as it
// was), it is counted, and the port stays SLAVE and in sync. The next
// good Sync is taken as usual.
func TestPortDiscardsLateSync(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control servo.ClockControl
	}{
		{"disciplining", servo.SlewAndStep},
		{"measuring only", servo.NoAdjust},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, clk, tr := testPort(t, ModeSlave)
			p.cfg.ClockControl = tc.control
			p.disc.mayAdjust = tc.control != servo.NoAdjust
			p.disc.servo = servo.New(p.cfg.servoConfig(), 0)
			qualify(t, p, t0, masterA, 128)
			withDelay(t, p, tr, t0)
			now := t0.Add(2 * time.Second)
			seq := uint16(100)
			sync := func(extra time.Duration) float64 {
				t.Helper()
				seq++
				now = now.Add(time.Second / 8)
				off := 500 + 30*float64(int(seq)%5-2)
				t1 := now.Add(-time.Millisecond)
				// Path delay 1000 ns, as withDelay measured.
				p.handle(packet{event: true, b: syncMsg(t, masterA, seq, false, t1, 0), ts: t1.Add(time.Duration(1000+off) + extra)}, now)
				if seq%8 == 0 {
					p.handle(packet{b: announce(t, masterA, seq, 128)}, now)
				}
				return off
			}
			var last float64
			for range 80 {
				last = sync(0)
			}
			before := p.Status()
			if before.State != instance.Slave || !before.InSync || before.OffsetNS != last || before.Outliers != 0 || before.OutlierSamples != 80 || !before.OutlierFilter {
				t.Fatalf("before the late Sync: state %v in sync %v offset %v (want %v) outliers %d of %d",
					before.State, before.InSync, before.OffsetNS, last, before.Outliers, before.OutlierSamples)
			}
			// The window holds offsets 500±60 ns: sd 42 ns, threshold
			// 2.66 × 42 = 113 ns.
			if th := before.OutlierThresholdNS; th < 100 || th > 125 {
				t.Fatalf("threshold %v ns, want about 113", th)
			}
			freq, steps := clk.freq, len(clk.steps)

			sync(50 * time.Millisecond)
			st := p.Status()
			if st.OffsetNS != last || st.Outliers != 1 || st.OutlierSamples != 81 {
				t.Fatalf("late Sync: offset %v (want %v kept), outliers %d of %d", st.OffsetNS, last, st.Outliers, st.OutlierSamples)
			}
			if st.State != instance.Slave || !st.InSync {
				t.Fatalf("late Sync changed the port: state %v in sync %v", st.State, st.InSync)
			}
			if clk.freq != freq || len(clk.steps) != steps {
				t.Fatalf("the servo saw the late Sync: frequency %v → %v, steps %d → %d", freq, clk.freq, steps, len(clk.steps))
			}

			next := sync(0)
			st = p.Status()
			if st.OffsetNS != next || st.Outliers != 1 || st.OutlierSamples != 82 {
				t.Fatalf("next Sync: offset %v want %v, outliers %d of %d", st.OffsetNS, next, st.Outliers, st.OutlierSamples)
			}
			if tc.control == servo.NoAdjust {
				if clk.freq != 0 || len(clk.steps) != 0 {
					t.Fatalf("no-adjust port changed the clock: %v ppb, steps %v", clk.freq, clk.steps)
				}
			} else if clk.freq == freq {
				t.Fatal("the servo did not take the next good Sync")
			}
		})
	}
}

// TestPortOutlierFilterRestarts: the filter forgets the old offsets
// when the port steps its clock and when it takes a new master, so that
// the first offsets after either are not judged by the ones before.
func TestPortOutlierFilterRestarts(t *testing.T) {
	d, _ := testDiscipline(t, nil)
	now := t0
	for i := range 30 {
		now = now.Add(time.Second / 8)
		d.sample(float64(i%3), now)
	}
	if d.filter.Len() == 0 {
		t.Fatal("the filter holds nothing")
	}
	if _, err := d.stepOffset(); err != nil {
		t.Fatal(err)
	}
	if d.filter.Len() != 0 {
		t.Fatalf("after a step the filter holds %d offsets", d.filter.Len())
	}
	d.sample(1, now)
	d.newMaster()
	if d.filter.Len() != 0 {
		t.Fatalf("with a new master the filter holds %d offsets", d.filter.Len())
	}
	// A servo step resets it too: 1 ms from a fresh filter is no
	// outlier, and the servo steps it.
	d2, clk := testDiscipline(t, nil)
	feed(t, d2, t0, 1e6, sampleStepped)
	if len(clk.steps) != 1 || d2.filter.Len() != 0 {
		t.Fatalf("steps %v, filter holds %d after the step", clk.steps, d2.filter.Len())
	}
}

// TestOutlierFilterConfig: the window and adaption reach the filter, and
// Validate refuses what sfptpd refuses.
func TestOutlierFilterConfig(t *testing.T) {
	d, _ := testDiscipline(t, func(c *Config) { c.OutlierFilterSize, c.OutlierFilterAdaption = 7, 0.25 })
	if d.filter.Size() != 7 || d.filter.Adaption() != 0.25 {
		t.Fatalf("filter size %d adaption %v", d.filter.Size(), d.filter.Adaption())
	}
	def := DefaultConfig()
	if def.OutlierFilterSize != 60 || def.OutlierFilterAdaption != 1 {
		t.Fatalf("defaults %d %v, want sfptpd's 60 and 1.0", def.OutlierFilterSize, def.OutlierFilterAdaption)
	}
	for _, tc := range []struct {
		size     int
		adaption float64
		ok       bool
	}{
		{5, 0, true}, {60, 1, true}, {4, 1, false}, {61, 1, false}, {30, -0.1, false}, {30, 1.5, false},
	} {
		c := DefaultConfig()
		c.Interface = "eth0"
		c.OutlierFilterSize, c.OutlierFilterAdaption = tc.size, tc.adaption
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("size %d adaption %v: %v", tc.size, tc.adaption, err)
		}
	}
}
