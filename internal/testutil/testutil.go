// Package testutil holds the small helpers tickbox's tests share:
// goroutine-safe output capture, socket-friendly temporary directories,
// polling for a condition, a free loopback port, hex fixtures, a Kea control channel client and
// the rule for a test that cannot run here (Require).
package testutil

import (
	"bytes"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// LockedBuffer collects output (logs, a child's stderr) written from
// several goroutines while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset discards everything written so far.
func (l *LockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// ShortDir returns a temporary directory short enough for socket paths
// (t.TempDir() paths can exceed sun_path's 107 bytes), removed when the
// test ends.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// WaitFor polls cond until it holds, failing the test after timeout.
// The first polls come quickly (from 50 µs, doubling up to 2 ms), because
// most conditions hold within microseconds and a fixed 2 ms sleep per
// wait dominated the fuzz targets that wait a few times per input.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 50 * time.Microsecond; !cond(); wait = min(2*wait, 2*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

// Unhex decodes a hex fixture, ignoring spaces (written between fields
// for the reader), and fails the test on bad hex.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// FreePort returns a loopback TCP port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
