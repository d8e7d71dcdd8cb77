package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRequiredModule(t *testing.T) {
	const block = "module gokrazy/build/x\n\ngo 1.26\n\nrequire (\n\tgithub.com/a/b v1.0.0 // indirect\n\tgithub.com/a/b/c v0.1.0\n)\n"
	for _, tc := range []struct {
		name, gomod, pkg, want string
	}{
		{"single line", "module m\nrequire github.com/gokrazy/kernel.arm64 v0.0.0-1 // indirect\n", "github.com/gokrazy/kernel.arm64", "github.com/gokrazy/kernel.arm64"},
		{"block, the longest prefix", block, "github.com/a/b/c/cmd/x", "github.com/a/b/c"},
		{"block, the module itself", block, "github.com/a/b", "github.com/a/b"},
		{"a longer name is not a prefix", block, "github.com/a/bc", ""},
		{"replace lines do not count", "module m\nreplace github.com/a/b => ../b\n", "github.com/a/b", ""},
		{"commented out", "module m\n// require github.com/a/b v1.0.0\n", "github.com/a/b", ""},
	} {
		if got := requiredModule([]byte(tc.gomod), tc.pkg); got != tc.want {
			t.Errorf("%s: requiredModule = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCheckTargetPackages runs the check against build directories of the
// test's own: a missing one, one that does not require the module, one
// whose module cannot be resolved (the module proxy turned off) and one
// that resolves (serial-busybox's, copied from the committed builddir).
func TestCheckTargetPackages(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	bd := filepath.Join(repo, "gokrazy-instance", "builddir")
	write := func(rel, content string) {
		p := filepath.Join(bd, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("example.com/kernel.norequire/go.mod", "module gokrazy/build/kernel.norequire\n\ngo 1.26\n")
	write("example.invalid/kernel.gone/go.mod", "module gokrazy/build/kernel.gone\n\ngo 1.26\n\nrequire example.invalid/kernel.gone v0.0.1 // indirect\n")
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "gokrazy-instance", "builddir", "github.com", "gokrazy", "serial-busybox", f))
		if err != nil {
			t.Fatal(err)
		}
		write("github.com/gokrazy/serial-busybox/"+f, string(b))
	}
	offline := append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
	for _, tc := range []struct {
		name string
		pkgs []targetPackage
		env  []string
		err  string
	}{
		{name: "none", env: os.Environ()},
		{name: "no build directory", pkgs: []targetPackage{{"KernelPackage", "github.com/gokrazy/kernel.nosuch"}}, env: os.Environ(),
			err: "github.com/gokrazy/kernel.nosuch (the t target's KernelPackage) has no build directory under gokrazy-instance/builddir; " +
				"add gokrazy-instance/builddir/github.com/gokrazy/kernel.nosuch/go.mod and go.sum requiring its module at a pinned version " +
				"(mkdir -p gokrazy-instance/builddir/github.com/gokrazy/kernel.nosuch && cd gokrazy-instance/builddir/github.com/gokrazy/kernel.nosuch && " +
				"go mod init gokrazy/build/kernel.nosuch && go get github.com/gokrazy/kernel.nosuch@VERSION), as for the other targets"},
		{name: "not required", pkgs: []targetPackage{{"FirmwarePackage", "example.com/kernel.norequire"}}, env: os.Environ(),
			err: "example.com/kernel.norequire (the t target's FirmwarePackage): gokrazy-instance/builddir/example.com/kernel.norequire/go.mod does not require its module; " +
				"add it with: cd gokrazy-instance/builddir/example.com/kernel.norequire && go get example.com/kernel.norequire@VERSION"},
		{name: "cannot be resolved", pkgs: []targetPackage{{"EEPROMPackage", "example.invalid/kernel.gone"}}, env: offline,
			err: "example.invalid/kernel.gone (the t target's EEPROMPackage) cannot be resolved from gokrazy-instance/builddir/example.invalid/kernel.gone/go.mod: "},
		{name: "resolves", pkgs: []targetPackage{{"KernelPackage", "github.com/gokrazy/serial-busybox"}}, env: os.Environ()},
		{name: "the first failure is reported", pkgs: []targetPackage{{"KernelPackage", "github.com/gokrazy/serial-busybox"}, {"FirmwarePackage", "example.com/x"}},
			env: os.Environ(), err: "example.com/x (the t target's FirmwarePackage) has no build directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := testEnv("flash.sh", nil, "")
			err := e.checkTargetPackages(context.Background(), goBin, tc.env, repo, "t", tc.pkgs)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v\nwant one line starting %q", err, tc.err)
			}
			if tc.name == "cannot be resolved" && !strings.Contains(err.Error(), "GOPROXY=off") {
				t.Errorf("err = %v: go's reason is not kept", err)
			}
		})
	}
}

// TestTargetPackagesOfTheInstance: the kernel, firmware and EEPROM
// packages of every target's instance (derived as the build derives
// them) have build directories that resolve.
func TestTargetPackagesOfTheInstance(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	repo := repoRoot(t)
	for _, tc := range []struct {
		target string
		want   []string // field=package
	}{
		{"amd64", []string{"KernelPackage=github.com/gokrazy/kernel.amd64"}},
		{"arm64", []string{"KernelPackage=github.com/gokrazy/kernel.arm64"}},
		{"rpi4", []string{"KernelPackage=github.com/gokrazy/kernel.rpi", "FirmwarePackage=github.com/gokrazy/firmware",
			"EEPROMPackage=github.com/gokrazy/rpi-eeprom"}},
	} {
		target := tc.target
		out := filepath.Join(t.TempDir(), "instance")
		cmd := exec.Command(goBin, "run", "./gokrazy-instance/derive", "-src", "gokrazy-instance", "-out", out, "-target", target)
		cmd.Dir = repo
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("derive %s: %v\n%s", target, err, b)
		}
		cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := targetPackages(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pkgs {
			got = append(got, p.field+"="+p.pkg)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: packages %q, want %q", target, got, tc.want)
		}
		e, _, _ := testEnv("flash.sh", nil, "")
		if err := e.checkTargetPackages(context.Background(), goBin, os.Environ(), repo, target, pkgs); err != nil {
			t.Errorf("%s: %v", target, err)
		}
	}
}
