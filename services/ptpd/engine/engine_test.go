package engine

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// fake is a sync instance whose status the test sets.
type fake struct {
	mu    sync.Mutex
	st    instance.Status
	disc  []bool
	steps int
	pid   [][4]float64
}

func (f *fake) Name() string { return f.st.Name }
func (f *fake) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (f *fake) Status() instance.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Disciplining = len(f.disc) > 0 && f.disc[len(f.disc)-1]
	return st
}
func (f *fake) SetDiscipline(on bool) { f.mu.Lock(); f.disc = append(f.disc, on); f.mu.Unlock() }
func (f *fake) StepClock() error      { f.mu.Lock(); f.steps++; f.mu.Unlock(); return nil }
func (f *fake) SetPID(kp, ki, kd float64, reset bool) {
	r := 0.0
	if reset {
		r = 1
	}
	f.mu.Lock()
	f.pid = append(f.pid, [4]float64{kp, ki, kd, r})
	f.mu.Unlock()
}
func (f *fake) set(fn func(*instance.Status)) { f.mu.Lock(); fn(&f.st); f.mu.Unlock() }
func (f *fake) discipline() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.disc) > 0 && f.disc[len(f.disc)-1]
}

// harness builds an engine over fake instances from a config text.
type harness struct {
	e     *Engine
	fakes map[string]*fake
	logs  *testutil.LockedBuffer
	now   time.Time
}

func newHarness(t *testing.T, cfgText string, present map[string]bool) *harness {
	t.Helper()
	cfg, err := config.Parse("t.cfg", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	cfg.General.StatePath = ""
	h := &harness{fakes: map[string]*fake{}, logs: &testutil.LockedBuffer{}, now: time.Unix(1700000000, 0)}
	factory := func(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
		f := h.fakes[sec.Name]
		if f == nil {
			f = &fake{st: instance.Status{Name: sec.Name, Module: sec.Module, State: instance.Listening, UserPriority: sec.Priority, ClockClass: 248, AccuracyNS: math.Inf(1)}}
			if sec.Module == "freerun" {
				f.st.State = instance.Freerun
			}
			h.fakes[sec.Name] = f
		}
		return f, nil
	}
	e, err := New(Options{
		Config:          cfg,
		Modules:         map[string]Factory{"ptp": factory, "freerun": factory},
		Logger:          slog.New(slog.NewTextHandler(h.logs, nil)),
		StatsInterval:   time.Hour, // the test drives evaluate itself
		Now:             func() time.Time { return h.now },
		InterfaceExists: func(n string) bool { return present == nil || present[n] },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return h
}

func (h *harness) step(d time.Duration) { h.now = h.now.Add(d); h.e.evaluate(h.now) }

func TestCompareRuleOrder(t *testing.T) {
	base := instance.Status{State: instance.Slave, UserPriority: 128, ClockClass: 6, AccuracyNS: 100, StepsRemoved: 1}
	mk := func(idx int, fn func(*instance.Status), manual bool) candidate {
		st := base
		if fn != nil {
			fn(&st)
		}
		return candidate{rec: &record{index: idx}, st: st, manual: manual}
	}
	tests := []struct {
		name string
		a, b candidate // a must win
		rule string
	}{
		{"manual beats everything", mk(1, func(s *instance.Status) { s.State = instance.Faulty }, true), mk(0, nil, false), ruleManual},
		{"slave beats listening", mk(1, func(s *instance.Status) { s.UserPriority = 255 }, false), mk(0, func(s *instance.Status) { s.State = instance.Listening }, false), ruleState},
		{"listening beats master", mk(1, func(s *instance.Status) { s.State = instance.Listening }, false), mk(0, func(s *instance.Status) { s.State = instance.Master }, false), ruleState},
		{"passive beats faulty", mk(1, func(s *instance.Status) { s.State = instance.Passive }, false), mk(0, func(s *instance.Status) { s.State = instance.Faulty }, false), ruleState},
		{"master beats disabled", mk(1, func(s *instance.Status) { s.State = instance.Master }, false), mk(0, func(s *instance.Status) { s.State = instance.Disabled }, false), ruleState},
		{"freerun ranks with slave", mk(1, func(s *instance.Status) { s.State = instance.Freerun; s.UserPriority = 1 }, false), mk(0, nil, false), rulePriority},
		{"no alarms beats alarms", mk(1, func(s *instance.Status) { s.UserPriority = 255 }, false), mk(0, func(s *instance.Status) { s.Alarms = []string{"no-sync-pkts"} }, false), ruleAlarms},
		{"user priority", mk(1, func(s *instance.Status) { s.UserPriority = 10; s.ClockClass = 248 }, false), mk(0, nil, false), rulePriority},
		{"clock class", mk(1, func(s *instance.Status) { s.ClockClass = 6; s.AccuracyNS = 1e9 }, false), mk(0, func(s *instance.Status) { s.ClockClass = 7 }, false), ruleClass},
		{"total accuracy", mk(1, func(s *instance.Status) { s.AccuracyNS = 10; s.StepsRemoved = 9 }, false), mk(0, nil, false), ruleAccuracy},
		{"unknown accuracy is worst", mk(1, nil, false), mk(0, func(s *instance.Status) { s.AccuracyNS = math.NaN() }, false), ruleAccuracy},
		{"steps removed", mk(1, func(s *instance.Status) { s.StepsRemoved = 0 }, false), mk(0, nil, false), ruleSteps},
		{"tie-break by config order", mk(0, nil, false), mk(1, nil, false), ruleTieBreak},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, rule := compare(tc.a, tc.b); c >= 0 || rule != tc.rule {
				t.Fatalf("compare(a, b) = %d, %s; want <0, %s", c, rule, tc.rule)
			}
			if c, rule := compare(tc.b, tc.a); c <= 0 || rule != tc.rule {
				t.Fatalf("compare(b, a) = %d, %s; want >0, %s", c, rule, tc.rule)
			}
			if b := best([]candidate{tc.b, tc.a}); b.rec != tc.a.rec {
				t.Fatal("best did not pick a")
			}
		})
	}
}

const twoPTP = `[general]
sync_module ptp p1 p2
sync_module freerun fr1
[ptp]
interface eth0
[p2]
interface eth1
`

func TestHoldoff(t *testing.T) {
	h := newHarness(t, twoPTP, nil)
	// At start every PTP instance is listening: freerun ranks first.
	if got := h.e.Selected(); got != "fr1" {
		t.Fatalf("initial selection %q", got)
	}
	if !h.fakes["fr1"].discipline() || h.fakes["p1"].discipline() {
		t.Fatal("discipline not given to the selected instance only")
	}
	// p1 becomes a slave of a class 6 grandmaster: it is better, but the
	// switch waits for the 10 s holdoff.
	h.fakes["p1"].set(func(s *instance.Status) { s.State = instance.Slave; s.ClockClass = 6 })
	h.step(0)
	if !strings.Contains(h.logs.String(), "will switch to sync instance p1 in 10 seconds if fr1 does not recover") {
		t.Fatalf("no holdoff log:\n%s", h.logs)
	}
	h.step(9 * time.Second)
	if got := h.e.Selected(); got != "fr1" {
		t.Fatalf("switched before the holdoff: %q", got)
	}
	h.step(time.Second)
	if got := h.e.Selected(); got != "p1" {
		t.Fatalf("after holdoff selected %q", got)
	}
	if !h.fakes["p1"].discipline() || h.fakes["fr1"].discipline() {
		t.Fatal("discipline did not move to p1")
	}
	// p1 raises an alarm: fr1 becomes the candidate, then p1 recovers
	// before the holdoff ends and the switch is cancelled.
	h.fakes["p1"].set(func(s *instance.Status) { s.Alarms = []string{"no-sync-pkts"} })
	h.step(time.Second)
	h.fakes["p1"].set(func(s *instance.Status) { s.Alarms = nil })
	h.step(5 * time.Second)
	if !strings.Contains(h.logs.String(), "canceled switch away from sync instance p1 as its rank recovered") {
		t.Fatalf("no cancel log:\n%s", h.logs)
	}
	h.step(20 * time.Second)
	if got := h.e.Selected(); got != "p1" {
		t.Fatalf("selected %q after recovery", got)
	}
	// A candidate that changes keeps the original deadline.
	h.fakes["p1"].set(func(s *instance.Status) { s.State = instance.Faulty })
	h.step(0) // fr1 candidate, deadline +10 s
	h.fakes["p2"].set(func(s *instance.Status) { s.State = instance.Slave; s.ClockClass = 6 })
	h.step(4 * time.Second) // p2 now best (slave, class 6)
	h.step(6 * time.Second)
	if got := h.e.Selected(); got != "p2" {
		t.Fatalf("selected %q, want p2 at the first deadline", got)
	}
}

func TestManualSelection(t *testing.T) {
	h := newHarness(t, twoPTP+"\n", nil)
	h.e.g.SelectionPolicy = config.PolicyAutomatic
	// Under an automatic policy selectinstance is logged and ignored.
	err := h.e.SelectInstance("p2")
	if !errors.Is(err, ErrIgnored) || !strings.Contains(h.logs.String(), "Sync policy is automatic, not manual, selection of 'p2' ignored") {
		t.Fatalf("err %v, logs:\n%s", err, h.logs)
	}
	if h.e.Selected() != "fr1" {
		t.Fatal("selection changed under an automatic policy")
	}

	m := newHarness(t, strings.Replace(twoPTP, "[ptp]", "selection_policy manual p1\n[ptp]", 1), nil)
	if m.e.Selected() != "p1" || !strings.Contains(m.logs.String(), "Selecting initial sync instance 'p1'") {
		t.Fatalf("initial manual selection %q\n%s", m.e.Selected(), m.logs)
	}
	// A better instance never takes over under manual policy.
	m.fakes["p2"].set(func(s *instance.Status) { s.State = instance.Slave; s.ClockClass = 6 })
	m.step(time.Minute)
	if m.e.Selected() != "p1" {
		t.Fatal("automatic switch under manual policy")
	}
	// selectinstance switches at once, no holdoff; "=a=b" selects a.
	if err := m.e.SelectInstance("p2=x"); err != nil {
		t.Fatal(err)
	}
	if m.e.Selected() != "p2" || !m.fakes["p2"].discipline() || m.fakes["p1"].discipline() {
		t.Fatal("selectinstance did not switch at once")
	}
	m.step(time.Minute)
	if m.e.Selected() != "p2" {
		t.Fatal("manual selection did not stick")
	}
	err = m.e.SelectInstance("nope")
	if !errors.Is(err, ErrIgnored) || !strings.Contains(m.logs.String(), "Sync instance 'nope' not found - can't select") {
		t.Fatalf("unknown: %v\n%s", err, m.logs)
	}
	if m.e.Selected() != "p2" {
		t.Fatal("unknown name changed the selection")
	}
}

func TestManualStartup(t *testing.T) {
	h := newHarness(t, strings.Replace(twoPTP, "[ptp]", "selection_policy manual-startup p2\nselection_holdoff_interval 0\n[ptp]", 1), nil)
	if h.e.Selected() != "p2" {
		t.Fatalf("initial %q", h.e.Selected())
	}
	// After start-up the policy is automatic, here without holdoff.
	h.step(0)
	if h.e.Selected() != "fr1" {
		t.Fatalf("manual-startup did not turn automatic: %q", h.e.Selected())
	}
}

func TestStepClocksAndBlock(t *testing.T) {
	h := newHarness(t, twoPTP, nil)
	if err := h.e.StepClocks(); err != nil {
		t.Fatal(err)
	}
	if h.fakes["fr1"].steps != 1 || h.fakes["p1"].steps != 0 {
		t.Fatal("stepclocks did not step the selected instance only")
	}
	h.fakes["fr1"].set(func(s *instance.Status) { s.Clock = "system" })
	if err := h.e.BlockClock(true, nil); err != nil || !h.fakes["fr1"].discipline() {
		t.Fatalf("block_clock=1 with no clocks blocked something: %v", err)
	}
	if err := h.e.BlockClock(true, []string{"system"}); err != nil || h.fakes["fr1"].discipline() {
		t.Fatalf("block_clock=1,system left the selected instance disciplining: %v", err)
	}
	if err := h.e.BlockClock(false, []string{"system"}); err != nil || !h.fakes["fr1"].discipline() {
		t.Fatalf("block_clock=0,system did not restore discipline: %v", err)
	}
	h.e.g.ClockControl = config.ClockNoAdjust
	if err := h.e.StepClocks(); !errors.Is(err, ErrIgnored) || h.fakes["fr1"].steps != 1 ||
		!strings.Contains(h.logs.String(), `step clocks signal blocked by \"clock-control no-adjust\"`) {
		t.Fatalf("no-adjust: %v\n%s", err, h.logs)
	}
}

func TestPIDAdjust(t *testing.T) {
	h := newHarness(t, twoPTP, nil)
	h.e.PIDAdjust(PIDAdjustment{KP: 0.5, KI: math.NaN(), KD: math.NaN(), Mask: ServoPTP, Reset: true})
	if got := h.fakes["p1"].pid; len(got) != 1 || got[0] != [4]float64{0.5, config.DefaultPIDFilterI, 0, 1} {
		t.Fatalf("p1 pid %v", got)
	}
	if len(h.fakes["fr1"].pid) != 0 {
		t.Fatal("freerun got PID coefficients")
	}
	h.e.PIDAdjust(PIDAdjustment{KP: math.NaN(), KI: math.NaN(), KD: math.NaN(), Mask: ServoPPS})
	if len(h.fakes["p1"].pid) != 1 || !strings.Contains(h.logs.String(), "ptpd's servos are all ptp servos") {
		t.Fatal("pps adjusted a ptp servo")
	}
}

func TestHotplugManual(t *testing.T) {
	cfg := strings.Replace(twoPTP, "[ptp]", "hotplug_detection_mode manual\n[ptp]", 1)
	h := newHarness(t, cfg, map[string]bool{"eth0": true})
	if h.e.Instances()[1].State != "disabled" {
		t.Fatalf("p2 without eth1 should not run: %+v", h.e.Instances())
	}
	if err := h.e.InterfaceInsert("eth1"); err != nil {
		t.Fatal(err)
	}
	if h.e.Instances()[1].State != "listening" {
		t.Fatalf("interfaceinsert did not start p2: %+v", h.e.Instances())
	}
	if err := h.e.InterfaceRemove("eth0"); err != nil {
		t.Fatal(err)
	}
	if h.e.Instances()[0].State != "disabled" {
		t.Fatal("interfaceremove did not stop p1")
	}
	// Unknown interfaces are logged.
	if err := h.e.InterfaceInsert("eth9"); err != nil || !strings.Contains(h.logs.String(), "no sync instance uses the interface") {
		t.Fatal("eth9 not logged")
	}
	// Netlink mode ignores the commands.
	n := newHarness(t, twoPTP, map[string]bool{"eth0": true, "eth1": true})
	n.e.g.Hotplug = config.HotplugNetlink
	if err := n.e.InterfaceRemove("eth0"); !errors.Is(err, ErrIgnored) || !strings.Contains(n.logs.String(), "interfaceremove=eth0 ignored: hotplug_detection_mode is netlink") {
		t.Fatalf("netlink: %v\n%s", err, n.logs)
	}
	if n.e.Instances()[0].State == "disabled" {
		t.Fatal("netlink mode stopped an instance on interfaceremove")
	}
}

func TestUnavailableModule(t *testing.T) {
	cfg, err := config.Parse("x.cfg", []byte("[general]\nsync_module freerun fr1\nsync_module ptp p1\n[p1]\ninterface eth0\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Config: cfg, Modules: map[string]Factory{"freerun": NewFreerun}})
	if err == nil || err.Error() != "x.cfg:3: sync module 'ptp' is not available in this build" {
		t.Fatalf("err = %v", err)
	}
}

// TestSinkCreatesDirectory: a log under a directory that does not exist
// yet (the appliance's /run is empty at boot) is opened, and reopened
// after the directory was removed, as logrotate setups may do.
func TestSinkCreatesDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "ptpd", "stats.log")
	s, err := openSink(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("log directory: %v %v", fi, err)
	}
	s.Write([]byte("one\n"))
	if err := os.RemoveAll(filepath.Join(dir, "run")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatalf("reopen after the directory went away: %v", err)
	}
	s.Write([]byte("two\n"))
	if b, err := os.ReadFile(path); err != nil || string(b) != "two\n" {
		t.Fatalf("after reopen: %q %v", b, err)
	}
	// A path whose parent is a regular file cannot work: a clear error.
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o644)
	if _, err := openSink(filepath.Join(blocker, "x.log"), nil, nil); err == nil || !strings.Contains(err.Error(), "create log directory") {
		t.Fatalf("log under a file: %v", err)
	}
}

// TestClockReadonly: a clock named by clock_readonly (long or short
// clock name, or the instance's interface) is never disciplined or
// stepped, even by the selected instance; other names leave it alone.
func TestClockReadonly(t *testing.T) {
	for _, tc := range []struct {
		readonly string
		want     bool // p1's clock is read-only
	}{
		{"phc0(eth0)", true},
		{"phc0", true},
		{"eth0", true},
		{"PHC0", true},
		{"phc1", false},
		{"system", false},
		{"eth1", false},
	} {
		t.Run(tc.readonly, func(t *testing.T) {
			h := newHarness(t, "[general]\nsync_module ptp p1\nsync_module freerun fr1\nclock_readonly "+tc.readonly+"\n[p1]\ninterface eth0\n", nil)
			h.fakes["p1"].set(func(s *instance.Status) { s.Clock = "phc0(eth0)"; s.State = instance.Slave; s.ClockClass = 6 })
			h.fakes["fr1"].set(func(s *instance.Status) { s.Clock = "system" })
			h.step(time.Minute)
			h.step(time.Minute)
			if got := h.e.Selected(); got != "p1" {
				t.Fatalf("selected %q", got)
			}
			if got := h.fakes["p1"].discipline(); got == tc.want {
				t.Fatalf("p1 disciplining = %v with clock_readonly %s", got, tc.readonly)
			}
			err := h.e.StepClocks()
			if stepped := h.fakes["p1"].steps == 1; stepped == tc.want || (err != nil) != tc.want {
				t.Fatalf("stepclocks: stepped %v, err %v", stepped, err)
			}
		})
	}
}

// TestInstancesOutlierStats: instances-get carries sfptpd's
// adaptive-outlier-filter-discards count and outlier threshold for the
// instances that have the filter (ptp), and leaves them out for those
// that have none.
func TestInstancesOutlierStats(t *testing.T) {
	h := newHarness(t, twoPTP, nil)
	h.fakes["p1"].set(func(st *instance.Status) {
		st.OutlierFilter, st.Outliers, st.OutlierSamples, st.OutlierThresholdNS = true, 7, 800, 113.5
	})
	h.fakes["p2"].set(func(st *instance.Status) { st.OutlierFilter = true })
	raw, err := json.Marshal(h.e.Instances())
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("rows %s", raw)
	}
	for i, want := range []map[string]any{
		{"adaptive-outlier-filter-discards": 7.0, "outlier-threshold-ns": 113.5},
		{"adaptive-outlier-filter-discards": 0.0, "outlier-threshold-ns": 0.0},
		{},
	} {
		for _, k := range []string{"adaptive-outlier-filter-discards", "outlier-threshold-ns"} {
			got, ok := rows[i][k]
			w, wok := want[k]
			if ok != wok || got != w {
				t.Errorf("row %d (%v) %s = %v (present %v), want %v (present %v)", i, rows[i]["name"], k, got, ok, w, wok)
			}
		}
	}
}
