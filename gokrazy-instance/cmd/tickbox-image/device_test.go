package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestCheckDevicePathKinds: the refusals that are about what kind of path
// was given need no device.
func TestCheckDevicePathKinds(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("x"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(regular, link)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "none"), filepath.Join(dir, "none") + ": no such device"},
		{regular, regular + ": not a block device"},
		{link, link + ": not a block device"},
		{dir, dir + ": not a block device"},
		{"/dev/null", "/dev/null: not a block device"},
	} {
		err := realHost().checkDevice(tc.path, 1)
		if err == nil || err.Error() != tc.want || cli.Code(err, 0) != 1 {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
	}
}

// TestCheckDeviceTables runs the checks on a real (loop) block device
// against mount and swap tables written by the test, so that each refusal
// is seen without mounting anything or touching the host's swap.
func TestCheckDeviceTables(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	loop := testutil.LoopDevice(t, size)
	dir := t.TempDir()
	table := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noMounts := table("mounts-none", "proc /proc proc rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n")
	noSwaps := table("swaps-none", "Filename\tType\tSize\tUsed\tPriority\n")
	// A symlink to the device, as /dev/disk/by-id/... names are.
	alias := filepath.Join(dir, "alias")
	os.Symlink(loop, alias)

	for _, tc := range []struct {
		name          string
		device        string
		mounts, swaps string
		need          int64
		want          string // "" for accepted
	}{
		{name: "idle and big enough", device: loop, mounts: noMounts, swaps: noSwaps, need: size},
		{name: "through a symlink", device: alias, mounts: noMounts, swaps: noSwaps, need: size},
		{name: "too small", device: loop, mounts: noMounts, swaps: noSwaps, need: size + 1,
			want: fmt.Sprintf("%s holds %d bytes, the image needs %d (see --size)", loop, size, size+1)},
		{name: "mounted", device: loop, swaps: noSwaps, need: 1,
			mounts: table("mounts-m", loop+` /media/my\040card ext4 rw 0 0`+"\n"),
			want:   loop + " is mounted (" + loop + " on /media/my card); unmount it first"},
		// Only /dev block devices count as a mount's device.
		{name: "mount sources that are no block device", device: loop, swaps: noSwaps, need: 1,
			mounts: table("mounts-o", alias+" /mnt ext4 rw 0 0\n/dev/null /n none rw 0 0\n/dev/tickbox-none /x ext4 rw 0 0\n")},
		{name: "mounted on /", device: alias, swaps: noSwaps, need: 1,
			mounts: table("mounts-r", loop+" / ext4 rw 0 0\n"),
			want:   alias + " holds the root file system /; refusing to overwrite it"},
		{name: "swap", device: loop, mounts: noMounts, need: 1,
			swaps: table("swaps-s", "Filename\tType\tSize\tUsed\tPriority\n"+loop+"\tpartition\t65532\t0\t-2\n"),
			want:  loop + " is in use as swap (" + loop + "); refusing to overwrite it"},
		{name: "swap file elsewhere", device: loop, mounts: noMounts, need: 1,
			swaps: table("swaps-f", "Filename\tType\tSize\tUsed\tPriority\n/swapfile\tfile\t65532\t0\t-2\n")},
		{name: "no swap table", device: loop, mounts: noMounts, swaps: filepath.Join(dir, "no-swaps"), need: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := realHost()
			h.mounts, h.swaps = tc.mounts, tc.swaps
			err := h.checkDevice(tc.device, tc.need)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Errorf("checkDevice(%s): %v, want %q", tc.device, err, tc.want)
			}
		})
	}
}

// TestCheckDeviceRootAndMount mounts a file system on a loop device: it is
// refused as mounted, and as the root file system when it stands in for /.
func TestCheckDeviceRootAndMount(t *testing.T) {
	t.Parallel()
	loop := testutil.LoopDevice(t, 64<<20)
	mkfs := testutil.NeedTool(t, "mkfs.ext4", "e2fsprogs")
	if out, err := exec.Command(mkfs, "-q", "-F", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		testutil.Require(t, fmt.Sprintf("cannot mount a loop device here: %v\n%s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	if err := realHost().checkDevice(loop, 1); err == nil || !strings.Contains(err.Error(), " is mounted ("+loop+" on "+mnt+"); unmount it first") {
		t.Errorf("mounted: %v", err)
	}
	h := realHost()
	h.root = mnt
	if err := h.checkDevice(loop, 1); err == nil || err.Error() != loop+" holds the root file system /; refusing to overwrite it" {
		t.Errorf("as the root: %v", err)
	}
	// The write's own guard: O_EXCL fails on a mounted block device.
	img := filepath.Join(t.TempDir(), "img")
	os.WriteFile(img, []byte("image"), 0o644)
	if _, err := writeImage(context.Background(), img, loop); err == nil {
		t.Error("writeImage wrote a mounted device")
	}
}

// TestWriteImage writes an image that is not a multiple of the buffer to
// a loop device and reads it back.
func TestWriteImage(t *testing.T) {
	t.Parallel()
	loop := testutil.LoopDevice(t, 16<<20)
	img := filepath.Join(t.TempDir(), "img")
	data := make([]byte, 9<<20+123)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e, out, _ := testEnv("tickbox-image", nil, "")
	if err := e.write(context.Background(), img, loop); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("tickbox-image: writing %s to %s\ntickbox-image: wrote %d bytes to %s and synced\n", img, loop, len(data), loop)
	if out.String() != want {
		t.Errorf("output %q, want %q", out, want)
	}
	f, err := os.Open(loop)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the device does not hold the image")
	}
}

// TestWriteCmd: write refuses a missing image, and a device too small for
// the image it has, before asking anything.
func TestWriteCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, _, errb := testEnv("tickbox-image", nil, "")
	err := e.run(context.Background(), []string{"write", "--build-dir", dir, "--repo", repoRoot(t), "/dev/null"})
	if want := filepath.Join(dir, "tickbox-amd64.img") + ": no image there"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("no image: %v, want %q", err, want)
	}
	loop := testutil.LoopDevice(t, 8<<20)
	img := filepath.Join(dir, "big.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 8<<20+1)
	err = e.run(context.Background(), []string{"write", "--image", img, loop})
	if want := fmt.Sprintf("%s holds %d bytes, the image needs %d", loop, 8<<20, 8<<20+1); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("too small: %v, want %q", err, want)
	}
	if errb.Len() != 0 {
		t.Errorf("asked anyway: %q", errb)
	}
}

func TestUnescapeMount(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`/media/my\040card`, "/media/my card"},
		{`/a\011b\012c\134d`, "/a\tb\nc\\d"},
		{`/plain`, "/plain"},
		{`/end\04`, `/end\04`},
		{`/bad\09x`, `/bad\09x`},
	} {
		if got := unescapeMount(tc.in); got != tc.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMajorMinor(t *testing.T) {
	for _, dev := range []uint64{unix.Mkdev(8, 1), unix.Mkdev(259, 3), unix.Mkdev(7, 1000), unix.Mkdev(4095, 1<<19)} {
		if major(dev) != uint64(unix.Major(dev)) || minor(dev) != uint64(unix.Minor(dev)) {
			t.Errorf("%#x: %d:%d, want %d:%d", dev, major(dev), minor(dev), unix.Major(dev), unix.Minor(dev))
		}
	}
}
