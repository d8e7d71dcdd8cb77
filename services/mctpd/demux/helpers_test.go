package demux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// record is one captured log record.
type record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// logs is a thread-safe slog handler that keeps every record, so tests
// can assert exact log texts.
type logs struct {
	mu    sync.Mutex
	recs  []record
	attrs []slog.Attr
	root  *logs
}

func newLogs() *logs { l := &logs{}; l.root = l; return l }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	rec := record{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	l.root.mu.Lock()
	l.root.recs = append(l.root.recs, rec)
	l.root.mu.Unlock()
	return nil
}

func (l *logs) WithAttrs(as []slog.Attr) slog.Handler {
	return &logs{attrs: append(append([]slog.Attr(nil), l.attrs...), as...), root: l.root}
}

func (l *logs) WithGroup(string) slog.Handler { return l }

func (l *logs) records() []record {
	l.root.mu.Lock()
	defer l.root.mu.Unlock()
	return append([]record(nil), l.root.recs...)
}

// find returns the records whose message is msg.
func (l *logs) find(msg string) []record {
	var out []record
	for _, r := range l.records() {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func (l *logs) dump() string {
	var b strings.Builder
	for _, r := range l.records() {
		fmt.Fprintf(&b, "%s %q %v\n", r.Level, r.Msg, r.Attrs)
	}
	return b.String()
}

// TestHelperProcess is not a test: it is the child process that
// runAsNobody starts under another uid. It registers type 5 on the demux
// named in its environment and reports what became of the connection.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv("TICKBOX_DEMUX_TEST_DIAL")
	if name == "" {
		return // runs only as a child of another test
	}
	c, err := Dial(name, 5)
	switch {
	case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
		fmt.Println("recv: closed") // refused before the registration was written
	case err != nil:
		fmt.Println("dial:", err)
	default:
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _, _, err = c.Recv()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			// A refused connection is closed with the registration
			// unread, which the kernel reports as a reset.
			fmt.Println("recv: closed")
		} else {
			fmt.Println("recv:", err)
		}
	}
	os.Exit(0)
}

// runAsNobody runs TestHelperProcess as uid/gid 65534 against the demux
// name and returns its output. The test binary is copied to a
// world-readable directory first, because go test builds it in a private
// one.
func runAsNobody(t *testing.T, name string) string {
	t.Helper()
	testutil.NeedRoot(t, "switch to uid 65534")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "demux.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "TICKBOX_DEMUX_TEST_DIAL="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}
