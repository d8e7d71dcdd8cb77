// Command derive writes a buildable gokrazy instance for one target from the
// committed instance in gokrazy-instance/.
//
// The repository keeps a single config.json (the amd64 image). Everything
// that differs per build — the target's GOARCH, kernel, firmware and EEPROM
// packages, the breakglass authorized keys of whoever builds the image, and
// extra packages — is applied here, so there is never a second copy of the
// configuration to keep in sync. tickbox-image (and so flash.sh) runs it;
// it is a program rather than sed/jq so that the JSON edits are exact and
// tested.
//
// The derived instance directory gets config.json and a builddir symlink to
// the committed builddir. gok runs go in the resolved directory, so the
// committed relative replace directives keep working. With -module-version,
// the builddir is a directory of links instead, but for tickbox's entry,
// whose go.mod requires the tickbox module at that version (see
// writeInstance).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// breakglassPkg is the package whose ExtraFileContents carry the keys.
const breakglassPkg = "github.com/gokrazy/breakglass"

// authorizedKeysPath is where breakglass reads the keys on the image; the
// committed config passes it as -authorized_keys.
const authorizedKeysPath = "/etc/breakglass.authorized_keys"

// maxKeysBytes bounds the key file: breakglass keys are a few lines, and a
// huge file is a mistake (e.g. a private key or an image passed by accident).
const maxKeysBytes = 64 << 10

// Target describes the per-target part of the instance config.
type Target struct {
	GOARCH          string
	KernelPackage   string
	FirmwarePackage string
	EEPROMPackage   string
	// SerialConsole is gokrazy's SerialConsole: the kernel console and
	// gokrazy's serial shell. "disabled" leaves every UART alone (the
	// console is then the framebuffer's tty1).
	SerialConsole string
	// BootloaderExtraLines are appended to the Raspberry Pi firmware's
	// config.txt; nil leaves the field out.
	BootloaderExtraLines []string
	// MCTPBinding is mctpd's binding group, which replaces the one of
	// the committed config: the serial binding on the UART that is the
	// target's MCTP line, or "null" where there is none.
	MCTPBinding []string
	// MdiodPorts are mdiod's -port= flags, which replace the committed
	// ones in place.
	MdiodPorts []string
}

// mctpdPkg and mdiodPkg are the daemons whose devices differ per target.
const (
	mctpdPkg = "github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctpd"
	mdiodPkg = "github.com/tickbox-fw/tickbox/services/mdiod/cmd/mdiod"
)

// mdiodPorts are the PHYs every target has: port A is the first Ethernet
// port through its driver's MII ioctls (e1000 in qemu's amd64 VM,
// virtio-net in the arm64 VM, which has no PHY and answers with an error,
// bcmgenet's PHY on the Pi 4), port B a simulated PHY whose link cycles,
// so that link events show on a board with nothing plugged in.
var mdiodPorts = []string{"-port=A=ioctl:eth0", "-port=B=sim:generic100,script=up/100@2s;down@12s,cycle=20s"}

// Targets are the supported build targets. amd64 matches the committed
// config.json; the others are derived from it.
//
// mctpd's UART per target: the PC's (and qemu's) second 16550, ttyS1,
// beside the console on ttyS0. qemu's arm64 virt machine has a single
// PL011, the console, so the arm64 VM gives mctpd a virtio console port
// (hvc0: a tty, which the serial binding configures like a UART; a
// virtserialport's /dev/vportNpM is not a tty and refuses termios). On
// the Pi 4, mctpd gets the PL011 (ttyAMA0) on GPIO 14/15, which
// dtoverlay=disable-bt takes back from Bluetooth; serial0 then names the
// same UART, so the serial console is disabled rather than interleaved
// with MCTP frames (the console is HDMI's tty1; the web UI and
// breakglass are the box's usual way in).
var Targets = map[string]Target{
	"amd64": {
		GOARCH:        "amd64",
		KernelPackage: "github.com/gokrazy/kernel.amd64",
		SerialConsole: "ttyS0,115200",
		MCTPBinding:   []string{"serial", "/dev/ttyS1", "-baud=115200"},
		MdiodPorts:    mdiodPorts,
	},
	"arm64": {
		GOARCH:        "arm64",
		KernelPackage: "github.com/gokrazy/kernel.arm64",
		SerialConsole: "ttyAMA0,115200",
		MCTPBinding:   []string{"serial", "/dev/hvc0", "-baud=115200"},
		MdiodPorts:    mdiodPorts,
	},
	"rpi4": {
		GOARCH:               "arm64",
		KernelPackage:        "github.com/gokrazy/kernel.rpi",
		FirmwarePackage:      "github.com/gokrazy/firmware",
		EEPROMPackage:        "github.com/gokrazy/rpi-eeprom",
		SerialConsole:        "disabled",
		BootloaderExtraLines: []string{"dtoverlay=disable-bt"},
		MCTPBinding:          []string{"serial", "/dev/ttyAMA0", "-baud=115200"},
		MdiodPorts:           mdiodPorts,
	},
}

// Options are the per-build changes applied to the committed config.
type Options struct {
	Target         string
	AuthorizedKeys string   // contents of the authorized_keys file; empty: leave as is
	ExtraPackages  []string // appended to Packages
	// Version and BuildTime, when set, are linked into every tickbox
	// program (what version-get reports): each tickbox package gets
	// -ldflags=-X for both in its GoBuildFlags.
	Version   string
	BuildTime string
}

// versionVar and buildTimeVar are the link-time variables of the
// control plane that Options.Version and Options.BuildTime set.
const (
	versionVar   = "github.com/tickbox-fw/tickbox/services/ctl.linkVersion"
	buildTimeVar = "github.com/tickbox-fw/tickbox/services/ctl.linkBuildTime"
)

// stampable is what a version or build time may hold: it goes into one
// -ldflags argument, which go build splits at spaces and quotes.
var stampable = regexp.MustCompile(`^[A-Za-z0-9._:+-]{1,64}$`)

// Derive returns the config for opts, given the committed config.json bytes.
// Unknown fields of the source config are preserved.
func Derive(src []byte, opts Options) ([]byte, error) {
	tgt, ok := Targets[opts.Target]
	if !ok {
		return nil, fmt.Errorf("unknown target %q (want one of %s)", opts.Target, strings.Join(targetNames(), ", "))
	}
	var cfg map[string]any
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("parsing config.json: %w", err)
	}
	if cfg == nil {
		return nil, errors.New("parsing config.json: not a JSON object")
	}
	env, err := stringList(cfg, "Environment")
	if err != nil {
		return nil, err
	}
	env = slices.DeleteFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, "GOARCH=") || strings.HasPrefix(kv, "GOOS=")
	})
	cfg["Environment"] = append([]string{"GOOS=linux", "GOARCH=" + tgt.GOARCH}, env...)
	cfg["KernelPackage"] = tgt.KernelPackage
	cfg["FirmwarePackage"] = tgt.FirmwarePackage
	cfg["EEPROMPackage"] = tgt.EEPROMPackage
	cfg["SerialConsole"] = tgt.SerialConsole
	if tgt.BootloaderExtraLines != nil {
		cfg["BootloaderExtraLines"] = tgt.BootloaderExtraLines
	} else {
		delete(cfg, "BootloaderExtraLines")
	}

	pkgs, err := stringList(cfg, "Packages")
	if err != nil {
		return nil, err
	}
	for _, p := range opts.ExtraPackages {
		if p == "" || strings.ContainsAny(p, " \t\n") {
			return nil, fmt.Errorf("invalid extra package %q", p)
		}
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	if pkgs == nil {
		pkgs = []string{}
	}
	cfg["Packages"] = pkgs

	if err := targetDevices(cfg, pkgs, tgt); err != nil {
		return nil, err
	}

	if opts.Version != "" || opts.BuildTime != "" {
		if err := stampVersion(cfg, pkgs, opts.Version, opts.BuildTime); err != nil {
			return nil, err
		}
	}

	if opts.AuthorizedKeys != "" {
		if err := checkKeys(opts.AuthorizedKeys); err != nil {
			return nil, err
		}
		if !slices.Contains(pkgs, breakglassPkg) {
			return nil, fmt.Errorf("authorized keys given, but %s is not in Packages", breakglassPkg)
		}
		pc, _ := cfg["PackageConfig"].(map[string]any)
		if pc == nil {
			pc = map[string]any{}
			cfg["PackageConfig"] = pc
		}
		bg, _ := pc[breakglassPkg].(map[string]any)
		if bg == nil {
			bg = map[string]any{}
			pc[breakglassPkg] = bg
		}
		files, _ := bg["ExtraFileContents"].(map[string]any)
		if files == nil {
			files = map[string]any{}
			bg["ExtraFileContents"] = files
		}
		files[authorizedKeysPath] = opts.AuthorizedKeys
	}

	// gok reads the config with encoding/json, which matches field names
	// without regard to case: of "Environment" and "environment" it would
	// take whichever comes last, not necessarily the one derive set. The
	// keys are compared once derive has set its own.
	keys := slices.Sorted(maps.Keys(cfg))
	for i, k := range keys {
		for _, l := range keys[i+1:] {
			if strings.EqualFold(k, l) {
				return nil, fmt.Errorf("config.json: keys %q and %q differ only in case", k, l)
			}
		}
	}

	out, err := json.MarshalIndent(cfg, "", "    ")
	if err != nil {
		return nil, fmt.Errorf("encoding config.json: %w", err)
	}
	// Fail here, with the field named, rather than deep inside gok.
	var shape gokShape
	if err := json.Unmarshal(out, &shape); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	return append(out, '\n'), nil
}

// stampVersion gives every tickbox package of pkgs the -ldflags that set
// its version and build time, after any GoBuildFlags it has.
func stampVersion(cfg map[string]any, pkgs []string, version, buildTime string) error {
	var ld []string
	for _, v := range []struct{ name, val, sym string }{{"version", version, versionVar}, {"build time", buildTime, buildTimeVar}} {
		if v.val == "" {
			continue
		}
		if !stampable.MatchString(v.val) {
			return fmt.Errorf("invalid %s %q: want 1 to 64 of A-Z a-z 0-9 . _ : + -", v.name, v.val)
		}
		ld = append(ld, "-X "+v.sym+"="+v.val)
	}
	pc, _ := cfg["PackageConfig"].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
		cfg["PackageConfig"] = pc
	}
	for _, p := range pkgs {
		if !strings.HasPrefix(p, "github.com/tickbox-fw/tickbox/") {
			continue
		}
		c, _ := pc[p].(map[string]any)
		if c == nil {
			c = map[string]any{}
			pc[p] = c
		}
		flags, err := stringList(c, "GoBuildFlags")
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if slices.ContainsFunc(flags, func(f string) bool { return strings.HasPrefix(f, "-ldflags") }) {
			return fmt.Errorf("%s already has -ldflags in GoBuildFlags; the version stamp would replace them", p)
		}
		c["GoBuildFlags"] = append(flags, "-ldflags="+strings.Join(ld, " "))
	}
	return nil
}

// targetDevices gives mctpd the target's MCTP binding and mdiod the
// target's ports, in the flags of the committed config (when the package
// is on the image).
func targetDevices(cfg map[string]any, pkgs []string, tgt Target) error {
	pc, _ := cfg["PackageConfig"].(map[string]any)
	if slices.Contains(pkgs, mctpdPkg) {
		c, _ := pc[mctpdPkg].(map[string]any)
		flags, err := stringList(c, "CommandLineFlags")
		if err != nil {
			return fmt.Errorf("%s: %w", mctpdPkg, err)
		}
		// The binding group starts at the first argument that is not a
		// flag; the committed flags are all -name=value.
		i := slices.IndexFunc(flags, func(f string) bool { return !strings.HasPrefix(f, "-") })
		switch {
		case i < 0:
			return fmt.Errorf("%s: no binding in CommandLineFlags %q", mctpdPkg, flags)
		case slices.Contains(flags[i:], "+"):
			return fmt.Errorf("%s: more than one binding in CommandLineFlags %q; which is the target's UART is not known", mctpdPkg, flags)
		case slices.ContainsFunc(flags[:i], func(f string) bool { return !strings.Contains(f, "=") }):
			return fmt.Errorf("%s: a flag before the binding has no =value in %q; write flags as -name=value", mctpdPkg, flags)
		}
		c["CommandLineFlags"] = append(slices.Clone(flags[:i]), tgt.MCTPBinding...)
	}
	if slices.Contains(pkgs, mdiodPkg) {
		c, _ := pc[mdiodPkg].(map[string]any)
		if c == nil {
			if pc == nil {
				pc = map[string]any{}
				cfg["PackageConfig"] = pc
			}
			c = map[string]any{}
			pc[mdiodPkg] = c
		}
		flags, err := stringList(c, "CommandLineFlags")
		if err != nil {
			return fmt.Errorf("%s: %w", mdiodPkg, err)
		}
		isPort := func(f string) bool { return strings.HasPrefix(f, "-port=") || strings.HasPrefix(f, "--port=") }
		i := slices.IndexFunc(flags, isPort)
		if i < 0 {
			i = len(flags)
		}
		kept := slices.DeleteFunc(slices.Clone(flags), isPort)
		if slices.Contains(kept, "-port") || slices.Contains(kept, "--port") {
			return fmt.Errorf("%s: write each port as -port=NAME=SPEC in %q", mdiodPkg, flags)
		}
		// The target's ports go where the first committed one was.
		n := 0
		for _, f := range flags[:i] {
			if !isPort(f) {
				n++
			}
		}
		c["CommandLineFlags"] = slices.Concat(kept[:n], tgt.MdiodPorts, kept[n:])
	}
	return nil
}

// gokShape holds the types gok expects for the fields flash.sh relies on.
type gokShape struct {
	Hostname      string
	Packages      []string
	PackageConfig map[string]struct {
		CommandLineFlags  []string
		ExtraFileContents map[string]string
		DontStart         bool
	}
}

func targetNames() []string {
	var names []string
	for n := range Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// stringList reads cfg[key] as a list of strings; a missing key is empty.
func stringList(cfg map[string]any, key string) ([]string, error) {
	v, ok := cfg[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("config.json: %s is not a list", key)
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("config.json: %s holds a non-string %v", key, e)
		}
		out = append(out, s)
	}
	return out, nil
}

// checkKeys rejects key files that breakglass would not accept, so a wrong
// file fails the build instead of producing an image nobody can ssh into.
func checkKeys(keys string) error {
	if len(keys) > maxKeysBytes {
		return fmt.Errorf("authorized keys: %d bytes, more than %d", len(keys), maxKeysBytes)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(keys))
	sc.Buffer(make([]byte, 0, 4096), maxKeysBytes)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "PRIVATE KEY") {
			return fmt.Errorf("authorized keys line %d: this is a private key", line)
		}
		fields := strings.Fields(l)
		if len(fields) < 2 || !isKeyType(fields[0]) {
			return fmt.Errorf("authorized keys line %d: not an ssh public key", line)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("authorized keys: %w", err)
	}
	if n == 0 {
		return errors.New("authorized keys: no public key found")
	}
	return nil
}

func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") ||
		strings.HasPrefix(s, "sk-ssh-") || strings.HasPrefix(s, "sk-ecdsa-")
}

// tickboxModule is the module the image's tickbox packages come from; its
// builddir entry replaces it with the checkout.
const tickboxModule = "github.com/tickbox-fw/tickbox"

// moduleVersionRe is what -module-version may be: a module version
// without build metadata (a pseudo-version such as
// v0.0.0-20261207164300-0123456789ab, or a release tag).
var moduleVersionRe = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// writeInstance writes dir/config.json (atomically) and the builddir gok
// builds in. Without a module version, dir/builddir is a symlink to the
// committed builddir. With one, dir/builddir is a directory of its own:
// every entry links to the committed one, except tickbox's, whose go.mod
// requires the tickbox module at that version (still replaced by the
// checkout). The version is what the Go build information records for
// the tickbox programs, and so what gokrazy's web UI shows for each of
// them, instead of the committed go.mod's placeholder
// v0.0.0-00010101000000-000000000000.
func writeInstance(srcDir, dir string, cfg []byte, moduleVersion string) error {
	if moduleVersion != "" && !moduleVersionRe.MatchString(moduleVersion) {
		return fmt.Errorf("invalid module version %q: want a module version such as v0.0.0-20261207164300-0123456789ab", moduleVersion)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	absSrc, err := filepath.Abs(filepath.Join(srcDir, "builddir"))
	if err != nil {
		return err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	link := filepath.Join(absDir, "builddir")
	if moduleVersion == "" {
		if err := linkTo(absSrc, link); err != nil {
			return err
		}
	} else if err := versionedBuilddir(absSrc, link, moduleVersion); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".config.json.tmp")
	if err := os.WriteFile(tmp, cfg, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "config.json"))
}

// linkTo makes link a relative symlink to target, replacing whatever is
// at link (a symlink or a directory this program made earlier).
func linkTo(target, link string) error {
	rel, err := filepath.Rel(filepath.Dir(link), target)
	if err != nil {
		return err
	}
	if cur, err := os.Readlink(link); err == nil && cur == rel {
		return nil
	}
	if err := os.RemoveAll(link); err != nil {
		return err
	}
	return os.Symlink(rel, link)
}

// versionedBuilddir writes dst as a copy of the committed builddir src in
// links, with tickbox's go.mod requiring version; see writeInstance.
func versionedBuilddir(src, dst, version string) error {
	if fi, err := os.Lstat(dst); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	own := filepath.Join(filepath.FromSlash(tickboxModule))
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		switch {
		case rel == ".":
			return os.MkdirAll(dst, 0o755)
		case rel == own:
			return filepath.SkipDir
		case d.IsDir() && strings.HasPrefix(own, rel+string(filepath.Separator)):
			// On the way to tickbox's entry: a directory of its own.
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if err := linkTo(path, filepath.Join(dst, rel)); err != nil {
			return err
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("builddir: %w", err)
	}
	srcMod := filepath.Join(src, own)
	dstMod := filepath.Join(dst, own)
	if err := os.MkdirAll(dstMod, 0o755); err != nil {
		return err
	}
	mod, err := os.ReadFile(filepath.Join(srcMod, "go.mod"))
	if err != nil {
		return fmt.Errorf("builddir: %w", err)
	}
	mod, err = versionedGoMod(mod, version, srcMod, dstMod)
	if err != nil {
		return fmt.Errorf("builddir %s/go.mod: %w", tickboxModule, err)
	}
	if err := os.WriteFile(filepath.Join(dstMod, "go.mod"), mod, 0o644); err != nil {
		return err
	}
	return linkTo(filepath.Join(srcMod, "go.sum"), filepath.Join(dstMod, "go.sum"))
}

// versionedGoMod rewrites tickbox's builddir go.mod, which sits in
// srcDir, for dstDir: the require line names version, and the replace
// line's relative path still reaches the checkout from dstDir.
func versionedGoMod(mod []byte, version, srcDir, dstDir string) ([]byte, error) {
	lines := strings.Split(string(mod), "\n")
	var required, replaced bool
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "require" && f[1] == tickboxModule:
			lines[i] = "require " + tickboxModule + " " + version
			required = true
		case len(f) == 4 && f[0] == "replace" && f[1] == tickboxModule && f[2] == "=>":
			target := f[3]
			if !filepath.IsAbs(target) {
				target = filepath.Join(srcDir, target)
			}
			rel, err := filepath.Rel(dstDir, target)
			if err != nil {
				return nil, err
			}
			lines[i] = "replace " + tickboxModule + " => " + filepath.ToSlash(rel)
			replaced = true
		}
	}
	if !required || !replaced {
		return nil, fmt.Errorf("want one-line \"require %s VERSION\" and \"replace %s => DIR\"", tickboxModule, tickboxModule)
	}
	return []byte(strings.Join(lines, "\n")), nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("derive", flag.ContinueOnError)
	src := fs.String("src", "gokrazy-instance", "committed instance directory (config.json, builddir/)")
	out := fs.String("out", "", "derived instance directory to write")
	target := fs.String("target", "amd64", "target: "+strings.Join(targetNames(), " or "))
	keysFile := fs.String("authorized-keys", "", "file with the ssh public keys for breakglass")
	var extra listFlag
	fs.Var(&extra, "extra-package", "extra Go package to add to the image (repeatable)")
	version := fs.String("version", "", "version linked into every tickbox program (version-get)")
	buildTime := fs.String("build-time", "", "build time linked into every tickbox program (RFC 3339, UTC)")
	moduleVersion := fs.String("module-version", "", "the tickbox module's version in the programs' build information (the web UI's version)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errors.New("usage: derive -out DIR [-src DIR] [-target T] [-authorized-keys FILE] [-extra-package PKG]...")
	}
	srcCfg, err := os.ReadFile(filepath.Join(*src, "config.json"))
	if err != nil {
		return err
	}
	opts := Options{Target: *target, ExtraPackages: extra, Version: *version, BuildTime: *buildTime}
	if *keysFile != "" {
		keys, err := os.ReadFile(*keysFile)
		if err != nil {
			return err
		}
		opts.AuthorizedKeys = string(keys)
	}
	cfg, err := Derive(srcCfg, opts)
	if err != nil {
		return err
	}
	return writeInstance(*src, *out, cfg, *moduleVersion)
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "derive:", err)
		os.Exit(1)
	}
}
