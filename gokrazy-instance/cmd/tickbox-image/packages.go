package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// targetPackage is one of the target's kernel, firmware and EEPROM
// packages, which gok copies onto the boot partition.
type targetPackage struct {
	field string // KernelPackage, FirmwarePackage or EEPROMPackage
	pkg   string
}

// targetPackages reads the packages of a derived config.json.
func targetPackages(cfg []byte) ([]targetPackage, error) {
	var c struct{ KernelPackage, FirmwarePackage, EEPROMPackage string }
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, fmt.Errorf("reading the derived config: %w", err)
	}
	var out []targetPackage
	for _, p := range []targetPackage{{"KernelPackage", c.KernelPackage}, {"FirmwarePackage", c.FirmwarePackage}, {"EEPROMPackage", c.EEPROMPackage}} {
		if p.pkg != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// builddirFor is the directory of gok's build directory for pkg: the
// deepest directory on pkg's path under builddir that holds a go.mod, as
// gok looks it up; "" when there is none (gok would then create one and
// run go get, changing the checkout).
func builddirFor(builddir, pkg string) string {
	for p := pkg; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		dir := filepath.Join(builddir, filepath.FromSlash(p))
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return dir
		}
	}
	return ""
}

// requiredModule is the module of dir's go.mod require lines that
// provides pkg (the longest module path that is pkg or a prefix of it).
func requiredModule(gomod []byte, pkg string) string {
	best := ""
	inBlock := false
	for _, l := range strings.Split(string(gomod), "\n") {
		l, _, _ = strings.Cut(l, "//")
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "require" && len(f) >= 2 && f[1] == "(":
			inBlock = true
			continue
		case inBlock && f[0] == ")":
			inBlock = false
			continue
		case f[0] == "require" && len(f) >= 3:
			f = f[1:]
		case !inBlock:
			continue
		}
		if m := f[0]; (pkg == m || strings.HasPrefix(pkg, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	return best
}

// checkTargetPackages checks, before gok runs, that each kernel, firmware
// and EEPROM package of the target has a committed build directory that
// resolves its module, so that a target that cannot be built fails with
// one line naming the package and what to do, rather than with gok's
// error from deep inside its run (or gok creating a build directory in
// the checkout). goEnv is the build's environment.
func (e *env) checkTargetPackages(ctx context.Context, goBin string, goEnv []string, repo, target string, pkgs []targetPackage) error {
	builddir := filepath.Join(repo, "gokrazy-instance", "builddir")
	rel := func(p string) string {
		if r, err := filepath.Rel(repo, p); err == nil {
			return r
		}
		return p
	}
	for _, p := range pkgs {
		what := fmt.Sprintf("%s (the %s target's %s)", p.pkg, target, p.field)
		dir := builddirFor(builddir, p.pkg)
		if dir == "" {
			want := rel(filepath.Join(builddir, filepath.FromSlash(p.pkg)))
			return fail("%s has no build directory under %s; add %s/go.mod and go.sum requiring its module at a pinned version "+
				"(mkdir -p %s && cd %s && go mod init gokrazy/build/%s && go get %s@VERSION), as for the other targets",
				what, rel(builddir), want, want, want, path.Base(p.pkg), p.pkg)
		}
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			return fail("%s: %w", what, err)
		}
		mod := requiredModule(gomod, p.pkg)
		if mod == "" {
			return fail("%s: %s/go.mod does not require its module; add it with: cd %s && go get %s@VERSION",
				what, rel(dir), rel(dir), p.pkg)
		}
		cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", mod)
		var stdout, stderr bytes.Buffer
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, goEnv, &stdout, &stderr
		err = cmd.Run()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var dl struct{ Dir, Error string }
		json.Unmarshal(stdout.Bytes(), &dl)
		if err == nil && dl.Error == "" {
			if _, serr := os.Stat(dl.Dir); serr == nil {
				continue
			} else if !errors.Is(serr, fs.ErrNotExist) {
				return fail("%s: %w", what, serr)
			}
		}
		reason := dl.Error
		if reason == "" {
			reason = strings.TrimSpace(stderr.String())
		}
		if reason == "" && err != nil {
			reason = err.Error()
		}
		if reason == "" {
			reason = "go mod download reported no directory"
		}
		return fail("%s cannot be resolved from %s/go.mod: %s; check its require line and go.sum (cd %s && go get %s@VERSION) and that the module proxy is reachable",
			what, rel(dir), oneLineText(reason), rel(dir), mod)
	}
	return nil
}

// oneLineText joins a multi-line message into one line.
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }
