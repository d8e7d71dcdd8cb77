package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRequire runs each case in a child test binary and checks that an
// unmet requirement skips outside CI and fails under CI=true.
func TestRequire(t *testing.T) {
	if os.Getenv("TESTUTIL_REQUIRE_CHILD") != "" {
		switch os.Getenv("TESTUTIL_REQUIRE_CHILD") {
		case "unmet":
			Require(t, "the moon is down")
		case "met":
			Require(t, "")
		case "tool":
			NeedTool(t, "tickbox-no-such-program", "nothing")
		}
		return
	}
	for _, tc := range []struct {
		name, mode, ci string
		fail           bool
		out            string
	}{
		{"unmet outside CI skips", "unmet", "", false, "SKIP: TestRequire"},
		{"unmet in CI fails", "unmet", "true", true, "CI=true: integration tests must run"},
		{"met passes in CI", "met", "true", false, "PASS: TestRequire"},
		{"missing tool in CI fails", "tool", "true", true, "tickbox-no-such-program not installed"},
		{"missing tool outside CI skips", "tool", "false", false, "*** SKIPPING TestRequire cannot run: tickbox-no-such-program"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestRequire$", "-test.v")
			cmd.Env = append(os.Environ(), "TESTUTIL_REQUIRE_CHILD="+tc.mode, "CI="+tc.ci)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.fail {
				t.Fatalf("exit error %v, want failure %v:\n%s", err, tc.fail, out)
			}
			if !strings.Contains(string(out), tc.out) {
				t.Fatalf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}
}

// TestNeedToolPath checks where NeedTool finds a program: on PATH first,
// then in /usr/sbin, which is not on a normal user's PATH.
func TestNeedToolPath(t *testing.T) {
	bin := t.TempDir()
	tool := filepath.Join(bin, "tbtool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Any executable in /usr/sbin stands for a daemon Debian puts there.
	var sbin string
	ents, _ := os.ReadDir("/usr/sbin")
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			sbin = e.Name()
			break
		}
	}
	if sbin == "" {
		t.Fatal("no executable in /usr/sbin to look for")
	}
	for _, tc := range []struct{ name, path, want string }{
		{"tbtool", bin, tool},
		{sbin, bin, "/usr/sbin/" + sbin},
	} {
		t.Setenv("PATH", tc.path)
		if got := NeedTool(t, tc.name, "nothing"); got != tc.want {
			t.Errorf("NeedTool(%s) with PATH=%s = %q, want %q", tc.name, tc.path, got, tc.want)
		}
	}
}
