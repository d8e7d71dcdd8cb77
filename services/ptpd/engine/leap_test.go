package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// fakeTime is a wall clock with timers that fire only when the test
// moves the time on, each at its due time.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	ft      *fakeTime
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func (t *fakeTimer) Stop() bool {
	t.ft.mu.Lock()
	defer t.ft.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

func (ft *fakeTime) Now() time.Time {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.now
}

func (ft *fakeTime) AfterFunc(d time.Duration, f func()) Timer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{ft: ft, at: ft.now.Add(d), f: f}
	ft.timers = append(ft.timers, t)
	return t
}

// advanceTo moves the time to "to", firing the due timers in time order
// with the clock at each one's due time.
func (ft *fakeTime) advanceTo(to time.Time) {
	for {
		ft.mu.Lock()
		var next *fakeTimer
		for _, t := range ft.timers {
			if !t.stopped && !t.fired && !t.at.After(to) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			if to.After(ft.now) {
				ft.now = to
			}
			ft.mu.Unlock()
			return
		}
		if next.at.After(ft.now) {
			ft.now = next.at
		}
		next.fired = true
		ft.mu.Unlock()
		next.f()
	}
}

// pending counts the timers armed and neither stopped nor fired.
func (ft *fakeTime) pending() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	n := 0
	for _, t := range ft.timers {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}

// stepClock is a clock.Clock that records its steps.
type stepClock struct {
	name  string
	mu    sync.Mutex
	steps []time.Duration
}

func (c *stepClock) Name() string              { return c.name }
func (c *stepClock) Now() (time.Time, error)   { return time.Now(), nil }
func (c *stepClock) FreqPPB() (float64, error) { return 0, nil }
func (c *stepClock) AdjFreqPPB(float64) error  { return nil }
func (c *stepClock) MaxFreqPPB() float64       { return 1e6 }
func (c *stepClock) Step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, d)
	return nil
}
func (c *stepClock) stepped() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.steps...)
}

// leapFake is a fake instance with the leap capabilities except
// stepping, recording each call as an event.
type leapFake struct {
	*fake
	mu     sync.Mutex
	events []string
}

func (f *leapFake) record(ev string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
}

func (f *leapFake) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *leapFake) LeapGuard(on bool) { f.record(fmt.Sprintf("guard %v", on)) }
func (f *leapFake) UpdateLeapSecond(leap59, leap61 bool) {
	f.record(fmt.Sprintf("leap59=%v leap61=%v", leap59, leap61))
}
func (f *leapFake) TestMode(mode string, params [3]int) error {
	f.record(fmt.Sprintf("%s%v", mode, params))
	return nil
}

// stepFake steps its own clock for leap seconds (a PTP port); tai says
// its clock has no leap seconds.
type stepFake struct {
	*leapFake
	tai bool
}

func (f *stepFake) StepLeap(d time.Duration) (bool, error) {
	if f.tai {
		return false, nil
	}
	f.record(fmt.Sprintf("step %v", d))
	return true, nil
}

type leapHarness struct {
	e     *Engine
	ft    *fakeTime
	clk   *stepClock
	logs  *testutil.LockedBuffer
	fakes map[string]*leapFake
}

// midnight is the end of the UTC day the leap harness starts in.
var (
	leapStart    = time.Date(2016, 12, 31, 12, 0, 0, 0, time.UTC)
	leapMidnight = time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)
)

// newLeapHarness runs an engine over leap fakes on a fake wall clock;
// ptp instances step their own clock (tai: they have none to step),
// freerun ones are on the engine's clock "system".
func newLeapHarness(t *testing.T, cfgText string, tai bool) *leapHarness {
	t.Helper()
	cfg, err := config.Parse("t.cfg", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	cfg.General.StatePath = ""
	h := &leapHarness{ft: &fakeTime{now: leapStart}, clk: &stepClock{name: "system"}, logs: &testutil.LockedBuffer{}, fakes: map[string]*leapFake{}}
	factory := func(sec config.Instance, _ clock.Clock) (instance.Instance, error) {
		lf := &leapFake{fake: &fake{st: instance.Status{Name: sec.Name, Module: sec.Module, Interface: sec.Interface,
			State: instance.Listening, UserPriority: sec.Priority, ClockClass: 248, AccuracyNS: math.Inf(1)}}}
		h.fakes[sec.Name] = lf
		if sec.Module == "freerun" {
			lf.st.State, lf.st.Clock = instance.Freerun, "system"
			return lf, nil
		}
		lf.st.Clock = "phc0(" + sec.Interface + ")"
		return &stepFake{leapFake: lf, tai: tai}, nil
	}
	e, err := New(Options{Config: cfg, Modules: map[string]Factory{"ptp": factory, "freerun": factory}, Clock: h.clk,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), StatsInterval: time.Hour,
		Now: h.ft.Now, AfterFunc: h.ft.AfterFunc, InterfaceExists: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	h.e = e
	return h
}

func (h *leapHarness) has(t *testing.T, lines ...string) {
	t.Helper()
	out := h.logs.String()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("log lacks %s\n%s", l, out)
		}
	}
}

func (h *leapHarness) lacks(t *testing.T, lines ...string) {
	t.Helper()
	out := h.logs.String()
	for _, l := range lines {
		if strings.Contains(out, l) {
			t.Errorf("log has %s\n%s", l, out)
		}
	}
}

const leapFreerunConfig = `[general]
sync_module freerun fr1
%s
`

const leapPTPConfig = `[general]
sync_module ptp p1
%s
[p1]
interface eth0
`

func TestLeapMoment(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		typ  LeapType
		want time.Time
	}{
		{leapStart, Leap61, leapMidnight},
		{leapStart, Leap59, leapMidnight.Add(-time.Second)},
		{time.Date(2016, 12, 31, 0, 0, 0, 0, time.UTC), Leap61, leapMidnight},
		{time.Date(2016, 12, 31, 23, 59, 59, 999999999, time.UTC), Leap61, leapMidnight},
		// Local time does not matter: the day ends at UTC midnight.
		{time.Date(2016, 12, 31, 22, 0, 0, 0, time.FixedZone("X", -5*3600)), Leap61, time.Date(2017, 1, 2, 0, 0, 0, 0, time.UTC)},
		{time.Unix(-1, 0), Leap61, time.Unix(0, 0)},
	} {
		if got := leapMoment(tc.now, tc.typ); !got.Equal(tc.want) {
			t.Errorf("leapMoment(%v, %v) = %v, want %v", tc.now, tc.typ, got.UTC(), tc.want)
		}
	}
}

// TestLeapSchedule runs a scheduled leap second through its guard
// intervals on the fake clock: the guard goes on guard-before the leap,
// the clock steps at it, the guard goes off guard-after it.
func TestLeapSchedule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     string // [general] lines; "ptp" in the name picks the ptp config
		ptp     bool
		tai     bool
		typ     LeapType
		guard   time.Duration
		block   bool
		cancel  time.Duration // cancel this long before the leap (0: no cancel)
		wantGrd time.Duration // the guard interval in effect; 0: the guard never goes on
		step    string        // where the step shows: "clock" (the engine's), "instance", "" none
		logs    []string
		absent  []string
	}{
		{name: "61 steps the engine's clock back", typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second, step: "clock",
			logs: []string{
				notice(fmt.Sprintf("leap second 61 scheduled for UTC midnight (local time: %s)", localHHMM(leapMidnight))),
				notice("leap second 61 imminent. Suspending timestamp processing"),
				notice("leap second now: stepping clocks backward by one second"),
				info("leap second: clock system stepped by -1s"),
				notice("leap second cancelled/complete")}},
		{name: "59 steps forward a second before midnight", typ: Leap59, guard: 4 * time.Second, wantGrd: 4 * time.Second, step: "clock",
			logs: []string{
				notice(fmt.Sprintf("leap second 59 scheduled for UTC midnight (local time: %s)", localHHMM(leapMidnight.Add(-time.Second)))),
				notice("leap second 59 imminent. Suspending timestamp processing"),
				notice("leap second now: stepping clocks forward by one second")}},
		{name: "short guard is raised to 2 s", typ: Leap61, guard: time.Second / 2, wantGrd: LeapGuardMin, step: "clock"},
		{name: "long guard is cut to 10 s", typ: Leap61, guard: time.Minute, wantGrd: LeapGuardMax, step: "clock"},
		{name: "cancel before the guard", typ: Leap61, guard: 4 * time.Second, cancel: time.Minute,
			logs: []string{notice("leap second cancelled/complete")}, absent: []string{"imminent", "leap second now"}},
		{name: "cancel in the guard is too late", typ: Leap61, guard: 4 * time.Second, cancel: 2 * time.Second, wantGrd: 4 * time.Second, step: "clock",
			logs: []string{warn("can't cancel leap second - already in progress!"), notice("leap second now: stepping clocks backward by one second")}},
		{name: "no-adjust only logs", cfg: "clock_control no-adjust", typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second,
			logs: []string{notice("leap second now: clocks will be slewed backward by one second")}, absent: []string{"stepping clocks"}},
		{name: "no-step only logs", cfg: "clock_control no-step", typ: Leap59, guard: 4 * time.Second, wantGrd: 4 * time.Second,
			logs: []string{notice("leap second now: clocks will be slewed forward by one second")}},
		{name: "read-only clock", cfg: "clock_readonly system", typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second,
			logs: []string{info("leap second: clock system is blocked or read-only, not stepped")}},
		{name: "blocked clock", block: true, typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second,
			logs: []string{info("leap second: clock system is blocked or read-only, not stepped")}},
		{name: "ptp instance steps its own clock", ptp: true, typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second, step: "instance",
			logs: []string{info("leap second: clock phc0(eth0) stepped by -1s")}},
		{name: "ptp instance on TAI", ptp: true, tai: true, typ: Leap61, guard: 4 * time.Second, wantGrd: 4 * time.Second,
			logs: []string{info("leap second: clock phc0(eth0) is on the PTP timescale and has no leap second")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgText := fmt.Sprintf(leapFreerunConfig, tc.cfg)
			name := "fr1"
			if tc.ptp {
				cfgText, name = fmt.Sprintf(leapPTPConfig, tc.cfg), "p1"
			}
			h := newLeapHarness(t, cfgText, tc.tai)
			if tc.block {
				if err := h.e.BlockClock(true, []string{"system"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.e.ScheduleLeapSecond(tc.typ, tc.guard); err != nil {
				t.Fatal(err)
			}
			at := leapMoment(leapStart, tc.typ)
			if typ, when := h.e.LeapStatus(); typ != tc.typ || !when.Equal(at) {
				t.Fatalf("LeapStatus %v %v, want %v %v", typ, when, tc.typ, at)
			}
			f := h.fakes[name]
			wantEv := []string{fmt.Sprintf("leap59=%v leap61=%v", tc.typ == Leap59, tc.typ == Leap61)}
			if tc.wantGrd == 0 {
				h.ft.advanceTo(at.Add(-tc.cancel))
				if err := h.e.CancelLeapSecond(); err != nil {
					t.Fatal(err)
				}
				h.ft.advanceTo(at.Add(time.Hour))
				wantEv = append(wantEv, "guard false", "leap59=false leap61=false")
				if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
					t.Fatalf("events %q, want %q", got, wantEv)
				}
				if s := h.clk.stepped(); len(s) != 0 {
					t.Fatalf("clock stepped %v after a cancel", s)
				}
				if typ, _ := h.e.LeapStatus(); typ != LeapNone {
					t.Fatalf("LeapStatus %v after cancel", typ)
				}
				h.has(t, tc.logs...)
				h.lacks(t, tc.absent...)
				return
			}
			// Just before the guard: nothing yet.
			h.ft.advanceTo(at.Add(-tc.wantGrd - time.Millisecond))
			if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
				t.Fatalf("before the guard: events %q, want %q", got, wantEv)
			}
			h.ft.advanceTo(at.Add(-tc.wantGrd))
			wantEv = append(wantEv, "guard true")
			if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
				t.Fatalf("guard start: events %q, want %q", got, wantEv)
			}
			if tc.cancel != 0 {
				h.ft.advanceTo(at.Add(-tc.cancel))
				if err := h.e.CancelLeapSecond(); err == nil {
					t.Fatal("cancel in the guard interval accepted")
				}
			}
			h.ft.advanceTo(at.Add(-time.Nanosecond))
			if s := h.clk.stepped(); len(s) != 0 {
				t.Fatalf("clock stepped %v before the leap", s)
			}
			h.ft.advanceTo(at)
			d := -time.Second
			if tc.typ == Leap59 {
				d = time.Second
			}
			wantSteps := "[]"
			switch tc.step {
			case "clock":
				wantSteps = fmt.Sprint([]time.Duration{d})
			case "instance":
				wantEv = append(wantEv, fmt.Sprintf("step %v", d))
			}
			if s := h.clk.stepped(); fmt.Sprint(s) != wantSteps {
				t.Fatalf("engine clock steps %v, want %s", s, wantSteps)
			}
			wantEv = append(wantEv, "leap59=false leap61=false")
			if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
				t.Fatalf("at the leap: events %q, want %q", got, wantEv)
			}
			h.ft.advanceTo(at.Add(tc.wantGrd - time.Millisecond))
			if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
				t.Fatalf("guard ended early: events %q, want %q", got, wantEv)
			}
			h.ft.advanceTo(at.Add(tc.wantGrd))
			wantEv = append(wantEv, "guard false", "leap59=false leap61=false")
			if got := f.got(); fmt.Sprint(got) != fmt.Sprint(wantEv) {
				t.Fatalf("after the guard: events %q, want %q", got, wantEv)
			}
			if typ, _ := h.e.LeapStatus(); typ != LeapNone {
				t.Fatalf("LeapStatus %v after the leap", typ)
			}
			if n := h.ft.pending(); n != 0 {
				t.Fatalf("%d timers left armed", n)
			}
			h.has(t, tc.logs...)
			h.lacks(t, tc.absent...)
		})
	}
}

func TestLeapReschedule(t *testing.T) {
	h := newLeapHarness(t, fmt.Sprintf(leapFreerunConfig, ""), false)
	if err := h.e.ScheduleLeapSecond(Leap61, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.ft.advanceTo(leapStart.Add(time.Hour))
	if err := h.e.ScheduleLeapSecond(Leap59, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if typ, at := h.e.LeapStatus(); typ != Leap59 || !at.Equal(leapMidnight.Add(-time.Second)) {
		t.Fatalf("LeapStatus %v %v", typ, at)
	}
	h.has(t, notice("leap second cancelled/complete"), notice(fmt.Sprintf("leap second 59 scheduled for UTC midnight (local time: %s)", localHHMM(leapMidnight.Add(-time.Second)))))
	if n := h.ft.pending(); n != 1 {
		t.Fatalf("%d timers armed, want the new one only", n)
	}
	h.ft.advanceTo(leapMidnight.Add(time.Minute))
	if s := h.clk.stepped(); fmt.Sprint(s) != "[1s]" {
		t.Fatalf("steps %v, want only the 59's", s)
	}
	// The first schedule's guard and step never happened.
	got := h.fakes["fr1"].got()
	want := []string{"leap59=false leap61=true", "guard false", "leap59=false leap61=false", "leap59=true leap61=false",
		"guard true", "leap59=false leap61=false", "guard false", "leap59=false leap61=false"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	// In the guard interval a new schedule is refused.
	if err := h.e.ScheduleLeapSecond(Leap61, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.ft.advanceTo(leapMidnight.Add(24*time.Hour - 2*time.Second))
	if err := h.e.ScheduleLeapSecond(Leap59, 5*time.Second); err == nil {
		t.Fatal("schedule during the guard interval was accepted")
	}
	h.has(t, warn("can't schedule leap second - one already in progress!"))
	if typ, _ := h.e.LeapStatus(); typ != Leap61 {
		t.Fatalf("LeapStatus %v, want the 61 in progress", typ)
	}
	if err := h.e.ScheduleLeapSecond(LeapNone, time.Second); err == nil {
		t.Fatal("LeapNone was scheduled")
	}
}

// TestLeapTestModes: leap_second_61/59 announce the leap second and at
// midnight change the announced UTC offset, with no guard and no step;
// local_leap_second_* schedule a genuine one with a 10 s guard.
func TestLeapTestModes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modes  []TestMode
		run    bool // run past midnight
		events []string
		steps  string
		status LeapType
		logs   []string
	}{
		{name: "leap_second_61", modes: []TestMode{TestLeapSecond61}, run: true,
			events: []string{"leap59=false leap61=true", "utc_offset[1 0 0]", "guard false", "leap59=false leap61=false"}, steps: "[]",
			logs: []string{info(fmt.Sprintf("leap second 61 test at UTC midnight (local time: %s)", localHHMM(leapMidnight))), notice("leap second cancelled/complete")}},
		{name: "leap_second_59", modes: []TestMode{TestLeapSecond59}, run: true,
			events: []string{"leap59=true leap61=false", "utc_offset[-1 0 0]", "guard false", "leap59=false leap61=false"}, steps: "[]"},
		{name: "leap_second_61 pending", modes: []TestMode{TestLeapSecond61},
			events: []string{"leap59=false leap61=true"}, status: Leap61},
		{name: "leap_second_cancel", modes: []TestMode{TestLeapSecond61, TestLeapSecondCancel}, run: true,
			events: []string{"leap59=false leap61=true", "guard false", "leap59=false leap61=false"}, steps: "[]"},
		{name: "leap_second_cancel with nothing set", modes: []TestMode{TestLeapSecondCancel}, run: true, steps: "[]"},
		{name: "second test replaces the first", modes: []TestMode{TestLeapSecond61, TestLeapSecond59}, run: true,
			events: []string{"leap59=false leap61=true", "guard false", "leap59=false leap61=false", "leap59=true leap61=false",
				"utc_offset[-1 0 0]", "guard false", "leap59=false leap61=false"}, steps: "[]"},
		{name: "genuine leap second refuses a test", modes: []TestMode{TestLocalLeapSecond61, TestLeapSecond59}, status: Leap61,
			events: []string{"leap59=false leap61=true"},
			logs:   []string{warn("won't set up leap second - genuine leap second scheduled!")}},
		{name: "local_leap_second_61", modes: []TestMode{TestLocalLeapSecond61}, run: true, steps: "[-1s]",
			events: []string{"leap59=false leap61=true", "guard true", "leap59=false leap61=false", "guard false", "leap59=false leap61=false"},
			logs:   []string{notice("leap second 61 imminent. Suspending timestamp processing")}},
		{name: "local_leap_second_59", modes: []TestMode{TestLocalLeapSecond59}, run: true, steps: "[1s]",
			events: []string{"leap59=true leap61=false", "guard true", "leap59=false leap61=false", "guard false", "leap59=false leap61=false"}},
		{name: "local_leap_second_cancel", modes: []TestMode{TestLocalLeapSecond59, TestLocalLeapSecondCancel}, run: true, steps: "[]",
			events: []string{"leap59=true leap61=false", "guard false", "leap59=false leap61=false"}},
		{name: "test cancelled by a genuine schedule", modes: []TestMode{TestLeapSecond59, TestLocalLeapSecond61}, status: Leap61,
			events: []string{"leap59=true leap61=false", "guard false", "leap59=false leap61=false", "leap59=false leap61=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newLeapHarness(t, fmt.Sprintf(leapFreerunConfig, ""), false)
			for _, m := range tc.modes {
				_ = h.e.ApplyTestMode(m, [3]int{})
			}
			if tc.run {
				// The local modes' guard: 10 s either side of the
				// leap, which a 59 puts a second before midnight.
				early := leapMidnight.Add(-LeapGuardMax - time.Millisecond)
				if strings.HasSuffix(tc.name, "59") {
					early = early.Add(-time.Second)
				}
				h.ft.advanceTo(early)
				for _, ev := range h.fakes["fr1"].got() {
					if ev == "guard true" {
						t.Fatal("guard on too early")
					}
				}
				h.ft.advanceTo(leapMidnight.Add(time.Minute))
			}
			if got := h.fakes["fr1"].got(); fmt.Sprint(got) != fmt.Sprint(tc.events) {
				t.Fatalf("events %q, want %q", got, tc.events)
			}
			if tc.steps != "" {
				if s := h.clk.stepped(); fmt.Sprint(s) != tc.steps {
					t.Fatalf("steps %v, want %s", s, tc.steps)
				}
			}
			if typ, _ := h.e.LeapStatus(); typ != tc.status {
				t.Fatalf("LeapStatus %v, want %v", typ, tc.status)
			}
			h.has(t, tc.logs...)
		})
	}
}

// TestLeapFromSelectedSlave: the selected instance's leap flags, in the
// slave state, schedule the leap second with a guard of twice its
// announce interval; clearing them cancels it.
func TestLeapFromSelectedSlave(t *testing.T) {
	type flags struct {
		state          instance.State
		leap59, leap61 bool
	}
	for _, tc := range []struct {
		name   string
		ivl    time.Duration
		seq    []flags
		want   []LeapType // LeapStatus after each step
		guards []time.Duration
	}{
		{name: "61 appears then goes", ivl: 2 * time.Second,
			seq:    []flags{{instance.Slave, false, true}, {instance.Slave, false, true}, {instance.Slave, false, false}},
			want:   []LeapType{Leap61, Leap61, LeapNone},
			guards: []time.Duration{4 * time.Second, 4 * time.Second, 0}},
		{name: "59 wins over 61", ivl: time.Second,
			seq: []flags{{instance.Slave, true, true}}, want: []LeapType{Leap59}, guards: []time.Duration{LeapGuardMin}},
		{name: "guard capped", ivl: 8 * time.Second,
			seq: []flags{{instance.Slave, false, true}}, want: []LeapType{Leap61}, guards: []time.Duration{LeapGuardMax}},
		{name: "61 then 59", ivl: 2 * time.Second,
			seq:  []flags{{instance.Slave, false, true}, {instance.Slave, true, false}},
			want: []LeapType{Leap61, Leap59}, guards: []time.Duration{4 * time.Second, 4 * time.Second}},
		{name: "not a slave", ivl: 2 * time.Second,
			seq:  []flags{{instance.Uncalibrated, false, true}, {instance.Uncalibrated, false, true}},
			want: []LeapType{LeapNone, LeapNone}, guards: []time.Duration{0, 0}},
		{name: "flags only act when they change", ivl: 2 * time.Second,
			// Set while uncalibrated, then slave with the same flags: no
			// change, as in sfptpd.
			seq:  []flags{{instance.Uncalibrated, false, true}, {instance.Slave, false, true}, {instance.Slave, false, false}, {instance.Slave, false, true}},
			want: []LeapType{LeapNone, LeapNone, LeapNone, Leap61}, guards: []time.Duration{0, 0, 0, 4 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newLeapHarness(t, fmt.Sprintf(leapPTPConfig, ""), false)
			f := h.fakes["p1"]
			for i, s := range tc.seq {
				f.set(func(st *instance.Status) {
					st.State, st.Leap59, st.Leap61, st.AnnounceInterval = s.state, s.leap59, s.leap61, tc.ivl
				})
				h.e.tick()
				typ, _ := h.e.LeapStatus()
				h.e.leap.mu.Lock()
				guard := h.e.leap.guard
				if h.e.leap.phase == leapIdle {
					guard = 0
				}
				h.e.leap.mu.Unlock()
				if typ != tc.want[i] || guard != tc.guards[i] {
					t.Fatalf("step %d: LeapStatus %v guard %v, want %v %v", i, typ, guard, tc.want[i], tc.guards[i])
				}
			}
		})
	}
	// A slave that is not selected does not schedule.
	h := newLeapHarness(t, `[general]
sync_module ptp p1 p2
selection_policy manual p2
[p1]
interface eth0
[p2]
interface eth1
`, false)
	h.fakes["p1"].set(func(st *instance.Status) { st.State, st.Leap61 = instance.Slave, true })
	h.e.tick()
	if typ, _ := h.e.LeapStatus(); typ != LeapNone {
		t.Fatalf("unselected slave scheduled %v", typ)
	}
}

// TestLeapStop: no timer fires into a stopped engine.
func TestLeapStop(t *testing.T) {
	h := newLeapHarness(t, fmt.Sprintf(leapFreerunConfig, ""), false)
	if err := h.e.ScheduleLeapSecond(Leap61, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.e.Stop()
	h.ft.advanceTo(leapMidnight.Add(time.Minute))
	if s := h.clk.stepped(); len(s) != 0 {
		t.Fatalf("stopped engine stepped %v", s)
	}
	if err := h.e.ScheduleLeapSecond(Leap61, 5*time.Second); err == nil {
		t.Fatal("stopped engine scheduled a leap second")
	}
}

// TestLeapConcurrent runs the scheduler's entry points against each
// other and the timers under the race detector.
func TestLeapConcurrent(t *testing.T) {
	h := newLeapHarness(t, fmt.Sprintf(leapPTPConfig, ""), false)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				switch (i + j) % 4 {
				case 0:
					_ = h.e.ScheduleLeapSecond(Leap61, 3*time.Second)
				case 1:
					_ = h.e.CancelLeapSecond()
				case 2:
					_ = h.e.ApplyTestMode(TestLeapSecond59, [3]int{})
				case 3:
					h.e.tick()
				}
			}
		}(i)
	}
	for k := 0; k < 20; k++ {
		h.ft.advanceTo(h.ft.Now().Add(30 * time.Minute))
	}
	wg.Wait()
}
