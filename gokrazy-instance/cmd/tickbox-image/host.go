package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// host names the system tables the device checks and the KVM probe read;
// tests point them at files of their own.
type host struct {
	sysfs  string // /sys
	mounts string // /proc/mounts
	swaps  string // /proc/swaps
	root   string // the file system whose disk is never written: /
	kvm    string // /dev/kvm
	euid   int
	// files prefixes the paths of installed data files (the arm64 VM's
	// UEFI firmware): "" on the real host.
	files string
}

func realHost() host {
	return host{sysfs: "/sys", mounts: "/proc/mounts", swaps: "/proc/swaps", root: "/", kvm: "/dev/kvm", euid: os.Geteuid()}
}

// findTool looks a program up in PATH and then in the sbin directories a
// non-root PATH lacks (mkfs.ext4 lives in /usr/sbin on Debian).
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// portBusy reports whether something accepts connections on
// 127.0.0.1:port, where qemu would forward a guest port.
func portBusy(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// maxSockPath is the longest unix socket path (sun_path less its NUL).
const maxSockPath = 107

// checkBootHost runs the checks a boot needs before anything is built:
// both ports free and distinct, a usable mctp socket path, and qemu,
// which is installed with apt when missing and run as root.
func (e *env) checkBootHost(ctx context.Context, o *options) error {
	if portBusy(o.httpPort) {
		return fail("port 127.0.0.1:%d is busy (web UI); pick another with --http-port", o.httpPort)
	}
	if portBusy(o.sshPort) {
		return fail("port 127.0.0.1:%d is busy (ssh); pick another with --ssh-port", o.sshPort)
	}
	if portBusy(o.statusPort) {
		return fail("port 127.0.0.1:%d is busy (status page); pick another with --status-port", o.statusPort)
	}
	if o.httpPort == o.sshPort {
		return fail("--http-port and --ssh-port are both %d", o.httpPort)
	}
	if o.statusPort == o.httpPort || o.statusPort == o.sshPort {
		return fail("--status-port %d is also the web UI's or ssh's port", o.statusPort)
	}
	if sock := mctpSock(o.buildDir); len(sock) > maxSockPath {
		return fail("%s: longer than a unix socket path may be (%d bytes); use a shorter --build-dir", sock, maxSockPath)
	}
	bt, _ := bootTargetOf(o.target)
	var need []string
	_, qemuErr := exec.LookPath(o.qemu)
	if qemuErr != nil {
		need = append(need, bt.qemuPkg)
	}
	efi := bt.efi != "" && !nonEmpty(e.host.files+bt.efi)
	if efi {
		need = append(need, bt.efiPkg)
	}
	if len(need) == 0 {
		return nil
	}
	pkgs := strings.Join(need, " ")
	apt, aptErr := exec.LookPath("apt-get")
	if e.host.euid != 0 || aptErr != nil || qemuErr != nil && o.qemu != bt.qemu {
		if qemuErr != nil {
			return fail("%s not found; install it with: sudo apt-get install -y %s", o.qemu, pkgs)
		}
		return fail("%s (UEFI firmware for the %s VM) not found; install it with: sudo apt-get install -y %s", bt.efi, o.target, pkgs)
	}
	e.sayf("installing %s", pkgs)
	if err := e.runQuiet(ctx, apt, "update", "-qq"); err != nil {
		return fail("apt-get update failed: %w", err)
	}
	if err := e.runQuiet(ctx, apt, append([]string{"install", "-y", "-qq"}, need...)...); err != nil {
		return fail("installing %s failed: %w", pkgs, err)
	}
	return nil
}

// runQuiet runs apt-get non-interactively; its errors reach stderr.
func (e *env) runQuiet(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout = io.Discard
	cmd.Stderr = e.stderr
	return cmd.Run()
}

func mctpSock(buildDir string) string { return filepath.Join(buildDir, "mctp-serial.sock") }
