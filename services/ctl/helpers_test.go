package ctl

import (
	"os"
	"os/exec"
	"testing"
)

// shortDir returns a temporary directory short enough for socket paths:
// t.TempDir() paths can exceed sun_path's 107 bytes.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// needSocat fails the test when socat, the independent client the
// conformance tests talk through, is missing: ./test.sh installs it, so a
// missing socat is a broken setup, not a reason to skip.
func needSocat(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("socat is required (./test.sh installs it with apt): %v", err)
	}
}
