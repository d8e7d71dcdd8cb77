package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Require stops a test that cannot run here, saying why (nothing happens
// when why is empty). Outside CI the test is skipped with a line on stderr
// that stands out in `go test` output; with CI=true it fails instead,
// because CI installs every dependency and runs as root, so a test that
// cannot run there is a broken set-up, not a reason to go green.
func Require(t testing.TB, why string) {
	t.Helper()
	if why == "" {
		return
	}
	msg := fmt.Sprintf("%s cannot run: %s", t.Name(), why)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: integration tests must run)")
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s ***\n\n", msg)
	t.Skip(msg)
}

// NeedRoot requires root, saying what for ("create a network namespace").
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, "needs root to "+what)
	}
}

// NeedTool requires the program name and returns its path; pkg names
// the Debian package ./test.sh installs it from. Besides PATH it looks in
// /usr/sbin and /sbin, where Debian puts daemons and admin tools (chronyd,
// kea-ctrl-agent, mkfs.ext4) that are not on a normal user's PATH.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if fi, serr := os.Stat(filepath.Join(dir, name)); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return filepath.Join(dir, name)
		}
	}
	Require(t, fmt.Sprintf("%s not installed (./test.sh installs %s): %v", name, pkg, err))
	return ""
}

// LoopDevice attaches a sparse file of size bytes to a free loop device
// and returns the device's path; it is detached when the test ends. It
// needs root and losetup; where the kernel has no loop devices the test
// is skipped, or fails in CI (Require).
func LoopDevice(t testing.TB, size int64) string {
	t.Helper()
	NeedRoot(t, "attach a loop device")
	losetup := NeedTool(t, "losetup", "mount")
	backing := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "--find", "--show", backing).Output()
	if err != nil {
		Require(t, fmt.Sprintf("no loop devices here: %v", err))
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "-d", loop).Run() })
	return loop
}
