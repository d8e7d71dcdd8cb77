package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/ctltest"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
)

// TestConsoleHandoffInProcess checks the console's half of a re-exec
// without exec'ing: close with handoff returns the live connections with
// their persistent line and unread input, and a new Server resumes them.
func TestConsoleHandoffInProcess(t *testing.T) {
	tc := startConsole(t, Options{})
	a := tc.dial(t)
	ra := bufio.NewReader(a)
	io.WriteString(a, "pticker 1\n")
	if l := readLine(t, a, ra); l != "Error:  pticker: unexpected parameter \"1\": takes at most 0" {
		t.Fatalf("got %q", l)
	}
	io.WriteString(a, "pticker\n")
	readUntil(t, a, ra, func(l string) bool { return l == "ptick 2" })

	b := tc.dial(t)
	rb := bufio.NewReader(b)
	// One write: the second line is buffered while "block" runs.
	io.WriteString(b, "block\nadd 1 2\n")
	if l := readLine(t, b, rb); l != "blocking" {
		t.Fatalf("got %q", l)
	}

	// Take the front end away from the server as Reexec does.
	tc.srv.Remove(tc.cs)
	type closed struct {
		hf  *unixsock.Files
		err error
	}
	done := make(chan closed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hf, err := tc.cs.Stop(ctx, true)
		done <- closed{hf, err}
	}()
	<-tc.cs.handoff
	// The in-flight non-streaming command finishes and replies first.
	close(tc.block)
	if l := readLine(t, b, rb); l != "unblocked" {
		t.Fatalf("got %q", l)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	hf := res.hf
	if hf.Sock == nil || !hf.Owned || len(hf.Conns) != 2 {
		t.Fatalf("handoff: %+v", hf)
	}
	var replays, pendings []string
	for _, c := range hf.Conns {
		replays = append(replays, c.Replay)
		pendings = append(pendings, string(c.Pending))
	}
	if strings.Join(replays, "|") != "pticker|" && strings.Join(replays, "|") != "|pticker" {
		t.Errorf("replays %q", replays)
	}
	if strings.Join(pendings, "|") != "add 1 2\n|" && strings.Join(pendings, "|") != "|add 1 2\n" {
		t.Errorf("pending %q", pendings)
	}
	if _, err := os.Lstat(tc.path); err != nil {
		t.Fatalf("socket file gone during handoff: %v", err)
	}
	// While nobody serves, the connections stay open and a new client
	// waits in the listen backlog.
	io.WriteString(b, "add 2 2\n")
	c, err := Dial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "echo queued\n")

	// The "next image".
	d2 := ctl.NewRegistry(ctl.Options{Name: "test", Version: "2", Logger: testLogger(t)})
	d2.MustRegister(testCommands(make(chan struct{}))...)
	conns := hf.Conns
	for i := range conns {
		conns[i].Listener = tc.path
	}
	srv2 := ctl.NewServerFrom(d2, unixsock.Hold(hf.Sock, hf.Owned, conns...))
	if _, err := Serve(srv2, ctl.SocketSpec{Addr: tc.path}, Options{}); err != nil {
		t.Fatal(err)
	}
	ctltest.CloseOnCleanup(t, srv2)
	// The stream resumes on the same connection, numbered afresh.
	readUntil(t, a, ra, func(l string) bool { return l == "ptick 0" })
	if l := readLine(t, b, rb); l != "sum: 3" {
		t.Fatalf("pending line: got %q", l)
	}
	if l := readLine(t, b, rb); l != "sum: 4" {
		t.Fatalf("line sent during the handoff: got %q", l)
	}
	if l := readLine(t, c, bufio.NewReader(c)); l != "queued" {
		t.Fatalf("queued client: got %q", l)
	}
	// A new line still cancels the replayed stream.
	io.WriteString(a, "echo stop\n")
	readUntil(t, a, ra, func(l string) bool { return l == "stop" })
}

const (
	helperEnv     = "TB_CONSOLE_HELPER"
	helperSockEnv = "TB_CONSOLE_HELPER_SOCK"
)

// TestConsoleHelperProcess is the daemon TestConsoleReexec runs: the
// test binary itself, so that its re-exec lands here again (os.Args and
// the environment are kept) and resumes serving.
func TestConsoleHelperProcess(t *testing.T) {
	sock := os.Getenv(helperSockEnv)
	if os.Getenv(helperEnv) != "1" || sock == "" {
		return // runs only as TestConsoleReexec's child
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d := ctl.NewRegistry(ctl.Options{Name: "helper", Version: "9.9.9", Logger: log})
	srv := ctl.NewServer(d)
	gen := d.Status()["reloads"]
	d.MustRegister(
		&ctl.Command{
			Name:       "gticker",
			Comment:    "stream lines naming this image",
			Stream:     true,
			Persistent: true,
			Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
				tk := time.NewTicker(5 * time.Millisecond)
				defer tk.Stop()
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(call.Out, "gtick gen=%v pid=%d n=%d", gen, os.Getpid(), i); err != nil {
						return ctl.Fail("%v", err)
					}
					select {
					case <-ctx.Done():
						return ctl.Result{}
					case <-tk.C:
					}
				}
			},
		},
		&ctl.Command{
			Name:   "echo",
			Params: []ctl.Param{{Name: "words", Rest: true}},
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				return ctl.OK(strings.Join(call.Args.Rest(), " "), nil)
			},
		},
		srv.ReexecCommand(),
	)
	if _, err := Serve(srv, ctl.SocketSpec{Addr: sock}, Options{}); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR2)
	go func() {
		for range sigs {
			if err := srv.Reexec(); err != nil {
				srv.Fail(err)
			}
		}
	}()
	if err := srv.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// status runs status-get and returns its key: value lines.
func status(t *testing.T, c net.Conn, r *bufio.Reader) map[string]string {
	t.Helper()
	if _, err := io.WriteString(c, "status-get\n"); err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	for {
		l := readLine(t, c, r)
		if strings.HasPrefix(l, " ") || (strings.HasSuffix(l, ":") && !strings.Contains(l, " ")) {
			// A nested map (requests, connections): its header line
			// and indented entries.
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("status-get line %q", l)
		}
		st[k] = v
		if k == "uptime" {
			return st
		}
	}
}

func waitReloads(t *testing.T, c net.Conn, r *bufio.Reader, want string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := status(t, c, r)
		if st["reloads"] == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("reloads stayed %s, want %s", st["reloads"], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsoleReexec re-executes a real daemon process in place and
// checks that the pid, the socket, the console connections and their
// persistent stream survive, that reloads counts up, and that input sent
// around the exec is answered.
func TestConsoleReexec(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(testutil.ShortDir(t), "c.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestConsoleHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperSockEnv+"="+sock)
	var out testutil.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() || testing.Verbose() {
			t.Logf("daemon output:\n%s", out.String())
		}
	})
	pid := fmt.Sprint(cmd.Process.Pid)

	var a *net.UnixConn
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := Dial(sock)
		if err == nil {
			a = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not listen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer a.Close()
	ra := bufio.NewReader(a)
	io.WriteString(a, "gticker\n")
	readUntil(t, a, ra, func(l string) bool { return strings.HasPrefix(l, "gtick gen=0 pid="+pid+" n=2") })

	b, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rb := bufio.NewReader(b)
	if st := status(t, b, rb); st["pid"] != pid || st["reloads"] != "0" {
		t.Fatalf("status before: %v", st)
	}

	// The reply comes before the exec; the next line, sent in the same
	// write, is answered by one image or the other.
	io.WriteString(b, "reexec\necho around\n")
	if l := readLine(t, b, rb); l != "Re-executing." {
		t.Fatalf("reexec reply %q", l)
	}
	// A client connecting during the exec waits in the backlog.
	c, err := Dial(sock)
	if err != nil {
		t.Fatalf("connect during re-exec: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "echo backlog\n")
	if l := readLine(t, b, rb); l != "around" {
		t.Fatalf("line sent around the re-exec: got %q", l)
	}
	if l := readLine(t, c, bufio.NewReader(c)); l != "backlog" {
		t.Fatalf("client connected during the re-exec: got %q", l)
	}
	st := waitReloads(t, b, rb, "1")
	if st["pid"] != pid {
		t.Fatalf("pid changed: %v, want %s", st, pid)
	}
	// The same connection keeps streaming: replayed in the new image.
	readUntil(t, a, ra, func(l string) bool { return strings.HasPrefix(l, "gtick gen=1 pid="+pid+" ") })

	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("socket file after re-exec: %v %v", fi, err)
	}
	d, err := Dial(sock)
	if err != nil {
		t.Fatalf("new client after re-exec: %v", err)
	}
	defer d.Close()
	rd := bufio.NewReader(d)
	if st := status(t, d, rd); st["pid"] != pid || st["reloads"] != "1" {
		t.Fatalf("new client status: %v", st)
	}

	// SIGUSR2 re-execs again, from the re-executed image.
	if err := cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitReloads(t, d, rd, "2")
	readUntil(t, a, ra, func(l string) bool { return strings.HasPrefix(l, "gtick gen=2 pid="+pid+" ") })

	io.WriteString(d, "shutdown\n")
	if l := readLine(t, d, rd); l != "Shutting down." {
		t.Fatalf("shutdown reply %q", l)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not exit after shutdown")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
	// The streaming connection was closed by the shutdown.
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(ra); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("stream connection after shutdown: %v", err)
	}
}
