package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestHelperProcess runs sfptpdctl's run as a child, so that a test can
// run it as another user.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("SFPTPDCTL_HELPER") == "" {
		return
	}
	os.Exit(run(strings.Split(os.Getenv("SFPTPDCTL_ARGS"), "\n"), os.Stdout, os.Stderr))
}

func TestErrors(t *testing.T) {
	dir := testutil.ShortDir(t)
	os.Chmod(dir, 0o755)
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("x"), 0o644)
	stream := filepath.Join(dir, "stream.sock")
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stream, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	long := "/" + strings.Repeat("d", 120)

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // stdout
		err  string // stderr, exact or prefix with "..."
	}{
		{"missing", []string{"-s", missing, "logrotate"}, 1, "", "connect: No such file or directory\n"},
		{"stale", []string{"--socket", stale, "logrotate"}, 1, "", "connect: Connection refused\n"},
		{"regular file", []string{"--socket=" + regular, "logrotate"}, 1, "", "connect: Connection refused\n"},
		{"stream socket", []string{"logrotate", "-s", stream}, 1, "", "connect: Protocol wrong type for socket\n"},
		{"too long", []string{"-s", long, "exit"}, 1, "", "address too long: " + long + "\n"},
		{"no command", []string{"-s", missing}, 1, "", "syntax: sfptpdctl [OPTIONS] COMMAND-STRING*..."},
		{"help", []string{"--help"}, 0, "syntax: sfptpdctl [OPTIONS] COMMAND-STRING*...", ""},
		{"bad option", []string{"-x", "exit"}, 1, "", "sfptpdctl: invalid option -- 'x'\nunexpected option: exit\nsyntax: sfptpdctl [OPTIONS]..."},
		{"bad option last", []string{"exit", "-x"}, 1, "", "sfptpdctl: invalid option -- 'x'\nunexpected option: (null)\nsyntax:..."},
		{"bad option in cluster", []string{"-xh", "exit"}, 1, "", "sfptpdctl: invalid option -- 'x'\nunexpected option: -xh\nsyntax:..."},
		{"help in cluster", []string{"-hx"}, 0, "syntax: sfptpdctl [OPTIONS] COMMAND-STRING*...", ""},
		{"missing argument", []string{"exit", "-s"}, 1, "", "sfptpdctl: option requires an argument -- 's'\nunexpected option: (null)\nsyntax:..."},
		{"missing long argument", []string{"exit", "--socket"}, 1, "", "sfptpdctl: option '--socket' requires an argument\nunexpected option: (null)\n..."},
		{"unknown long", []string{"--sock=x", "--bogus=1", "exit"}, 1, "", "sfptpdctl: unrecognized option '--bogus=1'\nunexpected option: exit\n..."},
		{"help with argument", []string{"--help=yes", "exit"}, 1, "", "sfptpdctl: option '--help' doesn't allow an argument\nunexpected option: exit\n..."},
		{"ambiguous", []string{"--=x"}, 1, "", "sfptpdctl: option '--' is ambiguous; possibilities: '--help' '--socket'\nunexpected option: (null)\n..."},
		{"abbreviated help", []string{"--he"}, 0, "syntax: sfptpdctl [OPTIONS] COMMAND-STRING*...", ""},
		{"abbreviated socket", []string{"--so", missing, "exit"}, 1, "", "connect: No such file or directory\n"},
		{"attached short argument", []string{"-s" + missing, "exit"}, 1, "", "connect: No such file or directory\n"},
		{"help wins over later error", []string{"-h", "-x"}, 0, "syntax:...", ""},
		{"error before help", []string{"-x", "-h"}, 1, "", "sfptpdctl: invalid option -- 'x'\nunexpected option: -h\n..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := run(tc.args, &out, &errb)
			match := func(got, want string) bool {
				if p, ok := strings.CutSuffix(want, "..."); ok {
					return strings.HasPrefix(got, p)
				}
				return got == want
			}
			if code != tc.code || !match(out.String(), tc.out) || !match(errb.String(), tc.err) {
				t.Fatalf("code %d stdout %q stderr %q", code, out.String(), errb.String())
			}
		})
	}
}

func TestSendsInOrder(t *testing.T) {
	dir := testutil.ShortDir(t)
	p := filepath.Join(dir, "c.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, errb strings.Builder
	if code := run([]string{"logrotate", "-s", p, "selectinstance=a", "--", "-odd"}, &out, &errb); code != 0 {
		t.Fatalf("%d %s", code, errb.String())
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for _, want := range []string{"logrotate", "selectinstance=a", "-odd"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q %v, want %q", buf[:n], err, want)
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	testutil.NeedRoot(t, "run as uid 65534")
	dir := testutil.ShortDir(t)
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "c.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	os.Chmod(p, 0o600)
	exe, _ := os.Executable()
	bin := filepath.Join(dir, "sfptpdctl.test")
	src, _ := os.ReadFile(exe)
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "SFPTPDCTL_HELPER=1", "SFPTPDCTL_ARGS=-s\n"+p+"\nexit")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || stderr.String() != "connect: Permission denied\n" {
		t.Fatalf("err %v stderr %q", err, stderr.String())
	}
}

// TestUsageText pins the usage text, line for line, to sfptpdctl's.
func TestUsageText(t *testing.T) {
	want := "syntax: sfptpdctl [OPTIONS] COMMAND-STRING*\n" +
		"\n" +
		"  COMMAND-STRING\n" +
		"    exit                 cause sfptpd to exit\n" +
		"    logrotate            cause the log files to be closed and reopened\n" +
		"    stepclocks           cause the clocks to be stepped\n" +
		"    testmode=MODE[,ARG]* select test mode (see sfptpd source)\n" +
		"    selectinstance=NAME  select specific sync instance\n" +
		"    dumptables           dump some internal state to message log\n" +
		"    pid_adjust=[KP[,[KI][,[KD][,local|ptp|pps|reset]*]]]\n" +
		"                         set PID coefficients with optional reset per servo type, or all by default\n" +
		"    block_clock=<1|0>[,CLOCK]*\n" +
		"                         block or unblock a list of clocks\n" +
		"\n" +
		"  OPTIONS\n" +
		"    -h, --help           Show usage\n" +
		"    -s, --socket         Set control socket (default: /run/sfptpd/control-v1.sock)\n"
	for _, tc := range []struct {
		argv0 string
		args  []string
		code  int
		out   bool // usage on stdout (else stderr)
	}{
		{"sfptpdctl", []string{"-h"}, 0, true},
		{"/usr/sbin/sfptpdctl", []string{"--help"}, 0, true},
		{"./sfptpdctl", nil, 1, false},
	} {
		var out, errb strings.Builder
		code := runAs(tc.argv0, tc.args, &out, &errb)
		got := errb.String()
		if tc.out {
			got = out.String()
		}
		if code != tc.code || got != want {
			t.Errorf("%s %q: code %d, usage\n%s", tc.argv0, tc.args, code, got)
		}
	}
}
