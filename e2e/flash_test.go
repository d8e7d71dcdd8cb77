package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// repoRoot is the checkout flash.sh lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "flash.sh")); err != nil {
		t.Fatalf("flash.sh not found: %v", err)
	}
	return root
}

type flashResult struct {
	code   int
	stdout string
	stderr string
}

// runFlash runs flash.sh with args and extra environment, stdin closed.
func runFlash(t *testing.T, ctx context.Context, cred *syscall.Credential, env []string, args ...string) flashResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "flash.sh"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil
	// Its own process group, so that a timeout also stops anything it
	// started (such as qemu, should a refusal be missed).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running flash.sh: %v", err)
	}
	t.Logf("flash.sh %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return flashResult{code, stdout.String(), stderr.String()}
}

// noFilesUnder fails if dir holds any file (image, partial image, config).
func noFilesUnder(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("flash.sh left %s behind", p)
		}
		return nil
	})
}

// TestFlashRefusals runs flash.sh with inputs it must reject before it
// builds or writes anything: one clear error line, non-zero exit, and no
// file left in the output or build directory.
func TestFlashRefusals(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	free, free2 := strconv.Itoa(testutil.FreePort(t)), strconv.Itoa(testutil.FreePort(t))
	for free2 == free {
		free2 = strconv.Itoa(testutil.FreePort(t))
	}
	regular := filepath.Join(t.TempDir(), "not-a-device")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--frobnicate"}, "unknown option --frobnicate"},
		{"unknown short flag", []string{"-x"}, "unknown option -x"},
		{"flag without value", []string{"--target"}, "--target needs a value"},
		{"unknown target", []string{"--target", "mips", "--image", "IMG"}, "unknown target 'mips'"},
		{"bad port", []string{"--http-port", "99999"}, "invalid port '99999'"},
		{"rpi4 in qemu", []string{"--target", "rpi4"}, "the rpi4 image does not boot in qemu (amd64 and arm64 do)"},
		{"arm64 with KVM", []string{"--target", "arm64", "--accel", "kvm"}, "--accel kvm: the arm64 image boots with TCG only"},
		{"image and device", []string{"--image", "IMG", "/dev/null"}, "not both"},
		{"missing device", []string{"--target", "rpi4", "--yes", "/dev/tickbox-no-such-disk"}, "/dev/tickbox-no-such-disk: no such device"},
		{"not a block device", []string{"--target", "rpi4", "--yes", regular}, "not a block device"},
		{"character device", []string{"--yes", "/dev/null"}, "/dev/null: not a block device"},
		{"busy web UI port", []string{"--http-port", busyPort, "--ssh-port", free}, "port 127.0.0.1:" + busyPort + " is busy (web UI)"},
		{"busy ssh port", []string{"--http-port", free, "--ssh-port", busyPort}, "port 127.0.0.1:" + busyPort + " is busy (ssh)"},
		{"busy status port", []string{"--http-port", free, "--ssh-port", free2, "--status-port", busyPort}, "port 127.0.0.1:" + busyPort + " is busy (status page)"},
		{"status port shared", []string{"--http-port", free, "--ssh-port", free2, "--status-port", free}, "--status-port " + free + " is also the web UI's or ssh's port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"--build-dir", filepath.Join(dir, "build")}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "IMG", filepath.Join(dir, "out.img")))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := runFlash(t, ctx, nil, nil, args...)
			checkRefusal(t, r, tc.want)
			noFilesUnder(t, dir)
		})
	}
}

// checkRefusal: exit 1 and stderr is exactly one "flash.sh: ..." line
// containing want.
func checkRefusal(t *testing.T, r flashResult, want string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit code %d, want 1", r.code)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "flash.sh: ") || !strings.Contains(last, want) {
		t.Errorf("last stderr line %q, want flash.sh: ...%s...", last, want)
	}
}

// TestFlashRefusesRootDevice: the disk holding / is never written.
func TestFlashRefusesRootDevice(t *testing.T) {
	t.Parallel()
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	sys, err := filepath.EvalSymlinks("/sys/dev/block/" + strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10))
	if err != nil {
		t.Skipf("/ is not on a block device here (%v)", err)
	}
	dev := "/dev/" + filepath.Base(sys)
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("%s: %v", dev, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	r := runFlash(t, ctx, nil, nil, "--build-dir", filepath.Join(dir, "build"), "--yes", dev)
	checkRefusal(t, r, "holds the root file system /")
	noFilesUnder(t, dir)
}

// TestFlashRefusesMountedDevice mounts a loop device and checks that
// flash.sh refuses it, then that an unmounted one is only written after
// confirmation.
func TestFlashRefusesMountedDevice(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t, "attach and mount a loop device")
	mkfs := testutil.NeedTool(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	loop := testutil.LoopDevice(t, 64<<20)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	build := filepath.Join(dir, "build")

	// Too small for the image: refused before anything is built.
	r := runFlash(t, ctx, nil, nil, "--build-dir", build, "--yes", loop)
	checkRefusal(t, r, "the image needs")

	if out, err := exec.Command(mkfs, "-q", "-F", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		testutil.Require(t, fmt.Sprintf("cannot mount a loop device here: %v\n%s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	r = runFlash(t, ctx, nil, nil, "--build-dir", build, "--yes", loop)
	checkRefusal(t, r, "is mounted")
	noFilesUnder(t, build)
}

// TestFlashNotConfirmed: without --yes and without a "y" answer, nothing is
// built or written.
func TestFlashNotConfirmed(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t, "attach a loop device")
	dir := t.TempDir()
	loop := testutil.LoopDevice(t, 1258299392)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	build := filepath.Join(dir, "build")
	r := runFlash(t, ctx, nil, nil, "--build-dir", build, loop)
	checkRefusal(t, r, "not confirmed; nothing written")
	noFilesUnder(t, build)
}

// TestFlashQemuMissingWithoutRoot runs flash.sh as nobody with a PATH that
// has everything but qemu: it must print the install command and stop.
func TestFlashQemuMissingWithoutRoot(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t, "switch to uid 65534")
	// A PATH directory with links to every program except qemu.
	bin, err := os.MkdirTemp("", "tbpath")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	os.Chmod(bin, 0o755)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	goBin, _ = filepath.EvalSymlinks(goBin)
	for _, d := range []string{"/usr/local/bin", "/usr/bin", "/bin", filepath.Dir(goBin)} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "qemu") {
				continue
			}
			os.Symlink(filepath.Join(d, e.Name()), filepath.Join(bin, e.Name())) // first one wins
		}
	}
	// Somewhere nobody may write, so that any attempt to build would fail
	// loudly rather than pass unnoticed.
	dir, err := os.MkdirTemp("", "tbnobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	// flash.sh compiles its Go program first; the program, nobody's Go
	// build cache and the go command's own counters belong in nobody's
	// cache and config directories, kept apart from dir.
	cache, err := os.MkdirTemp("", "tbcache")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cache) })
	os.Chmod(cache, 0o777)
	// A cold compile of the program as nobody takes 20 s on a quiet
	// 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := runFlash(t, ctx, &syscall.Credential{Uid: 65534, Gid: 65534},
		[]string{"PATH=" + bin, "HOME=" + dir,
			"XDG_CACHE_HOME=" + filepath.Join(cache, "cache"), "XDG_CONFIG_HOME=" + filepath.Join(cache, "config")},
		"--build-dir", filepath.Join(dir, "build"), "--http-port", strconv.Itoa(testutil.FreePort(t)), "--ssh-port", strconv.Itoa(testutil.FreePort(t)))
	checkRefusal(t, r, "qemu-system-x86_64 not found; install it with: sudo apt-get install -y qemu-system-x86")
	noFilesUnder(t, dir)
}

// TestFlashFailedBuild adds a package that does not compile through the
// TICKBOX_EXTRA_PACKAGES hook: flash.sh must report the failed build and
// leave neither the image nor a partial image behind.
func TestFlashFailedBuild(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds most of an image")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "out", "tickbox.img")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := runFlash(t, ctx, nil,
		[]string{"TICKBOX_EXTRA_PACKAGES=github.com/tickbox-fw/tickbox/e2e/testdata/broken"},
		"--build-dir", filepath.Join(dir, "build"), "--image", img,
		"--ssh-key", writeTestKey(t, dir))
	checkRefusal(t, r, "image build failed")
	if !strings.Contains(r.stderr, "not a number") {
		t.Errorf("stderr does not show the compiler error")
	}
	noFilesUnder(t, filepath.Join(dir, "out"))
}

// writeTestKey writes a throwaway ed25519 key pair and returns the public key path.
func writeTestKey(t *testing.T, dir string) string {
	t.Helper()
	key := filepath.Join(dir, "id_test")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tickbox-e2e", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return key + ".pub"
}
