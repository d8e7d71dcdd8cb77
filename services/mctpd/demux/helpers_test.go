package demux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

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
