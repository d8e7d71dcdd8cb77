package ptp

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/tickbox-fw/tickbox/services/ptpd/engine"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// The engine hands test modes to instances through engine.TestModer.
var _ engine.TestModer = (*Port)(nil)

// TestTestModeNames checks that the modes the port takes are spelled as
// the engine passes them.
func TestTestModeNames(t *testing.T) {
	for _, name := range []string{testNoAnnounce, testNoSync, testNoFollowUps, testNoDelayResps,
		testJitter, testTransparent, testBoundaryChange, testGMChange, testAdjustFreq,
		testLeap61, testLeap59, testLeapCancel, testUTCOffset} {
		if _, ok := engine.LookupTestMode(name); !ok {
			t.Errorf("the engine has no test mode %q", name)
		}
	}
}

// logRecords is a slog handler that keeps every record.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// has reports whether a record with this level and message was logged.
func (h *logRecords) has(level slog.Level, msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if r.Level == level && r.Message == msg {
			return true
		}
	}
	return false
}

// msgType is a sent message's type.
func msgType(b []byte) protocol.MessageType { return protocol.MessageType(b[0] & 0x0f) }

// masterRound runs a master port through one Sync interval and one
// Announce interval (a tick long after both are due) and one Delay_Req
// from masterB, and counts what it sent by type.
func masterRound(t *testing.T, p *Port, tr *fakeTransport, now time.Time, reqSeq uint16) map[protocol.MessageType]int {
	t.Helper()
	tr.event, tr.general = nil, nil
	p.tick(now)
	req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, reqSeq, lenSync)}
	p.handle(packet{event: true, b: marshal(t, req), ts: now.Add(-time.Millisecond)}, now)
	n := map[protocol.MessageType]int{}
	for _, b := range append(append([][]byte(nil), tr.event...), tr.general...) {
		n[msgType(b)]++
	}
	return n
}

func TestTestModeSuppression(t *testing.T) {
	all := []protocol.MessageType{protocol.MessageSync, protocol.MessageFollowUp, protocol.MessageAnnounce, protocol.MessageDelayResp}
	for _, tc := range []struct {
		mode   string
		gone   []protocol.MessageType
		notice string
	}{
		{testNoSync, []protocol.MessageType{protocol.MessageSync, protocol.MessageFollowUp}, "test-mode: no sync pkts: "},
		{testNoFollowUps, []protocol.MessageType{protocol.MessageFollowUp}, "test-mode: no follow ups: "},
		{testNoAnnounce, []protocol.MessageType{protocol.MessageAnnounce}, "test-mode: no announce pkts: "},
		{testNoDelayResps, []protocol.MessageType{protocol.MessageDelayResp}, "test-mode: no delay resps: "},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p, _, tr := testPort(t, ModeMaster)
			logs := &logRecords{}
			p.log = slog.New(logs)
			tr.txTime = t0
			now := t0.Add(2 * time.Second)
			want := func(round string, n map[protocol.MessageType]int, suppressed bool) {
				t.Helper()
				for _, m := range all {
					w := 1
					for _, g := range tc.gone {
						if suppressed && g == m {
							w = 0
						}
					}
					if n[m] != w {
						t.Errorf("%s: sent %d %v, want %d (all sent: %v)", round, n[m], m, w, n)
					}
				}
			}
			want("before", masterRound(t, p, tr, now, 1), false)
			lastSync := p.master.seqSync

			if err := p.TestMode(tc.mode, [3]int{}); err != nil {
				t.Fatal(err)
			}
			if !logs.has(levelNotice, tc.notice+"enabled") {
				t.Errorf("no notice %q", tc.notice+"enabled")
			}
			for i := range 3 {
				now = now.Add(2 * time.Second)
				want("suppressed", masterRound(t, p, tr, now, uint16(2+i)), true)
			}

			// The same command again turns it off.
			if err := p.TestMode(tc.mode, [3]int{}); err != nil {
				t.Fatal(err)
			}
			if !logs.has(levelNotice, tc.notice+"disabled") {
				t.Errorf("no notice %q", tc.notice+"disabled")
			}
			now = now.Add(2 * time.Second)
			want("after", masterRound(t, p, tr, now, 9), false)
			if tc.mode == testNoSync {
				// A suppressed Sync takes no sequence id: the
				// slave sees no gap, as from sfptpd.
				var s protocol.SyncDelayReq
				for _, b := range tr.event {
					if err := s.UnmarshalBinary(b); err != nil {
						t.Fatal(err)
					}
				}
				if s.SequenceID != lastSync {
					t.Errorf("first Sync after suppression has sequence id %d, want %d", s.SequenceID, lastSync)
				}
			}
		})
	}
}

func TestTestModeRefusals(t *testing.T) {
	for _, tc := range []struct {
		mode        string
		notMaster   bool // refused on a slave port
		unsupported bool
	}{
		{testNoSync, true, false},
		{testNoFollowUps, true, false},
		{testNoAnnounce, true, false},
		{testBoundaryChange, true, false},
		{testGMChange, true, false},
		{testNoDelayResps, false, false}, // warned, but set
		{testJitter, false, false},
		{testTransparent, false, false},
		{testLeap61, true, false},
		{testUTCOffset, true, false},
		{"local_leap_second_cancel", false, true},
		{"bogus_pps_events", false, true},
		{"no_such_mode", false, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p, _, _ := testPort(t, ModeSlave)
			logs := &logRecords{}
			p.log = slog.New(logs)
			err := p.TestMode(tc.mode, [3]int{})
			switch {
			case tc.notMaster:
				if !errors.Is(err, errNotMaster) || errors.Is(err, errors.ErrUnsupported) {
					t.Fatalf("slave port: err %v, want the master-only refusal", err)
				}
				if p.test != (testState{}) {
					t.Fatalf("a refused mode changed the state: %+v", p.test)
				}
			case tc.unsupported:
				if !errors.Is(err, errors.ErrUnsupported) {
					t.Fatalf("err %v, want ErrUnsupported", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// no_delay_resps on a slave warns in sfptpd's words and is set for
	// when the port becomes master.
	p, _, _ := testPort(t, ModeSlave)
	logs := &logRecords{}
	p.log = slog.New(logs)
	if err := p.TestMode(testNoDelayResps, [3]int{}); err != nil || !p.test.noDelayResps {
		t.Fatalf("err %v set %v", err, p.test.noDelayResps)
	}
	if !logs.has(slog.LevelWarn, "ptp ptp1: No Delay Responses test mode is generally only useful in PTP master mode") {
		t.Error("no warning for no_delay_resps on a slave")
	}
	if err := p.TestMode(testNoSync, [3]int{}); err == nil {
		t.Fatal("no_sync_pkts on a slave succeeded")
	}
	if !logs.has(slog.LevelWarn, "ptp ptp1: No Sync Packets test mode can only be used in PTP master mode") {
		t.Error("no warning for no_sync_pkts on a slave")
	}
}

// syncDisturbance feeds one-step Syncs 0..n-1 to a measuring slave,
// each received 1500 ns after it was sent, and returns by sequence id
// how far the measured master-to-slave difference moved from 1500 ns.
func syncDisturbance(t *testing.T, p *Port, n int) []float64 {
	t.Helper()
	d := make([]float64, n)
	for i := range n {
		t1 := t0.Add(time.Duration(i) * time.Second)
		p.meas.msValid = false
		p.handle(packet{event: true, b: syncMsg(t, masterA, uint16(i), false, t1, 0), ts: t1.Add(1500)}, t0)
		if !p.meas.msValid {
			t.Fatalf("Sync %d not measured", i)
		}
		d[i] = p.meas.ms - 1500
	}
	return d
}

func TestTestModeTimestampJitter(t *testing.T) {
	p, _, _ := testPort(t, ModeSlave)
	p.disc.on = false
	logs := &logRecords{}
	p.log = slog.New(logs)
	qualify(t, p, t0, masterA, 128)
	m, _, mtr := testPort(t, ModeMaster)
	m.log = slog.New(logs)
	const samples = 480
	// Each command steps to the next type, as sfptpd's: corrupted,
	// default, mild, off, and round again.
	for i, tc := range []struct {
		typ      int
		every    int
		maxNS    float64
		jittered int // how many of the samples fall on the period
	}{
		{jitterCorrupted, 120, 500e6, samples / 120},
		{jitterDefault, 16, 50e6, samples / 16},
		{jitterMild, 1, 10e3, samples},
		{jitterOff, 0, 0, 0},
		{jitterCorrupted, 120, 500e6, samples / 120},
	} {
		if err := p.TestMode(testJitter, [3]int{}); err != nil {
			t.Fatal(err)
		}
		if err := m.TestMode(testJitter, [3]int{}); err != nil {
			t.Fatal(err)
		}
		if p.test.jitterType != tc.typ {
			t.Fatalf("command %d: type %d want %d", i+1, p.test.jitterType, tc.typ)
		}
		if !logs.has(levelNotice, "test-mode: timestamp jitter set to type "+strconv.Itoa(tc.typ)) {
			t.Errorf("command %d: no notice for type %d", i+1, tc.typ)
		}
		// Slave: the Sync receive timestamps.
		d := syncDisturbance(t, p, samples)
		moved, largest := 0, 0.0
		for seq, v := range d {
			if tc.every == 0 || seq%tc.every != 0 {
				if v != 0 {
					t.Fatalf("type %d: Sync %d moved by %v off the period", tc.typ, seq, v)
				}
				continue
			}
			if math.Abs(v) > tc.maxNS {
				t.Fatalf("type %d: Sync %d moved by %v, beyond ±%v", tc.typ, seq, v, tc.maxNS)
			}
			if v != 0 {
				moved++
			}
			largest = math.Max(largest, math.Abs(v))
		}
		// Uniform jitter: some land near the bound, few exactly on 0.
		if moved < tc.jittered-1 {
			t.Errorf("type %d: %d of %d Syncs on the period moved", tc.typ, moved, tc.jittered)
		}
		if tc.jittered >= 16 && largest < tc.maxNS/2 {
			t.Errorf("type %d: largest jitter %v, under half the bound %v", tc.typ, largest, tc.maxNS)
		}
		// Master: the Delay_Req receive times it returns.
		onPeriod := func(seq int) bool { return tc.every != 0 && seq%tc.every == 0 }
		for seq := range max(2*tc.every, 32) {
			mtr.general = nil
			req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, uint16(seq), lenSync)}
			rx := t0.Add(time.Duration(seq) * time.Second)
			m.handle(packet{event: true, b: marshal(t, req), ts: rx}, t0)
			var r protocol.DelayResp
			if len(mtr.general) != 1 || r.UnmarshalBinary(mtr.general[0]) != nil {
				t.Fatalf("type %d: no Delay_Resp for request %d", tc.typ, seq)
			}
			v := float64(r.ReceiveTimestamp.Time().Sub(rx))
			if !onPeriod(seq) && v != 0 || math.Abs(v) > tc.maxNS {
				t.Fatalf("type %d: Delay_Resp %d moved by %v", tc.typ, seq, v)
			}
		}
	}
	// Each disturbance is logged at info level with its size.
	p.test = testState{jitterType: jitterMild, jitterEvery: 1, jitterMax: 10_000}
	logs.recs = nil
	v := syncDisturbance(t, p, 1)[0]
	if !logs.has(slog.LevelInfo, "ptp ptp1: added jitter "+strconv.Itoa(int(v))+" to sync RX timestamp") {
		t.Errorf("jitter %v not logged: %v", v, logs.recs)
	}
}

func TestTestModeTransparentClock(t *testing.T) {
	// Master: each Delay_Resp carries a correction up to 1 ms and a
	// receive time later by the same, so the slave's sum is unchanged.
	m, _, mtr := testPort(t, ModeMaster)
	if err := m.TestMode(testTransparent, [3]int{}); err != nil {
		t.Fatal(err)
	}
	nonzero := 0
	for seq := range 50 {
		mtr.general = nil
		req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, uint16(seq), lenSync)}
		rx := t0.Add(time.Duration(seq) * time.Second)
		m.handle(packet{event: true, b: marshal(t, req), ts: rx}, t0)
		var r protocol.DelayResp
		if err := r.UnmarshalBinary(mtr.general[0]); err != nil {
			t.Fatal(err)
		}
		c := r.CorrectionField.Nanoseconds()
		if c < 0 || c >= tcMaxCorrectionNS || c != math.Floor(c) {
			t.Fatalf("correction %v ns", c)
		}
		if got := r.ReceiveTimestamp.Time().Sub(rx); float64(got) != c {
			t.Fatalf("receive time moved by %v, correction %v", got, c)
		}
		if c != 0 {
			nonzero++
		}
	}
	if nonzero < 45 {
		t.Fatalf("only %d of 50 Delay_Resps had a correction", nonzero)
	}
	if err := m.TestMode(testTransparent, [3]int{}); err != nil {
		t.Fatal(err)
	}
	mtr.general = nil
	req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, 77, lenSync)}
	m.handle(packet{event: true, b: marshal(t, req), ts: t0}, t0)
	var r protocol.DelayResp
	if err := r.UnmarshalBinary(mtr.general[0]); err != nil || r.CorrectionField != 0 || !r.ReceiveTimestamp.Time().Equal(t0) {
		t.Fatalf("emulation off: %+v %v", r, err)
	}

	// Slave: corrections added to received Syncs and Follow_Ups leave
	// the measured offset as it was (TestMeasurement's cases).
	for _, tc := range measurementCases {
		if math.IsNaN(tc.wantOffset) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			p, _, tr := testPort(t, ModeSlave)
			p.disc.on = false
			qualify(t, p, t0, masterA, 128)
			if err := p.TestMode(testTransparent, [3]int{}); err != nil {
				t.Fatal(err)
			}
			withDelay(t, p, tr, t0)
			if d, _ := p.meas.delay.Value(); d != 1000 {
				t.Fatalf("path delay %v want 1000", d)
			}
			for range 20 {
				p.disc.haveOffset = false
				for _, pk := range tc.msgs(t) {
					p.handle(pk, t0.Add(time.Second))
				}
				if !p.disc.haveOffset || p.disc.offset != tc.wantOffset {
					t.Fatalf("offset %v (have %v), want %v", p.disc.offset, p.disc.haveOffset, tc.wantOffset)
				}
			}
		})
	}
}

// announceSent ticks a master until it sends an Announce and returns it.
func announceSent(t *testing.T, p *Port, tr *fakeTransport, now time.Time) protocol.Announce {
	t.Helper()
	tr.general = nil
	p.tick(now)
	for _, b := range tr.general {
		if msgType(b) == protocol.MessageAnnounce {
			var a protocol.Announce
			if err := a.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			return a
		}
	}
	t.Fatal("no Announce sent")
	return protocol.Announce{}
}

func TestTestModeBoundaryClockChange(t *testing.T) {
	p, _, tr := testPort(t, ModeMaster)
	logs := &logRecords{}
	p.log = slog.New(logs)
	other := selfID ^ 0xff00000000000000
	now := t0.Add(2 * time.Second)
	for i, want := range []struct {
		gm     protocol.ClockIdentity
		steps  uint16
		notice string
	}{
		{other, 0, "test-mode: boundary clock emulation: gm != parent and steps removed = 0"},
		{other, 1, "test-mode: boundary clock emulation: gm != parent and steps removed = 1"},
		{other, 2, "test-mode: boundary clock emulation: gm != parent and steps removed = 2"},
		{selfID, 0, "test-mode: boundary clock emulation: gm = parent and steps removed = 0"},
		{other, 0, "test-mode: boundary clock emulation: gm != parent and steps removed = 0"},
	} {
		if err := p.TestMode(testBoundaryChange, [3]int{}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Second)
		a := announceSent(t, p, tr, now)
		if a.GrandmasterIdentity != want.gm || a.StepsRemoved != want.steps {
			t.Errorf("command %d: announced gm %v steps %d, want %v %d", i+1, a.GrandmasterIdentity, a.StepsRemoved, want.gm, want.steps)
		}
		st := p.Status()
		if st.GrandmasterID != sfptpdID(want.gm) || st.StepsRemoved != int(want.steps) || st.ParentID != sfptpdID(selfID) {
			t.Errorf("command %d: status gm %s steps %d parent %s", i+1, st.GrandmasterID, st.StepsRemoved, st.ParentID)
		}
		if !logs.has(levelNotice, want.notice) {
			t.Errorf("command %d: no notice %q", i+1, want.notice)
		}
	}
	// Becoming master again rebuilds the parent data set from our own.
	qualify(t, p, now, masterA, 50)
	if p.state != instance.Passive {
		t.Fatalf("state %v", p.state)
	}
	now = now.Add(10 * time.Second)
	p.tick(now)
	if p.state != instance.Master {
		t.Fatalf("state %v", p.state)
	}
	if a := announceSent(t, p, tr, now.Add(2*time.Second)); a.GrandmasterIdentity != selfID || a.StepsRemoved != 0 {
		t.Errorf("after re-entering master: gm %v steps %d", a.GrandmasterIdentity, a.StepsRemoved)
	}
}

func TestTestModeGrandmasterClockChange(t *testing.T) {
	p, _, tr := testPort(t, ModeMaster)
	p.cfg.ClockClass, p.cfg.ClockAccuracy = 6, 0x21
	p.cfg.Priority1, p.cfg.Priority2 = 100, 120
	logs := &logRecords{}
	p.log = slog.New(logs)
	now := t0.Add(2 * time.Second)
	type q struct {
		class, acc uint8
		variance   uint16
		p1, p2     uint8
	}
	for i, want := range []q{
		{6, 0x21, 0xFFFF, 100, 118},
		{6, 0x21, 0xFFFD, 100, 120},
		{6, 0x1F, 0xFFFF, 100, 120},
		{4, 0x21, 0xFFFF, 100, 120},
		{6, 0x21, 0xFFFF, 98, 120},
		{6, 0x21, 0xFFFF, 100, 120},
		{6, 0x21, 0xFFFF, 100, 118},
	} {
		if err := p.TestMode(testGMChange, [3]int{}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Second)
		a := announceSent(t, p, tr, now)
		got := q{uint8(a.GrandmasterClockQuality.ClockClass), uint8(a.GrandmasterClockQuality.ClockAccuracy),
			a.GrandmasterClockQuality.OffsetScaledLogVariance, a.GrandmasterPriority1, a.GrandmasterPriority2}
		if got != want {
			t.Errorf("command %d: announced %+v want %+v", i+1, got, want)
		}
		// Our data set in the BMCA takes the quality, not the
		// priorities (those are only announced), as in sfptpd.
		ds := p.defaultDS()
		if ds.ClockClass != want.class || ds.Accuracy != want.acc || ds.Variance != want.variance || ds.Priority1 != 100 || ds.Priority2 != 120 {
			t.Errorf("command %d: default data set %+v", i+1, ds)
		}
		if st := p.Status(); st.ClockClass != want.class {
			t.Errorf("command %d: status class %d", i+1, st.ClockClass)
		}
	}
	if !logs.has(levelNotice, "test-mode: grandmaster clock change: class 4, accuracy 33, o.s.l.v 65535, priority1 100, priority2 120") {
		t.Error("no notice for the class change")
	}
}

func TestTestModeAdjustFrequency(t *testing.T) {
	p, clk, _ := testPort(t, ModeSlave)
	for _, ppb := range []int{1500, -250000, 0} {
		if err := p.TestMode(testAdjustFreq, [3]int{ppb}); err != nil {
			t.Fatal(err)
		}
		if clk.freq != float64(ppb) || p.Status().FreqAdjPPB != float64(ppb) {
			t.Fatalf("adjust_frequency %d: clock %v status %v", ppb, clk.freq, p.Status().FreqAdjPPB)
		}
	}
}

// TestTestModeConcurrent calls TestMode from other goroutines while the
// port works, as the engine's control goroutine does (run with -race).
func TestTestModeConcurrent(t *testing.T) {
	p, _, tr := testPort(t, ModeMaster)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, mode := range []string{testNoSync, testNoFollowUps, testNoAnnounce, testNoDelayResps, testJitter, testTransparent, testBoundaryChange, testGMChange} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = p.TestMode(mode, [3]int{})
				_ = p.Status()
			}
		}()
	}
	now := t0
	for i := range 300 {
		now = now.Add(time.Second)
		p.mu.Lock()
		tr.event, tr.general = nil, nil
		p.tick(now)
		req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, uint16(i), lenSync)}
		p.handle(packet{event: true, b: marshal(t, req), ts: now}, now)
		p.mu.Unlock()
	}
	close(stop)
	wg.Wait()
}

func TestLatencyCorrections(t *testing.T) {
	// withDelay and the Sync below make a true offset of 800 ns and a
	// path delay of 1000 ns. sfptpd adds ptp_tx_latency to transmit
	// and subtracts ptp_rx_latency from receive timestamps, so that
	// t2-t1 loses rx and t4-t3 loses tx: the path delay moves by
	// -(tx+rx)/2 and the offset by (tx-rx)/2.
	for _, tc := range []struct {
		tx, rx           time.Duration
		wantDelay, wantO float64
	}{
		{0, 0, 1000, 800},
		{100, 0, 950, 850},
		{0, 100, 950, 750},
		{120, -80, 980, 900},
		{-50, -50, 1050, 800},
		{300, 300, 700, 800},
		{-400, 0, 1200, 600},
	} {
		t.Run("", func(t *testing.T) {
			p, _, tr := testPort(t, ModeSlave)
			p.cfg.TxLatency, p.cfg.RxLatency = tc.tx, tc.rx
			p.disc.on = false
			qualify(t, p, t0, masterA, 128)
			withDelay(t, p, tr, t0)
			if d, _ := p.meas.delay.Value(); d != tc.wantDelay {
				t.Fatalf("tx %v rx %v: path delay %v want %v", tc.tx, tc.rx, d, tc.wantDelay)
			}
			t1 := t0.Add(time.Second)
			p.handle(packet{event: true, b: syncMsg(t, masterA, 7, false, t1, 0), ts: t1.Add(1800)}, t1)
			if !p.disc.haveOffset || p.disc.offset != tc.wantO {
				t.Fatalf("tx %v rx %v: offset %v want %v", tc.tx, tc.rx, p.disc.offset, tc.wantO)
			}
			if st := p.Status(); st.OffsetNS != tc.wantO || st.PathDelayNS != tc.wantDelay {
				t.Fatalf("status offset %v delay %v", st.OffsetNS, st.PathDelayNS)
			}

			// A master applies them to what it sends: the Follow_Up's
			// origin is the Sync's transmit time plus tx, a
			// Delay_Resp's receive time the request's minus rx.
			m, _, mtr := testPort(t, ModeMaster)
			m.cfg.TxLatency, m.cfg.RxLatency = tc.tx, tc.rx
			mtr.txTime = t0.Add(5000)
			m.tick(t0)
			var fu protocol.FollowUp
			for _, b := range mtr.general {
				if msgType(b) == protocol.MessageFollowUp {
					if err := fu.UnmarshalBinary(b); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := fu.PreciseOriginTimestamp.Time(); !got.Equal(mtr.txTime.Add(tc.tx)) {
				t.Fatalf("Follow_Up origin %v, want transmit time + %v", got.Sub(mtr.txTime), tc.tx)
			}
			mtr.general = nil
			req := &protocol.SyncDelayReq{Header: hdr(protocol.MessageDelayReq, masterB, 3, lenSync)}
			m.handle(packet{event: true, b: marshal(t, req), ts: t0.Add(9000)}, t0)
			var r protocol.DelayResp
			if err := r.UnmarshalBinary(mtr.general[0]); err != nil {
				t.Fatal(err)
			}
			if got := r.ReceiveTimestamp.Time(); !got.Equal(t0.Add(9000 - tc.rx)) {
				t.Fatalf("Delay_Resp receive time %v, want receive - %v", got.Sub(t0.Add(9000)), tc.rx)
			}
		})
	}
}

func TestLatencyConfig(t *testing.T) {
	c := DefaultConfig()
	c.Interface = "eth0"
	for _, tc := range []struct {
		tx, rx time.Duration
		ok     bool
	}{
		{0, 0, true},
		{math.MaxInt32, math.MinInt32, true},
		{math.MaxInt32 + 1, 0, false},
		{0, math.MinInt32 - 1, false},
	} {
		c.TxLatency, c.RxLatency = tc.tx, tc.rx
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("tx %d rx %d: Validate %v", tc.tx, tc.rx, err)
		}
	}
}
