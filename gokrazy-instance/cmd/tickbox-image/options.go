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
	"strconv"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
)

// env is what a sub-command reads and writes besides its options: the
// environment, the terminal and the host's tables, all replaceable in tests.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	prog   string // message prefix
	host   host
}

// sayf prints one "PROG: ..." progress line on stdout.
func (e *env) sayf(format string, a ...any) {
	fmt.Fprintf(e.stdout, "%s: %s\n", e.prog, fmt.Sprintf(format, a...))
}

// fail is a failure: exit status 1, the message printed by main.
func fail(format string, a ...any) error { return cli.Exit(1, fmt.Errorf(format, a...)) }

// minSize is the smallest image gok lays out with room for /perm.
const minSize = 1073741824

// defaultSize is the image size: 1.2 GB, of which /perm fills what the
// system partitions leave.
const defaultSize = 1258299392

// options are every sub-command's options; each sub-command accepts the
// subset listed in commandOptions.
type options struct {
	cmd          string
	help         bool
	repo         string
	target       string
	image        string // absolute, "" when not given
	device       string
	yes          bool
	httpPort     int
	sshPort      int
	statusPort   int
	sshKey       string
	passwordFile string
	buildDir     string
	size         int64
	accel        string
	bootTimeout  time.Duration
	qemu         string
	ptpTap       string   // --ptp-tap: host tap the VM's second NIC (eth1) is attached to
	extra        []string // TICKBOX_EXTRA_PACKAGES
	version      string   // TICKBOX_VERSION: what version-get reports; default git describe
	// update is set by flash --update and the update command; addr is
	// then the box's web UI, HOST:PORT (default 127.0.0.1:httpPort).
	update bool
	addr   string
}

// takesValue lists every option and whether a value follows it.
var takesValue = map[string]bool{
	"-h": false, "--help": false, "-y": false, "--yes": false,
	"--repo": true, "--target": true, "--image": true, "--http-port": true,
	"--ssh-port": true, "--status-port": true, "--ssh-key": true, "--password-file": true,
	"--build-dir": true, "--size": true, "--accel": true, "--boot-timeout": true,
	"--ptp-tap": true,
	"--update":  false, // its value, HOST:PORT, is optional: see parse
}

// commandOptions are the options each sub-command accepts besides -h,
// --help and --repo, and whether it takes a DEVICE or an ADDRESS (the
// box's web UI, HOST:PORT).
var commandOptions = map[string]struct {
	opts   []string
	device bool
	addr   bool
}{
	"build": {opts: []string{"--target", "--image", "--ssh-key", "--password-file", "--build-dir", "--size"}},
	"write": {opts: []string{"--target", "--image", "--build-dir", "-y", "--yes"}, device: true},
	"boot": {opts: []string{"--target", "--image", "--http-port", "--ssh-port", "--status-port", "--ssh-key", "--password-file",
		"--build-dir", "--accel", "--boot-timeout", "--ptp-tap"}},
	"flash": {opts: []string{"--target", "--image", "-y", "--yes", "--http-port", "--ssh-port", "--status-port", "--ssh-key",
		"--password-file", "--build-dir", "--size", "--accel", "--boot-timeout", "--ptp-tap", "--update"}, device: true},
	"update": {opts: []string{"--target", "--image", "--ssh-key", "--password-file", "--build-dir", "--size",
		"--http-port", "--boot-timeout"}, addr: true},
}

// parse reads a sub-command's arguments the way flash.sh always has:
// "--opt value" or "--opt=value", options and the DEVICE in any order, "--"
// ending the options; then it checks the values in flash.sh's order. With
// -h or --help it prints the usage and sets o.help.
func (e *env) parse(cmd string, args []string) (*options, error) {
	spec := commandOptions[cmd]
	positionalOK := spec.device || spec.addr
	allowed := map[string]bool{"-h": true, "--help": true, "--repo": true}
	for _, o := range spec.opts {
		allowed[o] = true
	}
	vals := map[string]string{}
	o := &options{cmd: cmd}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest := args[i+1:]
			if len(positional) == 0 && len(rest) == 1 && positionalOK {
				positional = rest
			} else if len(rest) > 0 {
				return nil, cli.Usage("unexpected arguments: %s", strings.Join(rest, " "))
			}
			break
		}
		if !strings.HasPrefix(a, "-") {
			if !positionalOK {
				return nil, cli.Usage("unexpected arguments: %s", strings.Join(args[i:], " "))
			}
			if len(positional) > 0 && spec.addr {
				return nil, cli.Usage("more than one address given: %s and %s", positional[0], a)
			}
			if len(positional) > 0 {
				return nil, cli.Usage("more than one device given: %s and %s", positional[0], a)
			}
			positional = append(positional, a)
			continue
		}
		name, val, hasVal := a, "", false
		if strings.HasPrefix(a, "--") {
			name, val, hasVal = strings.Cut(a, "=")
		}
		needsVal, known := takesValue[name]
		if !known || !allowed[name] {
			return nil, cli.Usage("unknown option %s (see --help)", name)
		}
		switch {
		case name == "-h" || name == "--help":
			fmt.Fprint(e.stdout, usageText(cmd))
			o.help = true
			return o, nil
		case name == "--update":
			// --update, --update=HOST:PORT or --update HOST:PORT.
			o.update = true
			if hasVal {
				o.addr = val
			} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				o.addr = args[i+1]
				i++
			}
		case !needsVal && hasVal:
			return nil, cli.Usage("%s takes no value (see --help)", name)
		case !needsVal:
			o.yes = true // -y, --yes: the only switch
		case hasVal:
			vals[name] = val
		case i+1 < len(args):
			vals[name] = args[i+1]
			i++
		default:
			return nil, cli.Usage("%s needs a value (see --help)", name)
		}
	}
	if len(positional) > 0 && spec.addr {
		o.addr = positional[0]
	} else if len(positional) > 0 {
		o.device = positional[0]
	}
	if cmd == "update" {
		o.update = true
	}
	return o, e.fill(o, vals)
}

var digits = regexp.MustCompile(`^[0-9]+$`)

// ifName is a Linux interface name that needs no quoting anywhere: at most
// IFNAMSIZ-1 bytes, none of them '/', ':', white space or a comma.
var ifName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,15}$`)

// fill applies defaults (some from the environment) and checks values.
func (e *env) fill(o *options, vals map[string]string) error {
	get := func(name, def string) string {
		if v, ok := vals[name]; ok {
			return v
		}
		return def
	}
	orEnv := func(key, def string) string {
		if v := e.getenv(key); v != "" {
			return v
		}
		return def
	}
	var err error
	if o.repo, err = e.repoDir(vals["--repo"]); err != nil {
		return err
	}
	o.target = get("--target", "amd64")
	if v := vals["--image"]; v != "" {
		o.image = abs(v)
	}
	if v := vals["--ssh-key"]; v != "" {
		o.sshKey = abs(v)
	}
	if v := vals["--password-file"]; v != "" {
		o.passwordFile = abs(v)
	}
	// Without a checkout, the default build directory is ./build.
	o.buildDir = abs(get("--build-dir", orEnv("TICKBOX_BUILD_DIR", filepath.Join(o.repo, "build"))))
	o.accel = get("--accel", "auto")
	o.extra = strings.Fields(e.getenv("TICKBOX_EXTRA_PACKAGES"))
	o.version = e.getenv("TICKBOX_VERSION")

	switch o.target {
	case "amd64", "arm64", "rpi4":
	default:
		return cli.Usage("unknown target '%s' (want amd64, arm64 or rpi4)", o.target)
	}
	bt, bootable := bootTargetOf(o.target)
	o.qemu = orEnv("TICKBOX_QEMU", bt.qemu)
	switch o.accel {
	case "auto", "kvm", "tcg":
	default:
		return cli.Usage("unknown accelerator '%s' (want auto, kvm or tcg)", o.accel)
	}
	for _, p := range []struct {
		flag, env, def string
		dst            *int
	}{
		{"--http-port", "TICKBOX_HTTP_PORT", "8080", &o.httpPort},
		{"--ssh-port", "TICKBOX_SSH_PORT", "2222", &o.sshPort},
		{"--status-port", "TICKBOX_STATUS_PORT", "8081", &o.statusPort},
	} {
		v := get(p.flag, orEnv(p.env, p.def))
		n, err := strconv.Atoi(v)
		if !digits.MatchString(v) || err != nil || n < 1 || n > 65535 {
			return cli.Usage("invalid port '%s' for %s", v, p.flag)
		}
		*p.dst = n
	}
	size := get("--size", strconv.Itoa(defaultSize))
	n, err := strconv.ParseInt(size, 10, 64)
	if !digits.MatchString(size) || err != nil || n < minSize {
		return cli.Usage("invalid --size '%s' (bytes, at least %d)", size, minSize)
	}
	o.size = n
	timeout := get("--boot-timeout", "300")
	secs, err := strconv.ParseInt(timeout, 10, 32)
	if !digits.MatchString(timeout) || err != nil {
		return cli.Usage("invalid --boot-timeout '%s'", timeout)
	}
	o.bootTimeout = time.Duration(secs) * time.Second
	if v, ok := vals["--ptp-tap"]; ok {
		if !ifName.MatchString(v) {
			return cli.Usage("invalid --ptp-tap '%s' (an interface name: 1 to 15 letters, digits, '.', '_' or '-')", v)
		}
		o.ptpTap = v
	}
	if o.update {
		if o.device != "" {
			return cli.Usage("give either --update or a DEVICE, not both")
		}
		if o.addr == "" {
			o.addr = "127.0.0.1:" + strconv.Itoa(o.httpPort)
		}
		if err := checkAddr(o.addr); err != nil {
			return err
		}
		return nil
	}
	if o.image != "" && o.device != "" && o.cmd == "flash" {
		return cli.Usage("give either --image FILE or a DEVICE, not both")
	}
	if o.cmd == "write" && o.device == "" {
		return cli.Usage("write needs a DEVICE (see --help)")
	}
	booting := o.cmd == "boot" || o.cmd == "flash" && o.image == "" && o.device == ""
	if !bootable && booting {
		return cli.Usage("the %s image does not boot in qemu (amd64 and arm64 do); use --image FILE or a DEVICE for --target %s", o.target, o.target)
	}
	if booting && o.accel == "kvm" && !bt.kvm {
		return cli.Usage("--accel kvm: the %s image boots with TCG only", o.target)
	}
	return nil
}

// checkAddr accepts the address of a box's web UI: HOST:PORT, or HOST
// for port 80.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "80"
	}
	n, perr := strconv.Atoi(port)
	if host == "" || strings.ContainsAny(host, "/@?# ") || !digits.MatchString(port) || perr != nil || n < 1 || n > 65535 {
		return cli.Usage("invalid address '%s' (want HOST:PORT of the box's web UI)", addr)
	}
	return nil
}

// abs makes a path absolute against the working directory, as flash.sh
// did before anything changed directory.
func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// repoDir is the checkout to build from: --repo (flash.sh passes its own
// directory), else the directory above the working directory whose go.mod
// is tickbox's, else "".
func (e *env) repoDir(given string) (string, error) {
	if given != "" {
		d := abs(given)
		if !isTickboxRoot(d) {
			return "", cli.Usage("%s: not a tickbox checkout (no go.mod of github.com/tickbox-fw/tickbox)", d)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fail("finding the checkout: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if isTickboxRoot(d) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			// Only a build needs the checkout; it says so then.
			return "", nil
		}
	}
}

func isTickboxRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first) == "module github.com/tickbox-fw/tickbox"
}

// errNotConfirmed: the user did not answer yes.
var errNotConfirmed = errors.New("not confirmed; nothing written")

// confirm asks on stderr and reads the answer from stdin; only y, Y, yes
// and YES go on.
func (e *env) confirm(ctx context.Context, target, device string) error {
	fmt.Fprintf(e.stderr, "%s: write the %s image to %s, erasing everything on it? [y/N] ", e.prog, target, device)
	answer := make(chan string, 1)
	go func() {
		var line []byte
		b := make([]byte, 1)
		for len(line) < 64 {
			n, err := e.stdin.Read(b)
			if n == 1 && b[0] != '\n' {
				line = append(line, b[0])
				continue
			}
			if err != nil && n == 0 {
				fmt.Fprintln(e.stderr) // no newline was typed
			}
			if n == 1 || err != nil {
				break
			}
		}
		answer <- string(line)
	}()
	select {
	case a := <-answer:
		switch a {
		case "y", "Y", "yes", "YES":
			return nil
		}
		return cli.Exit(1, errNotConfirmed)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func usageText(cmd string) string {
	switch cmd {
	case "build":
		return `Usage: tickbox-image build [options]
Build the image. Options:
  --target T            image target: amd64 (default), arm64 or rpi4
  --image FILE          the image file (default BUILD/tickbox-TARGET.img; replaced only once complete)
  --ssh-key FILE        public key(s) for breakglass (default: ~/.ssh/id_*.pub, or a key
                        generated once as BUILD/id_ed25519)
  --password-file FILE  web UI password file (default BUILD/http-password.txt, generated when missing)
  --build-dir DIR       working directory for generated files (default ./build, env TICKBOX_BUILD_DIR)
  --size BYTES          image size (default 1258299392)
  --repo DIR            the tickbox checkout to build (default: the one above the working directory)
Environment: TICKBOX_EXTRA_PACKAGES adds Go packages to the image; TICKBOX_VERSION is the
version every tickbox program reports (default: git describe of the checkout).
`
	case "write":
		return `Usage: tickbox-image write [options] DEVICE
Write a built image to DEVICE after the safety checks: DEVICE must be a block
device that is not mounted, not swap, does not hold / and holds the image.
Options:
  --image FILE          the image (default BUILD/tickbox-TARGET.img)
  --target T            which image (amd64, arm64 or rpi4; default amd64), for the default --image
  --yes, -y             write without asking for confirmation
  --build-dir DIR       default ./build, env TICKBOX_BUILD_DIR
  --repo DIR            the tickbox checkout (default: the one above the working directory)
`
	case "boot":
		return `Usage: tickbox-image boot [options]
Boot a built amd64 or arm64 image in qemu until Ctrl-C. Options:
  --target amd64|arm64  which image (default amd64): amd64 boots in qemu-system-x86_64,
                        arm64 in qemu-system-aarch64 (virt machine, UEFI, TCG only)
  --image FILE          the image (default BUILD/tickbox-TARGET.img)
  --http-port N         host port forwarded to the web UI (default 8080, env TICKBOX_HTTP_PORT)
  --ssh-port N          host port forwarded to breakglass ssh (default 2222, env TICKBOX_SSH_PORT)
  --status-port N       host port forwarded to the hub's status page and /metrics (guest :8080;
                        default 8081, env TICKBOX_STATUS_PORT)
  --ssh-key FILE        the key given to the build, for the printed ssh command
  --password-file FILE  web UI password file (default BUILD/http-password.txt)
  --build-dir DIR       logs, the KVM probe's cache and the mctp socket (default ./build,
                        env TICKBOX_BUILD_DIR)
  --accel auto|kvm|tcg  qemu accelerator (default auto: KVM only if a boot probe shows it works;
                        arm64 always TCG)
  --boot-timeout SECS   how long to wait for the web UI (default 300)
  --ptp-tap IFNAME      attach a second NIC (eth1 in the VM, where ptpd runs the PTP instance
                        ptp2) to the host tap IFNAME, for a PTP network of its own
  --repo DIR            the tickbox checkout (default: the one above the working directory)
Environment: TICKBOX_QEMU is the qemu binary (default qemu-system-x86_64 for amd64,
qemu-system-aarch64 for arm64).
`
	case "update":
		return `Usage: tickbox-image update [options] [HOST:PORT]
Build the image, or take a built one (--image FILE), and push it to the running box
whose web UI is at HOST:PORT (default 127.0.0.1:8080, the VM's forwarded port) with
gokrazy's update protocol: the root file system goes to the box's inactive root
partition, then the boot file system and boot code; the box reboots into the new root
partition. Then it waits for the web UI to report the new build and starts breakglass.
The image (partition table, FAT and SquashFS), the password and the box's machine and
partition UUIDs are checked before anything is written. /perm is kept. Options:
  --image FILE          push this built image instead of building one
                        (built images go to BUILD/tickbox-TARGET-update.img)
  --target T            the image's target, amd64, arm64 or rpi4 (default amd64); the box
                        must run the same
  --password-file FILE  the box's web UI password (default BUILD/http-password.txt)
  --ssh-key FILE        breakglass keys for the build (as for build)
  --build-dir DIR       default ./build, env TICKBOX_BUILD_DIR
  --size BYTES          image size for the build (default 1258299392)
  --http-port N         the default address's port (default 8080, env TICKBOX_HTTP_PORT)
  --boot-timeout SECS   how long to wait for the box to come back (default 300)
  --repo DIR            the tickbox checkout (default: the one above the working directory)
Environment: TICKBOX_VERSION, TICKBOX_EXTRA_PACKAGES as for build.
`
	}
	return flashUsage
}

// flashUsage is flash.sh's --help.
const flashUsage = `Usage:
  ./flash.sh [options]                         build build/tickbox-amd64.img and boot it in qemu
  ./flash.sh --target arm64 [options]          build build/tickbox-arm64.img and boot it in qemu
  ./flash.sh --image FILE [--target T]         build the image into FILE only
  ./flash.sh [--target T] [--yes] DEVICE       build the image and write it to DEVICE (e.g. /dev/sdX)
  ./flash.sh --update [HOST:PORT]              build the image and update the running box with it

Options:
  --target T            image target (default amd64). amd64: kernel.amd64, no firmware;
                        arm64 (generic arm64: qemu, BMC-class boards): kernel.arm64, no firmware,
                        console ttyAMA0; rpi4: arm64, kernel.rpi, firmware and rpi-eeprom, no
                        serial console (mctpd owns the PL011 UART). amd64 and arm64 boot in qemu
                        (arm64: qemu-system-aarch64 -M virt with UEFI, TCG only).
  --image FILE          build only: write the image to FILE (replaced only once complete)
  --yes, -y             write DEVICE without asking for confirmation
  --http-port N         host port forwarded to the web UI (default 8080, env TICKBOX_HTTP_PORT)
  --ssh-port N          host port forwarded to breakglass ssh (default 2222, env TICKBOX_SSH_PORT)
  --status-port N       host port forwarded to the hub's status page and /metrics (guest :8080;
                        default 8081, env TICKBOX_STATUS_PORT)
  --ssh-key FILE        public key(s) for breakglass (default: ~/.ssh/id_*.pub, or a key
                        generated once as BUILD/id_ed25519)
  --password-file FILE  web UI password file (default BUILD/http-password.txt, generated at
                        the first build when missing; never committed)
  --build-dir DIR       working directory for generated files (default ./build, env TICKBOX_BUILD_DIR)
  --size BYTES          image size (default 1258299392); /perm fills what the system
                        partitions leave
  --accel auto|kvm|tcg  qemu accelerator (default auto: KVM only if a boot probe shows it works,
                        else TCG with -cpu max; arm64 always TCG)
  --boot-timeout SECS   how long to wait for the web UI (default 300), also after an update
  --update [HOST:PORT]  update a running box over the air: build into --image FILE (default
                        BUILD/tickbox-TARGET-update.img), check the image, the password (from
                        --password-file) and the box's machine, then push it with gokrazy's
                        update protocol; the box reboots into its other root partition and
                        keeps /perm. Default address 127.0.0.1:8080 (--http-port): the VM's
                        web UI. flash.sh waits for the new build and starts breakglass.
  --ptp-tap IFNAME      attach a second NIC (eth1 in the VM, where ptpd runs the PTP instance
                        ptp2) to the host tap IFNAME, for a PTP network of its own; create it
                        first (ip tuntap add dev IFNAME mode tap user $USER) and put a PTP
                        grandmaster on it (see gokrazy-instance/README.md)
  -h, --help            this help

Environment:
  TICKBOX_EXTRA_PACKAGES  space-separated Go packages added to the image. This is also the test
                          hook for a failed build: point it at a package that does not compile.
  TICKBOX_VERSION         the version every tickbox program reports in version-get (default:
                          git describe of the checkout; none outside a git checkout)
  TICKBOX_QEMU            qemu binary (default qemu-system-x86_64; for arm64 qemu-system-aarch64)

In qemu, the web UI is at http://127.0.0.1:8080/ (user gokrazy) and breakglass at
ssh -p 2222 root@127.0.0.1; flash.sh starts breakglass through the web UI form.
mctpd's serial line in the VM (EID 8: amd64's second UART ttyS1, arm64's virtio
console hvc0) is the unix socket BUILD/mctp-serial.sock. Attach a host mctpd (EID 9)
to it through a pty:
  socat pty,raw,echo=0,link=/tmp/tb-mctp unix-connect:build/mctp-serial.sock &
  mctpd -e 9 -demux mctp-host -kea '' serial /tmp/tb-mctp &
  mctp -demux mctp-host ctrl get-eid -eid 8
Ctrl-C shuts the VM down. Writing a device refuses a device that is mounted, holds /,
is used as swap, is smaller than the image, or is not a block device.
flash.sh runs "tickbox-image flash" (gokrazy-instance/cmd/tickbox-image), which also
has build, write, boot and update commands for each step alone.
`
