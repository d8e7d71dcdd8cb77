package testutil

import (
	"os"
	"os/exec"
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
