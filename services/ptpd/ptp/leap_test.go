package ptp

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// The engine reaches the port's leap second handling through these.
var (
	_ engine.LeapGuarder   = (*Port)(nil)
	_ engine.LeapAnnouncer = (*Port)(nil)
	_ engine.LeapStepper   = (*Port)(nil)
)

// announceTP is an Announce from src with the given time properties.
func announceTP(t testing.TB, src protocol.PortIdentity, seq uint16, flags uint16, utcOffset int16) []byte {
	a := &protocol.Announce{Header: hdr(protocol.MessageAnnounce, src, seq, lenAnnounce)}
	a.GrandmasterPriority1, a.GrandmasterPriority2 = 128, 128
	a.GrandmasterClockQuality.ClockClass = 6
	a.GrandmasterClockQuality.ClockAccuracy = 0x21
	a.GrandmasterIdentity = src.ClockIdentity
	a.CurrentUTCOffset = utcOffset
	a.FlagField = flags
	return marshal(t, a)
}

// TestSlaveLeapStatus: a slave reports its parent's leap flags and UTC
// offset, in Status and in the state file data, as they change.
func TestSlaveLeapStatus(t *testing.T) {
	const valid = protocol.FlagCurrentUtcOffsetValid | protocol.FlagPTPTimescale
	for _, tc := range []struct {
		name                 string
		flags                uint16
		offset               int16
		leap59, leap61, okay bool
		stateOffset          int // the state file's current-utc-offset
	}{
		{"no leap", valid, 37, false, false, true, 37},
		{"leap61", valid | protocol.FlagLeap61, 37, false, true, true, 37},
		{"leap59", valid | protocol.FlagLeap59, 37, true, false, true, 37},
		{"both", valid | protocol.FlagLeap59 | protocol.FlagLeap61, 36, true, true, true, 36},
		{"after the leap", valid, 38, false, false, true, 38},
		{"offset not valid", protocol.FlagPTPTimescale, 35, false, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _ := testPort(t, ModeSlave)
			p.cfg.AnnounceInterval = 1 // 2 s
			// Qualified on a plain Announce; the flags come with the
			// next one, as a grandmaster raises them during the day.
			p.handle(packet{b: announceTP(t, masterA, 0, valid, 37)}, t0)
			p.handle(packet{b: announceTP(t, masterA, 1, valid, 37)}, t0.Add(time.Second))
			if st := p.Status(); st.Leap59 || st.Leap61 || st.UTCOffset != 37 || !st.UTCOffsetValid {
				t.Fatalf("before: %+v", st)
			}
			p.handle(packet{b: announceTP(t, masterA, 2, tc.flags, tc.offset)}, t0.Add(2*time.Second))
			st := p.Status()
			if st.Leap59 != tc.leap59 || st.Leap61 != tc.leap61 || st.UTCOffset != int(tc.offset) || st.UTCOffsetValid != tc.okay ||
				st.AnnounceInterval != 2*time.Second {
				t.Fatalf("status leap59 %v leap61 %v offset %d valid %v ivl %v", st.Leap59, st.Leap61, st.UTCOffset, st.UTCOffsetValid, st.AnnounceInterval)
			}
			if st.PTP.Leap59 != tc.leap59 || st.PTP.Leap61 != tc.leap61 || st.PTP.UTCOffset != tc.stateOffset {
				t.Fatalf("state data leap59 %v leap61 %v offset %d", st.PTP.Leap59, st.PTP.Leap61, st.PTP.UTCOffset)
			}
			// Another master's flags are not ours.
			p.handle(packet{b: announceTP(t, masterB, 0, valid|protocol.FlagLeap59, 37)}, t0.Add(2*time.Second))
			if st := p.Status(); st.Leap59 != tc.leap59 {
				t.Fatal("a foreign master's flags reached the status")
			}
		})
	}
	// Listening: no parent, no flags.
	p, _, _ := testPort(t, ModeSlave)
	if st := p.Status(); st.Leap59 || st.Leap61 || st.UTCOffset != 0 || st.UTCOffsetValid {
		t.Fatalf("listening port reports %+v", st)
	}
}

// masterStep is one action on a master port.
type masterStep struct {
	mode   string // a test mode, or "" for update
	param  int
	update [2]bool // UpdateLeapSecond(leap59, leap61) when mode is ""
}

// TestMasterLeapAnnounce checks the time properties a master puts on the
// wire after the leap test modes and the engine's leap updates.
func TestMasterLeapAnnounce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tai        bool // the port's clock counts TAI (a PHC)
		steps      []masterStep
		wantFlags  uint16 // of the time properties flags
		wantOffset int16
		notices    []string
	}{
		{name: "default UTC clock", wantOffset: 37},
		{name: "default TAI clock", tai: true, wantFlags: protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid, wantOffset: 37},
		{name: "utc_offset +1", steps: []masterStep{{mode: testUTCOffset, param: 1}},
			wantFlags: protocol.FlagCurrentUtcOffsetValid, wantOffset: 38, notices: []string{"test-mode: set UTC offset = 38"}},
		{name: "utc_offset adds up", tai: true, steps: []masterStep{{mode: testUTCOffset, param: 1}, {mode: testUTCOffset, param: -3}},
			wantFlags: protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid, wantOffset: 35,
			notices: []string{"test-mode: set UTC offset = 38", "test-mode: set UTC offset = 35"}},
		{name: "utc_offset wraps at 16 bits", steps: []masterStep{{mode: testUTCOffset, param: 32767}},
			wantFlags: protocol.FlagCurrentUtcOffsetValid, wantOffset: -32732},
		{name: "leap_second_61", tai: true, steps: []masterStep{{mode: testLeap61}},
			wantFlags: protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid | protocol.FlagLeap61, wantOffset: 37,
			notices: []string{"test-mode: announcing leap59 0, leap61 1"}},
		{name: "leap_second_59", steps: []masterStep{{mode: testLeap59}}, wantFlags: protocol.FlagLeap59, wantOffset: 37},
		{name: "leap_second_cancel", steps: []masterStep{{mode: testLeap61}, {mode: testLeapCancel}}, wantOffset: 37,
			notices: []string{"test-mode: announcing leap59 0, leap61 0"}},
		{name: "engine leap 61", tai: true, steps: []masterStep{{update: [2]bool{false, true}}},
			wantFlags: protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid | protocol.FlagLeap61, wantOffset: 37},
		{name: "engine leap test at midnight", tai: true,
			steps:     []masterStep{{update: [2]bool{false, true}}, {mode: testUTCOffset, param: 1}, {update: [2]bool{false, false}}},
			wantFlags: protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid, wantOffset: 38},
		{name: "engine leap 59", steps: []masterStep{{update: [2]bool{true, false}}}, wantFlags: protocol.FlagLeap59, wantOffset: 37},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, tr := testPort(t, ModeMaster)
			p.utcClock = !tc.tai
			logs := &logRecords{}
			p.log = slog.New(logs)
			for _, s := range tc.steps {
				if s.mode == "" {
					p.UpdateLeapSecond(s.update[0], s.update[1])
					continue
				}
				if err := p.TestMode(s.mode, [3]int{s.param}); err != nil {
					t.Fatal(err)
				}
			}
			const tp = protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid | protocol.FlagLeap59 | protocol.FlagLeap61
			a := announceSent(t, p, tr, t0.Add(5*time.Second))
			if a.FlagField&tp != tc.wantFlags || a.CurrentUTCOffset != tc.wantOffset {
				t.Fatalf("announced flags %#x offset %d, want %#x %d", a.FlagField&tp, a.CurrentUTCOffset, tc.wantFlags, tc.wantOffset)
			}
			st := p.Status()
			if st.Leap59 != (tc.wantFlags&protocol.FlagLeap59 != 0) || st.Leap61 != (tc.wantFlags&protocol.FlagLeap61 != 0) ||
				st.UTCOffset != int(tc.wantOffset) || st.UTCOffsetValid != (tc.wantFlags&protocol.FlagCurrentUtcOffsetValid != 0) {
				t.Fatalf("status %+v", st)
			}
			wantState := 0
			if tc.wantFlags&protocol.FlagCurrentUtcOffsetValid != 0 {
				wantState = int(tc.wantOffset)
			}
			if st.PTP.UTCOffset != wantState || st.PTP.Leap61 != st.Leap61 || st.PTP.Leap59 != st.Leap59 ||
				st.PTP.PTPTimescale != tc.tai {
				t.Fatalf("state data %+v", st.PTP)
			}
			for _, n := range tc.notices {
				if !logs.has(levelNotice, n) {
					t.Errorf("no notice %q", n)
				}
			}
		})
	}
}

// TestMasterLeapReentry: becoming master again drops the leap flags, as
// sfptpd's ptpd rebuilds its time properties, and keeps utc_offset's
// offset, which sfptpd keeps in its configuration.
func TestMasterLeapReentry(t *testing.T) {
	p, _, tr := testPort(t, ModeMaster)
	for _, m := range []string{testLeap61, testUTCOffset} {
		if err := p.TestMode(m, [3]int{2}); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(2 * time.Second)
	qualify(t, p, now, masterA, 50)
	if p.state != instance.Passive {
		t.Fatalf("state %v", p.state)
	}
	// A passive port takes no leap update.
	p.UpdateLeapSecond(true, false)
	now = now.Add(10 * time.Second)
	p.tick(now)
	if p.state != instance.Master {
		t.Fatalf("state %v", p.state)
	}
	a := announceSent(t, p, tr, now.Add(2*time.Second))
	if a.FlagField&(protocol.FlagLeap59|protocol.FlagLeap61) != 0 || a.CurrentUTCOffset != 39 || a.FlagField&protocol.FlagCurrentUtcOffsetValid == 0 {
		t.Fatalf("after re-entering master: flags %#x offset %d", a.FlagField, a.CurrentUTCOffset)
	}
}

// TestLeapModesRefusedOnSlave: the leap flags and the UTC offset are a
// master's; a slave refuses the modes with sfptpd's warning and ignores
// the engine's update (its flags are its parent's).
func TestLeapModesRefusedOnSlave(t *testing.T) {
	for _, tc := range []struct{ mode, warning string }{
		{testUTCOffset, "ptp ptp1: UTC offset test mode can only be used in PTP master mode"},
		{testLeap61, "ptp ptp1: Leap second test mode can only be used in PTP master mode"},
		{testLeapCancel, "ptp ptp1: Leap second test mode can only be used in PTP master mode"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p, _, _ := testPort(t, ModeSlave)
			logs := &logRecords{}
			p.log = slog.New(logs)
			if err := p.TestMode(tc.mode, [3]int{1}); !errors.Is(err, errNotMaster) {
				t.Fatalf("err %v, want the master-only refusal", err)
			}
			if !logs.has(slog.LevelWarn, tc.warning) {
				t.Errorf("no warning %q", tc.warning)
			}
			p.UpdateLeapSecond(false, true)
			if p.test != (testState{}) {
				t.Fatalf("slave state changed: %+v", p.test)
			}
		})
	}
}

// TestLeapGuard: while the guard is on, Syncs and Delay_Resps still
// arrive (no alarm) but no offset or path delay is taken, and the
// clock is not touched; afterwards measuring resumes.
func TestLeapGuard(t *testing.T) {
	p, clk, tr := testPort(t, ModeSlave)
	p.disc.on = false // measure only: the offsets stay visible
	qualify(t, p, t0, masterA, 128)
	withDelay(t, p, tr, t0)
	if d, _ := p.meas.delay.Value(); d != 1000 {
		t.Fatalf("path delay %v", d)
	}
	p.LeapGuard(true)
	p.LeapGuard(true) // idempotent
	p.disc.haveOffset = false
	now := t0
	for i := range 20 {
		now = t0.Add(time.Duration(i+1) * time.Second / 2)
		t1 := t0.Add(time.Duration(i) * time.Second)
		// 1 s off, as across a leap second.
		p.handle(packet{event: true, b: syncMsg(t, masterA, uint16(50+i), false, t1, 0), ts: t1.Add(time.Second + 1500)}, now)
		tr.txTime = t1.Add(10 * time.Millisecond)
		p.sendDelayReq()
		p.handle(packet{b: delayResp(t, masterA, p.meas.dreq.seq, tr.txTime.Add(500), p.self)}, now)
		if i%4 == 0 {
			p.handle(packet{b: announce(t, masterA, uint16(10+i), 128)}, now)
		}
		p.tick(now)
	}
	st := p.Status()
	if p.disc.haveOffset || len(clk.steps) != 0 || len(st.Alarms) != 0 {
		t.Fatalf("in the guard: offset %v (%v), steps %v, alarms %v", p.disc.offset, p.disc.haveOffset, clk.steps, st.Alarms)
	}
	if d, _ := p.meas.delay.Value(); d != 1000 {
		t.Fatalf("path delay moved to %v in the guard", d)
	}
	p.LeapGuard(false)
	now = now.Add(time.Second)
	p.handle(packet{event: true, b: syncMsg(t, masterA, 90, false, now, 0), ts: now.Add(1800)}, now)
	if !p.disc.haveOffset || p.disc.offset != 800 {
		t.Fatalf("after the guard: offset %v (%v), want 800", p.disc.offset, p.disc.haveOffset)
	}
}

// TestStepLeap: a clock counting UTC steps at the leap second; a PHC,
// on TAI, does not.
func TestStepLeap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		utc     bool
		d       time.Duration
		stepped bool
	}{
		{"UTC clock, 61", true, -time.Second, true},
		{"UTC clock, 59", true, time.Second, true},
		{"TAI clock", false, -time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, clk, _ := testPort(t, ModeSlave)
			p.utcClock = tc.utc
			qualify(t, p, t0, masterA, 128)
			p.meas.msValid = true
			got, err := p.StepLeap(tc.d)
			if err != nil || got != tc.stepped {
				t.Fatalf("StepLeap = %v, %v; want %v", got, err, tc.stepped)
			}
			want := 0
			if tc.stepped {
				want = 1
				if len(clk.steps) != 1 || clk.steps[0] != tc.d {
					t.Fatalf("steps %v, want [%v]", clk.steps, tc.d)
				}
				if p.meas.msValid {
					t.Fatal("a measurement survived the step")
				}
			}
			if len(clk.steps) != want || p.Status().Steps != want {
				t.Fatalf("steps %v, status steps %d", clk.steps, p.Status().Steps)
			}
		})
	}
}
