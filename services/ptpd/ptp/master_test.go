package ptp

import (
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// TestMasterSchedule steps a master port's timers through a sequence of
// ticks (default intervals: Sync 125 ms, Announce 1 s) and checks, after
// each, what went out, the sequence ids and the next wake-up. A late
// tick sends each message once and reschedules from then: a master that
// fell behind must not burst.
func TestMasterSchedule(t *testing.T) {
	const ms = time.Millisecond
	p, _, tr := testPort(t, ModeMaster)
	if p.state != instance.Master {
		t.Fatalf("state %v", p.state)
	}
	tr.txTime = t0
	for i, tc := range []struct {
		at                   time.Duration // tick time after t0
		lostTS               bool          // the Sync's transmit timestamp is lost
		syncs, fus, anns     int
		seqSync, seqAnnounce uint16
		next                 time.Duration
	}{
		// The first Sync at once, the first Announce half a Sync
		// interval later.
		{at: 0, syncs: 1, fus: 1, seqSync: 1, next: 62500 * time.Microsecond},
		{at: 62500 * time.Microsecond, anns: 1, seqSync: 1, seqAnnounce: 1, next: 125 * ms},
		{at: 100 * ms, seqSync: 1, seqAnnounce: 1, next: 125 * ms},
		{at: 125 * ms, syncs: 1, fus: 1, seqSync: 2, seqAnnounce: 1, next: 250 * ms},
		// A lost transmit timestamp: no Follow_Up, the id still moves.
		{at: 250 * ms, lostTS: true, syncs: 1, seqSync: 3, seqAnnounce: 1, next: 375 * ms},
		// Late by seconds: one of each, then on from now.
		{at: 5 * time.Second, syncs: 1, fus: 1, anns: 1, seqSync: 4, seqAnnounce: 2, next: 5*time.Second + 125*ms},
		{at: 5*time.Second + 125*ms, syncs: 1, fus: 1, seqSync: 5, seqAnnounce: 2, next: 5*time.Second + 250*ms},
	} {
		tr.event, tr.general = nil, nil
		tr.txTime = t0.Add(tc.at)
		if tc.lostTS {
			tr.txTime = time.Time{}
		}
		next := p.tick(t0.Add(tc.at))
		n := map[protocol.MessageType]int{}
		for _, b := range append(append([][]byte(nil), tr.event...), tr.general...) {
			n[msgType(b)]++
		}
		if n[protocol.MessageSync] != tc.syncs || n[protocol.MessageFollowUp] != tc.fus || n[protocol.MessageAnnounce] != tc.anns {
			t.Errorf("tick %d at %v: sent %v, want %d Sync %d Follow_Up %d Announce", i, tc.at, n, tc.syncs, tc.fus, tc.anns)
		}
		if p.master.seqSync != tc.seqSync || p.master.seqAnnounce != tc.seqAnnounce {
			t.Errorf("tick %d at %v: sequence ids %d/%d, want %d/%d", i, tc.at, p.master.seqSync, p.master.seqAnnounce, tc.seqSync, tc.seqAnnounce)
		}
		if want := t0.Add(tc.next); !next.Equal(want) {
			t.Errorf("tick %d at %v: next wake-up at %v, want %v", i, tc.at, next.Sub(t0), tc.next)
		}
	}
}
