package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/gokrazyweb"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// vmTimeout bounds the whole boot-and-check part of TestVM, the update
// over the air (checkUpdate: a second build, the push and a reboot)
// included; the image build before it has its own bound.
const vmTimeout = 9*time.Minute + updateTimeout

// vm is a booted image, driven through the web UI and ssh.
type vm struct {
	t       *testing.T
	web     *gokrazyweb.Client
	sshPort int
	sshKey  string
	// statusPort is the host port forwarded to the hub's HTTP listener;
	// password is the web UI's, which the hub shares.
	statusPort int
	password   string
	// qemuPid is the VM's qemu process.
	qemuPid int
	// version is the TICKBOX_VERSION the image was built with.
	version   string
	logs      map[string]*testutil.LockedBuffer // service path → stderr seen so far
	logsMu    sync.Mutex
	logCtx    context.Context
	buildDir  string
	flashLogs *testutil.LockedBuffer
	// mctpTTY is the guest tty of mctpd's serial binding, behind
	// BUILD/mctp-serial.sock: ttyS1 (amd64) or hvc0 (arm64).
	mctpTTY string
}

// follow streams a service's stderr from the web UI into a buffer until
// the test ends; gokrazy replays the retained log first, then new lines.
func (v *vm) follow(svc string) *testutil.LockedBuffer {
	v.logsMu.Lock()
	defer v.logsMu.Unlock()
	if b, ok := v.logs[svc]; ok {
		return b
	}
	b := &testutil.LockedBuffer{}
	v.logs[svc] = b
	go func() {
		for v.logCtx.Err() == nil {
			if rc, err := v.web.Log(v.logCtx, svc); err == nil {
				// Each connection replays the retained log first.
				b.Reset()
				io.Copy(b, io.LimitReader(rc, 16<<20))
				rc.Close()
			}
			select {
			case <-v.logCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return b
}

// logSnapshot reads a service's stderr for a moment; used for failure reports.
func (v *vm) logSnapshot(svc string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rc, err := v.web.Log(ctx, svc)
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 256<<10))
	return string(b)
}

// sshCommand is ssh running one command on the VM through breakglass,
// for callers that run it in the background.
func (v *vm) sshCommand(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", append([]string{
		"-p", strconv.Itoa(v.sshPort), "-i", v.sshKey,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		"root@127.0.0.1"}, args...)...)
}

// serviceLog is a service's stderr for a failure report: the followed
// stream when there is one, since it outlives the VM, else a snapshot.
func (v *vm) serviceLog(svc string) string {
	v.logsMu.Lock()
	b, ok := v.logs[svc]
	v.logsMu.Unlock()
	if ok && b.String() != "" {
		return b.String()
	}
	return v.logSnapshot(svc)
}

// ssh runs one command on the VM through breakglass.
func (v *vm) ssh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := v.sshCommand(ctx, args...).CombinedOutput()
	return string(out), err
}

// tickboxServices lists the services the image must run: every tickbox
// package in the committed config that is not DontStart.
func tickboxServices(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "gokrazy-instance", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Packages      []string
		PackageConfig map[string]struct{ DontStart bool }
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range cfg.Packages {
		if strings.HasPrefix(p, "github.com/tickbox-fw/tickbox/") && !cfg.PackageConfig[p].DontStart {
			out = append(out, "/user/"+path.Base(p))
		}
	}
	if len(out) == 0 {
		t.Fatal("config.json has no tickbox services")
	}
	return out
}

// waitServicesRunning waits until the web UI lists every tickbox
// service running: not stopped, started more than 5 s ago (the web UI's
// "restarting" threshold) and with the same pid and start time on two
// looks a few seconds apart.
func waitServicesRunning(ctx context.Context, v *vm, what string) error {
	want := tickboxServices(v.t)
	var prev map[string]gokrazyweb.Service
	return waitFor(ctx, what, 2*time.Second, func() error {
		cur, err := v.web.Services(ctx)
		if err != nil {
			return err
		}
		defer func() { prev = cur }()
		for _, name := range want {
			s, ok := cur[name]
			switch {
			case !ok:
				return fmt.Errorf("%s is not listed", name)
			case s.Stopped || s.Pid == 0:
				return fmt.Errorf("%s is stopped", name)
			case time.Since(s.StartTime) < 5*time.Second && s.StartTime.Before(time.Now()):
				return fmt.Errorf("%s is restarting (started %s)", name, s.StartTime)
			case prev == nil || prev[name].Pid != s.Pid || !prev[name].StartTime.Equal(s.StartTime):
				return fmt.Errorf("%s was restarted between two looks", name)
			}
		}
		return nil
	})
}

func waitFor(ctx context.Context, what string, every time.Duration, f func() error) error {
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(every):
		}
	}
}

// vmOneAtATime serialises the VM tests; see bootVM.
var vmOneAtATime sync.Mutex

// vmTarget is what bootVM needs to know of a target: its qemu (the tool
// and the Debian package) and its time bounds.
type vmTarget struct {
	name  string
	tools []struct{ name, pkg string }
	// files are data files the boot needs, with their Debian package.
	files []struct{ path, pkg string }
	// build bounds the image build and the boot up to the web UI; check
	// bounds the checks once it answered.
	build, check time.Duration
	mctpTTY      string
	// ptp gives the VM a second NIC on a tap of the test's (newPTPNet).
	ptp bool
}

// bootedVM is a VM that flash.sh built and booted, with every tickbox
// service running and breakglass reachable over ssh.
type bootedVM struct {
	v *vm
	// ctx bounds the checks; cancelling the test's context stops
	// flash.sh and with it the VM.
	ctx       context.Context
	cmd       *exec.Cmd
	exited    chan error
	stopped   bool
	flashOut  *testutil.LockedBuffer
	bootStart time.Time
	// started is when the test began to run (after waiting as a
	// parallel test), for its total time.
	started time.Time
	// ptp is the network of the VM's second NIC, when vmTarget.ptp.
	ptp *ptpNet
}

// bootVM runs flash.sh for the target with a throwaway key and password
// on free loopback ports, waits until qemu is up and every tickbox
// service of config.json runs, and starts breakglass. It skips (or, in
// CI, fails) when a tool is missing, and runs the test in parallel with
// the rest of the package, but one VM at a time.
func bootVM(t *testing.T, tgt vmTarget) *bootedVM {
	t.Helper()
	if testing.Short() {
		t.Skip("boots the image in qemu")
	}
	for _, tool := range tgt.tools {
		testutil.NeedTool(t, tool.name, tool.pkg)
	}
	for _, f := range tgt.files {
		if _, err := os.Stat(f.path); err != nil {
			testutil.Require(t, fmt.Sprintf("%s missing (./test.sh installs %s): %v", f.path, f.pkg, err))
		}
	}
	t.Parallel()
	// One VM at a time: two TCG guests on a 2-core machine stall each
	// other for seconds, which the PTP offset and the 5 s recovery bound
	// measure. The rest of the package still runs beside the VM.
	vmOneAtATime.Lock()
	t.Cleanup(vmOneAtATime.Unlock)
	started := time.Now()
	dir := t.TempDir()
	buildDir := filepath.Join(dir, "build")
	pwFile := filepath.Join(dir, "password")
	password := "e2e" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := writeTestKey(t, dir)
	httpPort, sshPort, statusPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	for sshPort == httpPort {
		sshPort = testutil.FreePort(t)
	}
	for statusPort == httpPort || statusPort == sshPort {
		statusPort = testutil.FreePort(t)
	}

	ctx, cancel := context.WithTimeout(context.Background(), tgt.build+tgt.check)
	// Cancelling ctx stops flash.sh and with it the VM, so it must not
	// happen before the failure report below has read the service logs:
	// cleanups run after deferred calls, last registered first.
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "flash.sh"), "--target", tgt.name,
		"--build-dir", buildDir, "--password-file", pwFile, "--ssh-key", pub,
		"--http-port", strconv.Itoa(httpPort), "--ssh-port", strconv.Itoa(sshPort),
		"--status-port", strconv.Itoa(statusPort))
	var pn *ptpNet
	if tgt.ptp {
		pn = newPTPNet(t) // the VM's second NIC, for checkPTPWire
		cmd.Args = append(cmd.Args, "--ptp-tap", pn.tap)
	}
	// The version every tickbox program must report (version-get).
	version := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd.Env = append(os.Environ(), "TICKBOX_VERSION="+version)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	flashOut := &testutil.LockedBuffer{}
	cmd.Stderr = flashOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &bootedVM{cmd: cmd, exited: make(chan error, 1), flashOut: flashOut, started: started, ptp: pn}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(flashOut, sc.Text())
			lines <- sc.Text()
		}
		close(lines)
		b.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if !b.stopped {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-b.exited:
			case <-time.After(30 * time.Second):
			}
		}
		// Whatever happened, nothing of flash.sh's (qemu) outlives the test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	logCtx, stopLogs := context.WithCancel(context.Background())
	t.Cleanup(stopLogs)
	v := &vm{
		t:       t,
		web:     gokrazyweb.New("http://127.0.0.1:"+strconv.Itoa(httpPort), password),
		sshPort: sshPort, sshKey: strings.TrimSuffix(pub, ".pub"),
		statusPort: statusPort, password: password, version: version,
		logs:     map[string]*testutil.LockedBuffer{},
		logCtx:   logCtx,
		buildDir: buildDir, flashLogs: flashOut,
		mctpTTY: tgt.mctpTTY,
	}
	b.v = v
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("flash.sh output:\n%s", flashOut.String())
		if b, err := os.ReadFile(filepath.Join(buildDir, "serial.log")); err == nil {
			s := string(b)
			if len(s) > 64<<10 {
				s = "…" + s[len(s)-64<<10:]
			}
			t.Logf("serial console log:\n%s", s)
		}
		if b, err := os.ReadFile(filepath.Join(buildDir, "qemu.log")); err == nil && len(b) > 0 {
			t.Logf("qemu output:\n%s", b)
		}
		for _, svc := range append(tickboxServices(t), "/user/breakglass") {
			t.Logf("%s stderr:\n%s", svc, v.serviceLog(svc))
		}
	})

	// flash.sh: build, then boot; the "booting" line is when qemu starts.
	var image, built string
	bootRe := regexp.MustCompile(`^flash\.sh: booting (\S+) in qemu`)
	builtRe := regexp.MustCompile(`^flash\.sh: built \S+ in ([0-9]+ s)`)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("flash.sh ended before the VM was up: %v", <-b.exited)
			}
			if m := bootRe.FindStringSubmatch(l); m != nil {
				b.bootStart, image = time.Now(), m[1]
			}
			if m := builtRe.FindStringSubmatch(l); m != nil {
				built = m[1]
			}
			if strings.HasPrefix(l, "tickbox is up") {
				ready = true
			}
		case <-ctx.Done():
			t.Fatal("flash.sh did not report the VM up in time")
		}
	}
	if b.bootStart.IsZero() {
		t.Fatal("flash.sh did not say when qemu started")
	}
	go func() { // keep draining flash.sh's output
		for range lines {
		}
	}()
	webUI := time.Since(b.bootStart)
	var st syscall.Stat_t
	if err := syscall.Stat(image, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: %d bytes (%.0f MiB), %d MiB allocated, built in %s", filepath.Base(image), st.Size, float64(st.Size)/(1<<20), st.Blocks*512>>20, built)
	t.Logf("web UI answered %.1f s after qemu started", webUI.Seconds())

	// qemu's threads get a higher priority than the rest of the host;
	// see favour.
	if pid, err := qemuPid(image); err != nil {
		t.Fatal(err)
	} else {
		b.v.qemuPid = pid
		favour(t, "qemu", pid)
	}

	vctx, vcancel := context.WithTimeout(ctx, tgt.check)
	t.Cleanup(vcancel)
	b.ctx = vctx

	// Basic auth is enforced.
	if resp, err := http.Get(v.web.Base() + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET / without a password: %s, want 401", resp.Status)
		}
	}

	want := tickboxServices(t)
	if err := waitServicesRunning(vctx, v, "all services running"); err != nil {
		t.Fatal(err)
	}
	t.Logf("all tickbox services %v running %.1f s after qemu started", want, time.Since(b.bootStart).Seconds())
	for _, name := range want {
		v.follow(name)
	}

	// breakglass through the web UI form, then ssh.
	if err := v.web.StartBreakglass(vctx); err != nil {
		t.Fatal(err)
	}
	err = waitFor(vctx, "ssh via breakglass", 2*time.Second, func() error {
		out, err := v.ssh(vctx, "true")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shutdown presses Ctrl-C on flash.sh, which shuts the VM down.
func (b *bootedVM) shutdown(t *testing.T) {
	t.Helper()
	b.stopped = true
	b.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-b.exited:
		if err != nil {
			t.Errorf("flash.sh after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("flash.sh did not stop within 30 s of Ctrl-C")
	}
	if !strings.Contains(b.flashOut.String(), "the VM is off") {
		t.Errorf("flash.sh did not report the VM off:\n%s", b.flashOut.String())
	}
}

// checkListCommands asks the hub's own Kea socket for its commands over ssh.
func checkListCommands(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/ctl/control.sock", "list-commands")
	if err != nil {
		t.Fatalf("ctl kea list-commands: %v\n%s", err, out)
	}
	var reply struct {
		Result    *int
		Arguments []string
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		t.Fatalf("ctl kea list-commands: %v\n%s", err, out)
	}
	if reply.Result == nil || *reply.Result != 0 {
		t.Errorf("list-commands result is not 0: %s", out)
	}
	for _, c := range []string{"list-commands", "version-get", "status-get", "config-get", "build-report", "shutdown"} {
		if !slices.Contains(reply.Arguments, c) {
			t.Errorf("list-commands lacks %s: %s", c, out)
		}
	}
}

// TestVM builds the image with flash.sh (throwaway key and password), boots
// it in qemu and checks it the way a user would.
func TestVM(t *testing.T) {
	b := bootVM(t, vmTarget{name: "amd64",
		tools: []struct{ name, pkg string }{
			{"qemu-system-x86_64", "qemu-system-x86"}, {"ssh", "openssh-client"},
			{"ssh-keygen", "openssh-client"}, {"mkfs.ext4", "e2fsprogs"},
		},
		build: 3 * time.Minute, check: vmTimeout, mctpTTY: "ttyS1", ptp: true})
	v, vctx := b.v, b.ctx
	checkListCommands(t, vctx, v)

	checkClockOwner(t, vctx, v)
	checkModuleVersion(t, vctx, v)
	checkPtpd(t, vctx, v)
	checkPTPWire(t, vctx, v, b.ptp)
	checkHotplug(t, vctx, v)
	checkMctp(t, vctx, v)
	checkMdiod(t, vctx, v)
	checkHub(t, vctx, v)
	checkFaults(t, vctx, v)
	checkUpdate(t, vctx, v)

	// Ctrl-C on flash.sh shuts the VM down.
	b.shutdown(t)
}

// checkPtpd checks ptpd on the image: its instances over the Kea channel,
// and sfptpdctl logrotate reaching it, as its log shows.
func checkPtpd(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	out, err := v.ssh(ctx, "/user/ctl", "kea", "/run/ptpd/control.sock", "instances-get")
	if err != nil {
		t.Fatalf("ctl kea instances-get: %v\n%s", err, out)
	}
	var reply struct {
		Result    *int
		Arguments struct {
			Instances []struct {
				Name, Module, State string
				Selected            bool
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil || reply.Result == nil || *reply.Result != 0 {
		t.Fatalf("instances-get: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, in := range reply.Arguments.Instances {
		got[in.Name] = in.Module + "/" + in.State
		if in.Name == "freerun1" && !in.Selected {
			t.Errorf("freerun1 is not selected with no PTP master on the link: %s", out)
		}
	}
	// No master answers on the VM's links: the PTP instances listen
	// (ptp2's, eth1, gets one in checkPTPWire, which runs after this).
	if got["freerun1"] != "freerun/freerun" || got["ptp1"] != "ptp/listening" || got["ptp2"] != "ptp/listening" {
		t.Errorf("instances-get: %v\n%s", got, out)
	}

	ptpdLog := v.follow("/user/ptpd")
	time.Sleep(2 * time.Second)
	const rotated = `: notice: received 'logrotate' control command: rotating logs`
	before := strings.Count(ptpdLog.String(), rotated)
	if out, err := v.ssh(ctx, "/user/sfptpdctl", "logrotate"); err != nil {
		t.Fatalf("sfptpdctl logrotate: %v\n%s", err, out)
	}
	err = waitFor(ctx, "logrotate logged", time.Second, func() error {
		if strings.Count(ptpdLog.String(), rotated) <= before {
			return fmt.Errorf("ptpd did not log the logrotate sent by sfptpdctl")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// checkHotplug creates and deletes a veth pair inside the VM (its kernel has
// no PCI hotplug) and checks that the appliance agent logged the insert and
// the removal and that its datagrams reached ptpd, which runs in manual
// hotplug mode and logs each one (no instance is configured for the test's
// link).
func checkHotplug(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	appLog, ptpdLog := v.follow("/user/appliance"), v.follow("/user/ptpd")
	count := func(b *testutil.LockedBuffer, re *regexp.Regexp) int {
		return len(re.FindAllStringIndex(b.String(), -1))
	}
	// Let the log streams catch up, then take the counts before the change.
	time.Sleep(2 * time.Second)
	insertSeen := regexp.MustCompile(`: info: interfaceinsert: no sync instance uses the interface \(interface=tbe2e0\)`)
	removeSeen := regexp.MustCompile(`: info: interfaceremove: no sync instance uses the interface \(interface=tbe2e0\)`)
	inserts0 := count(ptpdLog, insertSeen)
	removes0 := count(ptpdLog, removeSeen)

	// busybox ip names the peer veth0 whatever it is asked for.
	if out, err := v.ssh(ctx, "ip", "link", "add", "tbe2e0", "type", "veth", "peer", "name", "tbe2e1"); err != nil {
		t.Fatalf("ip link add: %v\n%s", err, out)
	}
	err := waitFor(ctx, "insert logged", time.Second, func() error {
		if !regexp.MustCompile(`msg="interface inserted" interface=tbe2e0 `).MatchString(appLog.String()) {
			return fmt.Errorf("appliance did not log the insert of tbe2e0")
		}
		if count(ptpdLog, insertSeen) <= inserts0 {
			return fmt.Errorf("no interfaceinsert=tbe2e0 datagram reached ptpd")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if out, err := v.ssh(ctx, "ip", "link", "del", "tbe2e0"); err != nil {
		t.Fatalf("ip link del: %v\n%s", err, out)
	}
	err = waitFor(ctx, "removal logged", time.Second, func() error {
		if !regexp.MustCompile(`msg="interface removed" interface=tbe2e0 `).MatchString(appLog.String()) {
			return fmt.Errorf("appliance did not log the removal of tbe2e0")
		}
		if count(ptpdLog, removeSeen) <= removes0 {
			return fmt.Errorf("no interfaceremove=tbe2e0 datagram reached ptpd")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// checkClockOwner: ptpd is the only thing on the image that adjusts the
// system clock. gokrazy's own ntp service is left out of the image
// (GokrazyPackages), so the web UI lists no such service and no NTP
// daemon runs.
func checkClockOwner(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	svcs, err := v.web.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["/gokrazy/ntp"]; ok {
		t.Errorf("gokrazy's ntp service runs beside ptpd: %v", slices.Collect(maps.Keys(svcs)))
	}
	if _, ok := svcs["/gokrazy/dhcp"]; !ok {
		t.Errorf("gokrazy's dhcp service is missing: %v", slices.Collect(maps.Keys(svcs)))
	}
	// Under load breakglass has been seen to end a session before all of
	// a long output arrived: look again until the listing is whole (it
	// lists the tickbox services, started after the kernel threads).
	var out string
	err = waitFor(ctx, "a whole ps listing", 2*time.Second, func() error {
		o, err := v.ssh(ctx, "ps")
		if err != nil {
			return fmt.Errorf("ps: %v\n%s", err, o)
		}
		out = o
		if !strings.Contains(o, "/user/ptpd") || !strings.Contains(o, "/user/mdiod") {
			return fmt.Errorf("ps does not show ptpd and mdiod:\n%s", o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		// busybox ps: PID USER TIME COMMAND [ARGS...]
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch path.Base(f[3]) {
		case "ntp", "ntpd", "chronyd", "timesyncd", "systemd-timesyncd":
			t.Errorf("a second clock owner runs: %s", line)
		}
	}
}

// checkModuleVersion: gokrazy's web UI shows each tickbox program's
// module version from its build information; the image tool gives it the
// pseudo-version of the checkout's HEAD commit rather than go.mod's
// placeholder v0.0.0-00010101000000-000000000000.
func checkModuleVersion(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	rev, err := exec.Command("git", "-c", "safe.directory=*", "-C", repoRoot(t), "log", "-1", "--format=%H").Output()
	if err != nil || len(rev) < 12 {
		testutil.Require(t, fmt.Sprintf("the checkout's revision (git log): %v", err))
		return
	}
	for _, svc := range tickboxServices(t) {
		resp, err := v.web.Get(ctx, "/status?path="+svc, "")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		page := string(b)
		if !strings.Contains(page, "github.com/tickbox-fw/tickbox") || !strings.Contains(page, "-"+string(rev[:12])) {
			t.Errorf("web UI status of %s does not show the module at the checkout's revision %s:\n%.2000s", svc, rev[:12], page)
		}
		if strings.Contains(page, "v0.0.0-00010101000000-000000000000") {
			t.Errorf("web UI status of %s shows the placeholder module version", svc)
		}
	}
}

// qemuPid finds the qemu process that runs image.
func qemuPid(image string) (int, error) {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(path.Base(args[0]), "qemu-system") {
			continue
		}
		for _, a := range args {
			if strings.Contains(a, "file="+image) {
				return strconv.Atoi(path.Base(path.Dir(p)))
			}
		}
	}
	return 0, fmt.Errorf("no qemu process runs %s", image)
}

// favourNice is the nice value of the processes favour raises.
const favourNice = -19

// favour raises every thread of pid to nice favourNice. A TCG guest is
// only as punctual as the host lets its threads run: on a 2-core machine
// whose cores are busy (CI's other work, or the busy loops the suite is
// run beside), a guest waits milliseconds for the CPU, and its software
// timestamps, its timers and the tests' time bounds measure the host's
// scheduler rather than the daemons. With nice -10 the VM (and the PTP
// grandmaster beside it, in checkPTPWire) still shares the cores, but
// gets them first. Threads started later inherit it from their creator.
// Without the privilege to raise it (not root), the test says so and
// goes on at the normal priority.
func favour(t *testing.T, what string, pid int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("raising %s's priority: %v", what, err)
	}
	n := 0
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, favourNice); errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Logf("NOT raising %s's priority (thread %d): %v; its timing shares the host's cores evenly", what, tid, err)
			return
		} else if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: the thread ended
			t.Fatalf("raising %s's priority (thread %d): %v", what, tid, err)
		}
		n++
	}
	t.Logf("%s (pid %d): %d threads at nice %d", what, pid, n, favourNice)
}
