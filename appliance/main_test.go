package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/appliance/hotplug"
	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// runEnv makes the test binary run the agent instead of the tests, so
// that a test can start it as a separate process (inside a network
// namespace) without building it first.
const runEnv = "TICKBOX_APPLIANCE_RUN"

func TestMain(m *testing.M) {
	if os.Getenv(runEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-h"}, 0, "-sfptpd-socket socket"},
		{[]string{"-ignore", "eth["}, 2, `ignore pattern "eth[": syntax error in pattern`},
		{[]string{"-coalesce", "0s"}, 2, "-coalesce 0s: want more than 0"},
		{[]string{"-coalesce", "11s"}, 2, "at most 10s"},
		{[]string{"-coalesce", "soon"}, 2, "invalid value"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-target", "/" + strings.Repeat("x", 107)}, 2, "target socket path too long"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "-log-level LEVEL"},
		{[]string{"-log-level", "loud"}, 2, `invalid value "loud" for flag -log-level`},
		{[]string{"-coalesce", "0s"}, 2, "appliance: -coalesce 0s"},
		{[]string{"-kea", t.TempDir()}, 1, "appliance: control channel: "},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		code := cli.Exec(context.Background(), "appliance", run, tc.args, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.out) {
			t.Errorf("%q: exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out.String(), tc.code, tc.out)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-target", "/run/b.sock", "-target", defaultSfptpdSocket, "-target", "",
		"-ignore", "veth*", "-ignore", "docker*", "-coalesce", "80ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{defaultSfptpdSocket, "/run/b.sock"}; !slices.Equal(c.all, want) {
		t.Errorf("targets %q, want %q", c.all, want)
	}
	b, _ := json.Marshal(c)
	want := `{"sfptpd-socket":"/run/sfptpd/control-v1.sock","target":["/run/b.sock","/run/sfptpd/control-v1.sock",""],` +
		`"ignore":["lo","veth*","docker*"],"coalesce":"80ms","kea":"/run/appliance/control.sock","verbose":false}`
	if string(b) != want {
		t.Errorf("config-get\n got %s\nwant %s", b, want)
	}
	// -log-level debug is -v: config-get says verbose.
	for _, args := range [][]string{{"-v"}, {"-log-level", "debug"}} {
		c, err := parseFlags(args, io.Discard)
		if err != nil || !c.Verbose {
			t.Errorf("%q: verbose %v, %v", args, c != nil && c.Verbose, err)
		}
	}
	c, err = parseFlags([]string{"-sfptpd-socket", ""}, io.Discard)
	if err != nil || len(c.all) != 0 || c.coalesce != hotplug.DefaultCoalesce {
		t.Errorf("no targets: %+v %v", c, err)
	}
}

// agentProc is the agent running as a child process.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *testutil.LockedBuffer
	done   chan struct{}
	err    error
}

// startAgent runs the test binary as the agent, under prefix (e.g. "ip
// netns exec NS") if given, and stops it when the test ends.
func startAgent(t *testing.T, prefix []string, args ...string) *agentProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(prefix), exe)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), runEnv+"=1")
	p := &agentProc{cmd: cmd, stderr: &testutil.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", p.stderr.String())
		}
	})
	testutil.WaitFor(t, "the agent to watch links", 10*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("agent exited early (%v):\n%s", p.err, p.stderr.String())
		default:
		}
		return strings.Contains(p.stderr.String(), `msg="watching links"`)
	})
	return p
}

// wait waits for the agent to exit and returns its exit status.
func (p *agentProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not exit:\n%s", p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// TestSignalExit checks that SIGTERM stops the agent with status 0 and
// removes its control socket. It runs in the host's namespace and only
// reads the link table.
func TestSignalExit(t *testing.T) {
	dir := testutil.ShortDir(t)
	kea := filepath.Join(dir, "control.sock")
	p := startAgent(t, nil, "-sfptpd-socket", "", "-kea", kea)
	var ifs struct{ Interfaces []hotplug.Interface }
	testutil.KeaArguments(t, kea, "interfaces-get", &ifs)
	if !slices.ContainsFunc(ifs.Interfaces, func(i hotplug.Interface) bool { return i.Name == "lo" && i.Ignored }) {
		t.Errorf("lo missing or not ignored: %+v", ifs.Interfaces)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(kea); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	if !strings.Contains(p.stderr.String(), "no targets configured") {
		t.Errorf("no warning about missing targets:\n%s", p.stderr.String())
	}
}

// ip runs ip(8) with args and fails the test on error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// linkKind returns a link type the kernel can create in ns: dummy, or,
// where the dummy driver is not built (some container kernels), a
// bridge, which behaves the same for the agent (a software link with a
// MAC that comes and goes on request).
func linkKind(t *testing.T, ns string) string {
	for _, kind := range []string{"dummy", "bridge"} {
		if err := exec.Command("ip", "-n", ns, "link", "add", "tbprobe", "type", kind).Run(); err == nil {
			ip(t, "-n", ns, "link", "del", "tbprobe")
			if kind != "dummy" {
				t.Logf("NOTE: this kernel cannot create dummy links; using %s links instead", kind)
			}
			return kind
		}
	}
	t.Fatal("this kernel can create neither dummy nor bridge links")
	return ""
}

// TestAgentInNetns runs the agent inside a network namespace of its own,
// creates and deletes links there, and checks the exact datagrams that
// reach an sfptpd-style socket, and the agent's Kea commands.
func TestAgentInNetns(t *testing.T) {
	testutil.NeedRoot(t, "create a network namespace (ip netns add) for the netlink agent")
	testutil.NeedTool(t, "ip", "iproute2")
	rnd := make([]byte, 4)
	rand.Read(rnd)
	ns := "tb-" + hex.EncodeToString(rnd)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	kind := linkKind(t, ns)

	dir := testutil.ShortDir(t)
	dgram := filepath.Join(dir, "control-v1.sock")
	kea := filepath.Join(dir, "control.sock")
	// The agent starts before its target exists, as at boot when ptpd
	// is not up yet.
	p := startAgent(t, []string{"ip", "netns", "exec", ns},
		"-sfptpd-socket", dgram, "-kea", kea, "-ignore", "ign*", "-coalesce", "250ms")

	ip(t, "-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	testutil.WaitFor(t, "the target to be found missing", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "target unreachable")
	})
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dgram, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got []string
	buf := make([]byte, 512)
	// expect reads datagrams until want have arrived after those already
	// seen, and checks them.
	expect := func(step string, want ...string) {
		t.Helper()
		start := len(got)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(got) < start+len(want) {
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("%s: after %q: %v", step, got[start:], err)
			}
			got = append(got, string(buf[:n]))
		}
		if !slices.Equal(got[start:], want) {
			t.Fatalf("%s: got %q, want %q", step, got[start:], want)
		}
	}
	// The peer registers first, so it is inserted first.
	expect("veth pair", "interfaceinsert=vb", "interfaceinsert=va")

	ip(t, "-n", ns, "link", "add", "ign0", "type", kind) // ignored: sends nothing

	for i := range 5 {
		ip(t, "-n", ns, "link", "add", fmt.Sprintf("d%d", i), "type", kind)
	}
	expect("burst of adds", "interfaceinsert=d0", "interfaceinsert=d1", "interfaceinsert=d2", "interfaceinsert=d3", "interfaceinsert=d4")
	for i := range 5 {
		ip(t, "-n", ns, "link", "del", fmt.Sprintf("d%d", i))
	}
	expect("burst of deletes", "interfaceremove=d0", "interfaceremove=d1", "interfaceremove=d2", "interfaceremove=d3", "interfaceremove=d4")

	// Added and deleted within one window: nothing is sent.
	batch := exec.Command("ip", "-n", ns, "-batch", "-")
	batch.Stdin = strings.NewReader("link add t0 type " + kind + "\nlink del t0\n")
	if out, err := batch.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}

	ip(t, "-n", ns, "link", "set", "va", "name", "lan0")
	expect("rename", "interfaceremove=va", "interfaceinsert=lan0")

	// State changes are logged, not sent.
	ip(t, "-n", ns, "link", "set", "lan0", "up")
	ip(t, "-n", ns, "link", "set", "vb", "up")
	testutil.WaitFor(t, "state changes", 10*time.Second, func() bool {
		return strings.Count(p.stderr.String(), `msg="interface changed"`) >= 2
	})

	// Deleting one end of a veth pair deletes both.
	ip(t, "-n", ns, "link", "del", "lan0")
	expect("veth delete", "interfaceremove=lan0", "interfaceremove=vb")

	ip(t, "-n", ns, "link", "add", "end0", "type", kind)
	expect("sentinel", "interfaceinsert=end0")

	// Nothing else, and nothing twice.
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("extra datagram %q after %q (%v)", buf[:n], got, err)
	}
	if len(got) != 17 {
		t.Fatalf("%d datagrams: %q", len(got), got)
	}

	var ifs struct{ Interfaces []hotplug.Interface }
	testutil.KeaArguments(t, kea, "interfaces-get", &ifs)
	names := map[string]hotplug.Interface{}
	for _, i := range ifs.Interfaces {
		names[i.Name] = i
	}
	if len(names) != 3 {
		t.Errorf("interfaces %+v, want lo, ign0 and end0", ifs.Interfaces)
	}
	if lo := names["lo"]; !lo.Ignored || lo.Index != 1 {
		t.Errorf("lo: %+v", lo)
	}
	if ign := names["ign0"]; !ign.Ignored {
		t.Errorf("ign0: %+v", ign)
	}
	end := names["end0"]
	if end.Ignored || end.Index <= 1 || end.State == "" || end.Type != kind || len(end.MAC) != 17 || end.MTU <= 0 {
		t.Errorf("end0: %+v", end)
	}

	var evs struct{ Events []hotplug.Event }
	testutil.KeaArguments(t, kea, "events-get", &evs)
	var sent []string
	kinds := map[hotplug.Kind][]string{}
	for _, e := range evs.Events {
		kinds[e.Kind] = append(kinds[e.Kind], e.Interface)
		if c, ok := (hotplug.Change{Kind: e.Kind, Link: hotplug.Link{Name: e.Interface}}).Command(); ok {
			sent = append(sent, c)
			if e.Delivery[dgram] != hotplug.DeliverySent {
				t.Errorf("event %d (%s %s): delivery %v", e.ID, e.Kind, e.Interface, e.Delivery)
			}
		} else if e.Delivery != nil {
			t.Errorf("event %d (%s %s) has a delivery: %v", e.ID, e.Kind, e.Interface, e.Delivery)
		}
	}
	if !slices.Equal(sent, got) {
		t.Errorf("events-get lists %q, the socket received %q", sent, got)
	}
	if !slices.Equal(kinds[hotplug.Transient], []string{"t0"}) {
		t.Errorf("transient events %q, want t0", kinds[hotplug.Transient])
	}
	if st := kinds[hotplug.State]; !slices.Contains(st, "lan0") || !slices.Contains(st, "vb") {
		t.Errorf("state events %q, want lan0 and vb", st)
	}

	var status struct {
		Targets []hotplug.TargetStats
	}
	testutil.KeaArguments(t, kea, "status-get", &status)
	if len(status.Targets) != 1 || status.Targets[0].Sent != 17 || status.Targets[0].State != "up" || status.Targets[0].Pending != 0 {
		t.Errorf("status-get targets %+v", status.Targets)
	}

	log := p.stderr.String()
	if n := strings.Count(log, "target unreachable"); n != 1 {
		t.Errorf("%d unreachable lines, want 1", n)
	}
	if n := strings.Count(log, "target is back"); n != 1 {
		t.Errorf("%d back lines, want 1", n)
	}
	// One log line per event, which is what the web UI shows.
	if n := strings.Count(log, `msg="interface inserted"`) + strings.Count(log, `msg="interface removed"`); n != 17 {
		t.Errorf("%d insert/remove log lines, want 17", n)
	}

	// The shutdown command stops the agent cleanly.
	testutil.KeaArguments(t, kea, "shutdown", nil)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after shutdown", code)
	}
}
