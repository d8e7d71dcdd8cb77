package ctl

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// lockedBuffer and shortDir are the shared test helpers under the names
// this package's tests use.
type lockedBuffer = testutil.LockedBuffer

func shortDir(t testing.TB) string { t.Helper(); return testutil.ShortDir(t) }

// needSocat fails the test when socat, the independent client the
// conformance tests talk through, is missing: ./test.sh installs it, so a
// missing socat is a broken setup, not a reason to skip.
func needSocat(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("socat is required (./test.sh installs it with apt): %v", err)
	}
}

// closeOnCleanup closes srv when the test ends, giving in-flight work 5 s.
func closeOnCleanup(t testing.TB, srv *Server) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
}
