package ptp

import (
	"math"
	"testing"
	"time"
)

// TestDiffNS checks the nanosecond difference across second boundaries,
// signs, and spans past time.Duration's ±292 years, where Sub saturates.
func TestDiffNS(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b time.Time
		want float64
	}{
		{"same", t0, t0, 0},
		{"within a second", t0.Add(1500), t0, 1500},
		{"across a second", time.Unix(101, 500), time.Unix(100, 999_999_000), 1500},
		{"negative across a second", time.Unix(100, 999_999_000), time.Unix(101, 500), -1500},
		{"37 s", t0.Add(37 * time.Second), t0, 37e9},
		{"past Duration's range", time.Unix(20_000_000_000, 1), time.Unix(0, 0), 2e19 + 1},
	} {
		if got := diffNS(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: diffNS %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMeasurementArithmetic runs one Sync and one Delay_Req exchange
// through the pipeline and checks the master-to-slave difference, the
// path delay and the offset against values worked out by hand:
//
//	ms     = (t2 - t1) - c1 + shift
//	sm     = (t4 - t3) - c4 - shift
//	delay  = (ms + sm) / 2
//	offset = ms - delay
func TestMeasurementArithmetic(t *testing.T) {
	const tai = 37e9 // a master on the PTP timescale, a slave clock on UTC
	for _, tc := range []struct {
		name     string
		t2t1, c1 float64 // Sync: t2 - t1 and its correction (ns)
		t4t3, c4 float64 // Delay_Req: t4 - t3 and the Delay_Resp's correction
		shift    float64
		wantMS   float64
		wantDly  float64 // NaN: no path delay sample
		wantOff  float64
	}{
		// Our clock 500 ns ahead, 1000 ns each way.
		{"symmetric", 1500, 0, 500, 0, 0, 1500, 1000, 500},
		// Our clock 500 ns behind.
		{"behind", 500, 0, 1500, 0, 0, 500, 1000, -500},
		// A transparent clock's residence time in both directions.
		{"corrections", 1800, 300, 700, 200, 0, 1500, 1000, 500},
		{"fractional correction", 1800, 300.5, 500, 0, 0, 1499.5, 999.75, 499.75},
		{"negative correction", 1200, -300, 500, 0, 0, 1500, 1000, 500},
		// The master's timestamps count TAI, 37 s ahead of ours.
		{"TAI master", 1500 - tai, 0, 500 + tai, 0, tai, 1500, 1000, 500},
		// A delay of over a second is a measurement across a step.
		{"across a step", 1500, 0, 2.5e9, 0, 0, 1500, math.NaN(), 0},
		{"infinite Delay_Resp correction", 1500, 0, 500, math.Inf(1), 0, 1500, math.NaN(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMeasurements(7)
			t1 := t0.Add(time.Second)
			m.syncDone(syncTimes{t1: t1, corr: tc.c1, t2: t1.Add(time.Duration(tc.t2t1))}, tc.shift, t0)
			if !m.msValid || m.ms != tc.wantMS {
				t.Fatalf("ms %v (valid %v), want %v", m.ms, m.msValid, tc.wantMS)
			}
			if _, ok := m.offset(); ok {
				t.Fatal("an offset without a path delay")
			}
			t3 := t0.Add(2 * time.Second)
			seq := m.nextDelayReqSeq()
			m.delayReqSent(seq, t3)
			m.delayResp(seq, 0, t3.Add(time.Duration(tc.t4t3)), tc.c4, tc.shift)
			d, ok := m.delay.Value()
			if math.IsNaN(tc.wantDly) {
				if ok {
					t.Fatalf("path delay %v taken", d)
				}
				if _, ok := m.offset(); ok {
					t.Fatal("an offset without a path delay")
				}
				return
			}
			if !ok || d != tc.wantDly {
				t.Fatalf("path delay %v (%v), want %v", d, ok, tc.wantDly)
			}
			if off, ok := m.offset(); !ok || off != tc.wantOff {
				t.Fatalf("offset %v (%v), want %v", off, ok, tc.wantOff)
			}
		})
	}
}

// syncEvent is a two-step Sync or a Follow_Up handed to the pipeline.
type syncEvent struct {
	followUp bool
	seq      uint16
	at       time.Duration // t2 of a Sync, t1 of a Follow_Up (after t0)
	corr     float64
	shift    time.Duration // a Follow_Up's t2Shift
}

// TestSyncFollowUpMatching checks the pairing of two-step Syncs with
// their Follow_Ups, in either order: which event completes a
// measurement, and its timestamps.
func TestSyncFollowUpMatching(t *testing.T) {
	type done struct {
		after int // the index of the event that completes it
		s     syncTimes
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name   string
		events []syncEvent
		want   []done
	}{
		{"sync then follow-up", []syncEvent{
			{seq: 1, at: 1500, corr: 100},
			{followUp: true, seq: 1, corr: 200},
		}, []done{{1, syncTimes{t1: t0, corr: 300, t2: at(1500)}}}},
		{"follow-up then sync", []syncEvent{
			{followUp: true, seq: 1, corr: 200},
			{seq: 1, at: 1500, corr: 100},
		}, []done{{1, syncTimes{t1: t0, corr: 300, t2: at(1500)}}}},
		{"transparent clock shift on a waiting sync", []syncEvent{
			{seq: 1, at: 1500},
			{followUp: true, seq: 1, corr: 40, shift: 40},
		}, []done{{1, syncTimes{t1: t0, corr: 40, t2: at(1540)}}}},
		{"transparent clock shift on a waiting follow-up", []syncEvent{
			{followUp: true, seq: 1, corr: 40, shift: 40},
			{seq: 1, at: 1500},
		}, []done{{1, syncTimes{t1: t0, corr: 40, t2: at(1540)}}}},
		{"mismatched sequence ids", []syncEvent{
			{seq: 1, at: 1500},
			{followUp: true, seq: 2},
		}, nil},
		{"a newer sync replaces a waiting one", []syncEvent{
			{seq: 1, at: 1500},
			{seq: 2, at: 2500},
			{followUp: true, seq: 1},
			{followUp: true, seq: 2, at: 1000},
		}, []done{{3, syncTimes{t1: at(1000), t2: at(2500)}}}},
		{"a duplicate follow-up waits for the next sync", []syncEvent{
			{seq: 1, at: 1500},
			{followUp: true, seq: 1},
			{followUp: true, seq: 1},
			{seq: 1, at: 1600},
		}, []done{{1, syncTimes{t1: t0, t2: at(1500)}}, {3, syncTimes{t1: t0, t2: at(1600)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMeasurements(7)
			var got []done
			for i, e := range tc.events {
				var s syncTimes
				var ok bool
				if e.followUp {
					s, ok = m.followUp(e.seq, at(e.at), e.corr, e.shift)
				} else {
					s, ok = m.twoStepSync(e.seq, at(e.at), e.corr)
				}
				if ok {
					got = append(got, done{i, s})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("completed %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.after != w.after || !g.s.t1.Equal(w.s.t1) || !g.s.t2.Equal(w.s.t2) || g.s.corr != w.s.corr {
					t.Fatalf("completed %+v, want %+v", got, tc.want)
				}
			}
		})
	}
}

// TestDelayReqAccounting checks the Delay_Req sequence ids, the missed
// count behind the no-delay-resps alarm, what a Delay_Resp must match,
// and the interval it may set.
func TestDelayReqAccounting(t *testing.T) {
	m := newMeasurements(7)
	m.dreqIvl = time.Second
	m.syncDone(syncTimes{t1: t0, t2: t0.Add(1500)}, 0, t0)

	// Three requests, none answered: the first is not missed until the
	// second goes.
	for i, wantMissed := range []int{0, 1, 2} {
		seq := m.nextDelayReqSeq()
		if seq != uint16(i) || m.missed != wantMissed {
			t.Fatalf("request %d: seq %d missed %d, want %d", i, seq, m.missed, wantMissed)
		}
		m.delayReqSent(seq, t0.Add(time.Duration(i)*time.Second))
	}
	// A lost transmit timestamp leaves nothing to match, and is not
	// counted as missed.
	seq := m.nextDelayReqSeq()
	m.delayReqSent(seq, time.Time{})
	if m.missed != 3 {
		t.Fatalf("missed %d", m.missed)
	}
	m.nextDelayReqSeq()
	if m.missed != 3 {
		t.Fatalf("a lost timestamp counted as missed: %d", m.missed)
	}
	m.delayResp(seq, 0, t0.Add(500), 0, 0)
	if m.missed != 3 || m.delay.Len() != 0 {
		t.Fatal("a Delay_Resp matched a request whose timestamp was lost")
	}

	t3 := t0.Add(10 * time.Second)
	seq = m.nextDelayReqSeq()
	m.delayReqSent(seq, t3)
	for _, tc := range []struct {
		name    string
		seq     uint16
		logIvl  int8
		wantIvl time.Duration
		matched bool
	}{
		{"wrong sequence id", seq + 1, -2, time.Second, false},
		{"out-of-range interval ignored", seq, 0x7f, time.Second, true},
		{"answered twice", seq, -2, time.Second, false},
	} {
		before := m.delay.Len()
		m.delayResp(tc.seq, tc.logIvl, t3.Add(500), 0, 0)
		if got := m.delay.Len() > before; got != tc.matched {
			t.Fatalf("%s: matched %v", tc.name, got)
		}
		if tc.matched && m.missed != 0 {
			t.Fatalf("%s: missed %d after a match", tc.name, m.missed)
		}
		if m.dreqIvl != tc.wantIvl {
			t.Fatalf("%s: interval %v, want %v", tc.name, m.dreqIvl, tc.wantIvl)
		}
	}
	// A matching response sets the interval the master asks for.
	seq = m.nextDelayReqSeq()
	m.delayReqSent(seq, t3)
	m.delayResp(seq, -2, t3.Add(500), 0, 0)
	if m.dreqIvl != time.Second/4 {
		t.Fatalf("interval %v, want 250ms", m.dreqIvl)
	}
	// A response without a receive timestamp matches but adds nothing.
	seq = m.nextDelayReqSeq()
	m.delayReqSent(seq, t3)
	before := m.delay.Len()
	m.delayResp(seq, 0, time.Time{}, 0, 0)
	if m.dreq.valid || m.delay.Len() != before {
		t.Fatalf("empty receive timestamp: outstanding %v, samples %d", m.dreq.valid, m.delay.Len())
	}
}

// TestMeasurementsReset checks what a clock step (reset) and a new
// master (restart) drop.
func TestMeasurementsReset(t *testing.T) {
	fill := func() measurements {
		m := newMeasurements(7)
		m.syncDone(syncTimes{t1: t0, t2: t0.Add(1500)}, 0, t0)
		seq := m.nextDelayReqSeq()
		m.delayReqSent(seq, t0)
		m.delayResp(seq, 0, t0.Add(500), 0, 0)
		m.twoStepSync(5, t0, 0)
		m.followUp(6, t0, 0, 0)
		m.delayReqSent(m.nextDelayReqSeq(), t0)
		m.nextDelayReqSeq()
		return m
	}
	later := t0.Add(time.Minute)
	for _, tc := range []struct {
		name      string
		do        func(m *measurements)
		wantDelay bool
		wantMiss  int
		wantLast  time.Time
	}{
		{"reset", func(m *measurements) { m.reset() }, true, 1, t0},
		{"restart", func(m *measurements) { m.restart(later) }, false, 0, later},
	} {
		m := fill()
		tc.do(&m)
		if m.sync.valid || m.fu.valid || m.dreq.valid || m.msValid {
			t.Errorf("%s: half-made measurements kept: %+v %+v %+v %v", tc.name, m.sync, m.fu, m.dreq, m.msValid)
		}
		if _, ok := m.delay.Value(); ok != tc.wantDelay {
			t.Errorf("%s: path delay kept %v, want %v", tc.name, ok, tc.wantDelay)
		}
		if m.missed != tc.wantMiss || !m.lastSync.Equal(tc.wantLast) {
			t.Errorf("%s: missed %d last Sync %v", tc.name, m.missed, m.lastSync)
		}
		if tc.name == "restart" && !m.nextDelayReq.Equal(later) {
			t.Errorf("restart: next Delay_Req %v", m.nextDelayReq)
		}
	}
}

func TestScheduleDelayReq(t *testing.T) {
	m := newMeasurements(7)
	m.dreqIvl = time.Second
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{0, 500 * time.Millisecond}, {0.5, time.Second}, {0.75, 1250 * time.Millisecond}} {
		m.scheduleDelayReq(t0, tc.u)
		if got := m.nextDelayReq.Sub(t0); got != tc.want {
			t.Errorf("u %v: in %v, want %v", tc.u, got, tc.want)
		}
	}
	m.lastSync, m.syncIvl = t0, time.Second/8
	if got := m.syncDeadline(); !got.Equal(t0.Add(syncTimeoutIntervals * time.Second / 8)) {
		t.Errorf("sync deadline %v", got)
	}
}
