package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk0ZHVtbXlrZXlmb3J0ZXN0aW5nb25seTAwMDAwMDAw test@host\n"

// derived is the part of the gokrazy config the tests look at.
type derived struct {
	Hostname        string
	Environment     []string
	Packages        []string
	KernelPackage   string
	FirmwarePackage string
	EEPROMPackage   string
	SerialConsole   string
	// BootloaderExtraLines is nil when the field is absent.
	BootloaderExtraLines []string
	GokrazyPackages      *[]string
	PackageConfig        map[string]struct {
		CommandLineFlags  []string
		ExtraFileContents map[string]string
		DontStart         bool
	}
}

func committed(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../config.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeriveTargets(t *testing.T) {
	src := committed(t)
	var orig derived
	if err := json.Unmarshal(src, &orig); err != nil {
		t.Fatal(err)
	}
	const baud = "-baud=115200"
	mctpdFlags := func(binding ...string) []string {
		return append([]string{"-e=8", "-kea=/run/mctpd/control.sock", "-state=/perm/mctpd"}, binding...)
	}
	mdiodFlags := []string{"--ipc-server=mdiod", "-kea=/run/mdiod/control.sock", "-console=/run/mdiod/console.sock",
		"-hotplug=/run/mdiod/hotplug.sock", "-port=A=ioctl:eth0", "-port=B=sim:generic100,script=up/100@2s;down@12s,cycle=20s"}
	for _, tc := range []struct {
		target                   string
		goarch, kernel, firmware string
		eeprom, console          string
		bootloader               []string
		mctpd, mdiod             []string
	}{
		{"amd64", "amd64", "github.com/gokrazy/kernel.amd64", "", "", "ttyS0,115200", nil,
			mctpdFlags("serial", "/dev/ttyS1", baud), mdiodFlags},
		{"arm64", "arm64", "github.com/gokrazy/kernel.arm64", "", "", "ttyAMA0,115200", nil,
			mctpdFlags("serial", "/dev/hvc0", baud), mdiodFlags},
		{"rpi4", "arm64", "github.com/gokrazy/kernel.rpi", "github.com/gokrazy/firmware", "github.com/gokrazy/rpi-eeprom", "disabled",
			[]string{"dtoverlay=disable-bt"}, mctpdFlags("serial", "/dev/ttyAMA0", baud), mdiodFlags},
	} {
		t.Run(tc.target, func(t *testing.T) {
			out, err := Derive(src, Options{Target: tc.target, AuthorizedKeys: key, ExtraPackages: []string{"example.com/x"}})
			if err != nil {
				t.Fatal(err)
			}
			var got derived
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got.Hostname != "tickbox" {
				t.Errorf("Hostname = %q", got.Hostname)
			}
			if !slices.Contains(got.Environment, "GOARCH="+tc.goarch) || !slices.Contains(got.Environment, "GOOS=linux") {
				t.Errorf("Environment = %q", got.Environment)
			}
			for _, kv := range got.Environment {
				if strings.HasPrefix(kv, "GOARCH=") && kv != "GOARCH="+tc.goarch {
					t.Errorf("stale %s in Environment", kv)
				}
			}
			if got.KernelPackage != tc.kernel || got.FirmwarePackage != tc.firmware || got.EEPROMPackage != tc.eeprom {
				t.Errorf("kernel/firmware/eeprom = %q %q %q", got.KernelPackage, got.FirmwarePackage, got.EEPROMPackage)
			}
			if got.SerialConsole != tc.console {
				t.Errorf("SerialConsole = %q, want %q", got.SerialConsole, tc.console)
			}
			if !slices.Equal(got.BootloaderExtraLines, tc.bootloader) || (tc.bootloader == nil) != (got.BootloaderExtraLines == nil) {
				t.Errorf("BootloaderExtraLines = %q, want %q", got.BootloaderExtraLines, tc.bootloader)
			}
			want := append(slices.Clone(orig.Packages), "example.com/x")
			if !slices.Equal(got.Packages, want) {
				t.Errorf("Packages = %q, want %q", got.Packages, want)
			}
			bg := got.PackageConfig[breakglassPkg]
			if bg.ExtraFileContents[authorizedKeysPath] != key {
				t.Errorf("authorized keys = %q", bg.ExtraFileContents[authorizedKeysPath])
			}
			if !slices.Contains(bg.CommandLineFlags, "-authorized_keys="+authorizedKeysPath) {
				t.Errorf("breakglass flags = %q", bg.CommandLineFlags)
			}
			if f := got.PackageConfig[mctpdPkg].CommandLineFlags; !slices.Equal(f, tc.mctpd) {
				t.Errorf("mctpd flags = %q, want %q", f, tc.mctpd)
			}
			if f := got.PackageConfig[mdiodPkg].CommandLineFlags; !slices.Equal(f, tc.mdiod) {
				t.Errorf("mdiod flags = %q, want %q", f, tc.mdiod)
			}
			// The other package configs pass through unchanged.
			for pkg, pc := range orig.PackageConfig {
				if pkg == mctpdPkg || pkg == mdiodPkg {
					continue
				}
				if !slices.Equal(got.PackageConfig[pkg].CommandLineFlags, pc.CommandLineFlags) {
					t.Errorf("%s flags = %q, want %q", pkg, got.PackageConfig[pkg].CommandLineFlags, pc.CommandLineFlags)
				}
			}
			// Deriving again, for any target, gives the same config.
			again, err := Derive(out, Options{Target: tc.target})
			if err != nil || string(again) != string(out) {
				t.Errorf("deriving twice changed the config: %v", err)
			}
		})
	}
	// The committed config is the amd64 image: deriving amd64 changes
	// no flag of the daemons.
	amd, err := Derive(src, Options{Target: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	var got derived
	if err := json.Unmarshal(amd, &got); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{mctpdPkg, mdiodPkg} {
		if !slices.Equal(got.PackageConfig[pkg].CommandLineFlags, orig.PackageConfig[pkg].CommandLineFlags) {
			t.Errorf("amd64 %s flags %q differ from the committed %q", pkg, got.PackageConfig[pkg].CommandLineFlags, orig.PackageConfig[pkg].CommandLineFlags)
		}
	}
}

// TestDeriveDaemonFlags: the target's devices replace the committed ones
// wherever they stand, and flags derive cannot read are refused.
func TestDeriveDaemonFlags(t *testing.T) {
	cfg := func(mctpd, mdiod []string) []byte {
		b, err := json.Marshal(map[string]any{
			"Packages": []string{mctpdPkg, mdiodPkg},
			"PackageConfig": map[string]any{
				mctpdPkg: map[string]any{"CommandLineFlags": mctpd},
				mdiodPkg: map[string]any{"CommandLineFlags": mdiod},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name         string
		mctpd, mdiod []string
		target       string
		wantMctpd    []string
		wantMdiod    []string
		err          string
	}{
		{name: "null binding gets the UART", mctpd: []string{"-e=9", "null"}, mdiod: []string{"-kea=/k"}, target: "arm64",
			wantMctpd: []string{"-e=9", "serial", "/dev/hvc0", "-baud=115200"},
			wantMdiod: []string{"-kea=/k", "-port=A=ioctl:eth0", "-port=B=sim:generic100,script=up/100@2s;down@12s,cycle=20s"}},
		{name: "ports in the middle", mctpd: []string{"serial", "/dev/ttyUSB0", "-baud=9600", "-mtu=251"},
			mdiod: []string{"-a=1", "-port=X=sim:generic100", "-b=2", "--port=Y=ioctl:eth1", "-c=3"}, target: "rpi4",
			wantMctpd: []string{"serial", "/dev/ttyAMA0", "-baud=115200"},
			wantMdiod: []string{"-a=1", "-port=A=ioctl:eth0", "-port=B=sim:generic100,script=up/100@2s;down@12s,cycle=20s", "-b=2", "-c=3"}},
		{name: "no binding", mctpd: []string{"-e=8"}, mdiod: nil, target: "amd64", err: "no binding in CommandLineFlags"},
		{name: "bridge", mctpd: []string{"serial", "/dev/ttyS1", "+", "null"}, target: "amd64", err: "more than one binding"},
		{name: "flag value apart", mctpd: []string{"-e", "8", "serial", "/dev/ttyS1"}, target: "amd64", err: "has no =value"},
		{name: "port value apart", mctpd: []string{"null"}, mdiod: []string{"-port", "A=sim:generic100"}, target: "amd64", err: "write each port as -port=NAME=SPEC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Derive(cfg(tc.mctpd, tc.mdiod), Options{Target: tc.target})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got derived
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if f := got.PackageConfig[mctpdPkg].CommandLineFlags; !slices.Equal(f, tc.wantMctpd) {
				t.Errorf("mctpd flags = %q, want %q", f, tc.wantMctpd)
			}
			if f := got.PackageConfig[mdiodPkg].CommandLineFlags; !slices.Equal(f, tc.wantMdiod) {
				t.Errorf("mdiod flags = %q, want %q", f, tc.wantMdiod)
			}
		})
	}
}

// TestCommittedConfig checks the rules the committed instance must keep.
func TestCommittedConfig(t *testing.T) {
	var c derived
	if err := json.Unmarshal(committed(t), &c); err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "tickbox" {
		t.Errorf("Hostname = %q", c.Hostname)
	}
	for _, p := range []string{"github.com/gokrazy/serial-busybox", breakglassPkg,
		"github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl", "github.com/tickbox-fw/tickbox/appliance"} {
		if !slices.Contains(c.Packages, p) {
			t.Errorf("Packages lacks %s", p)
		}
	}
	// The hub fronts the daemons its shipped config names, with gokrazy's
	// password on its HTTP listener, and nothing else: mctpd alone serves
	// the demux names (mctp-mux, mctp-demux), and ctl serve refuses the
	// -demux flags it once had.
	if f := c.PackageConfig["github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl"].CommandLineFlags; !slices.Equal(f, []string{"serve", "-config=/etc/ctl/hub.json", "-password-file=/etc/gokr-pw.txt"}) {
		t.Errorf("ctl flags = %q, want [serve -config=/etc/ctl/hub.json -password-file=/etc/gokr-pw.txt]", f)
	}
	const mctpd, mctp = "github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctpd", "github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctp"
	if !slices.Contains(c.Packages, mctpd) || !slices.Contains(c.Packages, mctp) {
		t.Errorf("Packages lacks mctpd or mctp: %q", c.Packages)
	}
	if f := c.PackageConfig[mctpd].CommandLineFlags; len(f) < 3 || !slices.Equal(f[len(f)-3:], []string{"serial", "/dev/ttyS1", "-baud=115200"}) {
		t.Errorf("mctpd flags = %q, want the serial binding on /dev/ttyS1 last", f)
	}
	if pc := c.PackageConfig[mctp]; !pc.DontStart {
		t.Errorf("mctp is a client program and must be DontStart")
	}
	if c.KernelPackage != Targets["amd64"].KernelPackage || c.FirmwarePackage != "" || c.EEPROMPackage != "" {
		t.Errorf("committed config is not the amd64 target")
	}
	// ptpd owns the system clock: gokrazy's own ntp service, one of its
	// default packages, is left out; the others stay.
	if c.GokrazyPackages == nil {
		t.Errorf("GokrazyPackages is not set: gokrazy's default set includes its ntp service")
	} else if g := *c.GokrazyPackages; slices.Contains(g, "github.com/gokrazy/gokrazy/cmd/ntp") ||
		!slices.Contains(g, "github.com/gokrazy/gokrazy/cmd/dhcp") {
		t.Errorf("GokrazyPackages = %q: want dhcp and no ntp", g)
	}
	raw := map[string]any{}
	json.Unmarshal(committed(t), &raw)
	if u, _ := raw["Update"].(map[string]any); u["HTTPPassword"] != nil {
		t.Error("config.json must not hold the web UI password")
	}
	// Every package has a committed builddir, so gok never runs go get.
	for _, p := range append(slices.Clone(c.Packages), c.KernelPackage, Targets["rpi4"].KernelPackage,
		Targets["rpi4"].FirmwarePackage, Targets["rpi4"].EEPROMPackage, Targets["arm64"].KernelPackage, "github.com/gokrazy/gokrazy") {
		found := false
		for dir := filepath.Join("..", "builddir", p); dir != filepath.Join("..", "builddir"); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no builddir go.mod covers %s", p)
		}
	}
}

// TestDeriveVersion: a version and build time reach every tickbox
// package as -ldflags, and nothing else.
func TestDeriveVersion(t *testing.T) {
	out, err := Derive(committed(t), Options{Target: "amd64", Version: "v1.2.3-4-gabcdef0-dirty", BuildTime: "2026-12-07T13:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Packages      []string
		PackageConfig map[string]struct{ GoBuildFlags []string }
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	want := []string{"-ldflags=-X github.com/tickbox-fw/tickbox/services/ctl.linkVersion=v1.2.3-4-gabcdef0-dirty -X github.com/tickbox-fw/tickbox/services/ctl.linkBuildTime=2026-12-07T13:00:00Z"}
	n := 0
	for _, p := range c.Packages {
		got := c.PackageConfig[p].GoBuildFlags
		if strings.HasPrefix(p, "github.com/tickbox-fw/tickbox/") {
			n++
			if !slices.Equal(got, want) {
				t.Errorf("%s: GoBuildFlags %q, want %q", p, got, want)
			}
		} else if len(got) != 0 {
			t.Errorf("%s is not tickbox's but got GoBuildFlags %q", p, got)
		}
	}
	if n < 5 {
		t.Errorf("only %d tickbox packages stamped", n)
	}
	// Without them the config is left alone.
	plain, err := Derive(committed(t), Options{Target: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "GoBuildFlags") {
		t.Errorf("GoBuildFlags set without a version")
	}
}

func TestDeriveErrors(t *testing.T) {
	src := committed(t)
	for _, tc := range []struct {
		name string
		src  []byte
		opts Options
		want string
	}{
		{"unknown target", src, Options{Target: "mips"}, "unknown target"},
		{"bad json", []byte("{"), Options{Target: "amd64"}, "parsing config.json"},
		{"not an object", []byte("null"), Options{Target: "amd64"}, "not a JSON object"},
		{"keys differing in case", []byte(`{"Environment":["A=1"],"environment":[]}`), Options{Target: "amd64"}, `keys "Environment" and "environment" differ only in case`},
		{"packages not a list", []byte(`{"Packages":"x"}`), Options{Target: "amd64"}, "Packages is not a list"},
		{"private key", src, Options{Target: "amd64", AuthorizedKeys: "-----BEGIN OPENSSH PRIVATE KEY-----\n"}, "private key"},
		{"not a key", src, Options{Target: "amd64", AuthorizedKeys: "hello world\n"}, "not an ssh public key"},
		{"only comments", src, Options{Target: "amd64", AuthorizedKeys: "# nothing\n\n"}, "no public key"},
		{"huge", src, Options{Target: "amd64", AuthorizedKeys: strings.Repeat(key, 2000)}, "more than"},
		{"bad package", src, Options{Target: "amd64", ExtraPackages: []string{"a b"}}, "invalid extra package"},
		{"no breakglass", []byte(`{"Packages":[]}`), Options{Target: "amd64", AuthorizedKeys: key}, "not in Packages"},
		{"version with a space", src, Options{Target: "amd64", Version: "1.0 beta"}, `invalid version "1.0 beta"`},
		{"build time with a quote", src, Options{Target: "amd64", BuildTime: `2026"`}, "invalid build time"},
		{"ldflags already there", []byte(`{"Packages":["github.com/tickbox-fw/tickbox/appliance"],"PackageConfig":{"github.com/tickbox-fw/tickbox/appliance":{"GoBuildFlags":["-ldflags=-s"]}}}`),
			Options{Target: "amd64", Version: "v1"}, "already has -ldflags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Derive(tc.src, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRunWritesInstance(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "instance", "tickbox-rpi4")
	for range 2 { // the second run replaces the first
		if err := run([]string{"-src", "..", "-out", out, "-target", "rpi4", "-authorized-keys", keys}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "builddir", "github.com", "tickbox-fw", "tickbox", "go.mod")); err != nil {
		t.Errorf("builddir link does not reach the committed builddir: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "kernel.rpi") {
		t.Errorf("config.json is not the rpi4 config:\n%s", b)
	}
	if err := run([]string{"-src", "..", "-target", "rpi4"}); err == nil {
		t.Error("run without -out succeeded")
	}
	if err := run([]string{"-src", "..", "-out", out, "-authorized-keys", filepath.Join(dir, "missing")}); err == nil {
		t.Error("run with a missing key file succeeded")
	}
}

// FuzzDerive: any input either fails cleanly or yields a config that is
// valid JSON, targets the requested architecture, and derives to itself.
func FuzzDerive(f *testing.F) {
	f.Add([]byte(`{"Hostname":"tickbox","Packages":["github.com/gokrazy/breakglass"]}`), "amd64")
	f.Add([]byte(`{"Environment":["GOARCH=386","X=1"],"PackageConfig":{"github.com/gokrazy/breakglass":null}}`), "rpi4")
	f.Add([]byte(`[]`), "amd64")
	f.Fuzz(func(t *testing.T, src []byte, target string) {
		out, err := Derive(src, Options{Target: target})
		if err != nil {
			return
		}
		var c derived
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatalf("derived config is not valid: %v\n%s", err, out)
		}
		if !slices.Contains(c.Environment, "GOARCH="+Targets[target].GOARCH) {
			t.Fatalf("Environment = %q", c.Environment)
		}
		again, err := Derive(out, Options{Target: target})
		if err != nil || string(again) != string(out) {
			t.Fatalf("deriving twice changed the config: %v\n%s\n%s", err, out, again)
		}
	})
}

// TestModuleVersion: with -module-version the derived builddir requires
// the tickbox module at that version, still replaced by the checkout (so
// that go builds it from there), and links every other entry; without
// it the builddir is the committed one again. Bad versions are refused.
func TestModuleVersion(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "instance", "tickbox-amd64")
	mod := filepath.Join(out, "builddir", "github.com", "tickbox-fw", "tickbox", "go.mod")
	const version = "v0.0.0-20261207164300-0123456789ab"
	for _, tc := range []struct {
		name, version string
		err           string
	}{
		{name: "versioned", version: version},
		{name: "versioned again", version: version},
		{name: "a release tag", version: "v1.2.3"},
		{name: "build metadata", version: "v1.2.3+dirty", err: "invalid module version"},
		{name: "not a version", version: "e2e-abc", err: "invalid module version"},
		{name: "back to the committed builddir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-src", "..", "-out", out, "-target", "amd64"}
			if tc.version != "" {
				args = append(args, "-module-version", tc.version)
			}
			err := run(args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("run: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(mod)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(out, "builddir"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.version == "" {
				committed, err := os.ReadFile(filepath.Join("..", "builddir", "github.com", "tickbox-fw", "tickbox", "go.mod"))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode()&os.ModeSymlink == 0 || string(b) != string(committed) {
					t.Errorf("builddir is not the committed one (mode %v):\n%s", fi.Mode(), b)
				}
				return
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				t.Fatal("builddir is still the committed one")
			}
			if !strings.Contains(string(b), "\nrequire github.com/tickbox-fw/tickbox "+tc.version+"\n") {
				t.Errorf("go.mod does not require %s:\n%s", tc.version, b)
			}
			// The replace still reaches the checkout.
			var target string
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) == 4 && f[0] == "replace" {
					target = f[3]
				}
			}
			repo, err := os.ReadFile(filepath.Join(filepath.Dir(mod), filepath.FromSlash(target), "go.mod"))
			if err != nil || !strings.HasPrefix(string(repo), "module github.com/tickbox-fw/tickbox\n") {
				t.Errorf("replace %q does not reach the checkout: %v", target, err)
			}
			// Every other entry is the committed one.
			for _, p := range []string{"github.com/gokrazy/kernel.amd64/go.mod", "github.com/tickbox-fw/tickbox/go.sum"} {
				got, err1 := os.ReadFile(filepath.Join(out, "builddir", filepath.FromSlash(p)))
				want, err2 := os.ReadFile(filepath.Join("..", "builddir", filepath.FromSlash(p)))
				if err1 != nil || err2 != nil || string(got) != string(want) {
					t.Errorf("%s differs from the committed one: %v %v", p, err1, err2)
				}
			}
		})
	}
}
