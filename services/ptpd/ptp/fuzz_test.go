package ptp

import (
	"math"
	"testing"
	"time"
)

// FuzzPacket feeds arbitrary datagrams to a slave (with a parent, so that
// Sync, Follow_Up and Delay_Resp reach the measurement code) and to a
// master. Whatever arrives, the port must not panic, keep its foreign
// master table bounded, and keep its numbers finite.
func FuzzPacket(f *testing.F) {
	f.Add(announce(f, masterA, 3, 128), false)
	f.Add(syncMsg(f, masterA, 4, false, t0, 12.5), true)
	f.Add(syncMsg(f, masterA, 5, true, time.Time{}, 0), true)
	f.Add(followUp(f, masterA, 5, t0, 0), false)
	f.Add(delayResp(f, masterA, 0, t0, masterB), false)
	f.Add([]byte{}, false)
	f.Add([]byte{0x0b, 0x12, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, b []byte, event bool) {
		slave, _, tr := testPort(t, ModeSlave)
		qualify(t, slave, t0, masterA, 128)
		tr.txTime = t0.Add(time.Millisecond)
		slave.sendDelayReq()
		master, _, _ := testPort(t, ModeMaster)
		for i, p := range []*Port{slave, master} {
			// Twice: the second copy pairs with the first (Follow_Up
			// with its Sync) and qualifies an Announce's sender.
			for k := range 2 {
				now := t0.Add(time.Duration(k) * time.Second)
				p.handle(packet{event: event, b: b, ts: now.Add(1500)}, now)
			}
			p.tick(t0.Add(2 * time.Second))
			if len(p.foreign.m) > maxForeign {
				t.Fatalf("port %d: %d foreign masters", i, len(p.foreign.m))
			}
			st := p.Status()
			if math.IsNaN(st.OffsetNS) || math.IsInf(st.OffsetNS, 0) || math.IsNaN(st.FreqAdjPPB) || math.IsNaN(st.PathDelayNS) {
				t.Fatalf("port %d: non-finite status %+v", i, st)
			}
			if math.Abs(st.FreqAdjPPB) > p.cfg.MaxFreqPPB {
				t.Fatalf("port %d: frequency %v beyond the limit", i, st.FreqAdjPPB)
			}
		}
	})
}
