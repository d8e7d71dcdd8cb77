package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/procstat"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// The fault test kills each tickbox daemon with SIGKILL while clients
// inside the VM (faultprobe, built from e2e/faultprobe and copied in over
// ssh) keep sending real requests to every socket the daemon serves, and
// measures on the VM's own clock how long the sockets take to answer
// again.

// faultRecoveryMax bounds kill → every socket answering again. gokrazy
// waits 1 s after a service ends before starting it again.
const faultRecoveryMax = 5 * time.Second

// faultProbeBin is where the client load program is copied in the VM.
const faultProbeBin = "/tmp/faultprobe"

// faultTarget is one daemon to kill and the sockets its clients use.
type faultTarget struct {
	name, path string
	// probes are the load loop's KIND=ADDR arguments; a dgram ADDR is
	// SOCKET,DATAGRAM (a datagram that only logs).
	probes []string
}

var faultTargets = []faultTarget{
	{"ptpd", "/user/ptpd", []string{
		"kea=/run/ptpd/control.sock",
		// ptp1 already runs on eth0: the insert changes nothing.
		"dgram=/run/sfptpd/control-v1.sock,interfaceinsert=eth0",
	}},
	{"mctpd", "/user/mctpd", []string{
		"kea=/run/mctpd/control.sock",
		// mctpd answers a control request for its own EID itself.
		"demux=mctp-mux",
	}},
	{"mdiod", "/user/mdiod", []string{
		"kea=/run/mdiod/control.sock",
		"ipc=mdiod",
		"console=/run/mdiod/console.sock",
		// No port is bound to the interface: mdiod only logs it.
		"dgram=/run/mdiod/hotplug.sock,interfaceinsert=tbnone0",
	}},
	{"appliance", "/user/appliance", []string{
		"kea=/run/appliance/control.sock",
	}},
	{"ctl", "/user/ctl", []string{
		"kea=/run/ctl/control.sock",
		"ipc=/run/ctl/ipc.socket",
		"console=/run/ctl/console.sock",
		"dgram=/run/ctl/dgram.sock,version-get",
	}},
}

// faultResult is one probe's line of the load loop's log.
type faultResult struct {
	start, end float64 // VM uptime, seconds
	probe      string
	result     string
}

// parseFaultLog reads the load loops' log; ended counts the loops that
// have stopped.
func parseFaultLog(out string) (rs []faultResult, ended int, err error) {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "end ") {
			ended++
			continue
		}
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			return nil, 0, fmt.Errorf("load log line %q", l)
		}
		s, err1 := strconv.ParseFloat(f[0], 64)
		e, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			return nil, 0, fmt.Errorf("load log line %q", l)
		}
		rs = append(rs, faultResult{s, e, f[2], f[3]})
	}
	return rs, ended, nil
}

// procStart is the start of a process in VM uptime seconds, from its
// /proc/PID/stat line.
func procStart(stat string) (float64, error) {
	ticks, err := procstat.Ticks(stat, procstat.StartTime)
	if err != nil {
		return 0, err
	}
	return float64(ticks) / procstat.TicksPerSecond, nil
}

// faultKill is one kill and what it took to recover from it.
type faultKill struct {
	oldPid, newPid int
	// In VM uptime seconds.
	kill, started float64
	// wall is the VM's wall clock at the kill, whole seconds, for
	// comparing with the daemons' log timestamps.
	wall time.Time
	// recovered is each probe's first well-formed answer from the new
	// process (its end).
	recovered map[string]float64
	counts    map[string]*[3]int // ok, down, bad
}

func (k *faultKill) summary() string {
	var worst float64
	var parts []string
	for p, r := range k.recovered {
		worst = max(worst, r-k.kill)
		kind, _, _ := strings.Cut(p, "=")
		parts = append(parts, fmt.Sprintf("%s %.2f s", kind, r-k.kill))
	}
	return fmt.Sprintf("%.2f s (restarted after %.2f s; %s)", worst, k.started-k.kill, strings.Join(parts, ", "))
}

// killUnderLoad kills one daemon while the load loop runs against its
// sockets and checks the recovery: gokrazy starts a new process, the web
// UI lists it, every socket answers again within faultRecoveryMax, and
// the loop saw no malformed answer and no failure outside the outage.
func killUnderLoad(t *testing.T, ctx context.Context, v *vm, ft faultTarget, round int) *faultKill {
	t.Helper()
	svcs, err := v.web.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := svcs[ft.path]
	if old.Pid <= 0 || old.Stopped {
		t.Fatalf("%s is not running before the kill: %+v", ft.path, old)
	}
	name := fmt.Sprintf("%s%d", ft.name, round)
	logFile := "/tmp/tbfault-" + name + ".log"
	runFile, errFile := "/tmp/tbfault-"+name+".run", "/tmp/tbfault-"+name+".err"
	start := fmt.Sprintf(": >%s; touch %s; %s -version %s -log %s -run %s %s </dev/null >/dev/null 2>%s &",
		logFile, runFile, faultProbeBin, v.version, logFile, runFile, strings.Join(ft.probes, " "), errFile)
	if out, err := v.ssh(ctx, start); err != nil {
		t.Fatalf("start the load: %v\n%s", err, out)
	}
	defer func() {
		if t.Failed() {
			out, _ := v.ssh(ctx, "cat", errFile)
			t.Logf("faultprobe stderr: %s", out)
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			v.ssh(ctx, "rm", "-f", runFile)
		}
	}
	defer stop()
	// read returns what the loops logged so far (or its last lines may be
	// missing: see the kill below); the callers look again until what
	// they wait for is there.
	read := func() ([]faultResult, error) {
		out, err := v.ssh(ctx, "cat", logFile)
		if err != nil {
			return nil, fmt.Errorf("cat %s: %v: %s", logFile, err, out)
		}
		rs, _, err := parseFaultLog(out)
		return rs, err
	}

	// The loop is under way: every probe has been answered.
	err = waitFor(ctx, ft.name+" load loop answered", 500*time.Millisecond, func() error {
		rs, err := read()
		if err != nil {
			return err
		}
		ok := map[string]bool{}
		for _, r := range rs {
			if r.result == "ok" {
				ok[r.probe] = true
			}
		}
		for _, p := range ft.probes {
			if !ok[p] {
				return fmt.Errorf("no answer yet on %s", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The kill's time goes to a file: breakglass can lose the end of a
	// command's output when the machine is busy, and a kill cannot be
	// repeated, but reading the file can.
	killFile := "/tmp/tbfault-" + name + ".kill"
	out, err := v.ssh(ctx, fmt.Sprintf("read k _ </proc/uptime; w=$(date +%%s); kill -9 %d && echo \"$k $w\" >%s", old.Pid, killFile))
	if err != nil {
		t.Fatalf("kill -9 %d: %v\n%s", old.Pid, err, out)
	}
	killed := time.Now()
	k := &faultKill{oldPid: old.Pid, recovered: map[string]float64{}, counts: map[string]*[3]int{}}
	var wall int64
	err = waitFor(ctx, "the kill's time", 200*time.Millisecond, func() error {
		out, err := v.ssh(ctx, "cat", killFile)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasSuffix(out, "\n") {
			return fmt.Errorf("%s: %q is not whole", killFile, out)
		}
		if _, err := fmt.Sscanf(out, "%f %d\n", &k.kill, &wall); err != nil {
			return fmt.Errorf("%s: %q: %w", killFile, out, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	k.wall = time.Unix(wall, 0)

	// gokrazy starts a new process and the web UI lists it.
	err = waitFor(ctx, ft.path+" restarted", 200*time.Millisecond, func() error {
		svcs, err := v.web.Services(ctx)
		if err != nil {
			return err
		}
		s := svcs[ft.path]
		if s.Stopped || s.Pid <= 0 || s.Pid == old.Pid {
			return fmt.Errorf("%s: %+v", ft.path, s)
		}
		k.newPid = s.Pid
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	webUI := time.Since(killed)
	err = waitFor(ctx, "the new process's start time", 200*time.Millisecond, func() error {
		out, err := v.ssh(ctx, "cat", fmt.Sprintf("/proc/%d/stat", k.newPid))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasSuffix(out, "\n") {
			return fmt.Errorf("/proc/%d/stat: %q is not whole", k.newPid, out)
		}
		k.started, err = procStart(out)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every socket answers the new process.
	err = waitFor(ctx, ft.name+" sockets answering again", 500*time.Millisecond, func() error {
		rs, err := read()
		if err != nil {
			return err
		}
		clear(k.recovered)
		for _, r := range rs {
			if r.result == "ok" && r.start >= k.started {
				if _, ok := k.recovered[r.probe]; !ok {
					k.recovered[r.probe] = r.end
				}
			}
		}
		for _, p := range ft.probes {
			if _, ok := k.recovered[p]; !ok {
				return fmt.Errorf("%s does not answer yet", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A little more load on the new process, then stop the loop.
	time.Sleep(time.Second)
	stop()
	var rs []faultResult
	err = waitFor(ctx, ft.name+" load loop ended", 500*time.Millisecond, func() error {
		out, err := v.ssh(ctx, "cat", logFile)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var ended int
		if rs, ended, err = parseFaultLog(out); err != nil {
			return err
		}
		if ended < len(ft.probes) {
			return fmt.Errorf("%d of %d loops ended", ended, len(ft.probes))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v.ssh(ctx, "rm", "-f", logFile, killFile)

	for _, r := range rs {
		c := k.counts[r.probe]
		if c == nil {
			c = &[3]int{}
			k.counts[r.probe] = c
		}
		switch {
		case r.result == "ok":
			c[0]++
		case r.result == "down":
			c[1]++
			// A failure is expected only between the kill and the
			// probe's first answer from the new process.
			if r.end < k.kill || r.start > k.recovered[r.probe] {
				t.Errorf("%s: %s failed outside the outage (kill at %.2f, answering again at %.2f): %+v",
					ft.name, r.probe, k.kill, k.recovered[r.probe], r)
			}
		default:
			c[2]++
			t.Errorf("%s: %s: malformed answer at %.2f (kill at %.2f): %s", ft.name, r.probe, r.start, k.kill, r.result)
		}
	}
	for _, p := range ft.probes {
		if d := time.Duration((k.recovered[p] - k.kill) * float64(time.Second)); d > faultRecoveryMax {
			t.Errorf("%s: %s answered again %.2f s after the kill, over %s", ft.name, p, d.Seconds(), faultRecoveryMax)
		}
		c := k.counts[p]
		t.Logf("load on %s %s: %d answered, %d failed in the outage, %d malformed", ft.name, p, c[0], c[1], c[2])
	}
	t.Logf("kill -9 %s (pid %d → %d): web UI lists the new process %.1f s after the kill (host time, with ssh and polling); recovery %s",
		ft.name, k.oldPid, k.newPid, webUI.Seconds(), k.summary())
	return k
}

// logLinesSince returns the lines of a daemon's stderr stamped at or after
// since: ptpd's "2006-01-02 15:04:05.000000: " or slog's "time=RFC3339".
func logLinesSince(log string, since time.Time, re *regexp.Regexp) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if !re.MatchString(l) {
			continue
		}
		var ts time.Time
		var err error
		if rest, ok := strings.CutPrefix(l, "time="); ok {
			f, _, _ := strings.Cut(rest, " ")
			ts, err = time.Parse(time.RFC3339Nano, f)
		} else if len(l) > 26 {
			ts, err = time.Parse("2006-01-02 15:04:05.000000", l[:26])
		} else {
			continue
		}
		if err == nil && !ts.Before(since) {
			out = append(out, l)
		}
	}
	return out
}

// targetCounts are an appliance target's counters in status-get.
type targetCounts struct{ Sent, Resyncs uint64 }

// applianceTargets reads the appliance's per-target counters by socket.
// It asks again while the reply is cut short (breakglass loses the end of
// an output now and then on a busy machine).
func applianceTargets(ctx context.Context, v *vm) (map[string]targetCounts, error) {
	var st struct {
		Arguments struct {
			Targets []struct {
				Path          string
				Sent, Resyncs uint64
			}
		}
	}
	err := waitFor(ctx, "appliance status-get", time.Second, func() error {
		out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/appliance/control.sock", "status-get")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := map[string]targetCounts{}
	for _, tg := range st.Arguments.Targets {
		m[tg.Path] = targetCounts{tg.Sent, tg.Resyncs}
	}
	return m, nil
}

// copyFaultProbe builds e2e/faultprobe for the VM and copies it in.
func copyFaultProbe(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "faultprobe")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./e2e/faultprobe")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build faultprobe: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	cp := v.sshCommand(ctx, "cat >"+faultProbeBin+" && chmod 755 "+faultProbeBin)
	cp.Stdin = bytes.NewReader(b)
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy faultprobe into the VM: %v\n%s", err, out)
	}
	err = waitFor(ctx, "faultprobe copied whole", time.Second, func() error {
		out, err := v.ssh(ctx, "wc -c <"+faultProbeBin)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); n != len(b) {
			return fmt.Errorf("%s has %q bytes, want %d", faultProbeBin, out, len(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkFaults kills every tickbox daemon once (ptpd twice, to see that a
// second crash is restarted as quickly) under load and checks recovery,
// and that the hotplug agent's knowledge reaches a restarted ptpd or
// mdiod, and is rebuilt when the agent itself restarts.
func checkFaults(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	begin := time.Now()
	ptpdLog, mdiodLog := v.follow("/user/ptpd"), v.follow("/user/mdiod")
	copyFaultProbe(t, ctx, v)

	// An interface no ptpd instance uses, so that each insert ptpd gets
	// for it is logged at info level. (busybox ip may name the peer as
	// it likes; the test only follows tbf0.)
	if out, err := v.ssh(ctx, "ip", "link", "add", "tbf0", "type", "veth", "peer", "name", "tbf1"); err != nil {
		t.Fatalf("ip link add: %v\n%s", err, out)
	}
	defer v.ssh(ctx, "ip", "link", "del", "tbf0")
	tbf0 := regexp.MustCompile(`: info: interfaceinsert: no sync instance uses the interface \(interface=tbf0\)`)
	reattached := regexp.MustCompile(`msg="port reattached" port=A interface=eth0`)
	notRunning := regexp.MustCompile(`engine is not running`)
	err := waitFor(ctx, "tbf0 reaches ptpd", 500*time.Millisecond, func() error {
		if !tbf0.MatchString(ptpdLog.String()) {
			return fmt.Errorf("ptpd did not log the insert of tbf0")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// waitLog waits for a line matching re stamped after the kill's
	// second plus one: gokrazy waits a second before the restart, so
	// nothing of the killed process can match.
	waitLog := func(what string, buf *testutil.LockedBuffer, k *faultKill, re *regexp.Regexp) {
		t.Helper()
		since := k.wall.Add(time.Second)
		err := waitFor(ctx, what, 500*time.Millisecond, func() error {
			if len(logLinesSince(buf.String(), since, re)) == 0 {
				return fmt.Errorf("no line %q since %s", re, since.UTC().Format(time.RFC3339))
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	var summary []string
	for _, ft := range faultTargets {
		before, err := applianceTargets(ctx, v)
		if err != nil && ft.name != "appliance" {
			t.Fatal(err)
		}
		rounds := 1
		if ft.name == "ptpd" {
			rounds = 2
		}
		for round := 1; round <= rounds; round++ {
			k := killUnderLoad(t, ctx, v, ft, round)
			label := ft.name
			if rounds > 1 {
				label = fmt.Sprintf("%s (kill %d)", ft.name, round)
			}
			summary = append(summary, label+" "+k.summary())
			switch ft.name {
			case "ptpd":
				// The agent saw ptpd's socket re-created and sent the
				// present interfaces again.
				waitLog("tbf0 re-sent to the restarted ptpd", ptpdLog, k, tbf0)
				// Datagrams that came before the engine ran (the load's,
				// the agent's) waited for it rather than failing.
				if l := logLinesSince(ptpdLog.String(), k.wall, notRunning); len(l) > 0 {
					t.Errorf("ptpd refused datagrams while starting:\n%s", strings.Join(l, "\n"))
				}
			case "mdiod":
				waitLog("eth0 re-sent to the restarted mdiod", mdiodLog, k, reattached)
			case "appliance":
				// The restarted agent lists the links and sends an
				// insert for each to both daemons.
				waitLog("tbf0 sent to ptpd by the restarted agent", ptpdLog, k, tbf0)
				waitLog("eth0 sent to mdiod by the restarted agent", mdiodLog, k, reattached)
			}
		}
		if ft.name == "ptpd" || ft.name == "mdiod" {
			after, err := applianceTargets(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			sock := map[string]string{"ptpd": "/run/sfptpd/control-v1.sock", "mdiod": "/run/mdiod/hotplug.sock"}[ft.name]
			if got := after[sock].Resyncs - before[sock].Resyncs; got != uint64(rounds) {
				t.Errorf("the agent re-sent to %s %d times after %d restarts of %s", sock, got, rounds, ft.name)
			}
		}
	}
	err = waitFor(ctx, "tbf0 in the restarted agent's interfaces-get", time.Second, func() error {
		out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/appliance/control.sock", "interfaces-get")
		if err != nil || !strings.Contains(out, `"name": "tbf0"`) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("recovery (kill -9 → every socket answers, VM clock): %s", strings.Join(summary, "; "))
	t.Logf("fault checks took %.1f s", time.Since(begin).Seconds())
}
