package keaagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// bin is the directory of the daemons built once for the tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keaagent")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/tickbox-fw/tickbox/services/ctl/cmd/ctl",
		"github.com/tickbox-fw/tickbox/services/ptpd/cmd/ptpd",
		"github.com/tickbox-fw/tickbox/services/mctpd/cmd/mctpd",
		"github.com/tickbox-fw/tickbox/services/mdiod/cmd/mdiod",
		"github.com/tickbox-fw/tickbox/appliance")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the daemons:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a program the test started; it is killed at cleanup.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.LockedBuffer
	done chan struct{}
	err  error
}

func start(t *testing.T, name string, argv []string, env ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// daemon is a tickbox daemon serving the Kea channel on sock.
type daemon struct {
	*proc
	sock string
}

// startDaemons starts every daemon with a Kea socket in dir, each with
// only that channel and test-friendly back ends, and waits until each
// answers on it.
func startDaemons(t *testing.T, dir string) []*daemon {
	t.Helper()
	ptpdCfg := filepath.Join(dir, "ptpd.cfg")
	cfg := strings.ReplaceAll(`[general]
sync_module freerun fr1
selection_policy manual fr1
control_path DIR/ptpd-control.sock
state_path DIR/ptpd-state
stats_log DIR/ptpd-stats.log
json_stats DIR/ptpd-stats.json
hotplug_detection_mode manual
`, "DIR", dir)
	if err := os.WriteFile(ptpdCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	demux := fmt.Sprintf("@tb-keaagent-%d", os.Getpid())
	specs := []struct {
		name string
		args func(sock string) []string
	}{
		{"ctl", func(s string) []string {
			return []string{"serve", "-kea", s, "-dgram", "", "-ipc", "", "-console", "", "-http", ""}
		}},
		{"ptpd", func(s string) []string {
			return []string{"-f", ptpdCfg, "-kea", s, "-virtual-clock", "500us,30"}
		}},
		{"mctpd", func(s string) []string {
			return []string{"-e", "8", "-demux", demux, "-tagged-demux", "", "-kea", s, "-state", filepath.Join(dir, "mctpd-state"), "null"}
		}},
		{"mdiod", func(s string) []string {
			return []string{"-ipc-server", "", "-console", "", "-hotplug", "", "-kea", s, "-port", "A=sim:88e1512", "-port", "B=sim:generic100"}
		}},
		// Ignoring every interface keeps the appliance from sending
		// anything (and its counters still) while the test compares
		// status-get replies.
		{"appliance", func(s string) []string {
			return []string{"-sfptpd-socket", filepath.Join(dir, "appliance-target.sock"), "-ignore", "*", "-kea", s}
		}},
	}
	var ds []*daemon
	for _, sp := range specs {
		sock := filepath.Join(dir, sp.name+".sock")
		argv := append([]string{filepath.Join(bin, sp.name)}, sp.args(sock)...)
		ds = append(ds, &daemon{proc: start(t, sp.name, argv), sock: sock})
	}
	for _, d := range ds {
		testutil.WaitFor(t, d.name+" answering on its Kea socket", 20*time.Second, func() bool {
			if d.exited() {
				t.Fatalf("%s exited: %v\n%s", d.name, d.err, d.out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := kea.Call(ctx, d.sock, []byte(`{"command":"list-commands"}`))
			return err == nil
		})
	}
	return ds
}

// agent is a running kea-ctrl-agent.
type agent struct {
	*proc
	url  string
	port int
}

// startAgent runs the Control Agent on 127.0.0.1 with the given control
// sockets (service name to socket path). The port is allocated here: a
// listener on port 0 gives a free one, which is closed for the agent to
// bind; should another program take it in between, the agent exits and
// is started again on a new port.
func startAgent(t *testing.T, dir, name string, sockets map[string]string) *agent {
	t.Helper()
	exe := testutil.NeedTool(t, "kea-ctrl-agent", "kea-ctrl-agent")
	cs := map[string]any{}
	for svc, path := range sockets {
		cs[svc] = map[string]any{"socket-type": "unix", "socket-name": path}
	}
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		conf, err := json.Marshal(map[string]any{"Control-agent": map[string]any{
			"http-host":       "127.0.0.1",
			"http-port":       port,
			"control-sockets": cs,
			"loggers": []any{map[string]any{
				"name":           "kea-ctrl-agent",
				"output_options": []any{map[string]any{"output": "stdout"}},
				"severity":       "INFO",
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, conf, 0o644); err != nil {
			t.Fatal(err)
		}
		// The PID and lock files go to the test's directory, not to
		// the system's run directory.
		p := start(t, name, []string{exe, "-c", path}, "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
		a := &agent{proc: p, port: port, url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
		up := false
		testutil.WaitFor(t, name+" listening", 20*time.Second, func() bool {
			if p.exited() {
				return true
			}
			_, code, err := a.post([]byte(`{"command":"list-commands"}`))
			up = err == nil && code == http.StatusOK
			return up
		})
		if up {
			return a
		}
		if attempt == 3 {
			t.Fatalf("%s exited three times: %v\n%s", name, p.err, p.out)
		}
		t.Logf("%s exited (port %d taken?), retrying: %v", name, port, p.err)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// post sends body as the HTTP request's JSON body, as curl -d does.
func (a *agent) post(body []byte) ([]byte, int, error) {
	resp, err := httpClient.Post(a.url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// shell runs kea-shell against the agent; args is the inside of the
// arguments map, which kea-shell reads from stdin.
func (a *agent) shell(t *testing.T, exe string, services []string, cmd, args string) []byte {
	t.Helper()
	argv := []string{"--host", "127.0.0.1", "--port", strconv.Itoa(a.port), "--timeout", "30"}
	for _, s := range services {
		argv = append(argv, "--service", s)
	}
	c := exec.Command(exe, append(argv, cmd)...)
	c.Stdin = strings.NewReader(args)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("kea-shell %s: %v\n%s%s", cmd, err, out, stderr.Bytes())
	}
	return out
}

// request is one command sent to every daemon, directly and through the
// agent.
type request struct {
	name    string
	command string
	// args is the inside of the "arguments" map ("" for none), as
	// kea-shell takes it.
	args string
	// result is the result code every daemon must give.
	result int
	// text, when set, is the text every daemon must give.
	text string
	// volatile names status-get's arguments that change between two
	// requests: the seconds since start and reload, the counts of open
	// and accepted connections, which may still include the previous
	// one, the request counters, which count the request itself, and
	// the goroutine count.
	volatile bool
}

// body is the request as sent over HTTP and directly on the socket: the
// same JSON, service list included, since a daemon ignores it.
func (r request) body(services []string) []byte {
	b := `{ "command": "` + r.command + `", "service": ["` + strings.Join(services, `","`) + `"]`
	if r.args != "" {
		b += `, "arguments": { ` + r.args + ` }`
	}
	return []byte(b + " }")
}

func TestControlAgent(t *testing.T) {
	agentExe := testutil.NeedTool(t, "kea-ctrl-agent", "kea-ctrl-agent")
	shellExe := testutil.NeedTool(t, "kea-shell", "kea-ctrl-agent and python3-kea-connector")
	if out, err := exec.Command(agentExe, "-v").Output(); err != nil {
		testutil.Require(t, fmt.Sprintf("%s -v: %v", agentExe, err))
	} else {
		t.Logf("kea-ctrl-agent %s", bytes.TrimSpace(out))
	}
	// kea-shell imports python3-kea-connector at start, so -v fails
	// without it.
	if out, err := exec.Command(shellExe, "-v").CombinedOutput(); err != nil {
		testutil.Require(t, fmt.Sprintf("kea-shell -v: %v (./test.sh installs python3-kea-connector): %s", err, out))
	}
	dir := testutil.ShortDir(t)
	ds := startDaemons(t, dir)
	byName := map[string]*daemon{}
	for _, d := range ds {
		byName[d.name] = d
	}
	// The agent maps Kea's three service names to one socket each, so
	// two agents reach the five daemons; every name is used, which
	// shows that a daemon answers whatever name routed the request.
	agents := []struct {
		name   string
		routes map[string]string // service to daemon
	}{
		{"agent1", map[string]string{"dhcp4": "ctl", "dhcp6": "ptpd", "d2": "mctpd"}},
		{"agent2", map[string]string{"dhcp4": "mdiod", "dhcp6": "appliance"}},
	}
	var targets []target
	for _, ag := range agents {
		socks := map[string]string{}
		for svc, dn := range ag.routes {
			socks[svc] = byName[dn].sock
		}
		a := startAgent(t, dir, ag.name, socks)
		for _, svc := range []string{"dhcp4", "dhcp6", "d2"} {
			if dn, ok := ag.routes[svc]; ok {
				targets = append(targets, target{a, svc, byName[dn]})
			}
		}
	}

	mib := strings.Repeat("x", 1<<20)
	requests := []request{
		{name: "list-commands", command: "list-commands"},
		{name: "version-get", command: "version-get"},
		{name: "status-get", command: "status-get", volatile: true},
		{name: "config-get", command: "config-get"},
		{name: "build-report", command: "build-report"},
		{name: "unknown command", command: "tickbox-no-such-command", result: 2, text: "'tickbox-no-such-command' command not supported."},
		// Common commands ignore arguments they do not take, as Kea's
		// do, so this is config-get's usual answer.
		{name: "1 MiB argument", command: "config-get", args: `"blob": "` + mib + `"`},
		{name: "1 MiB argument to an unknown command", command: "tickbox-no-such-command", args: `"blob": "` + mib + `"`,
			result: 2, text: "'tickbox-no-such-command' command not supported."},
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, tg := range targets {
		for _, rq := range requests {
			t.Run(tg.d.name+"/"+tg.service+"/"+rq.name, func(t *testing.T) {
				if time.Now().After(deadline) {
					t.Fatal("out of time: the requests before took too long")
				}
				body := rq.body([]string{tg.service})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				direct, err := kea.Call(ctx, tg.d.sock, body)
				if err != nil {
					t.Fatalf("direct: %v", err)
				}
				checkAnswer(t, "direct", direct, rq, tg.d)
				viaHTTP, code, err := tg.a.post(body)
				if err != nil || code != http.StatusOK {
					t.Fatalf("POST: status %d, %v: %.300s", code, err, viaHTTP)
				}
				compare(t, "HTTP", viaHTTP, [][]byte{direct}, rq)
				viaShell := tg.a.shell(t, shellExe, []string{tg.service}, rq.command, rq.args)
				// kea-shell prints the body and a newline.
				compare(t, "kea-shell", bytes.TrimSuffix(viaShell, []byte("\n")), [][]byte{direct}, rq)
			})
		}
	}

	// One request to several services: the agent answers with one
	// element per service, each what that daemon answers directly.
	t.Run("several services", func(t *testing.T) {
		// agent1 has all three names: ctl, ptpd and mctpd.
		a := agentRouting(targets, "dhcp4", "ctl")
		services := []string{"dhcp4", "dhcp6", "d2"}
		for _, rq := range requests[:2] {
			var direct [][]byte
			for _, svc := range services {
				d := daemonFor(targets, a, svc)
				b, err := kea.Call(context.Background(), d.sock, rq.body(services))
				if err != nil {
					t.Fatalf("%s direct: %v", d.name, err)
				}
				direct = append(direct, b)
			}
			viaHTTP, code, err := a.post(rq.body(services))
			if err != nil || code != http.StatusOK {
				t.Fatalf("POST: status %d, %v: %.300s", code, err, viaHTTP)
			}
			compare(t, "HTTP "+rq.name, viaHTTP, direct, rq)
			viaShell := a.shell(t, shellExe, services, rq.command, rq.args)
			compare(t, "kea-shell "+rq.name, bytes.TrimSuffix(viaShell, []byte("\n")), direct, rq)
		}
	})

	for _, d := range ds {
		if d.exited() {
			t.Errorf("%s exited during the test: %v", d.name, d.err)
		}
	}
}

// target is one service name of one agent and the daemon it reaches.
type target struct {
	a       *agent
	service string
	d       *daemon
}

// agentRouting returns the agent that routes svc to the named daemon.
func agentRouting(targets []target, svc, daemon string) *agent {
	for _, tg := range targets {
		if tg.service == svc && tg.d.name == daemon {
			return tg.a
		}
	}
	panic("no agent routes " + svc + " to " + daemon)
}

// daemonFor returns the daemon a routes svc to.
func daemonFor(targets []target, a *agent, svc string) *daemon {
	for _, tg := range targets {
		if tg.a == a && tg.service == svc {
			return tg.d
		}
	}
	panic("the agent has no " + svc)
}

// decode parses a reply keeping numbers exact.
func decode(t *testing.T, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not JSON: %v: %.300s", what, err, b)
	}
	if dec.More() {
		t.Fatalf("%s: data after the JSON value: %.300s", what, b)
	}
	return v
}

// checkAnswer checks a daemon's direct answer: one map (a daemon never
// answers with a list, whatever "service" says) with the expected
// result and text; status-get reports the daemon's own pid.
func checkAnswer(t *testing.T, what string, b []byte, rq request, d *daemon) {
	t.Helper()
	m, ok := decode(t, what, b).(map[string]any)
	if !ok {
		t.Fatalf("%s: answer is not a map: %.300s", what, b)
	}
	if got := m["result"]; got != json.Number(strconv.Itoa(rq.result)) {
		t.Errorf("%s: result %v, want %d: %.300s", what, got, rq.result, b)
	}
	if rq.text != "" && m["text"] != rq.text {
		t.Errorf("%s: text %q, want %q", what, m["text"], rq.text)
	}
	if rq.command == "status-get" {
		args, _ := m["arguments"].(map[string]any)
		if args["pid"] != json.Number(strconv.Itoa(d.cmd.Process.Pid)) {
			t.Errorf("%s: pid %v, want %d", what, args["pid"], d.cmd.Process.Pid)
		}
	}
}

// compare checks the agent's reply against the daemons' direct answers:
// a list with one element per answer, each equal to it; and, for
// answers without volatile values, the agent's exact bytes, which are
// the answers' bytes in Kea's list layout, since tickbox writes JSON as
// Kea does.
func compare(t *testing.T, what string, got []byte, direct [][]byte, rq request) {
	t.Helper()
	list, ok := decode(t, what, got).([]any)
	if !ok || len(list) != len(direct) {
		t.Fatalf("%s: want a list of %d answers, got %.300s", what, len(direct), got)
	}
	for i, d := range direct {
		want := decode(t, "direct", d)
		g := list[i]
		if rq.volatile {
			g, want = stripVolatile(t, what, g, want)
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: element %d differs from the direct answer\n got %.500v\nwant %.500v", what, i, g, want)
		}
	}
	if rq.volatile {
		return
	}
	want := "[ " + string(bytes.Join(direct, []byte(", "))) + " ]"
	if string(got) != want {
		t.Errorf("%s: bytes differ from the direct answers in a list\n got %.300q\nwant %.300q", what, got, want)
	}
}

// stripVolatile removes status-get's values that change between two
// requests, after checking that they stay close: uptime and reload
// (seconds), the open connection counts and the goroutine count.
func stripVolatile(t *testing.T, what string, got, want any) (any, any) {
	t.Helper()
	ga, ok1 := args(got)
	wa, ok2 := args(want)
	if !ok1 || !ok2 {
		t.Fatalf("%s: status-get without arguments map", what)
	}
	for _, k := range []string{"uptime", "reload"} {
		gn, ok1 := ga[k].(json.Number)
		wn, ok2 := wa[k].(json.Number)
		g, err1 := gn.Int64()
		w, err2 := wn.Int64()
		if !ok1 || !ok2 || err1 != nil || err2 != nil || g < 0 || g-w > 5 || w-g > 5 {
			t.Errorf("%s: %s %v, direct %v", what, k, ga[k], wa[k])
		}
		delete(ga, k)
		delete(wa, k)
	}
	for _, k := range []string{"connections", "connections-accepted", "requests"} {
		delete(ga, k)
		delete(wa, k)
	}
	// The goroutine count moves with whatever the daemon is doing (a
	// connection being served, a timer): both must be a positive count.
	for _, a := range []map[string]any{ga, wa} {
		n, ok := a["goroutines"].(json.Number)
		if v, err := n.Int64(); !ok || err != nil || v < 1 {
			t.Errorf("%s: goroutines %v, want a positive count", what, a["goroutines"])
		}
		delete(a, "goroutines")
	}
	return got, want
}

func args(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	a, ok := m["arguments"].(map[string]any)
	return a, ok
}

// TestHubBesideAgent runs ctl serve as the hub beside kea-ctrl-agent,
// both fronting the same daemons under the same service names (ptpd as
// dhcp4, mdiod as dhcp6, and d2 a socket nobody listens on), and sends
// each the same HTTP requests: status and body must be the same, but for
// commands the agent or the hub answers itself, whose command sets and
// texts are their own (there only the result code must match).
func TestHubBesideAgent(t *testing.T) {
	shellExe := testutil.NeedTool(t, "kea-shell", "kea-ctrl-agent and python3-kea-connector")
	dir := testutil.ShortDir(t)
	ds := startDaemons(t, dir)
	byName := map[string]*daemon{}
	for _, d := range ds {
		byName[d.name] = d
	}
	socks := map[string]string{"dhcp4": byName["ptpd"].sock, "dhcp6": byName["mdiod"].sock, "d2": filepath.Join(dir, "down.sock")}
	ca := startAgent(t, dir, "agent", socks)

	conf, err := json.Marshal(map[string]any{"Control-agent": map[string]any{"control-sockets": map[string]any{
		"dhcp4": map[string]any{"socket-type": "unix", "socket-name": socks["dhcp4"]},
		"dhcp6": map[string]any{"socket-type": "unix", "socket-name": socks["dhcp6"]},
		"d2":    map[string]any{"socket-type": "unix", "socket-name": socks["d2"]},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "hub.json")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	hubProc := start(t, "hub", []string{filepath.Join(bin, "ctl"), "serve", "-kea", filepath.Join(dir, "hub.sock"),
		"-dgram", "", "-ipc", "", "-console", "", "-config", confPath,
		"-http", fmt.Sprintf("127.0.0.1:%d", port), "-password-file", ""})
	hubAgent := &agent{proc: hubProc, port: port, url: fmt.Sprintf("http://127.0.0.1:%d/", port)}
	testutil.WaitFor(t, "the hub listening", 20*time.Second, func() bool {
		if hubProc.exited() {
			t.Fatalf("hub exited: %v\n%s", hubProc.err, hubProc.out)
		}
		_, code, err := hubAgent.post([]byte(`{"command":"list-commands"}`))
		return err == nil && code == http.StatusOK
	})

	// The agent closes the connection after a 400; a connection per
	// request keeps its closing from failing the next request.
	oneShot := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	send := func(t *testing.T, a *agent, method, path, ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := oneShot.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		return resp.StatusCode, string(b)
	}
	const js = "application/json"
	for _, tc := range []struct {
		name, method, ctype, body string
		// path follows the listener's "/"; empty for "/" itself.
		path string
		// own: answered by the agent or the hub itself; only the
		// status and the result codes must match.
		own bool
	}{
		{name: "known service", method: "POST", ctype: js, body: `{"command":"version-get","service":["dhcp4"]}`},
		{name: "known service with arguments", method: "POST", ctype: js, body: `{"command":"config-get","service":["dhcp6"],"arguments":{"x":1}}`},
		{name: "unknown command of a daemon", method: "POST", ctype: js, body: `{"command":"no-such","service":["dhcp4"]}`},
		{name: "unknown service", method: "POST", ctype: js, body: `{"command":"version-get","service":["nosuch"]}`},
		{name: "down service", method: "POST", ctype: js, body: `{"command":"version-get","service":["d2"]}`},
		{name: "list of two", method: "POST", ctype: js, body: `{"command":"version-get","service":["dhcp4","dhcp6"]}`},
		{name: "list with a down one", method: "POST", ctype: js, body: `{"command":"version-get","service":["dhcp6","d2","nosuch"]}`},
		{name: "service not a list", method: "POST", ctype: js, body: `{"command":"version-get","service":"dhcp4"}`},
		{name: "service null", method: "POST", ctype: js, body: `{"command":"version-get","service":null}`},
		{name: "empty body", method: "POST", ctype: js, body: ``},
		{name: "bad JSON", method: "POST", ctype: js, body: `{"command":`},
		{name: "trailing data", method: "POST", ctype: js, body: `{"command":"version-get"} {}`},
		// GET / itself is the hub's status page (a deliberate
		// difference); any other path is the Kea channel's, as on the
		// agent, which answers POST on every path.
		{name: "GET", method: "GET", path: "kea", ctype: js, body: ``},
		{name: "POST on another path", method: "POST", path: "any/path", ctype: js, body: `{"command":"version-get","service":["dhcp4"]}`},
		{name: "PUT", method: "PUT", ctype: js, body: `{"command":"version-get"}`},
		{name: "no Content-Type", method: "POST", ctype: "", body: `{"command":"version-get"}`},
		{name: "Content-Type with charset", method: "POST", ctype: js + "; charset=utf-8", body: `{"command":"version-get"}`},
		{name: "no service", method: "POST", ctype: js, body: `{"command":"list-commands"}`, own: true},
		{name: "no service, unknown command", method: "POST", ctype: js, body: `{"command":"no-such"}`, own: true},
		{name: "empty service list", method: "POST", ctype: js, body: `{"command":"version-get","service":[]}`, own: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caCode, caBody := send(t, ca, tc.method, tc.path, tc.ctype, tc.body)
			hubCode, hubBody := send(t, hubAgent, tc.method, tc.path, tc.ctype, tc.body)
			if caCode != hubCode {
				t.Fatalf("status: agent %d, hub %d\nagent %s\nhub   %s", caCode, hubCode, caBody, hubBody)
			}
			if !tc.own {
				if caBody != hubBody {
					t.Fatalf("bodies differ\nagent %s\nhub   %s", caBody, hubBody)
				}
				return
			}
			type answer struct{ Result int }
			var ca, hb []answer
			if json.Unmarshal([]byte(caBody), &ca) != nil || json.Unmarshal([]byte(hubBody), &hb) != nil || !reflect.DeepEqual(ca, hb) {
				t.Fatalf("result codes differ\nagent %s\nhub   %s", caBody, hubBody)
			}
		})
	}

	// kea-shell against the hub prints what it prints against the agent.
	for _, services := range [][]string{{"dhcp4"}, {"dhcp4", "dhcp6"}, {"d2"}, {"nosuch"}} {
		viaAgent := ca.shell(t, shellExe, services, "version-get", "")
		viaHub := hubAgent.shell(t, shellExe, services, "version-get", "")
		if !bytes.Equal(viaAgent, viaHub) {
			t.Errorf("kea-shell --service %v: agent %s\nhub %s", services, viaAgent, viaHub)
		}
	}
}
