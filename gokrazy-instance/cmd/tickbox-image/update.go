package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/gokrazyweb"
)

// An update pushes a full image to a running box with gokrazy's update
// protocol (internal/gokrazyweb speaks it), as gok's update does, but
// from the checked image file: GET /update/features, PUT /update/root (root A's SquashFS goes to the
// box's inactive root partition), PUT /update/boot (the FAT file
// system), PUT /update/mbr (the boot code in the first 446 bytes, which
// on a PC names the kernel's sectors), POST /update/switch (the boot
// partition's command line now names the other root partition), then
// POST /reboot. Each PUT is answered with a hash of what the box wrote,
// which is compared with what was sent. Everything that can
// refuse the update (the image, the password, the box's machine and
// partition UUIDs) is checked before the first PUT.

// defaultUpdateImage is where an update builds its image: not the file a
// local VM boots from.
func defaultUpdateImage(o *options) string {
	return filepath.Join(o.buildDir, "tickbox-"+o.target+"-update.img")
}

// mbrBootCode is what an update sends of the image's first sector: the
// boot code and disk signature, not the partition table.
const mbrBootCode = 446

// updateWait bounds the steps of an update that wait on the box: each
// status request, the reboot request, starting breakglass.
const (
	statusTimeout = 10 * time.Second
	rebootTimeout = 3 * time.Minute
	breakglassFor = time.Minute
)

// machineRe finds the machine in the status's Kernel, e.g. "Linux 6.12.8
// (x86_64)".
var machineRe = regexp.MustCompile(`\(([A-Za-z0-9_]+)\)\s*$`)

// boxTarget names the image target a box can run, from its status.
func boxTarget(st gokrazyweb.Status) (target, machine string, ok bool) {
	m := machineRe.FindStringSubmatch(st.Kernel)
	if m == nil {
		return "", "", false
	}
	switch machine = m[1]; machine {
	case "x86_64":
		return "amd64", machine, true
	case "aarch64":
		if strings.HasPrefix(st.Model, "Raspberry Pi") {
			return "rpi4", machine, true
		}
		return "arm64", machine, true
	}
	return machine, machine, true
}

// checkBox refuses a box whose status does not fit an image for target:
// another machine, a Raspberry Pi for a generic arm64 image or the other
// way round.
func checkBox(st gokrazyweb.Status, target string) error {
	got, machine, ok := boxTarget(st)
	switch {
	case !ok:
		return fmt.Errorf("cannot tell the box's machine from its kernel %q; nothing was written", st.Kernel)
	case got != target:
		return fmt.Errorf("the box is %s (%s, model %q), the image is for %s; nothing was written", got, machine, st.Model, target)
	}
	return nil
}

// reachErr turns a failed request into one line: the OS's reason for a
// network failure, the web UI's refusal of the password, or the error.
func reachErr(addr string, err error) error {
	if errors.Is(err, gokrazyweb.ErrUnauthorized) {
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) {
		reason := op.Err
		var sys *os.SyscallError
		if errors.As(reason, &sys) {
			reason = sys.Err
		}
		return fmt.Errorf("cannot reach %s: %w", addr, reason)
	}
	return err
}

// updateCmd is "tickbox-image update" and "flash.sh --update": build the
// image (or take --image FILE, for the update command) and push it.
func (e *env) updateCmd(ctx context.Context, o *options) error {
	if err := e.update(ctx, o); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fail("update of %s: %w", o.addr, err)
	}
	return nil
}

func (e *env) update(ctx context.Context, o *options) error {
	pw, _, err := e.password(o, false)
	if err != nil {
		return err
	}
	web := gokrazyweb.New("http://"+o.addr, pw)
	prebuilt := o.cmd == "update" && o.image != ""
	img := o.image
	if img == "" {
		img = defaultUpdateImage(o)
	}
	var f *os.File
	var l *imageLayout
	if prebuilt {
		if f, l, err = openImage(img); err != nil {
			return fmt.Errorf("%s: %w", img, err)
		}
		defer f.Close()
	}

	// The box is checked before the build, so that a wrong password or
	// address does not wait for one.
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	before, err := web.Status(sctx)
	cancel()
	if err != nil {
		return reachErr(o.addr, err)
	}
	if err := checkBox(before, o.target); err != nil {
		return err
	}

	want := "" // the new build's timestamp, when known
	if !prebuilt {
		c, err := e.build(ctx, o, img)
		if err != nil {
			return err
		}
		want = c.buildTimestamp
		if f, l, err = openImage(img); err != nil {
			return fmt.Errorf("%s: %w", img, err)
		}
		defer f.Close()
	}
	if before.PermUUID != "" && before.PermUUID != l.permUUID {
		return fmt.Errorf("the box's /perm is partition %s, the image's %s (built for another hostname?): "+
			"the image would not find its root file system there; nothing was written", before.PermUUID, l.permUUID)
	}

	start := time.Now()
	e.sayf("updating %s (%s, build %s) with %s: root file system %d MiB, boot file system %d MiB",
		o.addr, strings.TrimSpace(before.Model), before.BuildTimestamp, img, l.rootFS>>20, l.bootFS>>20)
	if err := e.push(ctx, web, o.addr, f, l); err != nil {
		return err
	}
	sent := time.Since(start)

	// The reboot request returns once the box has stopped its services;
	// the box may also drop the connection as it goes down.
	e.sayf("sent in %.0f s; rebooting the box into its other root partition", sent.Seconds())
	rctx, cancel := context.WithTimeout(ctx, rebootTimeout)
	err = web.Reboot(rctx)
	cancel()
	var op *net.OpError
	if err != nil && !errors.As(err, &op) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the new image is written and selected, but the reboot failed: %w", err)
	}

	rebooted := time.Now()
	deadline := rebooted.Add(o.bootTimeout)
	var after gokrazyweb.Status
	for {
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := web.Status(sctx)
		cancel()
		if err == nil && st.BuildTimestamp != before.BuildTimestamp && (want == "" || st.BuildTimestamp == want) {
			after = st
			break
		}
		if time.Now().After(deadline) {
			last := "it still runs build " + before.BuildTimestamp
			switch {
			case err != nil:
				last = reachErr(o.addr, err).Error()
			case st.BuildTimestamp != before.BuildTimestamp:
				last = "it runs build " + st.BuildTimestamp + ", not " + want
			}
			return fmt.Errorf("the box did not come back with the new build within %d s of the reboot (%s)", int(o.bootTimeout/time.Second), last)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(2 * time.Second):
		}
	}
	back := time.Since(rebooted)

	// breakglass does not start on boot: start it through the web UI.
	breakglass := "breakglass started"
	bctx, cancel := context.WithTimeout(ctx, breakglassFor)
	err = waitUntil(bctx, 2*time.Second, func() error { return web.StartBreakglass(bctx) })
	cancel()
	if err != nil {
		breakglass = "breakglass not started (" + reachErr(o.addr, err).Error() + ")"
	}
	e.sayf("updated %s in %.0f s: build %s → %s; sent in %.0f s, the web UI answered %.0f s after the reboot; %s",
		o.addr, time.Since(start).Seconds(), before.BuildTimestamp, after.BuildTimestamp, sent.Seconds(), back.Seconds(), breakglass)
	return nil
}

// push streams the image's root and boot file systems and boot code to
// the box and switches its root partition.
func (e *env) push(ctx context.Context, web *gokrazyweb.Client, addr string, f *os.File, l *imageLayout) error {
	features, err := web.Features(ctx)
	if err != nil {
		return reachErr(addr, err)
	}
	for _, p := range []struct {
		dest, what string
		s          span
	}{
		// The inactive root partition first: writing it cannot harm the
		// running system.
		{"root", "root file system", span{l.rootA().start, l.rootFS}},
		{"boot", "boot file system", span{l.boot().start, l.bootFS}},
		{"mbr", "boot code", span{0, mbrBootCode}},
	} {
		err := web.Stream(ctx, features, p.dest, io.NewSectionReader(f, p.s.start, p.s.size))
		if p.dest == "mbr" && errors.Is(err, gokrazyweb.ErrNotImplemented) {
			e.sayf("the box cannot update its boot code; left as it is")
			continue
		}
		if err != nil {
			return reachErr(addr, fmt.Errorf("sending the %s: %w", p.what, err))
		}
	}
	if err := web.Switch(ctx); err != nil {
		return reachErr(addr, fmt.Errorf("switching the root partition: %w", err))
	}
	return nil
}

// waitUntil calls f every period until it succeeds or ctx ends, and
// returns f's last error.
func waitUntil(ctx context.Context, every time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(every):
		}
	}
}
