package ptp

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// fakeClock is a clock.Clock that stands still and records adjustments.
type fakeClock struct {
	now   time.Time
	freq  float64
	steps []time.Duration
}

func (c *fakeClock) Name() string               { return "fake" }
func (c *fakeClock) Now() (time.Time, error)    { return c.now, nil }
func (c *fakeClock) FreqPPB() (float64, error)  { return c.freq, nil }
func (c *fakeClock) AdjFreqPPB(f float64) error { c.freq = f; return nil }
func (c *fakeClock) Step(d time.Duration) error { c.steps = append(c.steps, d); return nil }
func (c *fakeClock) MaxFreqPPB() float64        { return 500000 }

// fakeTransport records what the port sends; event messages are
// "transmitted" at txTime.
type fakeTransport struct {
	txTime  time.Time
	event   [][]byte
	general [][]byte
}

func (f *fakeTransport) sendEvent(b []byte) (time.Time, error) {
	f.event = append(f.event, append([]byte(nil), b...))
	return f.txTime, nil
}
func (f *fakeTransport) sendGeneral(b []byte) error {
	f.general = append(f.general, append([]byte(nil), b...))
	return nil
}
func (f *fakeTransport) run(ctx context.Context, _ chan<- packet) error { <-ctx.Done(); return nil }
func (f *fakeTransport) close() error                                   { return nil }

var (
	t0       = time.Unix(1_700_000_000, 0)
	selfID   = protocol.ClockIdentity(0x001122fffe334455)
	masterA  = protocol.PortIdentity{ClockIdentity: 0xaa00000000000001, PortNumber: 1}
	masterB  = protocol.PortIdentity{ClockIdentity: 0xbb00000000000002, PortNumber: 1}
	quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// testPort is a port on fake clock and transport with hardware
// timestamps, so that packet times pass through unchanged.
func testPort(t testing.TB, mode Mode) (*Port, *fakeClock, *fakeTransport) {
	cfg := DefaultConfig()
	cfg.Interface = "test0"
	cfg.Mode = mode
	clk := &fakeClock{now: t0}
	p := newPort(cfg, clk, quietLog)
	tr := &fakeTransport{}
	p.start(tr, true, selfID, t0)
	return p, clk, tr
}

func hdr(t protocol.MessageType, src protocol.PortIdentity, seq uint16, length int) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(t, 0), Version: protocol.Version,
		MessageLength: uint16(length), SourcePortIdentity: src, SequenceID: seq,
		LogMessageInterval: 0,
	}
}

func marshal(t testing.TB, m protocol.BinaryMarshalerTo) []byte {
	buf := make([]byte, 256)
	n, err := m.MarshalBinaryTo(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func announce(t testing.TB, src protocol.PortIdentity, seq uint16, p1 uint8) []byte {
	a := &protocol.Announce{Header: hdr(protocol.MessageAnnounce, src, seq, lenAnnounce)}
	a.GrandmasterPriority1 = p1
	a.GrandmasterPriority2 = 128
	a.GrandmasterClockQuality.ClockClass = 248
	a.GrandmasterClockQuality.ClockAccuracy = 0x21
	a.GrandmasterIdentity = src.ClockIdentity
	a.CurrentUTCOffset = 37
	return marshal(t, a)
}

func syncMsg(t testing.TB, src protocol.PortIdentity, seq uint16, twoStep bool, origin time.Time, corrNS float64) []byte {
	m := &protocol.SyncDelayReq{Header: hdr(protocol.MessageSync, src, seq, lenSync)}
	if twoStep {
		m.FlagField = protocol.FlagTwoStep
	}
	m.OriginTimestamp = protocol.NewTimestamp(origin)
	m.CorrectionField = protocol.NewCorrection(corrNS)
	m.LogMessageInterval = -3
	return marshal(t, m)
}

func followUp(t testing.TB, src protocol.PortIdentity, seq uint16, t1 time.Time, corrNS float64) []byte {
	m := &protocol.FollowUp{Header: hdr(protocol.MessageFollowUp, src, seq, lenFollowUp)}
	m.PreciseOriginTimestamp = protocol.NewTimestamp(t1)
	m.CorrectionField = protocol.NewCorrection(corrNS)
	return marshal(t, m)
}

func delayResp(t testing.TB, src protocol.PortIdentity, seq uint16, t4 time.Time, req protocol.PortIdentity) []byte {
	m := &protocol.DelayResp{Header: hdr(protocol.MessageDelayResp, src, seq, lenDelayResp)}
	m.ReceiveTimestamp = protocol.NewTimestamp(t4)
	m.RequestingPortIdentity = req
	m.LogMessageInterval = -3
	return marshal(t, m)
}

// qualify makes masterA the port's parent: two Announces.
func qualify(t testing.TB, p *Port, now time.Time, src protocol.PortIdentity, p1 uint8) {
	p.handle(packet{b: announce(t, src, 0, p1)}, now)
	p.handle(packet{b: announce(t, src, 1, p1)}, now.Add(time.Second))
}

func TestForeignQualificationAndTimeout(t *testing.T) {
	p, _, _ := testPort(t, ModeSlave)
	if p.state != instance.Listening {
		t.Fatalf("start state %v", p.state)
	}
	p.handle(packet{b: announce(t, masterA, 0, 128)}, t0)
	if p.state != instance.Listening {
		t.Fatalf("one Announce qualified the master: %v", p.state)
	}
	p.handle(packet{b: announce(t, masterA, 1, 128)}, t0.Add(time.Second))
	if p.state != instance.Uncalibrated || p.parent == nil || p.parent.id != masterA {
		t.Fatalf("two Announces: state %v parent %v", p.state, p.parent)
	}
	st := p.Status()
	if st.ParentID != "aa00:0000:0000:0001" || st.StepsRemoved != 1 || st.ClockClass != 248 ||
		st.AccuracyNS != p.localAccuracyNS()+100 { // local accuracy + the grandmaster's 100 ns
		t.Fatalf("status %+v", st)
	}
	// sfptpd's local accuracies: hardware stamps 50 ns, software 50 us.
	for _, hw := range []bool{true, false} {
		p.hw = hw
		want := map[bool]float64{true: 150, false: 50100}[hw]
		if got := p.Status().AccuracyNS; got != want {
			t.Fatalf("hardware stamps %v: accuracy %v, want %v", hw, got, want)
		}
	}
	// Announces too far apart never qualify (window: 4 intervals).
	p2, _, _ := testPort(t, ModeSlave)
	p2.handle(packet{b: announce(t, masterA, 0, 128)}, t0)
	p2.handle(packet{b: announce(t, masterA, 1, 128)}, t0.Add(5*time.Second))
	if p2.state != instance.Listening {
		t.Fatalf("announces 5 s apart qualified: %v", p2.state)
	}
	// Receipt timeout: 3 intervals without an Announce → LISTENING.
	p.tick(t0.Add(3500 * time.Millisecond))
	if p.state != instance.Uncalibrated {
		t.Fatalf("timed out early: %v", p.state)
	}
	p.tick(t0.Add(4100 * time.Millisecond))
	if p.state != instance.Listening || p.parent != nil {
		t.Fatalf("after receipt timeout: %v", p.state)
	}
	if st := p.Status(); len(st.Alarms) != 1 || st.Alarms[0] != AlarmNoAnnounce {
		t.Fatalf("alarms %v", st.Alarms)
	}
}

func TestBMCAPicksBetterMaster(t *testing.T) {
	p, _, _ := testPort(t, ModeSlave)
	qualify(t, p, t0, masterB, 100)
	qualify(t, p, t0, masterA, 50)
	if p.parent.id != masterA {
		t.Fatalf("parent %v, want the priority1 50 master", p.parent.id)
	}
	// A master-only port defers to a better master and stays PASSIVE.
	m, _, _ := testPort(t, ModeMaster)
	if m.state != instance.Master {
		t.Fatalf("master start %v", m.state)
	}
	qualify(t, m, t0, masterA, 50)
	if m.state != instance.Passive {
		t.Fatalf("master-only port with a better master: %v", m.state)
	}
	m.tick(t0.Add(10 * time.Second))
	if m.state != instance.Master {
		t.Fatalf("better master gone: %v", m.state)
	}
}

func TestCompare(t *testing.T) {
	base := Dataset{Priority1: 128, ClockClass: 248, Accuracy: 0xFE, Variance: 0xFFFF, Priority2: 128, GM: 5,
		Sender: masterA, Receiver: protocol.PortIdentity{ClockIdentity: selfID, PortNumber: 1}}
	with := func(f func(*Dataset)) Dataset { d := base; f(&d); return d }
	for _, tc := range []struct {
		name string
		a, b Dataset
		want int
	}{
		{"equal", base, base, 0},
		{"priority1", with(func(d *Dataset) { d.Priority1 = 1; d.GM = 9 }), base, -1},
		{"class beats accuracy", with(func(d *Dataset) { d.ClockClass = 6; d.Accuracy = 0xFE; d.GM = 9 }), with(func(d *Dataset) { d.Accuracy = 0x20 }), -1},
		{"accuracy", base, with(func(d *Dataset) { d.Accuracy = 0x20; d.GM = 9 }), 1},
		{"variance", with(func(d *Dataset) { d.Variance = 100; d.GM = 9 }), base, -1},
		{"priority2", with(func(d *Dataset) { d.Priority2 = 200; d.GM = 9 }), base, 1},
		{"identity breaks the tie", with(func(d *Dataset) { d.GM = 4 }), base, -1},
		{"priority1 beats identity", with(func(d *Dataset) { d.GM = 1; d.Priority1 = 200 }), base, 1},
		{"same GM: fewer steps", with(func(d *Dataset) { d.StepsRemoved = 0 }), with(func(d *Dataset) { d.StepsRemoved = 2 }), -1},
		{"same GM: sender identity", with(func(d *Dataset) { d.Sender = masterB }), base, 1},
	} {
		if got := Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Compare %d want %d", tc.name, got, tc.want)
		}
		if got := Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("%s: reversed Compare %d want %d", tc.name, got, -tc.want)
		}
	}
}

// withDelay gives the port a path delay of d by one Delay_Req exchange
// around a Sync with master-to-slave difference ms.
func withDelay(t *testing.T, p *Port, tr *fakeTransport, now time.Time) {
	// Sync: t1 = t0, t2 = t0+1500ns (offset 500 + delay 1000).
	p.handle(packet{event: true, b: syncMsg(t, masterA, 1, false, t0, 0), ts: t0.Add(1500)}, now)
	tr.txTime = t0.Add(10 * time.Millisecond)
	p.sendDelayReq()
	// t4 = t3 - offset + delay = t3 + 500ns.
	p.handle(packet{b: delayResp(t, masterA, p.meas.dreq.seq, tr.txTime.Add(500), p.self)}, now)
}

// measurementCase is a slave's message sequence and the offset it must
// measure (NaN: none), with a path delay of 1000 ns already measured.
type measurementCase struct {
	name       string
	msgs       func(t *testing.T) []packet
	wantOffset float64
}

// measurementCases serve TestMeasurement and the transparent clock test
// mode, which must leave every measured offset as it is.
var measurementCases = []measurementCase{
	{"one-step", func(t *testing.T) []packet {
		return []packet{{event: true, b: syncMsg(t, masterA, 7, false, t0.Add(time.Second), 0), ts: t0.Add(time.Second + 1800)}}
	}, 800},
	{"one-step with correction", func(t *testing.T) []packet {
		return []packet{{event: true, b: syncMsg(t, masterA, 7, false, t0.Add(time.Second), 300.5), ts: t0.Add(time.Second + 1800)}}
	}, 499.5},
	{"two-step", func(t *testing.T) []packet {
		return []packet{
			{event: true, b: syncMsg(t, masterA, 8, true, time.Time{}, 100), ts: t0.Add(time.Second + 1800)},
			{b: followUp(t, masterA, 8, t0.Add(time.Second), 200)},
		}
	}, 500},
	{"follow-up first", func(t *testing.T) []packet {
		return []packet{
			{b: followUp(t, masterA, 9, t0.Add(time.Second), 0)},
			{event: true, b: syncMsg(t, masterA, 9, true, time.Time{}, 0), ts: t0.Add(time.Second + 1200)},
		}
	}, 200},
	{"mismatched follow-up ignored", func(t *testing.T) []packet {
		return []packet{
			{event: true, b: syncMsg(t, masterA, 10, true, time.Time{}, 0), ts: t0.Add(time.Second + 1200)},
			{b: followUp(t, masterA, 11, t0.Add(time.Second), 0)},
		}
	}, math.NaN()},
	{"other master ignored", func(t *testing.T) []packet {
		return []packet{{event: true, b: syncMsg(t, masterB, 7, false, t0.Add(time.Second), 0), ts: t0.Add(time.Second + 1800)}}
	}, math.NaN()},
}

func TestMeasurement(t *testing.T) {
	for _, tc := range measurementCases {
		t.Run(tc.name, func(t *testing.T) {
			p, _, tr := testPort(t, ModeSlave)
			p.disc.on = false // measure only: the offset stays visible
			qualify(t, p, t0, masterA, 128)
			withDelay(t, p, tr, t0)
			if d, _ := p.meas.delay.Value(); d != 1000 {
				t.Fatalf("path delay %v want 1000", d)
			}
			p.disc.haveOffset = false
			for _, pk := range tc.msgs(t) {
				p.handle(pk, t0.Add(time.Second))
			}
			if math.IsNaN(tc.wantOffset) {
				if p.disc.haveOffset {
					t.Fatalf("unexpected offset %v", p.disc.offset)
				}
				return
			}
			if !p.disc.haveOffset || p.disc.offset != tc.wantOffset {
				t.Fatalf("offset %v (have %v), want %v", p.disc.offset, p.disc.haveOffset, tc.wantOffset)
			}
			if p.state != instance.Slave {
				t.Fatalf("state %v", p.state)
			}
		})
	}
}

func TestDelayRespChecks(t *testing.T) {
	p, _, tr := testPort(t, ModeSlave)
	qualify(t, p, t0, masterA, 128)
	p.handle(packet{event: true, b: syncMsg(t, masterA, 1, false, t0, 0), ts: t0.Add(1500)}, t0)
	tr.txTime = t0.Add(time.Millisecond)
	p.sendDelayReq()
	other := protocol.PortIdentity{ClockIdentity: 77, PortNumber: 1}
	p.handle(packet{b: delayResp(t, masterA, p.meas.dreq.seq, tr.txTime, other)}, t0)    // not ours
	p.handle(packet{b: delayResp(t, masterA, p.meas.dreq.seq+1, tr.txTime, p.self)}, t0) // wrong sequence
	p.handle(packet{b: delayResp(t, masterB, p.meas.dreq.seq, tr.txTime, p.self)}, t0)   // not the parent
	if p.meas.delay.Len() != 0 {
		t.Fatal("a foreign Delay_Resp was used")
	}
	for range missedRespAlarm {
		p.sendDelayReq()
	}
	if st := p.Status(); len(st.Alarms) != 1 || st.Alarms[0] != AlarmNoDelayResps {
		t.Fatalf("alarms %v", st.Alarms)
	}
	p.handle(packet{b: delayResp(t, masterA, p.meas.dreq.seq, tr.txTime.Add(500), p.self)}, t0)
	if p.meas.delay.Len() != 1 || len(p.Status().Alarms) != 0 {
		t.Fatalf("delay samples %d alarms %v", p.meas.delay.Len(), p.Status().Alarms)
	}
}

func TestSlaveStepsAndLocks(t *testing.T) {
	p, clk, tr := testPort(t, ModeSlave)
	qualify(t, p, t0, masterA, 128)
	withDelay(t, p, tr, t0)
	// A 1 ms offset, constant: the servo steps once, then locks.
	now := t0
	for i := range 60 {
		now = now.Add(time.Second / 8)
		t1 := t0.Add(time.Duration(i) * time.Second)
		var stepped time.Duration
		for _, d := range clk.steps {
			stepped += d
		}
		// Our clock: 1 ms ahead until stepped; 1 µs path delay.
		p.handle(packet{event: true, b: syncMsg(t, masterA, uint16(100+i), false, t1, 0), ts: t1.Add(time.Millisecond + 1000 + stepped)}, now)
		if i%8 == 0 {
			p.handle(packet{b: announce(t, masterA, uint16(10+i), 128)}, now)
		}
	}
	if len(clk.steps) != 1 || clk.steps[0] != -time.Millisecond {
		t.Fatalf("steps %v", clk.steps)
	}
	if p.state != instance.Slave || p.Status().Steps != 1 {
		t.Fatalf("state %v steps %d", p.state, p.Status().Steps)
	}
	// Syncs stop (Announces go on): no-sync-pkts and holdover.
	p.handle(packet{b: announce(t, masterA, 200, 128)}, now.Add(1900*time.Millisecond))
	p.tick(now.Add(2 * time.Second))
	if st := p.Status(); len(st.Alarms) == 0 || st.Alarms[0] != AlarmNoSync {
		t.Fatalf("alarms %v", st.Alarms)
	}
	if !p.disc.holdover {
		t.Fatalf("no holdover after Syncs stopped (locked %v, state %v, sync alarm %v)", p.disc.servo.Locked(), p.state, p.syncAlarm)
	}
}

func TestMasterSends(t *testing.T) {
	p, clk, tr := testPort(t, ModeMaster)
	tr.txTime = t0.Add(42)
	p.tick(t0)
	if len(tr.event) != 1 || len(tr.general) != 1 {
		t.Fatalf("sent %d event, %d general", len(tr.event), len(tr.general))
	}
	// The Announce goes half a sync interval after the Sync.
	p.tick(t0.Add(time.Second / 16))
	if len(tr.event) != 1 || len(tr.general) != 2 {
		t.Fatalf("sent %d event, %d general", len(tr.event), len(tr.general))
	}
	var a protocol.Announce
	if err := a.UnmarshalBinary(tr.general[1]); err != nil || a.GrandmasterIdentity != selfID || a.MessageLength != lenAnnounce {
		t.Fatalf("announce %+v %v", a, err)
	}
	if a.FlagField&protocol.FlagPTPTimescale != 0 {
		t.Fatal("a UTC clock claimed the PTP timescale")
	}
	var s protocol.SyncDelayReq
	if err := s.UnmarshalBinary(tr.event[0]); err != nil || s.FlagField&protocol.FlagTwoStep == 0 || s.MessageType() != protocol.MessageSync {
		t.Fatalf("sync %+v %v", s, err)
	}
	var fu protocol.FollowUp
	if err := fu.UnmarshalBinary(tr.general[0]); err != nil || fu.SequenceID != s.SequenceID || !fu.PreciseOriginTimestamp.Time().Equal(tr.txTime) {
		t.Fatalf("follow-up %+v %v", fu, err)
	}
	// Delay_Req → Delay_Resp with our receive time and their identity.
	req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, 99, lenSync)}
	req.CorrectionField = protocol.NewCorrection(12)
	p.handle(packet{event: true, b: marshal(t, req), ts: t0.Add(777)}, t0)
	var r protocol.DelayResp
	if err := r.UnmarshalBinary(tr.general[2]); err != nil {
		t.Fatal(err)
	}
	if r.SequenceID != 99 || r.RequestingPortIdentity != masterB || !r.ReceiveTimestamp.Time().Equal(t0.Add(777)) || r.CorrectionField != req.CorrectionField {
		t.Fatalf("delay resp %+v", r)
	}
	if clk.freq != 0 || len(clk.steps) != 0 {
		t.Fatal("a master adjusted its clock")
	}
	// Next Sync after the interval, next Announce after its own.
	tr.event, tr.general = nil, nil
	next := p.tick(t0.Add(70 * time.Millisecond))
	if len(tr.event) != 0 || next.After(t0.Add(time.Second/8)) {
		t.Fatalf("early send or late wakeup %v", next)
	}
}

func TestMalformed(t *testing.T) {
	p, _, _ := testPort(t, ModeSlave)
	good := announce(t, masterA, 0, 128)
	long := append(append([]byte(nil), good...), make([]byte, 10)...)
	binary.BigEndian.PutUint16(long[2:], uint16(len(long)+5))
	for _, b := range [][]byte{
		nil,
		good[:20],
		append([]byte{good[0], 0x01}, good[2:]...), // PTPv1
		long,      // length beyond the datagram
		good[:40], // truncated Announce
	} {
		p.handle(packet{b: b}, t0)
	}
	if p.badCount != 5 {
		t.Fatalf("malformed count %d want 5", p.badCount)
	}
	// A Sync without a receive timestamp is dropped too.
	qualify(t, p, t0, masterA, 128)
	p.handle(packet{event: true, b: syncMsg(t, masterA, 1, false, t0, 0)}, t0)
	if p.badCount != 6 || p.meas.msValid {
		t.Fatalf("untimestamped Sync: count %d used %v", p.badCount, p.meas.msValid)
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil {
		t.Fatal("a config without interface validated")
	}
	c.Interface = "eth0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(*Config){
		func(c *Config) { c.SyncInterval = 8 },
		func(c *Config) { c.Domain = 200 },
		func(c *Config) { c.AnnounceReceiptTimeout = 1 },
		func(c *Config) { c.PIDKp = 0 },
		func(c *Config) { c.DelayFilter = 0 },
		func(c *Config) { c.StepThreshold = -1 },
	} {
		bad := c
		f(&bad)
		if bad.Validate() == nil {
			t.Errorf("invalid config validated: %+v", bad)
		}
	}
	if _, err := New(DefaultConfig(), &fakeClock{}, nil); err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for in, want := range map[string]Mode{"slave": ModeSlave, "Master": ModeMaster} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) %v %v", in, m, err)
		}
	}
	for in, want := range map[string]Timestamping{"auto": TimestampingAuto, "sw": TimestampingSoftware, "hardware": TimestampingHardware} {
		if m, err := ParseTimestamping(in); err != nil || m != want {
			t.Errorf("ParseTimestamping(%q) %v %v", in, m, err)
		}
	}
	if _, err := ParseMode("boundary"); err == nil {
		t.Error("ParseMode accepted boundary")
	}
	if sfptpdID(0x001122fffe334455) != "0011:22ff:fe33:4455" {
		t.Error(sfptpdID(0x001122fffe334455))
	}
	if logInterval(-3) != time.Second/8 || logInterval(2) != 4*time.Second {
		t.Error("logInterval")
	}
}

func TestControlCalls(t *testing.T) {
	p, clk, tr := testPort(t, ModeSlave)
	if err := p.StepClock(); err == nil {
		t.Fatal("StepClock without an offset succeeded")
	}
	qualify(t, p, t0, masterA, 128)
	withDelay(t, p, tr, t0)
	p.SetDiscipline(false)
	p.handle(packet{event: true, b: syncMsg(t, masterA, 5, false, t0, 0), ts: t0.Add(3000)}, t0)
	if err := p.StepClock(); err != nil {
		t.Fatal(err)
	}
	if len(clk.steps) != 1 || clk.steps[0] != -2000 {
		t.Fatalf("steps %v", clk.steps)
	}
	p.SetPID(0.3, 0.01, 0, true)
	if p.cfg.PIDKp != 0.3 || p.cfg.PIDKi != 0.01 {
		t.Fatalf("PID %v %v", p.cfg.PIDKp, p.cfg.PIDKi)
	}
	p.SetDiscipline(true)
	if !p.Status().Disciplining {
		t.Fatal("not disciplining")
	}
}

func TestFaultyWithoutInterface(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Interface = "tbnone0"
	p, err := New(cfg, &fakeClock{now: t0}, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Second)
	for p.Status().State != instance.Faulty {
		if time.Now().After(deadline) {
			t.Fatalf("state %v, want faulty", p.Status().State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := ClockFor("tbnone0", TimestampingHardware); err == nil {
		t.Fatal("hardware clock for a missing interface")
	}
	if c, err := ClockFor("tbnone0", TimestampingAuto); err != nil || c.Name() != "system" {
		t.Fatalf("auto clock for an interface without PHC: %v %v", c, err)
	}
}
