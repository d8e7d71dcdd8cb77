package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/gokrazyweb"
)

// qemuOpt doubles the commas in a value inside a qemu option list, where a
// single comma would start the next option.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// accelArgs are qemu's accelerator options. TCG gets -cpu max so that the
// guest sees every instruction set extension qemu emulates.
func accelArgs(kvm bool) []string {
	if kvm {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

// bootTarget is how a target's image boots in qemu.
type bootTarget struct {
	qemu    string // the default qemu binary
	qemuPkg string // the Debian package that has it
	// efi is the UEFI firmware qemu loads with -bios ("" for the PC's
	// BIOS, which qemu brings), from the Debian package efiPkg.
	efi, efiPkg string
	// kvm: the KVM probe may run. Only amd64: an arm64 guest on the x86
	// hosts this boots on runs under TCG.
	kvm bool
	// mctpTTY is the guest's tty behind the mctp socket, where mctpd's
	// serial binding runs (derive's Targets hold the same devices).
	mctpTTY string
}

// bootTargetOf returns how target boots and whether it boots in qemu.
func bootTargetOf(target string) (bootTarget, bool) {
	switch target {
	case "amd64":
		return bootTarget{qemu: "qemu-system-x86_64", qemuPkg: "qemu-system-x86", kvm: true, mctpTTY: "ttyS1"}, true
	case "arm64":
		return bootTarget{qemu: "qemu-system-aarch64", qemuPkg: "qemu-system-arm",
			efi: "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", efiPkg: "qemu-efi-aarch64", mctpTTY: "hvc0"}, true
	}
	// The rest boot on their board only; the qemu binary is the
	// default's, for the options' sake.
	return bootTarget{qemu: "qemu-system-x86_64", qemuPkg: "qemu-system-x86"}, false
}

// vmConfig is what the qemu command line of a boot depends on.
type vmConfig struct {
	target   string // amd64 or arm64
	image    string
	kvm      bool
	httpPort int
	sshPort  int
	// statusPort is forwarded to the hub's HTTP listener (guest :8080):
	// the status page, /metrics and the Kea channel over HTTP.
	statusPort int
	serial     string // the console (ttyS0, arm64: ttyAMA0) log file
	mctpSock   string // mctpd's serial line (ttyS1, arm64: hvc0), a unix socket qemu listens on
	// ptpTap, when set, is the host tap of a second NIC (the guest's
	// eth1), for PTP on a network of its own.
	ptpTap string
}

// hostfwd is the user network's restriction and its three forwards: the
// web UI, ssh and the hub's HTTP listener.
func hostfwd(c vmConfig) string {
	return fmt.Sprintf("restrict=on,hostfwd=tcp:127.0.0.1:%d-:80,hostfwd=tcp:127.0.0.1:%d-:22,hostfwd=tcp:127.0.0.1:%d-:8080",
		c.httpPort, c.sshPort, c.statusPort)
}

// qemuArgs is the boot's qemu command line, less the binary.
// -nodefaults: no empty CD-ROM drive for gokrazy's root device scan to
// trip on. restrict=on: the guest reaches nothing beyond the three forwarded
// loopback ports (its NTP and DHCP clients stay inside qemu's user network).
func qemuArgs(c vmConfig) ([]string, error) {
	bt, ok := bootTargetOf(c.target)
	if !ok {
		return nil, fmt.Errorf("the %s image does not boot in qemu (amd64 and arm64 do)", c.target)
	}
	if c.target == "arm64" {
		return arm64Args(c, bt), nil
	}
	args := []string{"-name", "tickbox", "-nodefaults", "-m", "1024", "-smp", "2"}
	args = append(args, accelArgs(c.kvm)...)
	args = append(args,
		"-drive", "file="+qemuOpt(c.image)+",format=raw",
		"-netdev", "user,id=n0,"+hostfwd(c),
		"-device", "e1000,netdev=n0")
	if c.ptpTap != "" {
		// After the first NIC, so that the guest names it eth1; no
		// scripts: the tap is the user's, and qemu leaves it as it is.
		args = append(args, "-netdev", "tap,id=n1,ifname="+qemuOpt(c.ptpTap)+",script=no,downscript=no",
			"-device", "e1000,netdev=n1")
	}
	return append(args,
		"-serial", "file:"+c.serial,
		"-serial", "unix:"+qemuOpt(c.mctpSock)+",server=on,wait=off",
		"-display", "none", "-monitor", "none",
	), nil
}

// arm64Args boots the arm64 image on qemu's virt machine the way a board
// with UEFI boots it: the firmware starts the systemd-boot that gok puts
// on the boot partition, which loads the kernel and the root partition
// gokrazy's update last switched to (a -kernel boot would pin them). The
// disk and the NIC are virtio. virt has a single PL011, the console
// (ttyAMA0); mctpd's line is a virtio console port (hvc0 in the guest), a
// tty like a UART, whose host side is the unix socket qemu listens on.
func arm64Args(c vmConfig, bt bootTarget) []string {
	args := []string{"-name", "tickbox", "-nodefaults", "-M", "virt", "-m", "1024", "-smp", "2"}
	args = append(args, accelArgs(false)...)
	args = append(args,
		"-bios", qemuOpt(bt.efi),
		"-drive", "if=virtio,format=raw,file="+qemuOpt(c.image),
		"-nic", "user,model=virtio-net-pci,"+hostfwd(c))
	if c.ptpTap != "" {
		// The second NIC, eth1 in the guest, as on amd64.
		args = append(args, "-nic", "tap,model=virtio-net-pci,ifname="+qemuOpt(c.ptpTap)+",script=no,downscript=no")
	}
	return append(args,
		"-serial", "file:"+c.serial,
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=mctp,path="+qemuOpt(c.mctpSock)+",server=on,wait=off",
		"-device", "virtconsole,chardev=mctp",
		"-display", "none", "-monitor", "none",
	)
}

// probeArgs is the KVM probe's qemu command line: a small VM on a
// throwaway snapshot of the image, its console in a file.
func probeArgs(image, serial string) []string {
	return []string{"-nodefaults", "-accel", "kvm", "-cpu", "host", "-m", "512", "-smp", "1", "-snapshot",
		"-drive", "file=" + qemuOpt(image) + ",format=raw", "-nic", "none", "-serial", "file:" + serial, "-display", "none"}
}

// probe bounds: the probe qemu runs at most probeLimit, checked every
// probeEvery for probePolls times.
const (
	probeLimit = 30 * time.Second
	probeEvery = 500 * time.Millisecond
	probePolls = 50
)

var probeFailed = regexp.MustCompile(`(?i)error|failure`)

// kvmWorks boots the image with KVM for a few seconds and checks that the
// kernel gets as far as gokrazy's init. KVM on some hosts stops with an
// emulation failure, so /dev/kvm existing proves nothing. The answer is
// cached in BUILD/kvm-probe per host kernel and qemu version. qemu's
// output goes to BUILD/kvm-probe.serial.err, never to the terminal: a
// probe that aborts (as qemu does on some KVM failures) is just a "no".
func (e *env) kvmWorks(ctx context.Context, qemu, image, buildDir string) bool {
	if syscall.Access(e.host.kvm, 6) != nil { // R_OK|W_OK
		return false
	}
	release, _ := os.ReadFile(filepath.Join("/proc/sys/kernel/osrelease"))
	ver, _ := exec.CommandContext(ctx, qemu, "--version").Output()
	firstVer, _, _ := strings.Cut(string(ver), "\n")
	key := strings.TrimSpace(string(release)) + " " + firstVer
	cache := filepath.Join(buildDir, "kvm-probe")
	if b, err := os.ReadFile(cache); err == nil {
		if lines := strings.Split(string(b), "\n"); len(lines) >= 2 && lines[0] == key {
			return lines[1] == "yes"
		}
	}
	ok := e.probe(ctx, qemu, image, buildDir)
	answer := "no"
	if ok {
		answer = "yes"
	}
	if ctx.Err() == nil {
		os.WriteFile(cache, []byte(key+"\n"+answer+"\n"), 0o644)
	}
	return ok
}

// probe runs the probe VM; see kvmWorks.
func (e *env) probe(ctx context.Context, qemu, image, buildDir string) bool {
	serial := filepath.Join(buildDir, "kvm-probe.serial")
	os.Remove(serial)
	errLog, err := os.Create(serial + ".err")
	if err != nil {
		return false
	}
	defer errLog.Close()
	pctx, cancel := context.WithTimeout(ctx, probeLimit)
	defer cancel()
	cmd := exec.CommandContext(pctx, qemu, probeArgs(image, serial)...)
	cmd.Stdout, cmd.Stderr = errLog, errLog
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(errLog, "starting %s: %v\n", qemu, err)
		return false
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	ok := false
	for i := 0; i < probePolls; i++ {
		if b, _ := os.ReadFile(serial); bytes.Contains(b, []byte("gokrazy build timestamp")) {
			ok = true
			break
		}
		// qemu reports a KVM failure (e.g. "emulation failure") and
		// pauses instead of exiting: stop waiting as soon as it says so.
		if b, _ := os.ReadFile(serial + ".err"); probeFailed.Match(b) {
			break
		}
		select {
		case <-exited:
			i = probePolls
		case <-pctx.Done():
			i = probePolls
		case <-time.After(probeEvery):
		}
	}
	cancel() // kills the probe, if it still runs
	<-exited
	return ok
}

// startQemu starts the VM in its own process group, so that a Ctrl-C on
// the terminal reaches this program (which then shuts the VM down and says
// so) rather than qemu directly. Pdeathsig stops qemu should this program
// be killed outright; it fires when the starting thread ends, so the
// goroutine that starts and waits for qemu keeps its thread.
func startQemu(qemu string, args []string, logFile *os.File) (pid int, done <-chan error, err error) {
	started := make(chan error, 1)
	waited := make(chan error, 1)
	var cmd *exec.Cmd
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd = exec.Command(qemu, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, waited, nil
}

// oneLine is a log file as one line, for an error message.
func oneLine(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\n", " "))
}

// bootCmd is "tickbox-image boot": a built image, with the password and
// key of its build.
func (e *env) bootCmd(ctx context.Context, o *options) error {
	img := o.image
	if img == "" {
		img = defaultImage(o)
	}
	if _, err := os.Stat(img); err != nil {
		return fail("%s: no image there (build one with tickbox-image build): %w", img, err)
	}
	if err := e.checkBootHost(ctx, o); err != nil {
		return err
	}
	c := &creds{}
	var err error
	if c.password, c.passwordFile, err = e.password(o, false); err != nil {
		return err
	}
	if c.keys, c.sshIdentity, err = e.sshKeys(ctx, o, false); err != nil {
		return err
	}
	return e.boot(ctx, o, img, c)
}

// boot runs the image in qemu, waits for the web UI, starts breakglass,
// prints how to reach the VM, and then waits: a signal shuts the VM down
// and ends the boot successfully; qemu ending by itself ends it too.
func (e *env) boot(ctx context.Context, o *options, img string, c *creds) error {
	bt, _ := bootTargetOf(o.target)
	kvm := bt.kvm && (o.accel == "kvm" || o.accel == "auto" && e.kvmWorks(ctx, o.qemu, img, o.buildDir))
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	cfg := vmConfig{target: o.target, image: img, kvm: kvm, httpPort: o.httpPort, sshPort: o.sshPort,
		statusPort: o.statusPort, serial: filepath.Join(o.buildDir, "serial.log"), mctpSock: mctpSock(o.buildDir),
		ptpTap: o.ptpTap}
	args, err := qemuArgs(cfg)
	if err != nil {
		return fail("%w", err)
	}
	qemuLog := filepath.Join(o.buildDir, "qemu.log")
	logFile, err := os.Create(qemuLog)
	if err != nil {
		return fail("creating %s: %w", qemuLog, err)
	}
	defer logFile.Close()
	e.sayf("booting %s in qemu (%s); serial console log: %s", img, strings.Join(accelArgs(kvm), " "), cfg.serial)
	start := time.Now()
	pid, done, err := startQemu(o.qemu, args, logFile)
	if err != nil {
		return fail("starting %s: %w", o.qemu, err)
	}
	// stop ends qemu, politely first.
	stop := func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-done
		}
	}

	web := gokrazyweb.New("http://127.0.0.1:"+strconv.Itoa(o.httpPort), c.password)
	deadline := start.Add(o.bootTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		up := web.Up(rctx)
		cancel()
		if up == nil {
			break
		}
		select {
		case err := <-done:
			return fail("qemu exited: %s (%v)", oneLine(qemuLog), err)
		case <-ctx.Done():
			stop()
			return context.Cause(ctx)
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			stop()
			return fail("the web UI did not answer within %d s (serial log: %s)", int(o.bootTimeout/time.Second), cfg.serial)
		}
	}
	bootSecs := int(time.Since(start).Seconds())

	// breakglass does not start on boot: start it through the web UI.
	breakglass := "started"
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = web.StartBreakglass(bctx)
	cancel()
	switch {
	case errors.Is(err, gokrazyweb.ErrNoXSRFToken):
		breakglass = "not started (no form token on /status?path=" + gokrazyweb.BreakglassPath + ")"
	case errors.Is(err, gokrazyweb.ErrRestart):
		breakglass = "not started (POST /restart failed)"
	case err != nil:
		breakglass = "not started (" + err.Error() + ")"
	}
	fmt.Fprint(e.stdout, upMessage(o, c, bootSecs, breakglass))

	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return fail("qemu exited with status %d: %s", ee.ExitCode(), oneLine(qemuLog))
		}
		if err != nil {
			return fail("qemu ended: %v: %s", err, oneLine(qemuLog))
		}
		e.sayf("the VM has shut down")
		return nil
	case <-ctx.Done():
		fmt.Fprintln(e.stdout)
		e.sayf("shutting the VM down")
		stop()
		e.sayf("the VM is off")
		return nil
	}
}

// upMessage is what the user sees once the web UI answers.
func upMessage(o *options, c *creds, bootSecs int, breakglass string) string {
	ssh := fmt.Sprintf("ssh -p %d -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null", o.sshPort)
	if c.sshIdentity != "" {
		ssh += " -i " + c.sshIdentity
	}
	ssh += " root@127.0.0.1"
	sock := mctpSock(o.buildDir)
	bt, _ := bootTargetOf(o.target)
	return fmt.Sprintf(`
tickbox is up: the web UI answered %d s after qemu started.
  web UI:     http://127.0.0.1:%d/  (user gokrazy)
  status:     http://127.0.0.1:%d/  (the hub's page, same user and password;
              /metrics for Prometheus)
  password:   %s  (from %s)
  ssh:        %s
              breakglass %s; try: %s /user/ctl -s ptpd instances-get
  serial log: %s
  mctp:       %s is the VM's %s (mctpd, EID 8); attach a host mctpd with
              socat pty,raw,echo=0,link=/tmp/tb-mctp unix-connect:%s &
              mctpd -e 9 -demux mctp-host -kea '' serial /tmp/tb-mctp &
              mctp -demux mctp-host ctrl get-eid -eid 8
Press Ctrl-C to shut the VM down.
`, bootSecs, o.httpPort, o.statusPort, c.password, c.passwordFile, ssh, breakglass, ssh,
		filepath.Join(o.buildDir, "serial.log"), sock, bt.mctpTTY, sock)
}
