package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// bins holds ptpd and sfptpdctl built once for the process tests.
var bins struct{ ptpd, ctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ptpdbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.ptpd = filepath.Join(dir, "ptpd")
	bins.ctl = filepath.Join(dir, "sfptpdctl")
	for _, b := range []struct{ out, pkg string }{{bins.ptpd, "."}, {bins.ctl, "../sfptpdctl"}} {
		if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running ptpd.
type daemon struct {
	dir, ctl, kea, cfg string
	cmd                *exec.Cmd
	out                *testutil.LockedBuffer
	done               chan struct{}
	err                error
}

// startPtpd writes cfg (with CONTROL and DIR substituted) and starts
// ptpd on a virtual clock.
func startPtpd(t *testing.T, cfg string, extra ...string) *daemon {
	t.Helper()
	return startPtpdIn(t, nil, cfg, extra...)
}

// startPtpdIn is startPtpd under a wrapper command such as
// "ip netns exec NS".
func startPtpdIn(t *testing.T, wrap []string, cfg string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{dir: testutil.ShortDir(t), out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	d.ctl = filepath.Join(d.dir, "ctl.sock")
	d.kea = filepath.Join(d.dir, "kea.sock")
	d.cfg = filepath.Join(d.dir, "ptpd.cfg")
	cfg = strings.NewReplacer("CONTROL", d.ctl, "DIR", d.dir).Replace(cfg)
	if err := os.WriteFile(d.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-f", d.cfg, "-kea", d.kea, "-virtual-clock", "500us,30", "-stats-interval", "20ms"}, extra...)
	argv := append(append(append([]string(nil), wrap...), bins.ptpd), args...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	testutil.WaitFor(t, "ptpd started", 10*time.Second, func() bool {
		select {
		case <-d.done:
			t.Fatalf("ptpd exited: %v\n%s", d.err, d.out)
		default:
		}
		if strings.Contains(d.out.String(), "ptpd started") {
			return true
		}
		// With message_log set to a file, the line is there.
		b, _ := os.ReadFile(filepath.Join(d.dir, "messages.log"))
		return strings.Contains(string(b), "ptpd started")
	})
	return d
}

func (d *daemon) waitLog(t *testing.T, s string) {
	t.Helper()
	testutil.WaitFor(t, "log "+s, 10*time.Second, func() bool { return strings.Contains(d.out.String(), s) })
}

// wait returns the exit status.
func (d *daemon) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("ptpd did not exit\n%s", d.out)
	}
	if d.err == nil {
		return 0
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(d.err)
	return -1
}

func sfptpdctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bins.ctl, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func socatSend(t *testing.T, path, msg string) {
	t.Helper()
	cmd := exec.Command("socat", "-", "UNIX-SENDTO:"+path)
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("socat: %v: %s", err, out)
	}
}

const freerunCfg = `[general]
sync_module freerun fr1 fr2
selection_policy manual fr1
control_path CONTROL
state_path DIR/state
stats_log DIR/stats.log
json_stats DIR/stats.json
hotplug_detection_mode manual
[fr2]
priority 3
interface tbabsent0
`

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ cfg, want string }{
		{"[general]\nsync_module freerun fr1\nfrobnicate 1\n", ":3: unknown keyword 'frobnicate' in [general]"},
		{"[general]\nsync_module freerun fr1\nsync_module ptp ptp1\n[ptp1]\nptp_mode sideways\n", ":5: ptp_mode: bad value 'sideways' (want slave or master)"},
		{"[general]\nsync_module ptp ptp1\n[ptp1]\nptp_domain 0\n", ":2: ptp instance 'ptp1' has no interface"},
		{"[general]\nsync_module freerun fr1\nclock_control maybe\n", ":3: clock_control: bad value 'maybe'"},
	} {
		p := filepath.Join(dir, "c.cfg")
		os.WriteFile(p, []byte(tc.cfg), 0o644)
		out, err := exec.Command(bins.ptpd, "-f", p, "-kea", "").CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), p+tc.want) {
			t.Errorf("%q: exit %v, output %q; want %s%s", tc.cfg, err, out, p, tc.want)
		}
	}
}

func TestControlCommands(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	t.Parallel()
	d := startPtpd(t, freerunCfg)

	// sfptpdctl: several commands, one datagram each, in order.
	if out, code := sfptpdctl(t, "-s", d.ctl, "dumptables", "stepclocks", "selectinstance=fr2=extra", "stepclocks"); code != 0 || out != "" {
		t.Fatalf("sfptpdctl: %d %q", code, out)
	}
	d.waitLog(t, "selected sync instance fr2")
	d.waitLog(t, "requested clocks list:-")
	d.waitLog(t, "stepclocks: clock stepped to the selected instance")
	// fr2 is selected but waits for its interface: nothing to step.
	d.waitLog(t, "cannot step clocks with no selected sync instance")
	// The same over socat.
	socatSend(t, d.ctl, "selectinstance=fr1")
	d.waitLog(t, "selected sync instance fr1")
	socatSend(t, d.ctl, "selectinstance=nosuch")
	d.waitLog(t, "Sync instance 'nosuch' not found - can't select")
	socatSend(t, d.ctl, "pid_adjust=0.5,0.01,0,ptp,reset")
	d.waitLog(t, "command=pid_adjust")
	socatSend(t, d.ctl, "block_clock=1,virtual")
	d.waitLog(t, "block_clock: clock adjustments blocked")
	// sfptpd reads a block flag with atoi: "maybe" is 0, an unblock of
	// no clock at all.
	socatSend(t, d.ctl, "block_clock=maybe")
	d.waitLog(t, "received 'block_clock' control command")

	// Malformed, unknown, empty and oversize datagrams are logged.
	socatSend(t, d.ctl, "nonsense=1")
	d.waitLog(t, "control: unknown command nonsense received")
	c, err := net.Dial("unixgram", d.ctl)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{})
	c.Write([]byte(strings.Repeat("x", 200)))
	c.Close()
	d.waitLog(t, "empty datagram")
	d.waitLog(t, "over-long datagram rejected")

	// Manual hotplug: fr2's interface is absent, so it waits.
	socatSend(t, d.ctl, "interfaceinsert=tbabsent0")
	d.waitLog(t, "sync instance started (instance=fr2,")
	m := testutil.KeaCommand(t, d.kea, "instances-get", nil)
	insts := m["arguments"].(map[string]any)["instances"].([]any)
	if len(insts) != 2 {
		t.Fatalf("instances-get: %v", m)
	}
	fr2 := insts[1].(map[string]any)
	for _, k := range []string{"name", "module", "state", "selected", "offset-ns", "freq-adj-ppb", "path-delay-ns", "master", "alarms"} {
		if _, ok := fr2[k]; !ok {
			t.Fatalf("instances-get lacks %q: %v", k, fr2)
		}
	}
	if fr2["name"] != "fr2" || fr2["state"] != "freerun" || fr2["selected"] != false || fr2["module"] != "freerun" {
		t.Fatalf("fr2 = %v", fr2)
	}
	socatSend(t, d.ctl, "interfaceremove=tbabsent0")
	d.waitLog(t, "sync instance stopped (instance=fr2,")
	m = testutil.KeaCommand(t, d.kea, "instances-get", nil)
	if st := m["arguments"].(map[string]any)["instances"].([]any)[1].(map[string]any)["state"]; st != "disabled" {
		t.Fatalf("after interfaceremove fr2 is %v", st)
	}

	// Kea aliases reach the same commands.
	if r := testutil.KeaCommand(t, d.kea, "instance-select", map[string]any{"name": "fr1"}); r["result"] != 0.0 {
		t.Fatalf("instance-select: %v", r)
	}
	if r := testutil.KeaCommand(t, d.kea, "clocks-step", nil); r["result"] != 0.0 {
		t.Fatalf("clocks-step: %v", r)
	}
	if r := testutil.KeaCommand(t, d.kea, "logs-rotate", nil); r["result"] != 0.0 {
		t.Fatalf("logs-rotate: %v", r)
	}
	// The daemon is still up after all of it; exit=now exits with 0.
	if out, code := sfptpdctl(t, "--socket", d.ctl, "exit=now"); code != 0 {
		t.Fatalf("exit: %d %s", code, out)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d\n%s", code, d.out)
	}
	for _, n := range []string{"state-fr1", "state-fr2", "sync-instances"} {
		if _, err := os.Stat(filepath.Join(d.dir, "state", n)); err != nil {
			t.Errorf("state file: %v", err)
		}
	}
}

func TestNetlinkModeIgnoresInterfaceCommands(t *testing.T) {
	t.Parallel()
	d := startPtpd(t, strings.Replace(freerunCfg, "hotplug_detection_mode manual", "hotplug_detection_mode netlink", 1))
	sfptpdctl(t, "-s", d.ctl, "interfaceinsert=lo", "interfaceremove=lo")
	d.waitLog(t, "interfaceinsert=lo ignored: hotplug_detection_mode is netlink")
	d.waitLog(t, "interfaceremove=lo ignored: hotplug_detection_mode is netlink")
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			d := startPtpd(t, freerunCfg)
			d.cmd.Process.Signal(syscall.SIGHUP)
			d.waitLog(t, `signal received (signal=SIGHUP, command=logrotate)`)
			d.waitLog(t, "logrotate: log files reopened")
			d.cmd.Process.Signal(syscall.SIGUSR1)
			d.waitLog(t, `signal received (signal=SIGUSR1, command=stepclocks)`)
			d.waitLog(t, "stepclocks: clock stepped")
			d.cmd.Process.Signal(sig)
			if code := d.wait(t); code != 0 {
				t.Fatalf("exit %d\n%s", code, d.out)
			}
			if !strings.Contains(d.out.String(), "command=exit") || !strings.Contains(d.out.String(), "ptpd exiting") {
				t.Fatalf("no exit log:\n%s", d.out)
			}
		})
	}
}

func TestStepClocksNoAdjust(t *testing.T) {
	t.Parallel()
	d := startPtpd(t, strings.Replace(freerunCfg, "hotplug_detection_mode manual", "clock_control no-adjust", 1))
	d.cmd.Process.Signal(syscall.SIGUSR1)
	d.waitLog(t, `step clocks signal blocked by \"clock-control no-adjust\"`)
	sfptpdctl(t, "-s", d.ctl, "exit")
	if code := d.wait(t); code != 0 {
		t.Fatal(code)
	}
}

// TestLogrotateLosesNoLine rotates the stats logs 100 times while stats
// are written every 20 ms, renaming the files first as logrotate does,
// and counts every line across all files against the intervals ptpd
// reports at exit.
func TestLogrotateLosesNoLine(t *testing.T) {
	t.Parallel()
	d := startPtpd(t, freerunCfg)
	stats, js := filepath.Join(d.dir, "stats.log"), filepath.Join(d.dir, "stats.json")
	for i := 1; i <= 100; i++ {
		os.Rename(stats, fmt.Sprintf("%s.%d", stats, i))
		os.Rename(js, fmt.Sprintf("%s.%d", js, i))
		if i%2 == 0 {
			d.cmd.Process.Signal(syscall.SIGHUP)
		} else if out, code := sfptpdctl(t, "-s", d.ctl, "logrotate"); code != 0 {
			t.Fatal(out)
		}
		time.Sleep(3 * time.Millisecond)
	}
	sfptpdctl(t, "-s", d.ctl, "exit")
	if code := d.wait(t); code != 0 {
		t.Fatal(code)
	}
	var intervals int
	for _, l := range strings.Split(d.out.String(), "\n") {
		if strings.Contains(l, "engine stopped") {
			fmt.Sscanf(l[strings.Index(l, "stats_intervals="):], "stats_intervals=%d", &intervals)
		}
	}
	if intervals < 10 {
		t.Fatalf("only %d intervals\n%s", intervals, d.out)
	}
	count := func(glob string) (n int) {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				if !strings.Contains(sc.Text(), "fr1") {
					t.Fatalf("%s: bad line %q", f, sc.Text())
				}
				n++
			}
			fh.Close()
		}
		return n
	}
	// Freerun instances write no stats lines, as in sfptpd; the files
	// are still reopened on every rotation without error. The count of
	// lines across rotations is checked with a PTP slave in the engine's
	// TestLogrotateLosesNoLine.
	if n := count(stats + "*"); n != 0 {
		t.Fatalf("stats_log: %d lines from freerun instances, want none", n)
	}
	if n := count(js + "*"); n != 0 {
		t.Fatalf("json_stats: %d lines from freerun instances, want none", n)
	}
	if strings.Contains(d.out.String(), "reopening log files failed") {
		t.Fatalf("rotation errors:\n%s", d.out)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-virtual-clock", "bogus"}, 2, "want OFFSET,PPM"},
		{[]string{"-stats-interval", "0s"}, 2, "want 1ms to 1h"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-f", "/nonexistent/ptpd.cfg"}, 1, "no such file or directory"},
	} {
		var out strings.Builder
		code := run(tc.args, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: %d %q", tc.args, code, out.String())
		}
	}
}

// TestNetlinkHotplug runs ptpd in a network namespace of its own with
// hotplug_detection_mode netlink and a PTP instance for an interface that
// does not exist yet: creating the link starts the instance, deleting it
// stops it, with no control command involved.
func TestNetlinkHotplug(t *testing.T) {
	t.Parallel()
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, "network namespaces: "+why)
	}
	ns, err := ptptest.NewNS("tbnl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	d := startPtpdIn(t, []string{"ip", "netns", "exec", ns.Name}, `[general]
sync_module freerun fr1
sync_module ptp ptp1
selection_policy automatic
hotplug_detection_mode netlink
control_path CONTROL
state_path DIR/state
[ptp1]
interface tbnl0
`)
	state := func() string {
		m := testutil.KeaCommand(t, d.kea, "instances-get", nil)
		args, _ := m["arguments"].(map[string]any)
		list, _ := args["instances"].([]any)
		for _, e := range list {
			if in, _ := e.(map[string]any); in["name"] == "ptp1" {
				s, _ := in["state"].(string)
				return s
			}
		}
		t.Fatalf("instances-get has no ptp1: %v", m)
		return ""
	}
	if got := state(); got != "disabled" {
		t.Fatalf("ptp1 before its link exists: %s", got)
	}
	if err := ns.Run("ip", "link", "add", "tbnl0", "type", "veth", "peer", "name", "tbnl1"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Run("ip", "link", "set", "tbnl0", "up"); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, `sync instance started (instance=ptp1, module=ptp, interface=tbnl0)`)
	testutil.WaitFor(t, "ptp1 running", 10*time.Second, func() bool { s := state(); return s == "listening" || s == "faulty" })
	if err := ns.Run("ip", "link", "del", "tbnl0"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "ptp1 stopped", 10*time.Second, func() bool { return state() == "disabled" })
	// The agent's datagrams are logged and ignored in netlink mode.
	if out, code := sfptpdctl(t, "-s", d.ctl, "interfaceinsert=tbnl0"); code != 0 {
		t.Fatalf("sfptpdctl: %d %s", code, out)
	}
	d.waitLog(t, "interfaceinsert=tbnl0 ignored: hotplug_detection_mode is netlink")
	// The control socket logs the refused command after the engine
	// does; wait for that line too, so that it is not taken for a line
	// of the shutdown below.
	d.waitLog(t, "control: command failed")

	// A clean stop logs no warning: closing the netlink subscription
	// is not a fault.
	before := len(d.out.String())
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, d.out)
	}
	if bad := warnings(d.out.String()[before:]); len(bad) > 0 {
		t.Fatalf("SIGTERM logged warnings or errors:\n%s", strings.Join(bad, "\n"))
	}
}

// warnings returns the lines of a message log at warning level or
// worse, in slog's text form or sfptpd's.
func warnings(log string) []string {
	var bad []string
	for _, l := range strings.Split(log, "\n") {
		for _, m := range []string{"level=WARN", "level=ERROR", ": warning: ", ": error: ", ": critical: ", ": alert: ", ": emergency: "} {
			if strings.Contains(l, m) {
				bad = append(bad, l)
				break
			}
		}
	}
	return bad
}

// TestTestConfig runs ptpd -t, as sfptpd's --test-config, over configs
// written in the shape of each example sfptpd ships: each one that this
// box can run passes with its ignored keywords listed; a pps instance
// is refused with one line naming the missing device.
func TestTestConfig(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../config/testdata/sfptpd/*.cfg")
	if err != nil || len(files) < 19 {
		t.Fatalf("example configs: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			pps := strings.Contains(string(b), "sync_module pps")
			var out, errOut strings.Builder
			code := run([]string{"-t", "-f", f, "-i", "tbtest0"}, &out, &errOut)
			switch {
			case pps:
				if code != 1 || !regexp.MustCompile(`^`+regexp.QuoteMeta(f)+`:\d+: pps instance '\w+': no PPS device: interface tbtest0 has no PTP hardware clock`).MatchString(errOut.String()) ||
					strings.Count(errOut.String(), "\n") != 1 {
					t.Fatalf("exit %d, stderr %q", code, errOut.String())
				}
			case code != 0:
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
			default:
				lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
				if last := lines[len(lines)-1]; !strings.HasPrefix(last, f+": configuration OK: sync instances ") {
					t.Fatalf("last line %q", last)
				}
				for _, l := range lines[:len(lines)-1] {
					if !strings.HasPrefix(l, "config: ignoring keyword '") && !strings.HasPrefix(l, f+":") {
						t.Errorf("unexpected line %q", l)
					}
				}
			}
		})
	}
	// Errors: FILE:LINE on stderr, exit 1; --test-config is -t.
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  string
		args []string
		want string
	}{
		{"[general]\nsync_module ptp ptp1\n", nil, ":2: ptp instance 'ptp1' has no interface"},
		{"[general]\nsync_module freerun fr1\nfrobnicate 1\n", nil, ":3: unknown keyword 'frobnicate'"},
		{"[general]\nsync_module gps gps1\n", nil, ":2: sync module 'gps' is not available in this build"},
		{"[general]\nsync_module pps pps1\n", nil, ":2: pps instance 'pps1': no PPS device: no interface names one"},
		{"[general]\nsync_module ptp ptp1\n", []string{"--interface", "tbtest0", "--ptp-domain", "7"}, ""},
	} {
		p := filepath.Join(dir, "c.cfg")
		os.WriteFile(p, []byte(tc.cfg), 0o644)
		var out, errOut strings.Builder
		code := run(append([]string{"--test-config", "--config-file", p}, tc.args...), &out, &errOut)
		if tc.want == "" {
			if code != 0 || errOut.Len() != 0 {
				t.Errorf("%q: exit %d, stderr %q", tc.cfg, code, errOut.String())
			}
			continue
		}
		if code != 1 || !strings.HasPrefix(errOut.String(), p+tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %s%s", tc.cfg, code, errOut.String(), p, tc.want)
		}
	}
}

// TestFreerunInterfaceSystem: sfptpd's default configuration names the
// system clock as a freerun instance's "interface"; the instance runs
// at once instead of waiting for a network interface of that name.
func TestFreerunInterfaceSystem(t *testing.T) {
	t.Parallel()
	d := startPtpd(t, "[general]\nsync_module freerun fr1\ncontrol_path CONTROL\nstate_path DIR/state\nhotplug_detection_mode manual\n[fr1]\ninterface system\n")
	m := testutil.KeaCommand(t, d.kea, "instances-get", nil)
	insts, _ := m["arguments"].(map[string]any)["instances"].([]any)
	if len(insts) != 1 {
		t.Fatalf("instances-get: %v", m)
	}
	if fr1 := insts[0].(map[string]any); fr1["state"] != "freerun" || fr1["selected"] != true {
		t.Fatalf("fr1 with interface system: %v", fr1)
	}
}
