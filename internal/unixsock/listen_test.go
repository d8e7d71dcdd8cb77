package unixsock

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestSocketPathRules(t *testing.T) {
	tests := []struct {
		name    string
		network string
		setup   func(t *testing.T, path string) (cleanup func())
		mode    fs.FileMode
		wantErr string
		check   func(t *testing.T, path string)
	}{
		{
			name: "fresh path with missing parents", network: "unix",
			setup: func(t *testing.T, path string) func() { return nil },
			check: func(t *testing.T, path string) {
				fi, err := os.Stat(filepath.Dir(path))
				if err != nil || fi.Mode().Perm() != 0o755 {
					t.Fatalf("parent: %v %v", fi.Mode(), err)
				}
			},
		},
		{
			name: "stale stream socket is replaced", network: "unix",
			setup: func(t *testing.T, path string) func() {
				os.MkdirAll(filepath.Dir(path), 0o755)
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				l.Close()
				return nil
			},
		},
		{
			name: "stale datagram socket is replaced", network: "unixgram",
			setup: func(t *testing.T, path string) func() {
				os.MkdirAll(filepath.Dir(path), 0o755)
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return nil
			},
		},
		{
			name: "live socket is refused", network: "unix",
			setup: func(t *testing.T, path string) func() {
				os.MkdirAll(filepath.Dir(path), 0o755)
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				return func() { l.Close() }
			},
			wantErr: "address already in use by a running process",
		},
		{
			name: "live socket of another type is refused", network: "unix",
			setup: func(t *testing.T, path string) func() {
				os.MkdirAll(filepath.Dir(path), 0o755)
				c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				return func() { c.Close() }
			},
			wantErr: "address already in use by a running process",
		},
		{
			name: "directory is refused", network: "unix",
			setup: func(t *testing.T, path string) func() {
				if err := os.MkdirAll(path, 0o755); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			wantErr: "is a directory, not a socket",
		},
		{
			name: "regular file is refused and kept", network: "unixgram",
			setup: func(t *testing.T, path string) func() {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			wantErr: "exists and is not a socket",
			check: func(t *testing.T, path string) {
				if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
					t.Fatalf("file changed: %q %v", b, err)
				}
			},
		},
		{
			name: "custom mode", network: "unix", mode: 0o600,
			setup: func(t *testing.T, path string) func() { return nil },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(testutil.ShortDir(t), "run", "x", "s.sock")
			if c := tc.setup(t, path); c != nil {
				defer c()
			}
			var err error
			var sock *Socket
			var closer func() error
			spec := Spec{Addr: path, Mode: tc.mode}
			if tc.network == "unixgram" {
				var c *net.UnixConn
				c, sock, err = ListenDgram(nil, quietLogger(), spec)
				if c != nil {
					closer = c.Close
				}
			} else {
				var l *net.UnixListener
				l, sock, err = ListenStream(nil, quietLogger(), tc.network, spec)
				if l != nil {
					closer = l.Close
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error does not name the path: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.mode
				if want == 0 {
					want = DefaultMode
				}
				if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != want {
					t.Fatalf("mode %v, want socket %v", fi.Mode(), want)
				}
				closer()
				sock.Remove()
				if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("socket not removed: %v", err)
				}
			}
			if tc.check != nil {
				tc.check(t, path)
			}
		})
	}
}

func TestSocketPathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("x", 110)
	_, _, err := ListenStream(nil, quietLogger(), "unix", Spec{Addr: path})
	if err == nil || !strings.Contains(err.Error(), "socket path too long") {
		t.Fatalf("err %v", err)
	}
}

func TestAbstractInUse(t *testing.T) {
	name := fmt.Sprintf("@tickbox-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	l, _, err := ListenStream(nil, quietLogger(), "unixpacket", Spec{Addr: name})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, _, err = ListenStream(nil, quietLogger(), "unixpacket", Spec{Addr: name})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second listen: %v", err)
	}
}

func TestPeerPolicy(t *testing.T) {
	me := uint32(os.Geteuid())
	tests := []struct {
		name   string
		policy PeerPolicy
		cred   Cred
		want   bool
	}{
		{"root", PeerPolicy{}, Cred{UID: 0, GID: 0}, true},
		{"self", PeerPolicy{}, Cred{UID: me, GID: 12345}, true},
		{"stranger", PeerPolicy{}, Cred{UID: 4242, GID: 4242}, me == 4242},
		{"allowed gid", PeerPolicy{GIDs: []uint32{77}}, Cred{UID: 4242, GID: 77}, true},
		{"allowed uid", PeerPolicy{UIDs: []uint32{4242}}, Cred{UID: 4242, GID: 1}, true},
		{"other gid", PeerPolicy{GIDs: []uint32{77}}, Cred{UID: 4243, GID: 78}, me == 4243},
		{"one of several uids", PeerPolicy{UIDs: []uint32{1000, 65534}}, Cred{UID: 65534, GID: 1}, true},
		{"uid and gid lists, neither matches", PeerPolicy{UIDs: []uint32{1000}, GIDs: []uint32{20}}, Cred{UID: 4244, GID: 21}, me == 4244},
	}
	for _, tc := range tests {
		if got := tc.policy.Allows(tc.cred); got != tc.want {
			t.Errorf("%s: allows=%v want %v", tc.name, got, tc.want)
		}
	}
}

// TestSocketActivation starts a child the way systemd does: the listening
// socket at fd 3, LISTEN_FDS=1 and LISTEN_PID set to the child's own PID
// (the shell's exec keeps the PID). The child must adopt the socket rather
// than bind a new one, and answer on it.
func TestSocketActivation(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		testutil.Require(t, "no sh to emulate the service manager: "+err.Error())
	}
	path := filepath.Join(testutil.ShortDir(t), "act.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	// The service manager keeps the socket file; only the fd moves.
	l.SetUnlinkOnClose(false)
	l.Close()
	cmd := exec.Command(sh, "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestActivationChild$", "-test.v")
	cmd.Env = append(os.Environ(), "TB_ACTIVATION_CHILD="+path, "LISTEN_FDS=1", "LISTEN_FDNAMES=console")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "CHILD READY") {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("child did not start")
	}
	go func() {
		for sc.Scan() {
			t.Log("child:", sc.Text())
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child failed: %v", err)
	}
}

// TestActivationChild is the child side of TestSocketActivation.
func TestActivationChild(t *testing.T) {
	path := os.Getenv("TB_ACTIVATION_CHILD")
	if path == "" {
		return // only runs as TestSocketActivation's child
	}
	in := ReadEnv(quietLogger())
	if len(in.socks) != 1 || in.socks[0].addr != path || in.socks[0].name != "console" {
		t.Fatalf("inherited %+v", in.socks)
	}
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		t.Fatal("activation variables not unset")
	}
	// A request for the same address adopts fd 3 instead of binding.
	l, sock, err := ListenStream(in, quietLogger(), "unix", Spec{Addr: path})
	if err != nil {
		t.Fatal(err)
	}
	if sock.Created {
		t.Fatal("adopted systemd socket marked as ours to remove")
	}
	fmt.Println("CHILD READY")
	// Prove the adopted listener is live: connect by path and accept.
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	l.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("accept on adopted socket: %v", err)
	}
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q %v", b, err)
	}
	c.Close()
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("adopted socket file removed on close: %v", err)
	}
}
