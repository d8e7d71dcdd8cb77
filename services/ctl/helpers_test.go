package ctl

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
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

// lockedBuffer collects output (logs, a child's stderr) written from
// several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// closeOnCleanup closes srv when the test ends, giving in-flight work 5 s.
func closeOnCleanup(t testing.TB, srv *Server) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
}
