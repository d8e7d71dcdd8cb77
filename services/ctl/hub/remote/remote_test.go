package remote_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
)

// bins are the daemons built once for the tests: the hub and the
// daemons it fronts run as real processes.
var bins struct{ ctl, mdiod, ptpd, appliance string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "remotetest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, b := range []struct {
		dst *string
		pkg string
	}{{&bins.ctl, "../../cmd/ctl"}, {&bins.mdiod, "../../../mdiod/cmd/mdiod"}, {&bins.ptpd, "../../../ptpd/cmd/ptpd"}, {&bins.appliance, "../../../../appliance"}} {
		*b.dst = filepath.Join(dir, filepath.Base(b.pkg))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("go", "build", "-o", *b.dst, b.pkg).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running daemon.
type proc struct {
	cmd  *exec.Cmd
	out  *testutil.LockedBuffer
	done chan struct{}
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitSocket waits until p accepts connections on path (the file
// exists from bind on, before listen).
func waitSocket(t *testing.T, p *proc, path string) {
	t.Helper()
	testutil.WaitFor(t, "socket "+path, 20*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited:\n%s", p.cmd.Path, p.out.String())
		default:
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

const freerunCfg = `[general]
sync_module freerun fr1
control_path DIR/ptpd-dgram.sock
state_path DIR/state
hotplug_detection_mode manual
`

// rig is a hub fronting a real mdiod and ptpd, and a mctpd that is not
// running.
type rig struct {
	dir                    string
	hubCon, hubKea, hubIPC string
	mdiodCon, mdiodKea     string
	mdiodArgs              []string
	mdiod, ptpd, hub       *proc
	appliance              *proc
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{dir: testutil.ShortDir(t)}
	p := func(n string) string { return filepath.Join(r.dir, n) }
	r.hubIPC = p("hub-ipc.sock")
	r.hubCon, r.hubKea, r.mdiodCon, r.mdiodKea = p("hub-con.sock"), p("hub-kea.sock"), p("mdiod-con.sock"), p("mdiod-kea.sock")
	// Port A's link goes up and down every second; B stays up.
	r.mdiodArgs = []string{"-kea", r.mdiodKea, "-console", r.mdiodCon, "-ipc-server", "", "-hotplug", "", "-poll", "20ms",
		"-port", "A=sim:88e1512,an=0s,script=up@0s;down@1s,cycle=2s", "-port", "B=sim:generic100,link=up"}
	r.startMdiod(t)
	cfg := strings.ReplaceAll(freerunCfg, "DIR", r.dir)
	os.WriteFile(p("ptpd.cfg"), []byte(cfg), 0o644)
	r.ptpd = start(t, "ptpd", bins.ptpd, "-f", p("ptpd.cfg"), "-kea", p("ptpd-kea.sock"), "-virtual-clock", "500us,30")
	waitSocket(t, r.ptpd, p("ptpd-kea.sock"))
	// The appliance agent lists the host's links as inserts when it
	// starts, after mdiod's first link events.
	r.appliance = start(t, "appliance", bins.appliance, "-kea", p("appliance-kea.sock"), "-sfptpd-socket", "")
	waitSocket(t, r.appliance, p("appliance-kea.sock"))
	hubCfg := fmt.Sprintf(`{"Control-agent": {"control-sockets": {
		"ptpd": {"socket-type": "unix", "socket-name": %q},
		"mdiod": {"socket-type": "unix", "socket-name": %q},
		"mctpd": {"socket-type": "unix", "socket-name": %q},
		"appliance": {"socket-type": "unix", "socket-name": %q}},
		"forward-timeout": 5000}}`, p("ptpd-kea.sock"), r.mdiodKea, p("mctpd-kea.sock"), p("appliance-kea.sock"))
	os.WriteFile(p("hub.json"), []byte(hubCfg), 0o644)
	r.hub = start(t, "ctl serve", bins.ctl, "serve", "-config", p("hub.json"), "-kea", r.hubKea, "-console", r.hubCon,
		"-dgram", "", "-ipc", r.hubIPC, "-http", "")
	waitSocket(t, r.hub, r.hubCon)
	return r
}

func (r *rig) startMdiod(t *testing.T) {
	t.Helper()
	r.mdiod = start(t, "mdiod", bins.mdiod, r.mdiodArgs...)
	waitSocket(t, r.mdiod, r.mdiodKea)
	waitSocket(t, r.mdiod, r.mdiodCon)
}

// session runs lines on a console and returns all it wrote until it
// closed (the lines end with EOF, which ends the session).
func session(t *testing.T, path, lines string) string {
	t.Helper()
	c, err := console.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, lines); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("console %s: %v (got %q)", path, err, out)
	}
	return string(out)
}

// TestHubConsole runs daemon commands through the hub's console and
// compares them with the daemon's own console where it has one.
func TestHubConsole(t *testing.T) {
	r := newRig(t)
	tests := []struct {
		name string
		hub  string // line on the hub's console
		// own is the same command on mdiod's console, whose output the
		// hub's must equal; empty: check want instead.
		own  string
		want []string // substrings of the hub's output
	}{
		{name: "positional args", hub: "mdiod mdio_read 1 1", own: "mdio_read 1 1"},
		{name: "both ports, hex", hub: "mdiod mdio_read 3 0x2 0", own: "mdio_read 3 0x2 0"},
		{name: "alias and named", hub: "mdiod mdio_read A --address=3", own: "mdio_read A --address=3"},
		{name: "out of range", hub: "mdiod mdio_read 9 1", own: "mdio_read 9 1"},
		{name: "not a number", hub: "mdiod mdio_read x 1", own: "mdio_read x 1"},
		{name: "missing", hub: "mdiod mdio_read 1", own: "mdio_read 1"},
		{name: "too many", hub: "mdiod mdio_read 1 1 0 5", own: "mdio_read 1 1 0 5"},
		{name: "unsupported named", hub: "mdiod mdio_read 1 1 --bogus=1", own: "mdio_read 1 1 --bogus=1"},
		{name: "daemon error", hub: "mdiod mdio_read_c45 1 1 0", own: "mdio_read_c45 1 1 0"},
		{name: "phy_status", hub: "mdiod phy_status", own: "phy_status"},
		{name: "list", hub: "? mdiod", own: "?"},
		{name: "usage", hub: "? mdiod mdio_read", own: "? mdio_read"},
		{name: "usage by --help", hub: "mdiod mdio_read --help", own: "mdio_read --help"},
		{name: "ptpd instances-get", hub: "ptpd instances-get", want: []string{"instances:", "name: fr1", "state: freerun", "selected: true"}},
		{name: "ptpd log-get", hub: "ptpd log-get 0 5", want: []string{"lines:", "line: time=", "epoch: ", "next: "}},
		{name: "unknown daemon command", hub: "mdiod frobnicate", want: []string{"Error:  mdiod: 'frobnicate' command not supported.\n"}},
		{name: "no daemon command", hub: "mdiod", want: []string{"Error:  mdiod: no command given; ? mdiod lists them\n"}},
		{name: "usage of an unknown daemon command", hub: "? mdiod frobnicate", want: []string{"Error:  mdiod: 'frobnicate' command not supported.\n"}},
		{name: "down service", hub: "mctpd endpoints-get", want: []string{"Error:  mctpd: kea: ", "mctpd-kea.sock", "no such file or directory\n"}},
		{name: "down service help", hub: "? mctpd", want: []string{"Error:  mctpd: kea: ", "no such file or directory\n"}},
		{name: "unknown service", hub: "nosuchd status-get", want: []string{"Unknown command, try: ?\n"}},
		{name: "log of an unknown service", hub: "log nosuchd", want: []string{"Error:  log: parameter 'service' must be one of ptpd|mdiod|mctpd|appliance, got \"nosuchd\"\n"}},
		{name: "hub list names the services", hub: "?", want: []string{"CMD [ARGS...]      - run a command of mdiod", "run a command of mdiod (? mdiod lists them)", "\nlog ", "\nevents "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The session goes on after the command: the console stays
			// usable whatever happened to it.
			got := session(t, r.hubCon, tt.hub+"\nptpd version-get\n")
			got, tail, ok := strings.Cut(got, "devel")
			if !ok || strings.Contains(tail, "Error") {
				t.Fatalf("the session did not go on to version-get: %q", got+tail)
			}
			got = got[:strings.LastIndexByte(got, '\n')+1]
			if tt.own != "" {
				want := session(t, r.mdiodCon, tt.own+"\n")
				if tt.hub == "? mdiod" {
					// The hub lists the daemon's commands without the
					// console's own rows (q and ?).
					lines := strings.SplitAfter(want, "\n")
					want = lines[0] + strings.Join(lines[3:], "")
				}
				if got != want {
					t.Fatalf("hub console:\n%s\nmdiod's console:\n%s", got, want)
				}
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Fatalf("hub console output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// follower reads a streaming command's lines from the hub's console.
type follower struct {
	c     *net.UnixConn
	mu    sync.Mutex
	lines []string
}

func follow(t *testing.T, path, line string) *follower {
	t.Helper()
	c, err := console.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{c: c}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			f.mu.Lock()
			f.lines = append(f.lines, sc.Text())
			f.mu.Unlock()
		}
	}()
	return f
}

// wait waits for a line containing s after the first from lines, and
// returns the index after it.
func (f *follower) wait(t *testing.T, from int, s string) int {
	t.Helper()
	var at int
	testutil.WaitFor(t, fmt.Sprintf("line %q", s), 20*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i := from; i < len(f.lines); i++ {
			if strings.Contains(f.lines[i], s) {
				at = i + 1
				return true
			}
		}
		return false
	})
	return at
}

func (f *follower) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n")
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lines)
}

// TestLogFollow follows mdiod's log through the hub: a line mdiod logs
// after the follow started arrives, the follow says when mdiod goes
// down and comes back as a new process, and it ends at the next line.
func TestLogFollow(t *testing.T) {
	r := newRig(t)
	f := follow(t, r.hubCon, "log mdiod")
	n := f.wait(t, 0, "mdiod serving")
	// An unknown command on mdiod's own Kea socket makes it log one.
	testutil.KeaCall(t, r.mdiodKea, []byte(`{"command":"marker-before-restart"}`))
	n = f.wait(t, n, "command=marker-before-restart")
	r.mdiod.stop()
	n = f.wait(t, n, "--- mdiod: kea: ")
	r.startMdiod(t)
	n = f.wait(t, n, "--- mdiod is back")
	n = f.wait(t, n, "--- mdiod restarted")
	n = f.wait(t, n, "mdiod serving")
	testutil.KeaCall(t, r.mdiodKea, []byte(`{"command":"marker-after-restart"}`))
	f.wait(t, n, "command=marker-after-restart")
	if strings.Contains(f.String(), "Error") {
		t.Fatalf("follow printed an error:\n%s", f)
	}
	// The next line stops the follow and is answered.
	io.WriteString(f.c, "ptpd version-get\n")
	f.wait(t, 0, "devel")
	before := f.count()
	testutil.KeaCall(t, r.mdiodKea, []byte(`{"command":"marker-after-stop"}`))
	time.Sleep(time.Second)
	if strings.Contains(f.String(), "marker-after-stop") || f.count() != before {
		t.Fatalf("log went on after the next line:\n%s", f)
	}
}

// TestEvents follows the link events through the hub: the appliance
// agent's inserts of the host's links at its start, and mdiod's
// simulated port A, which changes its link every second. The lines come
// in time order across both sources.
func TestEvents(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, i := range ifs {
		if i.Name != "lo" {
			links++
		}
	}
	if links == 0 {
		testutil.Require(t, "no network interface besides lo for the appliance agent to report")
	}
	r := newRig(t)
	testutil.WaitFor(t, "the appliance agent's inserts", 20*time.Second, func() bool {
		var evs struct{ Events []any }
		testutil.KeaArguments(t, filepath.Join(r.dir, "appliance-kea.sock"), "events-get", &evs)
		return len(evs.Events) >= links
	})
	f := follow(t, r.hubCon, "events 1000")
	n := f.wait(t, 0, " appliance insert ")
	// Two mdiod events the follow had not seen when it started.
	n = f.wait(t, n, " mdiod PHY A: link")
	f.wait(t, n, " mdiod PHY A: link")
	// mdiod's first events came before the agent started: merged, they
	// lead, though the agent is asked first.
	if first, _, _ := strings.Cut(f.String(), "\n"); !strings.Contains(first, " mdiod ") {
		t.Fatalf("the first line is not mdiod's:\n%s", f)
	}
	var last time.Time
	for _, l := range strings.Split(f.String(), "\n") {
		ts, rest, _ := strings.Cut(l, " ")
		src, _, _ := strings.Cut(rest, " ")
		when, err := time.Parse("2006-01-02T15:04:05.000Z07:00", ts)
		if err != nil || (src != "mdiod" && src != "appliance") {
			t.Fatalf("line %q (%v) in\n%s", l, err, f)
		}
		if when.Before(last) {
			t.Fatalf("line %q is out of time order in\n%s", l, f)
		}
		last = when
	}
}

// TestIPC runs the same hub commands over the hub's nose IPC socket, in
// its text form: one command, one framing-independent registry.
func TestIPC(t *testing.T) {
	r := newRig(t)
	tests := []struct{ line, want string }{
		{"mdiod mdio_read 1 2", `{"type":"log","msg":"result: value=0x0141\n"}`},
		{"mdiod mdio_read 9 1", `{"type":"log","msg":"error: mdio_read: parameter 'phy' out of range: 9 not in 1..3\n"}`},
		{"mctpd status-get", `{"type":"log","msg":"error: mctpd: kea: dial unix ` + filepath.Join(r.dir, "mctpd-kea.sock") + `: connect: no such file or directory\n"}`},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c, err := net.Dial("unix", r.hubIPC)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, tt.line+"\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != tt.want {
				t.Fatalf("ipc %q: %q (%v), want %s", tt.line, line, err, tt.want)
			}
		})
	}
}
