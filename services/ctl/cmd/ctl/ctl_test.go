package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// ctlBin is the ctl program built once for the tests: the hub runs as a
// real process and the clients' exit codes are real exit codes.
var ctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ctltest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctlBin = filepath.Join(dir, "ctl")
	build := exec.Command("go", "build", "-o", ctlBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ctl:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hub is a running "ctl serve".
type hub struct {
	cmd                  *exec.Cmd
	dir                  string
	kea, dgram, ipc, con string
	log                  *testutil.LockedBuffer
}

func startHub(t *testing.T, extra ...string) *hub {
	t.Helper()
	dir := testutil.ShortDir(t)
	h := &hub{
		dir: dir, kea: filepath.Join(dir, "kea.sock"), dgram: filepath.Join(dir, "dgram.sock"),
		ipc: filepath.Join(dir, "ipc.socket"), con: filepath.Join(dir, "console.sock"),
		log: &testutil.LockedBuffer{},
	}
	args := append([]string{"serve", "-kea", h.kea, "-dgram", h.dgram, "-ipc", h.ipc, "-console", h.con, "-http", ""}, extra...)
	h.cmd = exec.Command(ctlBin, args...)
	h.cmd.Stderr = h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("ctl serve log:\n%s", h.log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range []string{h.kea, h.dgram, h.ipc, h.con} {
		for {
			if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("socket %s did not appear; log:\n%s", p, h.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return h
}

// runCtl runs the ctl binary and returns its exit code and output.
func runCtl(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(ctlBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ctl %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

func TestClients(t *testing.T) {
	h := startHub(t)
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout []string // substrings
		stderr string
	}{
		{name: "kea list-commands", args: []string{"kea", h.kea, "list-commands"}, code: 0,
			stdout: []string{`"echo"`, `"list-commands"`, `"stream"`, `"result": 0`}},
		{name: "kea echo args", args: []string{"kea", h.kea, "echo", `{"a":1,"s":"x y"}`}, code: 0,
			stdout: []string{`"a": 1`, `"s": "x y"`}},
		{name: "kea unknown command", args: []string{"kea", h.kea, "nosuch"}, code: 1,
			stdout: []string{`{ "result": 2, "text": "'nosuch' command not supported." }`}},
		{name: "kea common command ignores arguments", args: []string{"kea", h.kea, "status-get", `{"x":1}`}, code: 0,
			stdout: []string{`"pid": `, `"result": 0`}},
		{name: "kea parameter error", args: []string{"kea", h.kea, "shutdown", `{"exit-value":1}`}, code: 1,
			stdout: []string{`{ "result": 1, "text": "shutdown: parameter 'exit-value' is not supported" }`}},
		{name: "kea streaming refused", args: []string{"kea", h.kea, "stream"}, code: 1,
			stdout: []string{`"result": 2`, "use the console or the ipc socket"}},
		{name: "kea bad args json", args: []string{"kea", h.kea, "echo", `{bad`}, code: 2,
			stderr: "ARGS-JSON is not valid JSON"},
		{name: "kea missing socket", args: []string{"kea", filepath.Join(h.dir, "none.sock"), "list-commands"}, code: 2,
			stderr: "no such file or directory"},
		// ctl serve is not yet the hub: it ignores "service" as Kea's
		// daemons do and answers itself, not in a list.
		{name: "kea service ignored", args: []string{"kea", "-service", "dhcp4,ptpd", h.kea, "list-commands"}, code: 0,
			stdout: []string{`{ "arguments": [ "build-report", "commands-get", "config-get", "echo", `, `"list-commands"`, `"result": 0 }`}},
		{name: "kea usage", args: []string{"kea", h.kea}, code: 2, stderr: "want SOCKET COMMAND"},
		{name: "ipc json", args: []string{"ipc", h.ipc, `{"command":"echo","id":4,"x":1}`}, code: 0,
			stdout: []string{`{"id":4,"x":1,"success":true}`}},
		{name: "ipc stream with events", args: []string{"ipc", h.ipc, `{"command":"stream","interval":1,"count":3,"id":1}`}, code: 0,
			stdout: []string{`{"type":"log","msg":"1 `, `{"type":"log","msg":"3 `, `{"id":1,"lines":3,"success":true}`}},
		{name: "ipc text", args: []string{"ipc", h.ipc, "echo a b"}, code: 0,
			stdout: []string{`{"type":"log","msg":"a b\n"}`}},
		{name: "ipc two lines in order", args: []string{"ipc", h.ipc, `{"command":"echo","id":1}`, `{"command":"echo","id":2}`}, code: 0,
			stdout: []string{"{\"id\":1,\"success\":true}\n{\"id\":2,\"success\":true}\n"}},
		{name: "ipc failure", args: []string{"ipc", h.ipc, `{"command":"nosuch","id":9}`}, code: 1,
			stdout: []string{`{"type":"log","msg":"error: command nosuch not found\n"}`, `{"id":9,"error":"command nosuch not found","success":false}`}},
		{name: "ipc text failure", args: []string{"ipc", h.ipc, `nosuch 1`}, code: 1,
			stdout: []string{`{"type":"log","msg":"error: command nosuch not found\n"}`}},
		{name: "ipc missing socket", args: []string{"ipc", filepath.Join(h.dir, "none"), "x"}, code: 2,
			stderr: "no such file or directory"},
		{name: "dgram sends", args: []string{"dgram", h.dgram, "echo=a,b", "echo"}, code: 0},
		{name: "dgram missing socket", args: []string{"dgram", filepath.Join(h.dir, "none.sock"), "x"}, code: 2,
			stderr: "connect: No such file or directory"},
		{name: "dgram stream socket", args: []string{"dgram", h.kea, "x"}, code: 2,
			stderr: "connect: Protocol wrong type for socket"},
		{name: "console", stdin: "echo hello there\n", args: []string{"console", h.con}, code: 0,
			stdout: []string{"hello there"}},
		{name: "console unknown", stdin: "frobnicate\n", args: []string{"console", h.con}, code: 0,
			stdout: []string{"Unknown command, try: ?"}},
		{name: "no command", args: nil, code: 2, stderr: "usage: ctl COMMAND"},
		{name: "unknown sub-command", args: []string{"frob"}, code: 2, stderr: `unknown command "frob"`},
		// The MCTP demux client is mctpd's mctp command.
		{name: "no demux command", args: []string{"demux", "-name", "mctp-mux", "-type", "5", "recv"}, code: 2, stderr: `unknown command "demux"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCtl(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if tc.stderr != "" && !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
		})
	}

	// The datagrams above ran: status-get counts them.
	st := hubStatus(t, h)
	var dg struct {
		Run uint64 `json:"run"`
	}
	json.Unmarshal(st["dgram"], &dg)
	if dg.Run < 2 {
		t.Errorf("dgram run counter %d after two datagrams; status: %v", dg.Run, st)
	}
}

func hubStatus(t *testing.T, h *hub) map[string]json.RawMessage {
	t.Helper()
	code, out, errs := runCtl(t, "", "kea", h.kea, "status-get")
	if code != 0 {
		t.Fatalf("status-get: exit %d: %s %s", code, out, errs)
	}
	var rep struct {
		Arguments map[string]json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status-get reply %q: %v", out, err)
	}
	return rep.Arguments
}

// TestSocatClients talks to the hub with socat, an independent client.
func TestSocatClients(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	h := startHub(t)
	tests := []struct {
		name, script, want string
	}{
		{"kea", `printf '{"command":"echo","arguments":{"k":"v"}}' | socat - UNIX-CONNECT:` + h.kea, `{ "arguments": { "k": "v" }, "result": 0 }`},
		{"ipc", `printf '{"command":"echo","id":7,"k":"v"}\n' | socat -t 2 - UNIX-CONNECT:` + h.ipc, `{"id":7,"k":"v","success":true}`},
		{"console", `printf 'echo a b\n' | socat -t 2 - UNIX-CONNECT:` + h.con, "a b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", tc.script).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %q, want %q in it", out, tc.want)
			}
		})
	}
}

func TestServeRefusesLiveSocket(t *testing.T) {
	h := startHub(t)
	code, _, errs := runCtl(t, "", "serve", "-kea", h.kea, "-dgram", "", "-ipc", "", "-console", "", "-http", "")
	if code != 1 || !strings.Contains(errs, "address already in use by a running process") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	// The running hub is untouched.
	if c, out, _ := runCtl(t, "", "kea", h.kea, "list-commands"); c != 0 {
		t.Fatalf("hub broken after refused start: %d %s", c, out)
	}
}

// TestServeNoDemux checks that the hub serves no MCTP demux (mctpd owns
// the demux names) and that the -demux flags it once had are refused,
// not silently ignored.
func TestServeNoDemux(t *testing.T) {
	h := startHub(t)
	if _, ok := hubStatus(t, h)["demux"]; ok {
		t.Error("status-get reports a demux")
	}
	for _, args := range [][]string{{"-demux="}, {"-demux", "x"}, {"-demux-addr", "8"}} {
		code, _, errs := runCtl(t, "", append([]string{"serve", "-kea", "", "-dgram", "", "-ipc", "", "-console", ""}, args...)...)
		if code != 2 || !strings.Contains(errs, "flag provided but not defined") {
			t.Errorf("serve %q: exit %d, stderr %s; want a usage error", args, code, errs)
		}
	}
}

func TestServeShutdown(t *testing.T) {
	h := startHub(t)
	code, out, _ := runCtl(t, "", "kea", h.kea, "shutdown")
	if code != 0 || !strings.Contains(out, `"text": "Shutting down."`) {
		t.Fatalf("shutdown: %d %s", code, out)
	}
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ctl serve exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ctl serve did not exit after shutdown")
	}
	for _, p := range []string{h.kea, h.dgram, h.ipc, h.con} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind: %v", p, err)
		}
	}
}

// TestServeReexec re-executes the hub with SIGUSR2 while a console client
// runs the persistent stream command: same PID, the reload counted, and
// the same connection keeps streaming.
func TestServeReexec(t *testing.T) {
	h := startHub(t)
	c, err := net.Dial("unix", h.con)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "stream --interval=10\n"); err != nil {
		t.Fatal(err)
	}
	readN := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatalf("read stream line: %v", err)
			}
		}
	}
	readN(3)
	if err := h.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	// The stream restarts from 1 in the new image on this connection.
	sawRestart := false
	for i := 0; i < 500 && !sawRestart; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("connection lost across re-exec: %v\nlog:\n%s", err, h.log.String())
		}
		sawRestart = strings.HasPrefix(line, "1 ")
	}
	if !sawRestart {
		t.Fatal("persistent stream not replayed after re-exec")
	}
	readN(2)
	st := hubStatus(t, h)
	var pid, reloads int
	json.Unmarshal(st["pid"], &pid)
	json.Unmarshal(st["reloads"], &reloads)
	if pid != h.cmd.Process.Pid || reloads != 1 {
		t.Fatalf("after re-exec: pid %d (process %d), reloads %d", pid, h.cmd.Process.Pid, reloads)
	}
	if !strings.Contains(h.log.String(), "resumed after re-exec") {
		t.Fatalf("no resume log line:\n%s", h.log.String())
	}
}

// TestExitStatus runs ctl in the test process as its main does: the exit
// status and what it prints for help and bad command lines of serve and
// the clients, none of which reach a socket.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, 2, "", "usage: ctl COMMAND"},
		{[]string{"help"}, 0, "usage: ctl COMMAND", ""},
		{[]string{"frob"}, 2, "", "ctl: unknown command \"frob\"\nusage: ctl COMMAND"},
		{[]string{"serve", "-h"}, 0, "", "-log-level LEVEL"},
		{[]string{"serve", "-bogus"}, 2, "", "ctl: flag provided but not defined: -bogus\n"},
		{[]string{"serve", "-log-level", "loud"}, 2, "", `invalid value "loud" for flag -log-level`},
		{[]string{"serve", "extra"}, 2, "", `ctl: serve: unexpected argument "extra"`},
		{[]string{"serve", "-socket-mode", "999"}, 2, "", `ctl: serve: -socket-mode "999": want an octal mode`},
		{[]string{"kea", "-h"}, 0, "", "usage: "},
		{[]string{"kea", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Exec(context.Background(), "ctl", program{stdin: strings.NewReader("")}.run, tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
		if strings.Contains(stderr.String(), "help requested") {
			t.Errorf("%q: help printed as an error:\n%s", tc.args, stderr.String())
		}
	}
}

// TestServeRequestCounters checks that status-get counts the requests
// of every front end by result, and the connections of the stream ones.
func TestServeRequestCounters(t *testing.T) {
	h := startHub(t)
	requests := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"kea success", "", []string{"kea", h.kea, "echo", `{"a":1}`}},
		{"kea unsupported", "", []string{"kea", h.kea, "nosuch"}},
		{"kea error", "", []string{"kea", h.kea, "shutdown", `{"exit-value":1}`}},
		{"kea stream unsupported", "", []string{"kea", h.kea, "stream"}},
		{"ipc json success", "", []string{"ipc", h.ipc, `{"command":"echo","id":1}`}},
		{"ipc text success", "", []string{"ipc", h.ipc, "echo a"}},
		{"ipc unsupported", "", []string{"ipc", h.ipc, `{"command":"nosuch","id":2}`}},
		{"dgram success", "", []string{"dgram", h.dgram, "echo=a"}},
		{"dgram unsupported", "", []string{"dgram", h.dgram, "nosuch"}},
		{"console success", "echo x\n", []string{"console", h.con}},
		{"console unsupported", "frobnicate\n", []string{"console", h.con}},
	}
	for _, rq := range requests {
		runCtl(t, rq.stdin, rq.args...)
	}
	want := map[string]map[string]uint64{
		"kea": {"success": 1, "error": 1, "unsupported": 2},
		// ctl ipc follows a text-form line with a marker request.
		"ipc":     {"success": 3, "error": 0, "unsupported": 1},
		"dgram":   {"success": 1, "error": 0, "unsupported": 1},
		"console": {"success": 1, "error": 0, "unsupported": 1},
	}
	var got map[string]map[string]uint64
	var st map[string]json.RawMessage
	// The datagrams run asynchronously; status-get itself is counted
	// after its reply is made, so it is not in the counts it reports.
	testutil.WaitFor(t, "the datagrams counted", 10*time.Second, func() bool {
		st = hubStatus(t, h)
		got = nil
		json.Unmarshal(st["requests"], &got)
		return got["dgram"]["success"]+got["dgram"]["unsupported"] >= 2
	})
	got = nil
	if err := json.Unmarshal(st["requests"], &got); err != nil {
		t.Fatalf("requests %s: %v", st["requests"], err)
	}
	// Each status-get before the last was a kea request too.
	polls := got["kea"]["success"] - want["kea"]["success"]
	want["kea"]["success"] += polls
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests %v, want %v (plus %d status-get)", got, want, polls)
	}
	var active, accepted map[string]uint64
	if err := json.Unmarshal(st["connections"], &active); err != nil {
		t.Fatalf("connections %s: %v", st["connections"], err)
	}
	if err := json.Unmarshal(st["connections-accepted"], &accepted); err != nil {
		t.Fatalf("connections-accepted %s: %v", st["connections-accepted"], err)
	}
	// The status-get connection itself is open while it is answered.
	if active["kea"] != 1 || len(active) != 3 {
		t.Errorf("connections %v, want kea 1, ipc and console 0", active)
	}
	for front, n := range map[string]uint64{"kea": 4 + polls + 1, "ipc": 3, "console": 2} {
		if accepted[front] != n {
			t.Errorf("connections-accepted %s = %d, want %d", front, accepted[front], n)
		}
	}
}
