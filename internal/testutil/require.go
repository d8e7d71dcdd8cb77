package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Require stops a test that cannot run here, saying why (nothing happens
// when why is empty). Outside CI the test is skipped with a line on stderr
// that stands out in `go test` output; with CI=true it fails instead,
// because CI installs every dependency and runs as root, so a test that
// cannot run there is a broken set-up, not a reason to go green.
func Require(t testing.TB, why string) {
	t.Helper()
	if why == "" {
		return
	}
	msg := fmt.Sprintf("%s cannot run: %s", t.Name(), why)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: integration tests must run)")
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s ***\n\n", msg)
	t.Skip(msg)
}

// NeedRoot requires root, saying what for ("create a network namespace").
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Require(t, "needs root to "+what)
	}
}

// NeedTool requires the program name on PATH; pkg names the Debian
// package ./test.sh installs it from.
func NeedTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		Require(t, fmt.Sprintf("%s not installed (./test.sh installs %s): %v", name, pkg, err))
	}
}
