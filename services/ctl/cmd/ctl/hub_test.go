package main

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
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// hubTimeout is the forward timeout the tests configure: short, so
// that the hanging daemon's case is quick, and long enough for a loaded
// box to answer every other forward well within it.
const hubTimeout = 3 * time.Second

// hubEnv is a ctl serve hub fronting stand-in daemons (ctl serve
// instances, whose echo returns its arguments) and broken ones.
type hubEnv struct {
	*hub
	url          string
	a, b         *hub // the stand-ins for services "a" and "b"
	aPID, bPID   int
	conf         string
	gone, hang   string
	dead         string
	passwordFile string
}

// startHubEnv starts stand-ins a, b and dead (killed at once, leaving its
// socket file), a listener that accepts and never answers (hang), and
// the hub with all of them and a missing socket (gone) in its config.
func startHubEnv(t *testing.T, extra ...string) *hubEnv {
	t.Helper()
	e := &hubEnv{a: startHub(t), b: startHub(t)}
	e.aPID, e.bPID = e.a.cmd.Process.Pid, e.b.cmd.Process.Pid
	dir := testutil.ShortDir(t)
	dead := startHub(t)
	e.dead = dead.kea
	dead.cmd.Process.Kill()
	dead.cmd.Wait()
	if _, err := os.Stat(e.dead); err != nil {
		t.Fatalf("killed stand-in left no socket file: %v", err)
	}
	e.gone = filepath.Join(dir, "gone.sock")
	e.hang = filepath.Join(dir, "hang.sock")
	ln, err := net.Listen("unix", e.hang)
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	e.conf = filepath.Join(dir, "hub.json")
	conf := fmt.Sprintf(`{"Control-agent": {"control-sockets": {
		"a": {"socket-type": "unix", "socket-name": %q},
		"b": {"socket-type": "unix", "socket-name": %q},
		"gone": {"socket-type": "unix", "socket-name": %q},
		"dead": {"socket-type": "unix", "socket-name": %q},
		"hang": {"socket-type": "unix", "socket-name": %q}},
		"forward-timeout": %d}}`, e.a.kea, e.b.kea, e.gone, e.dead, e.hang, hubTimeout.Milliseconds())
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e.hub = startHub(t, append([]string{"-config", e.conf, "-http", "127.0.0.1:0", "-password-file", ""}, extra...)...)
	e.url = "http://" + httpAddr(t, e.hub) + "/"
	return e
}

var httpListening = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// httpAddr reads the HTTP listener's address from the hub's log.
func httpAddr(t *testing.T, h *hub) string {
	t.Helper()
	var addr string
	testutil.WaitFor(t, "the hub's http listening line", 10*time.Second, func() bool {
		m := httpListening.FindStringSubmatch(h.log.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

func call(t *testing.T, path, req string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := kea.Call(ctx, path, []byte(req))
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	return string(b)
}

func TestHubForwarding(t *testing.T) {
	e := startHubEnv(t)
	offline := func(svc, why string) string {
		return `[ { "result": 1, "text": "unable to forward command to the ` + svc + ` service: ` + why + `. The server is likely to be offline" } ]`
	}
	for _, tc := range []struct {
		name, req, want string
		// check, when set, replaces the comparison with want.
		check func(t *testing.T, reply string)
	}{
		{name: "up", req: `{"command":"echo","service":["a"],"arguments":{"x":1}}`, want: `[ { "arguments": { "x": 1 }, "result": 0 } ]`},
		{name: "unknown", req: `{"command":"echo","service":["nosuch"]}`,
			want: `[ { "result": 1, "text": "forwarding socket is not configured for the server type nosuch" } ]`},
		{name: "down: no socket", req: `{"command":"echo","service":["gone"]}`, want: offline("gone", "No such file or directory")},
		{name: "down: daemon killed", req: `{"command":"echo","service":["dead"]}`, want: offline("dead", "Connection refused")},
		{name: "list in order", req: `{"command":"status-get","service":["a","b","nosuch","a"]}`, check: func(t *testing.T, reply string) {
			var list []struct {
				Result    int
				Text      string
				Arguments struct{ PID int }
			}
			if err := json.Unmarshal([]byte(reply), &list); err != nil || len(list) != 4 {
				t.Fatalf("want 4 answers: %v: %s", err, reply)
			}
			if list[0].Arguments.PID != e.aPID || list[1].Arguments.PID != e.bPID || list[2].Result != 1 || list[3].Arguments.PID != e.aPID {
				t.Fatalf("answers out of order (a %d, b %d): %s", e.aPID, e.bPID, reply)
			}
		}},
		{name: "forwarded with service in it", req: `{"command":"config-get","service":["a"]}`, check: func(t *testing.T, reply string) {
			// The stand-in is a daemon: it ignores "service" and
			// answers with its own configuration, in a list of one.
			if !strings.HasPrefix(reply, `[ { "arguments": { "allow-gid": -1, `) || !strings.Contains(reply, `"http": ""`) {
				t.Fatalf("got %s", reply)
			}
		}},
		{name: "no service runs on the hub", req: `{"command":"echo","arguments":{"hub":true}}`, want: `{ "arguments": { "hub": true }, "result": 0 }`},
		{name: "unknown command on the hub", req: `{"command":"nosuch"}`, check: func(t *testing.T, reply string) {
			if !strings.HasPrefix(reply, `{ "result": 2, "text": "'nosuch' command not supported. The request names no \"service\"`) {
				t.Fatalf("got %s", reply)
			}
		}},
		{name: "service not a list", req: `{"command":"echo","service":"a"}`, want: `{ "result": 1, "text": "service value must be a list" }`},
		{name: "services-get", req: `{"command":"services-get"}`, check: func(t *testing.T, reply string) {
			var r struct {
				Result    int
				Arguments struct {
					Services []struct {
						Service string
						Up      bool
						PID     int
					}
				}
			}
			if err := json.Unmarshal([]byte(reply), &r); err != nil || r.Result != 0 {
				t.Fatalf("%v: %s", err, reply)
			}
			got := ""
			for _, s := range r.Arguments.Services {
				got += fmt.Sprintf("%s:%v ", s.Service, s.Up)
			}
			if got != "a:true b:true gone:false dead:false hang:false " {
				t.Fatalf("services %q: %s", got, reply)
			}
			if r.Arguments.Services[0].PID != e.aPID {
				t.Errorf("a's pid %d, want %d", r.Arguments.Services[0].PID, e.aPID)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := call(t, e.kea, tc.req)
			if tc.check != nil {
				tc.check(t, got)
			} else if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		got := call(t, e.kea, `{"command":"echo","service":["hang"]}`)
		took := time.Since(start)
		if got != offline("hang", "Operation canceled") {
			t.Fatalf("got %s", got)
		}
		// Within the configured timeout, with a wide margin for a
		// loaded box, and not before it.
		if took < hubTimeout-100*time.Millisecond || took > hubTimeout+5*time.Second {
			t.Fatalf("answered after %v; the timeout is %v", took, hubTimeout)
		}
	})

	t.Run("1 MiB reply", func(t *testing.T) {
		blob := strings.Repeat("x", 1<<20)
		got := call(t, e.kea, `{"command":"echo","service":["a"],"arguments":{"blob":"`+blob+`"}}`)
		if got != `[ { "arguments": { "blob": "`+blob+`" }, "result": 0 } ]` {
			t.Fatalf("reply of %d bytes differs", len(got))
		}
	})

	t.Run("concurrent clients", func(t *testing.T) {
		const clients, each = 24, 10
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := []string{"a", "b"}[i%2]
				for j := 0; j < each; j++ {
					req := fmt.Sprintf(`{"command":"echo","service":[%q],"arguments":{"c":%d,"j":%d}}`, svc, i, j)
					want := fmt.Sprintf(`[ { "arguments": { "c": %d, "j": %d }, "result": 0 } ]`, i, j)
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					b, err := kea.Call(ctx, e.kea, []byte(req))
					cancel()
					if err != nil || string(b) != want {
						errs <- fmt.Errorf("client %d request %d: %v: %s", i, j, err, b)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("daemon restarted", func(t *testing.T) {
		// A client of the hub holds a connection across the restart:
		// it is the hub's, not the daemon's, and stays usable.
		held, err := net.Dial("unix", e.kea)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		e.a.cmd.Process.Kill()
		e.a.cmd.Wait()
		if got := call(t, e.kea, `{"command":"echo","service":["a"]}`); got != offline("a", "Connection refused") {
			t.Fatalf("while a is down: %s", got)
		}
		again := exec.Command(ctlBin, "serve", "-kea", e.a.kea, "-dgram", "", "-ipc", "", "-console", "", "-http", "")
		again.Stderr = e.a.log
		if err := again.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { again.Process.Kill(); again.Wait() })
		testutil.WaitFor(t, "the restarted a answering", 10*time.Second, func() bool {
			_, err := kea.Call(context.Background(), e.a.kea, []byte(`{"command":"list-commands"}`))
			return err == nil
		})
		got := call(t, e.kea, `{"command":"status-get","service":["a"]}`)
		if !strings.Contains(got, fmt.Sprintf(`"pid": %d`, again.Process.Pid)) {
			t.Fatalf("after the restart: %s", got)
		}
		held.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(held, `{"command":"echo","service":["a"],"arguments":{"held":1}}`)
		b, err := io.ReadAll(held)
		if err != nil || string(b) != `[ { "arguments": { "held": 1 }, "result": 0 } ]` {
			t.Fatalf("connection held across the restart: %v: %s", err, b)
		}
	})
}

// TestHubRetry restarts a daemon while the hub forwards to it: the
// forward that finds it gone is tried once more, 250 ms later, and
// reaches the new process, which the test starts as soon as the hub has
// logged its first attempt's failure.
func TestHubRetry(t *testing.T) {
	e := startHubEnv(t, "-log-level", "debug")
	e.a.cmd.Process.Kill()
	e.a.cmd.Wait()
	os.Remove(e.a.kea)
	// Take the socket path with a listener the test controls. It
	// answers as a Kea daemon would (one request per connection, the
	// keep-open request unknown), except that it drops the first echo
	// without a reply, as a daemon dying under a request does. Other
	// requests (the status page's polls) get an empty success.
	ln, err := net.Listen("unix", e.a.kea)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		echoes := 0
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			req := string(buf[:n])
			switch {
			case strings.Contains(req, kea.KeepOpenCommand):
				io.WriteString(c, `{ "result": 2, "text": "'`+kea.KeepOpenCommand+`' command not supported." }`)
			case !strings.Contains(req, `"echo"`):
				io.WriteString(c, `{ "result": 0 }`)
			case echoes == 0:
				echoes++
			default:
				io.WriteString(c, `{ "result": 0, "text": "second attempt" }`)
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := kea.Call(ctx, e.kea, []byte(`{"command":"echo","service":["a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `[ { "result": 0, "text": "second attempt" } ]` {
		t.Fatalf("got %s\nhub log:\n%s", got, e.hub.log.String())
	}
	if !strings.Contains(e.hub.log.String(), "forward failed; retrying once") {
		t.Fatalf("the hub did not log the retry:\n%s", e.hub.log.String())
	}
}

func post(t *testing.T, url, ctype, method, body string, auth func(*http.Request)) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestHubHTTP(t *testing.T) {
	dir := testutil.ShortDir(t)
	pw := filepath.Join(dir, "gokr-pw.txt")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	e := startHubEnv(t, "-password-file", pw)
	good := func(r *http.Request) { r.SetBasicAuth("gokrazy", "hunter2") }
	const bad400 = `{ "result": 400, "text": "Bad Request" }`
	const json = "application/json"
	for _, tc := range []struct {
		name, method, ctype, body string
		auth                      func(*http.Request)
		code                      int
		want                      string
	}{
		{"forwarded", "POST", json, `{"command":"echo","service":["a"],"arguments":{"x":1}}`, good, 200, `[ { "arguments": { "x": 1 }, "result": 0 } ]`},
		{"the hub's own answer in a list", "POST", json, `{"command":"echo","arguments":{"x":1}}`, good, 200, `[ { "arguments": { "x": 1 }, "result": 0 } ]`},
		{"list of two", "POST", json, `{"command":"echo","service":["a","nosuch"]}`, good, 200,
			`[ { "arguments": {  }, "result": 0 }, { "result": 1, "text": "forwarding socket is not configured for the server type nosuch" } ]`},
		{"a client's remote-address is accepted", "POST", json, `{"command":"echo","service":["b"],"remote-address":"10.0.0.1"}`, good, 200, `[ { "arguments": {  }, "result": 0 } ]`},
		{"empty body", "POST", json, ``, good, 200, `[ { "result": 1, "text": "Command processing failed: NULL command parameter" } ]`},
		{"bad JSON", "POST", json, `{bad`, good, 400, bad400},
		{"trailing data", "POST", json, `{"command":"echo"} x`, good, 400, bad400},
		{"GET", "GET", json, ``, good, 400, bad400},
		{"PUT", "PUT", json, `{"command":"echo"}`, good, 400, bad400},
		{"text/plain", "POST", "text/plain", `{"command":"echo"}`, good, 400, bad400},
		{"no credentials", "POST", json, `{"command":"echo"}`, nil, 401, `{ "result": 401, "text": "Unauthorized" }`},
		{"wrong password", "POST", json, `{"command":"echo"}`, func(r *http.Request) { r.SetBasicAuth("gokrazy", "hunter3") }, 401, `{ "result": 401, "text": "Unauthorized" }`},
		{"over the size limit", "POST", json, `{"command":"echo","arguments":{"b":"` + strings.Repeat("x", kea.DefaultMaxRequest) + `"}}`, good, 413, `{ "result": 413, "text": "Request Entity Too Large" }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := post(t, e.url+"some/path", tc.ctype, tc.method, tc.body, tc.auth)
			if code != tc.code || body != tc.want {
				t.Fatalf("got %d %s\nwant %d %s", code, body, tc.code, tc.want)
			}
			if hdr.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
			}
			if ch := hdr.Get("WWW-Authenticate"); (code == 401) != (ch == `Basic realm="tickbox hub"`) {
				t.Errorf("WWW-Authenticate %q with status %d", ch, code)
			}
		})
	}
}

// TestHubPages: the status page and its API need the password, as the
// Kea channel does; /metrics does not by default, and reports the
// fronted daemons and the hub.
func TestHubPages(t *testing.T) {
	dir := testutil.ShortDir(t)
	pw := filepath.Join(dir, "gokr-pw.txt")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	e := startHubEnv(t, "-password-file", pw)
	good := func(r *http.Request) { r.SetBasicAuth("gokrazy", "hunter2") }
	for _, tc := range []struct {
		name, path string
		auth       func(*http.Request)
		code       int
		ctype      string
		want       []string
	}{
		{"page", "", good, 200, "text/html; charset=utf-8", []string{"<html", "uPlot"}},
		{"page without the password", "", nil, 401, "", nil},
		{"snapshot", "api/snapshot", good, 200, "application/json", []string{`"services"`}},
		{"snapshot without the password", "api/snapshot", nil, 401, "", nil},
		{"metrics without the password", "metrics", nil, 200, "", []string{
			`tickbox_service_up{service="a"} 1`, `tickbox_service_up{service="gone"} 0`,
			`tickbox_service_up{service="ctl"} 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := post(t, e.url+tc.path, "", "GET", "", tc.auth)
			if code != tc.code {
				t.Fatalf("GET /%s: %d %.300s", tc.path, code, body)
			}
			if tc.ctype != "" && hdr.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", hdr.Get("Content-Type"), tc.ctype)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET /%s lacks %s:\n%.2000s", tc.path, w, body)
				}
			}
		})
	}
}

// TestHubStartupErrors: a bad hub config or password file stops ctl
// serve at once with the OS's text.
func TestHubStartupErrors(t *testing.T) {
	dir := testutil.ShortDir(t)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"control-sockets": {}}`), 0o644)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base := []string{"serve", "-kea", "", "-dgram", "", "-ipc", "", "-console", "", "-http", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"missing password file", []string{"-password-file", filepath.Join(dir, "none")}, 1, "password file: open " + filepath.Join(dir, "none") + ": no such file or directory (the HTTP listener 127.0.0.1:0 needs it; -password-file FILE names another, -http \"\" turns the listener off)"},
		{"missing config", []string{"-password-file", "", "-config", filepath.Join(dir, "none.json")}, 1, "no such file or directory"},
		{"config without services", []string{"-password-file", "", "-config", bad}, 1, "control-sockets names no service"},
		{"negative timeout", []string{"-forward-timeout", "-1s"}, 2, "-forward-timeout"},
		{"port taken", []string{"-password-file", "", "-http", taken.Addr().String()}, 1, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCtl(t, "", append(append([]string{}, base...), tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.text) {
				t.Fatalf("exit %d, stderr %s; want %d and %q", code, errs, tc.code, tc.text)
			}
		})
	}
}

// TestServiceClient runs ctl -s against the hub.
func TestServiceClient(t *testing.T) {
	e := startHubEnv(t)
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"ok", nil, []string{"-socket", e.kea, "-s", "a", "echo", `{"k":"v"}`}, 0, `[ { "arguments": { "k": "v" }, "result": 0 } ]` + "\n", ""},
		{"env socket", []string{"CTL_SOCKET=" + e.kea}, []string{"-s", "a,b", "echo"}, 0, `[ { "arguments": {  }, "result": 0 }, { "arguments": {  }, "result": 0 } ]` + "\n", ""},
		{"daemon failure", nil, []string{"-socket", e.kea, "-s", "a", "nosuch"}, 1, `[ { "result": 2, "text": "'nosuch' command not supported." } ]` + "\n", ""},
		{"one of two down", nil, []string{"-socket", e.kea, "-s", "a,gone", "echo"}, 1, "No such file or directory", ""},
		{"unknown service", nil, []string{"-socket", e.kea, "-s", "zz", "echo"}, 1, "forwarding socket is not configured for the server type zz", ""},
		{"no hub", nil, []string{"-socket", filepath.Join(e.dir, "none.sock"), "-s", "a", "echo"}, 2, "", "no such file or directory"},
		{"bad args", nil, []string{"-socket", e.kea, "-s", "a", "echo", "{"}, 2, "", "ARGS-JSON is not valid JSON"},
		{"no command", nil, []string{"-socket", e.kea, "-s", "a"}, 2, "", "want -s SERVICE COMMAND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(ctlBin, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
