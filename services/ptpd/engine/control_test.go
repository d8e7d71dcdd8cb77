package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// tmFake is a fake PTP instance that takes the test modes the engine
// forwards and refuses the leap second ones (which the engine keeps for
// itself, so they must never arrive), as an instance implementing only
// some modes does.
type tmFake struct {
	*fake
	mu    sync.Mutex
	modes []string
}

func (f *tmFake) TestMode(mode string, params [3]int) error {
	if strings.Contains(mode, "leap_second") {
		return fmt.Errorf("%s: %w", mode, errors.ErrUnsupported)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modes = append(f.modes, fmt.Sprintf("%s%v", mode, params))
	return nil
}

func (f *tmFake) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.modes...)
}

// ctlHarness is an engine over fakes behind a real datagram socket.
type ctlHarness struct {
	e     *Engine
	fakes map[string]*fake
	tms   map[string]*tmFake
	logs  *testutil.LockedBuffer
	clk   *clock.Virtual
	d     *ctl.Registry
	dg    *dgram.Server
	path  string
}

func newCtlHarness(t *testing.T, cfgText string, o CommandOptions) *ctlHarness {
	t.Helper()
	cfg, err := config.Parse("t.cfg", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	cfg.General.StatePath = ""
	clk, err := clock.NewVirtual(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &ctlHarness{fakes: map[string]*fake{}, tms: map[string]*tmFake{}, logs: &testutil.LockedBuffer{}, clk: clk}
	factory := func(sec config.Instance, _ clock.Clock) (instance.Instance, error) {
		f := &fake{st: instance.Status{Name: sec.Name, Module: sec.Module, State: instance.Listening, UserPriority: sec.Priority,
			ClockClass: 248, AccuracyNS: math.Inf(1), Interface: sec.Interface}}
		h.fakes[sec.Name] = f
		if sec.Module == "freerun" {
			f.st.State, f.st.Clock = instance.Freerun, clk.Name()
			return f, nil
		}
		f.st.Clock = "phc" + strings.TrimPrefix(sec.Interface, "eth") + "(" + sec.Interface + ")"
		tm := &tmFake{fake: f}
		h.tms[sec.Name] = tm
		return tm, nil
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The wall clock stands at noon UTC, and the leap second timers are
	// recorded, never run: midnight is far away whenever the test runs.
	ft := &fakeTime{now: time.Date(2016, 12, 31, 12, 0, 0, 0, time.UTC)}
	e, err := New(Options{Config: cfg, Modules: map[string]Factory{"ptp": factory, "freerun": factory}, Clock: clk,
		Logger: log, StatsInterval: time.Hour, InterfaceExists: func(string) bool { return true },
		Now: ft.Now, AfterFunc: ft.AfterFunc})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	h.e = e
	h.d = ctl.NewRegistry(ctl.Options{Name: "ptpd", Logger: log})
	if err := e.RegisterWith(h.d, o); err != nil {
		t.Fatal(err)
	}
	srv := ctl.NewServer(h.d)
	h.path = filepath.Join(testutil.ShortDir(t), "control-v1.sock")
	h.dg, err = dgram.Serve(srv, ctl.SocketSpec{Addr: h.path}, dgram.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return h
}

// send sends one datagram as sfptpdctl does and waits until the front
// end has handled it.
func (h *ctlHarness) send(t *testing.T, cmd string) {
	t.Helper()
	done := func() uint64 { s := h.dg.Stats(); return s.Run + s.Failed + s.Rejected + s.Dropped }
	before := done()
	if err := dgram.Send(h.path, cmd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for done() == before {
		if time.Now().After(deadline) {
			t.Fatalf("datagram %q not handled", cmd)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const ctlConfig = `[general]
sync_module ptp p1 p2
sync_module freerun fr1
%s
[ptp]
interface eth0
[p2]
interface eth1
`

// notice, errLine, warn and info are how the test handler spells a
// message at each level.
func notice(m string) string  { return "level=INFO+2 msg=" + quote(m) }
func errLine(m string) string { return "level=ERROR msg=" + quote(m) }
func warn(m string) string    { return "level=WARN msg=" + quote(m) }
func info(m string) string    { return "level=INFO msg=" + quote(m) }
func quote(m string) string   { return fmt.Sprintf("%q", m) }

func TestControlDatagrams(t *testing.T) {
	const badLine = "error receiving control command"
	tests := []struct {
		name    string
		general string // extra [general] lines
		opts    CommandOptions
		setup   []string // datagrams sent first
		cmd     string
		logs    []string // lines that must appear
		absent  []string // lines that must not
		check   func(t *testing.T, h *ctlHarness)
	}{
		{name: "logrotate with trailing newlines", cmd: "logrotate\n\n",
			logs: []string{notice("received 'logrotate' control command: rotating logs"), info("logrotate: log files reopened")}},
		{name: "trailing white space and NUL", cmd: "logrotate \t\r\n\x00junk",
			logs: []string{notice("received 'logrotate' control command: rotating logs")}},
		{name: "leading space stays unknown", cmd: " logrotate",
			logs: []string{warn("control: unknown command  logrotate received")}},
		{name: "unknown command", cmd: "bogus\n", logs: []string{warn("control: unknown command bogus received")}},
		{name: "exit", cmd: "exit", logs: []string{notice("received 'exit' control command: exiting application")},
			check: func(t *testing.T, h *ctlHarness) {
				select {
				case <-h.d.ShutdownRequested():
				default:
					t.Fatal("exit did not request shutdown")
				}
			}},

		{name: "stepclocks slew-and-step", general: "clock_control slew-and-step", cmd: "stepclocks",
			logs:  []string{notice("received 'stepclocks' control command: stepping clocks to current offset")},
			check: steps("fr1", 1)},
		{name: "stepclocks step-at-startup", general: "clock_control step-at-startup", cmd: "stepclocks", check: steps("fr1", 1)},
		{name: "stepclocks no-step", general: "clock_control no-step", cmd: "stepclocks", check: steps("fr1", 1)},
		{name: "stepclocks no-adjust", general: "clock_control no-adjust", cmd: "stepclocks",
			logs:  []string{notice("received 'stepclocks' control command: stepping clocks to current offset"), notice(`step clocks signal blocked by "clock-control no-adjust"`)},
			check: steps("fr1", 0)},

		{name: "pid_adjust empty kp", cmd: "pid_adjust=,0.05",
			logs:  []string{notice("received 'pid_adjust' control command: (nan, 0.05, nan) @07")},
			check: pid("p1", [4]float64{config.DefaultPIDFilterP, 0.05, 0, 0})},
		{name: "pid_adjust reset only", cmd: "pid_adjust=,,,reset",
			logs:  []string{notice("received 'pid_adjust' control command: (nan, nan, nan) @07 reset")},
			check: pid("p2", [4]float64{config.DefaultPIDFilterP, config.DefaultPIDFilterI, 0, 1})},
		{name: "pid_adjust keeps earlier values", setup: []string{"pid_adjust=0.7,0.02,0.1"}, cmd: "pid_adjust=,0.05,,ptp",
			logs:  []string{notice("received 'pid_adjust' control command: (nan, 0.05, nan) @02")},
			check: pid("p1", [4]float64{0.7, 0.05, 0.1, 0})},
		{name: "pid_adjust all fields", cmd: "pid_adjust=0.3,1e-07,0.01,ptp,local,reset",
			logs:  []string{notice("received 'pid_adjust' control command: (0.3, 1e-07, 0.01) @03 reset")},
			check: pid("p1", [4]float64{0.3, 1e-7, 0.01, 1})},
		{name: "pid_adjust strtod reads text as 0", cmd: "pid_adjust=abc,2x",
			logs:  []string{notice("received 'pid_adjust' control command: (0, 2, nan) @07")},
			check: pid("p1", [4]float64{0, 2, 0, 0})},
		{name: "pid_adjust pps only", cmd: "pid_adjust=1,2,3,pps",
			logs:  []string{notice("received 'pid_adjust' control command: (1, 2, 3) @04"), info("pid_adjust: no servo of the given types to adjust: ptpd's servos are all ptp servos")},
			check: pid("p1", [4]float64{-1})},
		{name: "pid_adjust bad token", cmd: "pid_adjust=1,2,3,ptp,bogus",
			logs:  []string{errLine("control: pid_adjust has unexpected token: bogus"), errLine(badLine)},
			check: pid("p1", [4]float64{-1})},
		{name: "pid_adjust infinite", cmd: "pid_adjust=inf",
			logs:  []string{errLine("control: pid_adjust has an infinite coefficient: inf"), errLine(badLine)},
			check: pid("p1", [4]float64{-1})},

		{name: "block_clock no clocks blocks none", cmd: "block_clock=1",
			logs: []string{notice("received 'block_clock' control command")}, check: blocked("", true)},
		{name: "block_clock bare", cmd: "block_clock", check: blocked("", true)},
		{name: "block_clock system", cmd: "block_clock=1,system", check: blocked("system", true)},
		{name: "block_clock by virtual clock", cmd: "block_clock=1,virtual",
			logs: []string{info("block_clock: clock adjustments blocked") + " clock=virtual"}, check: blocked("virtual", false)},
		{name: "block_clock short and long phc names", cmd: "block_clock=1,phc0,phc1(eth1)", check: blocked("phc0(eth0),phc1(eth1)", true)},
		{name: "block_clock empty state blocks", cmd: "block_clock=,virtual", check: blocked("virtual", false)},
		{name: "unblock", setup: []string{"block_clock=1,virtual,phc0"}, cmd: "block_clock=0,virtual",
			logs: []string{info("block_clock: clock adjustments unblocked") + " clock=virtual"}, check: blocked("phc0(eth0)", true)},
		{name: "block_clock unknown clock", cmd: "block_clock=1,virtual,nosuch",
			logs:   []string{errLine("control: block_clock has unknown clock identifier: nosuch"), errLine(badLine)},
			absent: []string{notice("received 'block_clock' control command")}, check: blocked("", true)},
		{name: "block_clock interface name is no clock", cmd: "block_clock=1,eth0",
			logs: []string{errLine("control: block_clock has unknown clock identifier: eth0")}, check: blocked("", true)},
		{name: "block_clock eight clocks", cmd: "block_clock=1,system,system,system,system,system,system,system,system",
			logs: []string{errLine("control: too many clocks specified: 8")}, check: blocked("", true)},

		{name: "selectinstance manual", general: "selection_policy manual p1", cmd: "selectinstance=p2",
			logs:  []string{notice("received 'selectinstance' control command: choosing instance")},
			check: selected("p2")},
		{name: "selectinstance second equals", general: "selection_policy manual p1", cmd: "selectinstance=p2=x", check: selected("p2")},
		{name: "selectinstance unknown", general: "selection_policy manual p1", cmd: "selectinstance=nosuch",
			logs: []string{warn("Sync instance 'nosuch' not found - can't select")}, check: selected("p1")},
		{name: "selectinstance automatic", cmd: "selectinstance=p2",
			logs: []string{warn("Sync policy is automatic, not manual, selection of 'p2' ignored")}, check: selected("fr1")},
		{name: "selectinstance none", general: "selection_policy manual p1", cmd: "selectinstance",
			logs: []string{errLine("control: selectinstance: no instance provided"), errLine(badLine)}, check: selected("p1")},

		{name: "dumptables", cmd: "dumptables",
			logs: []string{notice("received 'dumptables' control command: outputing diagnostics"), `level=INFO msg="requested clocks list:-"`, `level=INFO msg="  | sys     |                                      | system     | system"`}},

		{name: "testmode disabled", cmd: "testmode=no_sync_pkts",
			logs:  []string{notice("received 'testmode' control command: configuring test mode"), info("test mode no_sync_pkts ignored: test_mode is not enabled in the configuration")},
			check: modes("p1")},
		{name: "testmode unknown", opts: CommandOptions{TestMode: true}, cmd: "testmode=nosuch",
			logs: []string{errLine("control: test mode nosuch unknown"), errLine(badLine)}},
		{name: "testmode bad parameter", opts: CommandOptions{TestMode: true}, cmd: "testmode=timestamp_jitter,99999999999999999999",
			logs: []string{errLine("control: testmode has invalid mode parameter: 99999999999999999999")}, check: modes("p1")},
		{name: "testmode C integers", opts: CommandOptions{TestMode: true}, cmd: "testmode=grandmaster_clock_change,0x10,010,-3,7",
			check: modes("p1", "grandmaster_clock_change[16 8 -3]")},
		{name: "testmode adjust_frequency", opts: CommandOptions{TestMode: true}, cmd: "testmode=adjust_frequency,-5000",
			logs: []string{notice("adjusting local reference clock (virtual) frequency by -5000.000000 ppb")},
			check: func(t *testing.T, h *ctlHarness) {
				if f, _ := h.clk.FreqPPB(); f != -5000 {
					t.Fatalf("clock frequency %v, want -5000", f)
				}
			}},
		{name: "testmode leap_second_61", opts: CommandOptions{TestMode: true}, cmd: "testmode=leap_second_61",
			logs:  []string{`level=INFO msg="leap second 61 test at UTC midnight (local time: ` + localHHMM(leapMidnight) + `)"`},
			check: all(leap(Leap61), modes("p1"), modes("p2"))},
		{name: "testmode leap_second_59", opts: CommandOptions{TestMode: true}, cmd: "testmode=leap_second_59",
			logs:  []string{`level=INFO msg="leap second 59 test at UTC midnight (local time: ` + localHHMM(leapMidnight.Add(-time.Second)) + `)"`},
			check: all(leap(Leap59), modes("p1"))},
		{name: "testmode leap_second_cancel", opts: CommandOptions{TestMode: true}, setup: []string{"testmode=leap_second_61"}, cmd: "testmode=leap_second_cancel",
			logs: []string{notice("leap second cancelled/complete")}, check: all(leap(LeapNone), modes("p1"))},
		{name: "testmode leap_second_61 refused", opts: CommandOptions{TestMode: true}, setup: []string{"testmode=local_leap_second_59"}, cmd: "testmode=leap_second_61",
			logs: []string{warn("won't set up leap second - genuine leap second scheduled!")}, check: leap(Leap59)},
		{name: "testmode local_leap_second_61", opts: CommandOptions{TestMode: true}, cmd: "testmode=local_leap_second_61",
			logs:  []string{notice("leap second 61 scheduled for UTC midnight (local time: " + localHHMM(leapMidnight) + ")")},
			check: all(leap(Leap61), modes("p1"))},
		{name: "testmode local_leap_second_59", opts: CommandOptions{TestMode: true}, cmd: "testmode=local_leap_second_59",
			logs: []string{notice("leap second 59 scheduled for UTC midnight (local time: " + localHHMM(leapMidnight.Add(-time.Second)) + ")")}, check: leap(Leap59)},
		{name: "testmode local_leap_second_cancel", opts: CommandOptions{TestMode: true}, setup: []string{"testmode=local_leap_second_61"}, cmd: "testmode=local_leap_second_cancel",
			logs: []string{notice("leap second cancelled/complete")}, check: leap(LeapNone)},
		{name: "testmode local_leap_second_cancel with none", opts: CommandOptions{TestMode: true}, cmd: "testmode=local_leap_second_cancel",
			absent: []string{"cancelled/complete"}, check: leap(LeapNone)},
		{name: "testmode leap modes disabled", setup: []string{"testmode=local_leap_second_61"}, cmd: "testmode=leap_second_59",
			logs: []string{info("test mode local_leap_second_61 ignored: test_mode is not enabled in the configuration")}, check: leap(LeapNone)},
		{name: "testmode utc_offset", opts: CommandOptions{TestMode: true}, cmd: "testmode=utc_offset,-1",
			absent: []string{"not applied"}, check: all(modes("p1", "utc_offset[-1 0 0]"), modes("p2", "utc_offset[-1 0 0]"))},
		{name: "testmode bogus_pps_events", opts: CommandOptions{TestMode: true}, cmd: "testmode=bogus_pps_events",
			logs: []string{warn("test mode bogus_pps_events not applied: it needs a pps sync instance reading PPS events from hardware, and ptpd has no pps module")}},
	}
	for _, m := range TestModes() {
		switch m {
		case TestAdjustFrequency, TestBogusPPSEvents:
			continue
		case TestLeapSecond61, TestLeapSecond59, TestLeapSecondCancel, TestLocalLeapSecond61, TestLocalLeapSecond59, TestLocalLeapSecondCancel:
			continue // the engine's own: rows above
		default:
			tests = append(tests, struct {
				name    string
				general string
				opts    CommandOptions
				setup   []string
				cmd     string
				logs    []string
				absent  []string
				check   func(t *testing.T, h *ctlHarness)
			}{name: "testmode " + m.String(), opts: CommandOptions{TestMode: true}, cmd: "testmode=" + m.String() + ",1\n",
				logs:  []string{notice("received 'testmode' control command: configuring test mode")},
				check: modes("p2", m.String()+"[1 0 0]")})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newCtlHarness(t, fmt.Sprintf(ctlConfig, tc.general), tc.opts)
			for _, c := range tc.setup {
				h.send(t, c)
			}
			h.send(t, tc.cmd)
			out := h.logs.String()
			for _, l := range tc.logs {
				if !strings.Contains(out, l) {
					t.Errorf("log lacks %s\n%s", l, out)
				}
			}
			for _, l := range tc.absent {
				if strings.Contains(out, l) {
					t.Errorf("log has %s\n%s", l, out)
				}
			}
			if tc.check != nil {
				tc.check(t, h)
			}
		})
	}
}

func steps(name string, n int) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		f := h.fakes[name]
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.steps != n {
			t.Fatalf("%s stepped %d times, want %d", name, f.steps, n)
		}
	}
}

// pid checks the last SetPID of an instance; {-1} means none at all.
func pid(name string, want [4]float64) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		f := h.fakes[name]
		f.mu.Lock()
		defer f.mu.Unlock()
		if want[0] == -1 {
			if len(f.pid) != 0 {
				t.Fatalf("%s got SetPID %v, want none", name, f.pid)
			}
			return
		}
		if len(f.pid) == 0 || f.pid[len(f.pid)-1] != want {
			t.Fatalf("%s SetPID %v, want last %v", name, f.pid, want)
		}
	}
}

// blocked checks the blocked clock list and whether the selected
// freerun instance (on the virtual clock) still disciplines.
func blocked(list string, frDisciplines bool) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		h.e.mu.Lock()
		got := make([]string, 0, len(h.e.blocked))
		for c := range h.e.blocked {
			got = append(got, c)
		}
		if h.e.blockAll {
			got = []string{"all"}
		}
		h.e.mu.Unlock()
		sort.Strings(got)
		if strings.Join(got, ",") != list {
			t.Errorf("blocked clocks %q, want %q", strings.Join(got, ","), list)
		}
		if got := h.fakes["fr1"].discipline(); got != frDisciplines {
			t.Errorf("fr1 disciplining %v, want %v", got, frDisciplines)
		}
	}
}

func selected(name string) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		if got := h.e.Selected(); got != name {
			t.Fatalf("selected %q, want %q", got, name)
		}
	}
}

// leap checks the engine's pending leap second.
func leap(want LeapType) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		if got, _ := h.e.LeapStatus(); got != want {
			t.Fatalf("pending leap second %v, want %v", got, want)
		}
	}
}

func all(checks ...func(*testing.T, *ctlHarness)) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		for _, c := range checks {
			c(t, h)
		}
	}
}

func modes(name string, want ...string) func(*testing.T, *ctlHarness) {
	return func(t *testing.T, h *ctlHarness) {
		if got := h.tms[name].got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s test modes %q, want %q", name, got, want)
		}
	}
}
