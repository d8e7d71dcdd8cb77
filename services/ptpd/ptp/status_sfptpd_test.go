package ptp

import (
	"math"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// TestSfptpdStatus: a slave reports what sfptpd's PTP module puts in its
// realtime stats and state file: the source "gm", its parent's port and
// grandmaster data, the nodes heard, and a P/I split that adds up to the
// frequency adjustment.
func TestSfptpdStatus(t *testing.T) {
	p, _, tr := testPort(t, ModeSlave)
	qualify(t, p, t0, masterA, 128)
	withDelay(t, p, tr, t0)
	// Measuring only, the port is a slave but the servo does not drive
	// the clock: no P/I split.
	p.disc.on = false
	now := t0.Add(time.Second)
	p.handle(packet{event: true, b: syncMsg(t, masterA, 8, true, time.Time{}, 0), ts: t0.Add(time.Second + 1500)}, now)
	p.handle(packet{b: followUp(t, masterA, 8, t0.Add(time.Second), 0)}, now)
	if st := p.Status(); st.State != instance.Slave || st.HasPI {
		t.Fatalf("measuring slave: state %v, HasPI %v", st.State, st.HasPI)
	}
	// Disciplining: two-step Syncs 2 µs ahead (the servo slews, no
	// step), until the servo locks.
	p.disc.on = true
	for i := range 40 {
		now = now.Add(time.Second / 8)
		t1 := t0.Add(time.Duration(i+2) * time.Second)
		p.handle(packet{event: true, b: syncMsg(t, masterA, uint16(100+i), true, time.Time{}, 0), ts: t1.Add(3000)}, now)
		p.handle(packet{b: followUp(t, masterA, uint16(100+i), t1, 0)}, now)
		if i%8 == 0 {
			p.handle(packet{b: announce(t, masterA, uint16(10+i), 128)}, now)
		}
	}
	st := p.Status()
	if st.State != instance.Slave || st.Source != "gm" || st.ActiveInterface != p.cfg.Interface || st.PTP == nil {
		t.Fatalf("status %+v", st)
	}
	ps := st.PTP
	if ps.ParentPort != int(masterA.PortNumber) || !ps.TwoStep || !ps.SlaveOnly || ps.GMPriority1 != 128 || ps.DelayMechanism != "end-to-end" {
		t.Fatalf("ptp status %+v", ps)
	}
	if len(ps.Nodes) != 1 || ps.Nodes[0].ClockID != sfptpdID(masterA.ClockIdentity) || ps.Nodes[0].State != "master" {
		t.Fatalf("nodes %+v", ps.Nodes)
	}
	if !st.HasPI || math.Abs(st.PTerm+st.ITerm-st.FreqAdjPPB) > 1e-9 || math.Abs(st.PTerm+p.disc.servo.Config().Kp*st.OffsetNS) > 1e-9 {
		t.Fatalf("p-term %v i-term %v freq %v offset %v", st.PTerm, st.ITerm, st.FreqAdjPPB, st.OffsetNS)
	}
	// The alarm names are sfptpd's.
	if AlarmNoSync != "no-sync-pkts" || AlarmNoDelayResps != "no-delay-resps" {
		t.Fatal("alarm names are not sfptpd's")
	}
	// A port that is not a slave has no P/I split.
	m, _, _ := testPort(t, ModeMaster)
	if st := m.Status(); st.HasPI || st.Source != "gm" || st.PTP == nil || st.PTP.ParentPort != 0 {
		t.Fatalf("master status %+v", st)
	}
}
