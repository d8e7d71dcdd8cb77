package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

func TestQemuArgs(t *testing.T) {
	base := func(accel ...string) []string {
		return append([]string{"-name", "tickbox", "-nodefaults", "-m", "1024", "-smp", "2"}, accel...)
	}
	for _, tc := range []struct {
		name string
		cfg  vmConfig
		want []string
		err  string
	}{
		{name: "amd64 TCG, default ports",
			cfg: vmConfig{target: "amd64", image: "/b/tickbox-amd64.img", httpPort: 8080, sshPort: 2222, statusPort: 8081, serial: "/b/serial.log", mctpSock: "/b/mctp-serial.sock"},
			want: append(base("-accel", "tcg", "-cpu", "max"),
				"-drive", "file=/b/tickbox-amd64.img,format=raw",
				"-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8081-:8080",
				"-device", "e1000,netdev=n0", "-serial", "file:/b/serial.log",
				"-serial", "unix:/b/mctp-serial.sock,server=on,wait=off", "-display", "none", "-monitor", "none")},
		{name: "amd64 KVM, other ports",
			cfg: vmConfig{target: "amd64", image: "/i.img", kvm: true, httpPort: 18080, sshPort: 12222, statusPort: 18081, serial: "/s", mctpSock: "/m"},
			want: append(base("-accel", "kvm", "-cpu", "host"),
				"-drive", "file=/i.img,format=raw",
				"-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=tcp:127.0.0.1:12222-:22,hostfwd=tcp:127.0.0.1:18081-:8080",
				"-device", "e1000,netdev=n0", "-serial", "file:/s",
				"-serial", "unix:/m,server=on,wait=off", "-display", "none", "-monitor", "none")},
		{name: "commas in paths are doubled",
			cfg: vmConfig{target: "amd64", image: "/a,b/i.img", httpPort: 1, sshPort: 65535, statusPort: 2, serial: "/a,b/s", mctpSock: "/a,b/m.sock"},
			want: append(base("-accel", "tcg", "-cpu", "max"),
				"-drive", "file=/a,,b/i.img,format=raw",
				"-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:1-:80,hostfwd=tcp:127.0.0.1:65535-:22,hostfwd=tcp:127.0.0.1:2-:8080",
				"-device", "e1000,netdev=n0", "-serial", "file:/a,b/s",
				"-serial", "unix:/a,,b/m.sock,server=on,wait=off", "-display", "none", "-monitor", "none")},
		{name: "a second NIC on a PTP tap",
			cfg: vmConfig{target: "amd64", image: "/i.img", httpPort: 1, sshPort: 2, statusPort: 3, serial: "/s", mctpSock: "/m", ptpTap: "tbptp0"},
			want: append(base("-accel", "tcg", "-cpu", "max"),
				"-drive", "file=/i.img,format=raw",
				"-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:1-:80,hostfwd=tcp:127.0.0.1:2-:22,hostfwd=tcp:127.0.0.1:3-:8080",
				"-device", "e1000,netdev=n0",
				"-netdev", "tap,id=n1,ifname=tbptp0,script=no,downscript=no", "-device", "e1000,netdev=n1",
				"-serial", "file:/s",
				"-serial", "unix:/m,server=on,wait=off", "-display", "none", "-monitor", "none")},
		{name: "arm64 with a second NIC on a PTP tap",
			cfg: vmConfig{target: "arm64", image: "/i.img", httpPort: 1, sshPort: 2, statusPort: 3, serial: "/s", mctpSock: "/m", ptpTap: "tbptp0"},
			want: []string{"-name", "tickbox", "-nodefaults", "-M", "virt", "-m", "1024", "-smp", "2", "-accel", "tcg", "-cpu", "max",
				"-bios", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
				"-drive", "if=virtio,format=raw,file=/i.img",
				"-nic", "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:1-:80,hostfwd=tcp:127.0.0.1:2-:22,hostfwd=tcp:127.0.0.1:3-:8080",
				"-nic", "tap,model=virtio-net-pci,ifname=tbptp0,script=no,downscript=no",
				"-serial", "file:/s",
				"-device", "virtio-serial-pci", "-chardev", "socket,id=mctp,path=/m,server=on,wait=off",
				"-device", "virtconsole,chardev=mctp", "-display", "none", "-monitor", "none"}},
		{name: "arm64: virt, UEFI, virtio disk, NIC and console port",
			cfg: vmConfig{target: "arm64", image: "/b/tickbox-arm64.img", httpPort: 8080, sshPort: 2222, statusPort: 8081, serial: "/b/serial.log", mctpSock: "/b/mctp-serial.sock"},
			want: []string{"-name", "tickbox", "-nodefaults", "-M", "virt", "-m", "1024", "-smp", "2", "-accel", "tcg", "-cpu", "max",
				"-bios", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
				"-drive", "if=virtio,format=raw,file=/b/tickbox-arm64.img",
				"-nic", "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8081-:8080",
				"-serial", "file:/b/serial.log",
				"-device", "virtio-serial-pci", "-chardev", "socket,id=mctp,path=/b/mctp-serial.sock,server=on,wait=off",
				"-device", "virtconsole,chardev=mctp", "-display", "none", "-monitor", "none"}},
		{name: "arm64 never KVM, commas doubled",
			cfg: vmConfig{target: "arm64", image: "/a,b/i.img", kvm: true, httpPort: 1, sshPort: 2, statusPort: 3, serial: "/a,b/s", mctpSock: "/a,b/m"},
			want: []string{"-name", "tickbox", "-nodefaults", "-M", "virt", "-m", "1024", "-smp", "2", "-accel", "tcg", "-cpu", "max",
				"-bios", "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
				"-drive", "if=virtio,format=raw,file=/a,,b/i.img",
				"-nic", "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:1-:80,hostfwd=tcp:127.0.0.1:2-:22,hostfwd=tcp:127.0.0.1:3-:8080",
				"-serial", "file:/a,b/s",
				"-device", "virtio-serial-pci", "-chardev", "socket,id=mctp,path=/a,,b/m,server=on,wait=off",
				"-device", "virtconsole,chardev=mctp", "-display", "none", "-monitor", "none"}},
		{name: "rpi4 does not boot in qemu", cfg: vmConfig{target: "rpi4", kvm: true}, err: "the rpi4 image does not boot in qemu (amd64 and arm64 do)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := qemuArgs(tc.cfg)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("qemu args\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	want := []string{"-nodefaults", "-accel", "kvm", "-cpu", "host", "-m", "512", "-smp", "1", "-snapshot",
		"-drive", "file=/x,,y.img,format=raw", "-nic", "none", "-serial", "file:/b/kvm-probe.serial", "-display", "none"}
	if got := probeArgs("/x,y.img", "/b/kvm-probe.serial"); !slices.Equal(got, want) {
		t.Errorf("probe args\n got %q\nwant %q", got, want)
	}
}

// fakeQemu writes a qemu stand-in: --version prints a version, anything
// else is recorded in DIR/calls and then runs body, with $serial set to
// the -serial file: path.
func fakeQemu(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "qemu")
	script := `#!/bin/sh
if [ "$1" = --version ]; then echo "QEMU emulator version 0.0.0 (fake)"; exit 0; fi
echo "$*" >>"` + filepath.Join(dir, "calls") + `"
serial=
for a in "$@"; do case $a in file:*) serial=${a#file:} ;; esac; done
` + body + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKVMProbe runs the probe against qemu stand-ins. Whatever the probe
// qemu does, aborting included, nothing reaches the program's own output:
// qemu's output is kept in BUILD/kvm-probe.serial.err.
func TestKVMProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string // the stand-in's behaviour
		noKVM   bool   // /dev/kvm is not usable
		want    bool
		errLog  string // in kvm-probe.serial.err
		maxTime time.Duration
	}{
		{name: "reaches gokrazy's init", body: `echo "gokrazy build timestamp 2026" >"$serial"; exec sleep 60`, want: true, maxTime: 20 * time.Second},
		{name: "aborts", body: `echo "qemu: fatal: KVM_RUN: Bad address" >&2; kill -ABRT $$`, errLog: "KVM_RUN: Bad address", maxTime: 20 * time.Second},
		{name: "reports an emulation failure and pauses", body: `echo "KVM internal error. Suberror: 1" >&2; echo "emulation failure" >&2; exec sleep 60`,
			errLog: "emulation failure", maxTime: 20 * time.Second},
		{name: "exits at once", body: `echo "qemu: could not open disk image" >&2; exit 1`, errLog: "could not open disk image", maxTime: 20 * time.Second},
		{name: "no usable /dev/kvm", noKVM: true, body: `exit 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			qemu := fakeQemu(t, dir, tc.body)
			e, out, errb := testEnv("flash.sh", nil, "")
			e.host.kvm = filepath.Join(dir, "kvm")
			if !tc.noKVM {
				os.WriteFile(e.host.kvm, nil, 0o666)
			}
			start := time.Now()
			if got := e.kvmWorks(context.Background(), qemu, "/b/i.img", dir); got != tc.want {
				t.Errorf("kvmWorks = %v, want %v", got, tc.want)
			}
			if tc.maxTime > 0 && time.Since(start) > tc.maxTime {
				t.Errorf("the probe took %s", time.Since(start))
			}
			if out.Len() != 0 || errb.Len() != 0 {
				t.Errorf("the probe printed: stdout %q stderr %q", out, errb)
			}
			calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
			if tc.noKVM {
				if len(calls) != 0 {
					t.Errorf("qemu ran without /dev/kvm: %s", calls)
				}
				return
			}
			if !strings.Contains(string(calls), "-accel kvm -cpu host") || strings.Count(string(calls), "\n") != 1 {
				t.Errorf("probe calls: %q", calls)
			}
			errLog, _ := os.ReadFile(filepath.Join(dir, "kvm-probe.serial.err"))
			if !strings.Contains(string(errLog), tc.errLog) {
				t.Errorf("kvm-probe.serial.err %q, want %q", errLog, tc.errLog)
			}
			// The answer is cached: asking again runs no qemu.
			if got := e.kvmWorks(context.Background(), qemu, "/b/i.img", dir); got != tc.want {
				t.Errorf("cached kvmWorks = %v, want %v", got, tc.want)
			}
			if again, _ := os.ReadFile(filepath.Join(dir, "calls")); string(again) != string(calls) {
				t.Errorf("the cached answer ran qemu again: %q", again)
			}
			cache, _ := os.ReadFile(filepath.Join(dir, "kvm-probe"))
			if lines := strings.Split(string(cache), "\n"); len(lines) < 2 || !strings.HasSuffix(lines[0], "QEMU emulator version 0.0.0 (fake)") {
				t.Errorf("cache %q", cache)
			}
		})
	}
}

// TestKVMProbeQuietProcess runs an aborting probe in a child process and
// reads the child's real stdout and stderr: a shell would have printed
// "Aborted" there, this program prints nothing.
func TestKVMProbeQuietProcess(t *testing.T) {
	if dir := os.Getenv("TICKBOX_IMAGE_PROBE_DIR"); dir != "" {
		// The child: probe with the process's own stdout and stderr.
		e := &env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, prog: "flash.sh", host: realHost()}
		e.host.kvm = filepath.Join(dir, "kvm")
		if e.kvmWorks(context.Background(), filepath.Join(dir, "qemu"), "/b/i.img", dir) {
			os.Exit(3)
		}
		return
	}
	dir := t.TempDir()
	fakeQemu(t, dir, `echo "qemu: fatal: KVM_RUN failed" >&2; kill -ABRT $$`)
	os.WriteFile(filepath.Join(dir, "kvm"), nil, 0o666)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKVMProbeQuietProcess$")
	cmd.Env = append(os.Environ(), "TICKBOX_IMAGE_PROBE_DIR="+dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout %q\nstderr %q", err, stdout.String(), stderr.String())
	}
	if stderr.Len() != 0 || strings.Contains(stdout.String(), "Abort") || strings.Contains(stdout.String(), "KVM_RUN") ||
		strings.TrimSpace(stdout.String()) != "PASS" {
		t.Errorf("the probe reached the terminal:\nstdout %q\nstderr %q", stdout.String(), stderr.String())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kvm-probe.serial.err")); !strings.Contains(string(b), "KVM_RUN failed") {
		t.Errorf("kvm-probe.serial.err %q", b)
	}
}

func TestUpMessage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		identity string
		status   string
		want     []string
	}{
		{name: "user's key", target: "amd64", status: "started", want: []string{
			"\ntickbox is up: the web UI answered 34 s after qemu started.\n",
			"  web UI:     http://127.0.0.1:18080/  (user gokrazy)\n",
			"  status:     http://127.0.0.1:18081/  (the hub's page, same user and password;\n",
			"  password:   pw  (from /b/http-password.txt)\n",
			"  ssh:        ssh -p 12222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1\n",
			"              breakglass started; try: ssh -p 12222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1 /user/ctl -s ptpd instances-get\n",
			"  serial log: /b/serial.log\n",
			"  mctp:       /b/mctp-serial.sock is the VM's ttyS1 (mctpd, EID 8); attach a host mctpd with\n",
			"              socat pty,raw,echo=0,link=/tmp/tb-mctp unix-connect:/b/mctp-serial.sock &\n",
			"Press Ctrl-C to shut the VM down.\n",
		}},
		{name: "arm64", target: "arm64", status: "started", want: []string{
			"  mctp:       /b/mctp-serial.sock is the VM's hvc0 (mctpd, EID 8); attach a host mctpd with\n",
		}},
		{name: "generated key", target: "amd64", identity: "/b/id_ed25519", status: "not started (POST /restart failed)", want: []string{
			"  ssh:        ssh -p 12222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i /b/id_ed25519 root@127.0.0.1\n",
			"breakglass not started (POST /restart failed); try:",
		}},
	} {
		o := &options{target: tc.target, httpPort: 18080, sshPort: 12222, statusPort: 18081, buildDir: "/b"}
		got := upMessage(o, &creds{password: "pw", passwordFile: "/b/http-password.txt", sshIdentity: tc.identity}, 34, tc.status)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: message lacks %q:\n%s", tc.name, w, got)
			}
		}
	}
}

// TestCheckBootHostQemu: the target's qemu and, for arm64, its UEFI
// firmware must be there; what is missing is named with the package to
// install (as a user, nothing is installed).
func TestCheckBootHostQemu(t *testing.T) {
	dir := t.TempDir()
	efi := filepath.Join(dir, "with-efi")
	if err := os.MkdirAll(filepath.Join(efi, "usr/share/qemu-efi-aarch64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(efi, "usr/share/qemu-efi-aarch64/QEMU_EFI.fd"), []byte("fd"), 0o644); err != nil {
		t.Fatal(err)
	}
	present, err := os.Executable() // any program that exists
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "no-such-qemu")
	for _, tc := range []struct {
		name, target, qemu, files string
		err                       string
	}{
		{name: "arm64, all there", target: "arm64", qemu: present, files: efi},
		{name: "arm64 without firmware", target: "arm64", qemu: present, files: filepath.Join(dir, "empty"),
			err: "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd (UEFI firmware for the arm64 VM) not found; install it with: sudo apt-get install -y qemu-efi-aarch64"},
		{name: "arm64 without either", target: "arm64", qemu: missing, files: filepath.Join(dir, "empty"),
			err: missing + " not found; install it with: sudo apt-get install -y qemu-system-arm qemu-efi-aarch64"},
		{name: "arm64 without qemu", target: "arm64", qemu: missing, files: efi,
			err: missing + " not found; install it with: sudo apt-get install -y qemu-system-arm"},
		{name: "amd64 needs no firmware", target: "amd64", qemu: present, files: filepath.Join(dir, "empty")},
		{name: "amd64 without qemu", target: "amd64", qemu: missing, files: efi,
			err: missing + " not found; install it with: sudo apt-get install -y qemu-system-x86"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv("flash.sh", nil, "")
			e.host.euid, e.host.files = 65534, tc.files
			o := &options{target: tc.target, qemu: tc.qemu, httpPort: testutil.FreePort(t), sshPort: testutil.FreePort(t), statusPort: testutil.FreePort(t), buildDir: dir}
			for o.sshPort == o.httpPort || o.statusPort == o.httpPort || o.statusPort == o.sshPort {
				o.sshPort, o.statusPort = testutil.FreePort(t), testutil.FreePort(t)
			}
			err := e.checkBootHost(context.Background(), o)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.err {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}
