package engine

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/clock"
	"github.com/tickbox-fw/tickbox/services/ptpd/config"
	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// TestStateFilesAndStats runs the engine over a PTP slave (a fake that
// reports what a locked port reports) and a freerun instance, and checks
// what lands in the stats logs and state_path: only the PTP slave writes
// stats lines, every state file is there, logrotate is followed, the
// saved frequency correction is restored at start and saved again.
func TestStateFilesAndStats(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfgText := "[general]\nsync_module ptp p1\nsync_module freerun fr1\nselection_holdoff_interval 0\n" +
		"state_path " + state + "\nstats_log " + dir + "/stats.log\njson_stats " + dir + "/stats.json\n[p1]\ninterface eth0\n"
	cfg, err := config.Parse("t.cfg", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	// An earlier run left state behind; its frequency correction is
	// what this run starts from.
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"state-gone": "x\n", ".next.state-gone": "x", "freq-correction-virtual": "250.000000\n"} {
		if err := os.WriteFile(filepath.Join(state, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vc, err := clock.NewVirtual(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var startFreq float64
	ptpFactory := func(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
		// A port reads the clock's frequency when it is made.
		startFreq, _ = clk.FreqPPB()
		st := ptpSlave()
		st.Name, st.Interface, st.Clock, st.ClockID = sec.Name, sec.Interface, clk.Name(), ""
		return &fake{st: st}, nil
	}
	var stderr testutil.LockedBuffer
	logs, err := OpenLogs(cfg.General, &stderr, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	e, err := New(Options{Config: cfg, Modules: map[string]Factory{"freerun": NewFreerun, "ptp": ptpFactory}, Logs: logs,
		StatsInterval: 5 * time.Millisecond, Clock: vc, PersistentCorrection: true,
		InterfaceExists: func(string) bool { return true },
		Interfaces: func() ([]Interface, error) {
			return []Interface{{Name: "eth0", PTPCaps: "hw", RxTimestampCaps: "hw", MAC: "00:01:02:03:04:05"}}, nil
		},
		Logger: slog.New(slog.NewTextHandler(&stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if startFreq != 250 {
		t.Fatalf("instance started at %v ppb, want the saved 250", startFreq)
	}
	if e.Selected() != "p1" {
		t.Fatalf("selected %q", e.Selected())
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(state, name))
		return string(b)
	}
	testutil.WaitFor(t, "state files", 10*time.Second, func() bool {
		return strings.Contains(read("state-p1"), "state: ptp-slave\n") && strings.Contains(read("state-fr1"), "state: freerunning-clock\n") &&
			read("topology") != "" && read("ptp-nodes") != "" && read("interfaces") != "" && read("config") != "" &&
			read("freq-correction-virtual") == "1204.113000\n"
	})
	// (A stale temporary file of a name the engine never writes: its
	// own .next.* files come and go while it runs.)
	for _, gone := range []string{"state-gone", ".next.state-gone"} {
		if _, err := os.Stat(filepath.Join(state, gone)); !os.IsNotExist(err) {
			t.Errorf("stale %s left: %v", gone, err)
		}
	}
	if !strings.HasPrefix(read("sync-instances"), "|  R | instance    S |") || !strings.Contains(read("sync-instances"), "|  1 | p1          * | -- |slave     0 |") {
		t.Errorf("sync-instances:\n%s", read("sync-instances"))
	}
	if !strings.HasPrefix(read("config"), "# Reconstructed from: t.cfg\n\n[general]\nsync_module ptp p1\n") {
		t.Errorf("config:\n%s", read("config"))
	}
	if !strings.Contains(read("interfaces"), "|             eth0 |       hw |                    hw | 00:01:02:03:04:05 |") {
		t.Errorf("interfaces:\n%s", read("interfaces"))
	}
	// Rotate: rename the files away, reopen, and make sure both get lines.
	for _, n := range []string{"stats.log", "stats.json"} {
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(dir, n+".1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.RotateLogs(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "new stats files", 10*time.Second, func() bool {
		a, _ := os.ReadFile(filepath.Join(dir, "stats.log"))
		b, _ := os.ReadFile(filepath.Join(dir, "stats.json"))
		return len(a) > 0 && len(b) > 0
	})
	e.Stop()
	for _, n := range []string{"stats.log.1", "stats.log"} {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		for _, l := range strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !strings.Contains(l, " [p1:gm->virtual(eth0)], offset: -3.250, freq-adj: 1204.113, in-sync: 1, one-way-delay: 512.000,") {
				t.Fatalf("%s: unexpected line %q", n, l)
			}
		}
	}
	for _, n := range []string{"stats.json.1", "stats.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			p, err := ParseJSONStats(sc.Bytes())
			if err != nil || p.Instance != "p1" || p.Master.Name != "gm" || !p.Disciplining {
				t.Fatalf("%s: %q: %+v %v", n, sc.Text(), p, err)
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(state, ".next.*")); len(m) > 0 {
		t.Fatalf("temporary files left: %v", m)
	}
	if !strings.Contains(stderr.String(), "selected sync instance p1 ([none] was active for 0.000s)") {
		t.Errorf("no selection line in the message log:\n%s", stderr.String())
	}
}

// TestAlarmChangeLogged: a change of an instance's alarms is logged in
// sfptpd's words, once per change.
func TestAlarmChangeLogged(t *testing.T) {
	h := newHarness(t, twoPTP, nil)
	h.fakes["p1"].set(func(s *instance.Status) { s.Alarms = []string{instance.AlarmNoDelayResps, instance.AlarmNoSyncPkts} })
	h.e.tick()
	h.e.tick()
	h.fakes["p1"].set(func(s *instance.Status) { s.Alarms = nil })
	h.e.tick()
	logs := h.logs.String()
	if n := strings.Count(logs, "p1: alarms changed: none -> no-sync-pkts no-delay-resps "); n != 1 {
		t.Fatalf("raise logged %d times:\n%s", n, logs)
	}
	if n := strings.Count(logs, "p1: alarms changed: no-sync-pkts no-delay-resps  -> none"); n != 1 {
		t.Fatalf("clear logged %d times:\n%s", n, logs)
	}
}

// TestLogrotateLosesNoLine rotates the stats logs 100 times while a PTP
// slave's lines are written every 2 ms, renaming the files first as
// logrotate does, and counts every line across all files against the
// intervals the engine ran.
func TestLogrotateLosesNoLine(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse("t.cfg", []byte("[general]\nsync_module ptp p1\nsync_module freerun fr1\nstats_log "+dir+"/stats.log\njson_stats "+dir+"/stats.json\n[p1]\ninterface eth0\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.General.StatePath = ""
	var stderr testutil.LockedBuffer
	logs, err := OpenLogs(cfg.General, &stderr, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	ptpFactory := func(sec config.Instance, clk clock.Clock) (instance.Instance, error) {
		st := ptpSlave()
		st.Name = sec.Name
		return &fake{st: st}, nil
	}
	e, err := New(Options{Config: cfg, Modules: map[string]Factory{"freerun": NewFreerun, "ptp": ptpFactory}, Logs: logs,
		StatsInterval: 2 * time.Millisecond, InterfaceExists: func(string) bool { return true },
		Logger: slog.New(slog.NewTextHandler(&stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats, js := filepath.Join(dir, "stats.log"), filepath.Join(dir, "stats.json")
	for i := 1; i <= 100; i++ {
		os.Rename(stats, stats+"."+strconv.Itoa(i))
		os.Rename(js, js+"."+strconv.Itoa(i))
		if err := e.RotateLogs(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	e.Stop()
	e.mu.Lock()
	intervals := int(e.intervals)
	e.mu.Unlock()
	if intervals < 10 {
		t.Fatalf("only %d intervals", intervals)
	}
	count := func(glob string) (n int) {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				if l == "" {
					continue
				}
				if !strings.Contains(l, "p1") || strings.Contains(l, "fr1") {
					t.Fatalf("%s: bad line %q", f, l)
				}
				n++
			}
		}
		return n
	}
	if n := count(stats + "*"); n != intervals {
		t.Fatalf("stats_log: %d lines, want %d", n, intervals)
	}
	if n := count(js + "*"); n != intervals {
		t.Fatalf("json_stats: %d lines, want %d", n, intervals)
	}
}
