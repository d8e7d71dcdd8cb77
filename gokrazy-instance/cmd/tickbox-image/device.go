package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkDevice refuses to write anything but a whole, idle block device
// that can hold need bytes: it must exist and be a block device, must not
// hold the root file system, must have nothing mounted and no swap on it
// (itself or any partition of it), must be writable and big enough.
func (h host) checkDevice(device string, need int64) error {
	fi, err := os.Stat(device)
	if errors.Is(err, fs.ErrNotExist) {
		return fail("%s: no such device", device)
	}
	if err != nil {
		return fail("%s: %w", device, err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return fail("%s: not a block device", device)
	}
	real, err := filepath.EvalSymlinks(device)
	if err != nil {
		return fail("%s: %w", device, err)
	}
	name := filepath.Base(real)
	disk, err := h.diskOf(name)
	if err != nil {
		return fail("%s: cannot find it in %s: %w", device, filepath.Join(h.sysfs, "class/block"), err)
	}

	// The root file system's device, from its device number.
	var st syscall.Stat_t
	if err := syscall.Stat(h.root, &st); err == nil {
		devNo := fmt.Sprintf("%d:%d", major(st.Dev), minor(st.Dev))
		if sys, err := filepath.EvalSymlinks(filepath.Join(h.sysfs, "dev/block", devNo)); err == nil {
			rootName := filepath.Base(sys)
			if rootDisk, _ := h.diskOf(rootName); rootDisk == disk || rootName == name {
				return fail("%s holds the root file system /; refusing to overwrite it", device)
			}
		}
	}

	// onDevice: a /dev path that is the device or one of its partitions.
	onDevice := func(src string) bool {
		if !strings.HasPrefix(src, "/dev/") {
			return false
		}
		dev, err := filepath.EvalSymlinks(src)
		if err != nil {
			return false
		}
		if fi, err := os.Stat(dev); err != nil || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
			return false
		}
		if dev == real {
			return true
		}
		d, err := h.diskOf(filepath.Base(dev))
		return err == nil && d == name
	}
	mounts, err := readTable(h.mounts, 0)
	if err != nil {
		return fail("reading the mount table: %w", err)
	}
	for _, f := range mounts {
		if len(f) < 2 || !onDevice(f[0]) {
			continue
		}
		mnt := unescapeMount(f[1])
		if mnt == "/" {
			return fail("%s holds the root file system /; refusing to overwrite it", device)
		}
		return fail("%s is mounted (%s on %s); unmount it first", device, f[0], mnt)
	}
	swaps, err := readTable(h.swaps, 1)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail("reading the swap table: %w", err)
	}
	for _, f := range swaps {
		if onDevice(f[0]) {
			return fail("%s is in use as swap (%s); refusing to overwrite it", device, f[0])
		}
	}
	if syscall.Access(device, 2) != nil { // W_OK
		return fail("%s: not writable (run as root)", device)
	}
	sectors, err := os.ReadFile(filepath.Join(h.sysfs, "class/block", name, "size"))
	if err != nil {
		return fail("%s: reading its size: %w", device, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(sectors)), 10, 64)
	if err != nil {
		return fail("%s: reading its size: %w", device, err)
	}
	if bytes := n * 512; bytes < need {
		return fail("%s holds %d bytes, the image needs %d (see --size)", device, bytes, need)
	}
	return nil
}

// diskOf is the whole disk a block device (a sysfs name such as sda1)
// belongs to: its parent in sysfs when it is a partition, else itself.
func (h host) diskOf(name string) (string, error) {
	sys, err := filepath.EvalSymlinks(filepath.Join(h.sysfs, "class/block", name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return filepath.Base(filepath.Dir(sys)), nil
	}
	return filepath.Base(sys), nil
}

// readTable reads a whitespace-separated table such as /proc/mounts,
// skipping skip header lines.
func readTable(path string, skip int) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		if i < skip {
			continue
		}
		if fields := strings.Fields(sc.Text()); len(fields) > 0 {
			rows = append(rows, fields)
		}
	}
	return rows, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/mounts.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func major(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func minor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }

// writeImage copies the image onto the device and flushes it: the
// device's own fsync, then a sync of everything, as dd conv=fsync and sync
// did. O_EXCL on a block device fails while the kernel holds it (mounted,
// swap, a device-mapper member): a last guard after the checks.
func writeImage(ctx context.Context, image, device string) (int64, error) {
	in, err := os.Open(image)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(device, os.O_WRONLY|syscall.O_EXCL, 0)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 4<<20)
	var n int64
	for {
		if err := context.Cause(ctx); ctx.Err() != nil {
			out.Close()
			return n, err
		}
		r, rerr := in.Read(buf)
		if r > 0 {
			w, werr := out.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				out.Close()
				return n, werr
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return n, rerr
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return n, err
	}
	if err := out.Close(); err != nil {
		return n, err
	}
	syscall.Sync()
	return n, nil
}
