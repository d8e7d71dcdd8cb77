package ctl

import (
	"os"
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
