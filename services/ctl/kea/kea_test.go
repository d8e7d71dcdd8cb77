package kea

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/ctltest"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// keaTestDaemon returns a daemon with the commands the Kea tests use.
func keaTestDaemon(name string, cfg map[string]any, log *slog.Logger) *ctl.Registry {
	d := ctl.NewRegistry(ctl.Options{Name: name, Version: "1.2.3", Logger: log, Config: func() any { return cfg }})
	d.MustRegister(
		&ctl.Command{Name: "arglen", AnyArgs: true, Comment: "length of the data argument",
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				s, _ := c.Args.Any()["data"].(string)
				return ctl.OK("", map[string]any{"len": len(s), "raw": len(c.Args.Raw())})
			}},
		&ctl.Command{Name: "big", Params: []ctl.Param{{Name: "size", Type: ctl.Int, Required: true}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"data": strings.Repeat("x", int(c.Args.Int("size")))})
			}},
		&ctl.Command{Name: "typed", Params: []ctl.Param{{Name: "n", Type: ctl.Int, Required: true}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"n": c.Args.Int("n")})
			}},
		&ctl.Command{Name: "sleep", Params: []ctl.Param{{Name: "ms", Type: ctl.Int, Required: true}},
			Handler: func(ctx context.Context, c *ctl.Call) ctl.Result {
				select {
				case <-time.After(time.Duration(c.Args.Int("ms")) * time.Millisecond):
					return ctl.OK("slept", nil)
				case <-ctx.Done():
					return ctl.Fail("cancelled")
				}
			}},
		&ctl.Command{Name: "tail", Stream: true,
			Handler: func(ctx context.Context, c *ctl.Call) ctl.Result { <-ctx.Done(); return ctl.OK("", nil) }},
		&ctl.Command{Name: "say", Comment: "writes its output instead of a text",
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				fmt.Fprintln(c.Out, "hello")
				return ctl.OK("", nil)
			}},
	)
	return d
}

type keaEnv struct {
	srv  *ctl.Server
	kea  *Server
	d    *ctl.Registry
	path string
	log  *testutil.LockedBuffer
}

func startKea(t testing.TB, name string, cfg map[string]any, opts Options) *keaEnv {
	t.Helper()
	lb := &testutil.LockedBuffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := keaTestDaemon(name, cfg, log)
	srv := ctl.NewServer(d)
	path := filepath.Join(testutil.ShortDir(t), name+".sock")
	k, err := Serve(srv, ctl.SocketSpec{Addr: path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctltest.CloseOnCleanup(t, srv)
	return &keaEnv{srv: srv, kea: k, d: d, path: path, log: lb}
}

// exchange writes chunks (pausing between them), then reads until the
// server closes. A reset after the reply counts as the end.
func exchange(t testing.TB, path string, chunks [][]byte, pause time.Duration, closeWrite bool) []byte {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only a guard against a hang: a 16 MiB request goes through the
	// race detector byte by byte, which takes tens of seconds on a
	// loaded two-core machine, so the guard grows with the request.
	size := 0
	for _, ch := range chunks {
		size += len(ch)
	}
	c.SetDeadline(time.Now().Add(20*time.Second + time.Duration(size>>20)*5*time.Second))
	go func() {
		for i, ch := range chunks {
			if i > 0 && pause > 0 {
				time.Sleep(pause)
			}
			if _, err := c.Write(ch); err != nil {
				return
			}
		}
		if closeWrite {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	var out bytes.Buffer
	_, err = io.Copy(&out, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (got %q)", err, out.String())
	}
	return out.Bytes()
}

func chunks(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestKeaConformance(t *testing.T) {
	t.Parallel()
	ptpd := startKea(t, "ptpd", map[string]any{"b": 2}, Options{})
	downPath := filepath.Join(testutil.ShortDir(t), "down.sock")
	env := startKea(t, "hub", map[string]any{"a": 1}, Options{
		Forward: func(ctx context.Context, service string, req []byte) ([]byte, error) {
			switch service {
			case "ptpd":
				return Call(ctx, ptpd.path, req)
			case "down":
				return Call(ctx, downPath, req)
			case "lister":
				return []byte(`[ { "result": 0, "text": "one" }, { "result": 3, "text": "two" } ]`), nil
			case "recorder":
				// Answers with the request it was given, as its text.
				return keaReply(ctl.OK(string(req), nil)), nil
			}
			return nil, fmt.Errorf("%s: %w", service, ErrNoService)
		},
	})
	nilFwd := startKea(t, "plain", map[string]any{}, Options{})

	names := env.d.Names()
	var quoted []string
	for _, n := range names {
		quoted = append(quoted, `"`+n+`"`)
	}
	listReply := fmt.Sprintf(`{ "arguments": [ %s ], "result": 0 }`, strings.Join(quoted, ", "))
	cfgReply := `{ "arguments": { "a": 1 }, "result": 0 }`
	ptpdCfg := `{ "arguments": { "b": 2 }, "result": 0 }`
	const near = DefaultMaxRequest - 64
	bigReq := `{"command":"arglen","arguments":{"data":"` + strings.Repeat("y", near-len(`{"command":"arglen","arguments":{"data":""}}`)) + `"}}`
	if len(bigReq) != near {
		t.Fatalf("big request is %d bytes", len(bigReq))
	}
	overReq := `{"command":"arglen","arguments":{"data":"` + strings.Repeat("z", DefaultMaxRequest) + `"}}`

	cases := []struct {
		name   string
		path   string // default env.path
		in     [][]byte
		pause  time.Duration
		want   string
		check  func(t *testing.T, got []byte)
		halfCl bool
	}{
		{name: "unknown command", path: ptpd.path, in: chunks(`{"command":"foo"}`),
			want: `{ "result": 2, "text": "'foo' command not supported." }`},
		// A hub says how to reach a daemon, as Kea's Control Agent does.
		{name: "unknown command on a hub", in: chunks(`{"command":"foo"}`),
			want: `{ "result": 2, "text": "'foo' command not supported. The request names no \"service\", so the hub ran it itself; to send it to a daemon, add \"service\": [ \"NAME\" ] with a service the hub fronts (services-get lists them)." }`},
		{name: "empty map", in: chunks(`{}`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command: does not contain mandatory 'command'" }`},
		{name: "command not a string", in: chunks(`{"command":1}`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command: expected 'command' to be a string, got map instead" }`},
		{name: "toplevel list", in: chunks(`[{"command":"list-commands"}]`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command: expected toplevel entry to be a map, got list instead" }`},
		{name: "extra key", in: chunks(`{"command":"list-commands","foo":1}`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command: unsupported parameter 'foo'" }`},
		{name: "bad json", in: chunks(`{"command": }`),
			want: `{ "result": 1, "text": "error: unexpected character } in <wire>:0:13" }`},
		{name: "bad json second line", in: chunks("{\n\"command\": }"),
			want: `{ "result": 1, "text": "error: unexpected character } in <wire>:1:13" }`},
		{name: "trailing comma in map", in: chunks(`{"a":1,}`),
			want: `{ "result": 1, "text": "String expected in <wire>:0:8" }`},
		{name: "invalid first character", in: chunks(`x{"command":"list-commands"}`),
			want: `{ "result": 1, "text": "invalid first character x" }`},
		{name: "invalid character after whitespace", in: chunks(" \n\"command\""),
			want: `{ "result": 1, "text": "invalid character \"" }`},
		{name: "invalid comment", in: chunks(`/x`),
			want: `{ "result": 1, "text": "invalid characters /x" }`},
		{name: "comments before and inside", in: chunks("# hash\n// line\n/* block\n**/ {\"command\" /* in */ : # h\n \"config-get\" // x\n}"),
			want: cfgReply},
		{name: "split writes with pauses", in: chunks(`{"comm`, `and":"con`, `fig-get"`, `}`), pause: 30 * time.Millisecond,
			want: cfgReply},
		{name: "byte by byte", in: chunks(strings.Split(`{"command":"config-get"}`, "")...), pause: time.Millisecond,
			want: cfgReply},
		{name: "two objects in one write", in: chunks(`{"command":"config-get"}{"command":"foo"}`),
			want: cfgReply},
		{name: "trailing garbage", in: chunks(`{"command":"config-get"} }}]] garbage`),
			want: cfgReply},
		{name: "whitespace before", in: chunks(" \t\r\n {\"command\":\"config-get\"}"),
			want: cfgReply},
		{name: "braces in strings", in: chunks(`{"command":"arglen","arguments":{"data":"}]\"{["}}`),
			want: `{ "arguments": { "len": 5, "raw": 20 }, "result": 0 }`},
		{name: "remote address", in: chunks(`{"command":"config-get","remote-address":"127.0.0.1"}`),
			want: cfgReply},
		{name: "common command ignores a list argument", in: chunks(`{"command":"config-get","arguments":[1]}`),
			want: cfgReply},
		{name: "common command ignores a string argument", in: chunks(`{"command":"config-get","arguments":"x"}`),
			want: cfgReply},
		{name: "common command ignores named arguments", in: chunks(`{"command":"config-get","arguments":{"x":1,"hash":"abc"}}`),
			want: cfgReply},
		{name: "list-commands ignores arguments", in: chunks(`{"command":"list-commands","arguments":{"service":["dhcp4"]}}`),
			want: listReply},
		{name: "status-get ignores arguments", in: chunks(`{"command":"status-get","arguments":{"x":[1,2]}}`),
			check: func(t *testing.T, got []byte) {
				// The first key, in sorted order, is the core's count of
				// open connections per front end.
				if !bytes.HasPrefix(got, []byte(`{ "arguments": { "connections": { "kea": `)) || !bytes.Contains(got, []byte(`, "pid": `)) || !bytes.HasSuffix(got, []byte(` }, "result": 0 }`)) {
					t.Errorf("status-get: %s", got)
				}
			}},
		{name: "version-get ignores arguments", in: chunks(`{"command":"version-get","arguments":{"x":1}}`),
			check: func(t *testing.T, got []byte) {
				if !bytes.HasPrefix(got, []byte(`{ "arguments": { "extended": "hub 1.2.3\n`)) || !bytes.HasSuffix(got, []byte(`, "result": 0, "text": "1.2.3" }`)) {
					t.Errorf("version-get: %s", got)
				}
			}},
		{name: "build-report ignores arguments", in: chunks(`{"command":"build-report","arguments":true}`),
			check: func(t *testing.T, got []byte) {
				if !bytes.HasPrefix(got, []byte(`{ "result": 0, "text": "hub 1.2.3\ngo: `)) {
					t.Errorf("build-report: %s", got)
				}
			}},
		{name: "other command keeps a map", in: chunks(`{"command":"typed","arguments":[1]}`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command 'typed': expected 'arguments' to be a map, got list instead" }`},
		{name: "other command keeps its parameters", in: chunks(`{"command":"typed","arguments":{"n":1,"bogus":2}}`),
			want: `{ "result": 1, "text": "typed: parameter 'bogus' is not supported" }`},
		{name: "shutdown keeps its parameters", path: nilFwd.path, in: chunks(`{"command":"shutdown","arguments":{"exit-value":3}}`),
			want: `{ "result": 1, "text": "shutdown: parameter 'exit-value' is not supported" }`},
		{name: "unknown command before its arguments", path: ptpd.path, in: chunks(`{"command":"foo","arguments":[1]}`),
			want: `{ "result": 2, "text": "'foo' command not supported." }`},
		{name: "arguments null", in: chunks(`{"command":"config-get","arguments":null}`),
			want: cfgReply},
		{name: "bad parameter", in: chunks(`{"command":"typed","arguments":{"n":"abc"}}`),
			want: `{ "result": 1, "text": "typed: parameter 'n' must be an integer, got \"abc\"" }`},
		{name: "typed parameter", in: chunks(`{"command":"typed","arguments":{"n":"0x10"}}`),
			want: `{ "arguments": { "n": 16 }, "result": 0 }`},
		{name: "streaming command", in: chunks(`{"command":"tail"}`),
			want: `{ "result": 2, "text": "'tail' streams its output and cannot run on the one-shot Kea channel; use the console or the ipc socket" }`},
		{name: "output becomes text", in: chunks(`{"command":"say"}`),
			want: `{ "result": 0, "text": "hello" }`},
		{name: "list-commands", in: chunks(`{"command":"list-commands"}`), want: listReply,
			check: func(t *testing.T, got []byte) {
				var r struct{ Arguments []string }
				if err := json.Unmarshal(got, &r); err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(r.Arguments, "list-commands") {
					t.Errorf("list-commands not listed: %v", r.Arguments)
				}
				for i := 1; i < len(r.Arguments); i++ {
					if r.Arguments[i-1] >= r.Arguments[i] {
						t.Errorf("not sorted: %v", r.Arguments)
					}
				}
			}},
		{name: "version-get", in: chunks(`{"command":"version-get"}`),
			check: func(t *testing.T, got []byte) {
				var r struct {
					Result    int
					Text      string
					Arguments struct{ Extended string }
				}
				if err := json.Unmarshal(got, &r); err != nil {
					t.Fatal(err)
				}
				if r.Result != 0 || r.Text != "1.2.3" || strings.Count(r.Arguments.Extended, "\n") < 2 ||
					!strings.HasPrefix(r.Arguments.Extended, "hub 1.2.3\n") {
					t.Errorf("bad version-get reply %s", got)
				}
				if !bytes.HasPrefix(got, []byte(`{ "arguments": { "extended": "hub 1.2.3\n`)) {
					t.Errorf("layout: %s", got)
				}
			}},
		{name: "status-get", in: chunks(`{"command":"status-get"}`),
			check: func(t *testing.T, got []byte) {
				var r struct {
					Result    int
					Arguments map[string]any
				}
				if err := json.Unmarshal(got, &r); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"pid", "uptime", "reload"} {
					if _, ok := r.Arguments[k]; !ok {
						t.Errorf("status-get lacks %q: %s", k, got)
					}
				}
				if int(r.Arguments["pid"].(float64)) != os.Getpid() {
					t.Errorf("pid: %s", got)
				}
			}},
		{name: "config-get", in: chunks(`{"command":"config-get"}`), want: cfgReply},
		{name: "build-report", in: chunks(`{"command":"build-report"}`),
			check: func(t *testing.T, got []byte) {
				if !bytes.HasPrefix(got, []byte(`{ "result": 0, "text": "hub 1.2.3\ngo: `)) {
					t.Errorf("build-report: %s", got)
				}
			}},
		{name: "shutdown", path: nilFwd.path, in: chunks(`{"command":"shutdown"}`),
			want: `{ "result": 0, "text": "Shutting down." }`},
		{name: "request just under the limit", in: [][]byte{[]byte(bigReq)},
			want: fmt.Sprintf(`{ "arguments": { "len": %d, "raw": %d }, "result": 0 }`, near-44, near-44+14)},
		{name: "request over the limit", in: [][]byte{[]byte(overReq)},
			want: `{ "result": 1, "text": "request too large: exceeds 16777216 bytes" }`},
		{name: "100 KiB reply", in: chunks(`{"command":"big","arguments":{"size":102400}}`),
			want: `{ "arguments": { "data": "` + strings.Repeat("x", 102400) + `" }, "result": 0 }`},
		{name: "connect and close", in: nil, halfCl: true, want: ""},
		{name: "partial then EOF", in: chunks(`{"command":"con`), halfCl: true, want: ""},
		// A daemon (no Forward) answers as Kea's daemons do: "service"
		// is not read at all, whatever its value.
		{name: "daemon ignores service", path: ptpd.path, in: chunks(`{"command":"config-get","service":["dhcp4"]}`),
			want: ptpdCfg},
		{name: "daemon ignores service as the agent forwards it", path: ptpd.path,
			in:   chunks(`{ "command": "config-get", "remote-address": "127.0.0.1", "service": [ "dhcp4" ] }`),
			want: ptpdCfg},
		{name: "daemon ignores several services", path: ptpd.path, in: chunks(`{"command":"config-get","service":["dhcp4","dhcp6","d2"]}`),
			want: ptpdCfg},
		{name: "daemon ignores a service that is not a list", path: ptpd.path, in: chunks(`{"command":"config-get","service":"dhcp4"}`),
			want: ptpdCfg},
		{name: "daemon ignores a service list of non-strings", path: ptpd.path, in: chunks(`{"command":"config-get","service":[1,{"a":null}]}`),
			want: ptpdCfg},
		{name: "daemon ignores a null service", path: ptpd.path, in: chunks(`{"command":"config-get","service":null}`),
			want: ptpdCfg},
		{name: "daemon runs arguments with service", path: ptpd.path, in: chunks(`{"command":"typed","arguments":{"n":9},"service":["dhcp4"]}`),
			want: `{ "arguments": { "n": 9 }, "result": 0 }`},
		{name: "daemon unknown command with service", path: ptpd.path, in: chunks(`{"command":"nosuch","service":["dhcp4"]}`),
			want: `{ "result": 2, "text": "'nosuch' command not supported." }`},
		{name: "daemon with service still checks keys", path: ptpd.path, in: chunks(`{"command":"config-get","service":["dhcp4"],"x":1}`),
			want: `{ "result": 1, "text": "Error during command processing: invalid command: unsupported parameter 'x'" }`},
		{name: "unknown service", in: chunks(`{"command":"config-get","service":["nosuch"]}`),
			want: `[ { "result": 1, "text": "forwarding socket is not configured for the server type nosuch" } ]`},
		{name: "service offline", in: chunks(`{"command":"config-get","service":["down"]}`),
			want: `[ { "result": 1, "text": "unable to forward command to the down service: No such file or directory. The server is likely to be offline" } ]`},
		// The Control Agent forwards the whole request, "service"
		// included, re-encoded in Kea's layout with the keys sorted.
		{name: "forwarded unchanged", in: chunks(`{"service":["recorder"],"command":"typed","arguments":{"n":7}}`),
			want: `[ { "result": 0, "text": "{ \"arguments\": { \"n\": 7 }, \"command\": \"typed\", \"service\": [ \"recorder\" ] }" } ]`},
		{name: "service forwarded", in: chunks(`{"command":"config-get","service":["ptpd"]}`),
			want: `[ { "arguments": { "b": 2 }, "result": 0 } ]`},
		{name: "service forwarded with arguments", in: chunks(`{"command":"typed","arguments":{"n":7},"service":["ptpd"]}`),
			want: `[ { "arguments": { "n": 7 }, "result": 0 } ]`},
		{name: "several services", in: chunks(`{"command":"config-get","service":["ptpd","nosuch","lister"]}`),
			want: `[ { "arguments": { "b": 2 }, "result": 0 }, { "result": 1, "text": "forwarding socket is not configured for the server type nosuch" }, { "result": 0, "text": "one" }, { "result": 3, "text": "two" } ]`},
		{name: "empty service list is local", in: chunks(`{"command":"config-get","service":[]}`),
			want: cfgReply},
		{name: "service not a list", in: chunks(`{"command":"config-get","service":"ptpd"}`),
			want: `{ "result": 1, "text": "service value must be a list" }`},
		{name: "service null", in: chunks(`{"command":"config-get","service":null}`),
			want: `{ "result": 1, "text": "service value must be a list" }`},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = env.path
			}
			got := exchange(t, path, tc.in, tc.pause, tc.halfCl)
			if tc.check != nil {
				tc.check(t, got)
			}
			if (tc.check == nil || tc.want != "") && string(got) != tc.want {
				g, w := string(got), tc.want
				if len(g) > 300 || len(w) > 300 {
					g, w = fmt.Sprintf("%d bytes %.200q", len(g), g), fmt.Sprintf("%d bytes %.200q", len(w), w)
				}
				t.Errorf("reply\n got %s\nwant %s", g, w)
			}
		})
	}
	if strings.Contains(env.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", env.log.String())
	}
}

func TestKeaTimeouts(t *testing.T) {
	t.Parallel()
	env := startKea(t, "to", nil, Options{IdleTimeout: 150 * time.Millisecond})
	cases := []struct {
		name string
		in   [][]byte
		want string
	}{
		{"no bytes", nil, `{ "result": 1, "text": "Connection over control channel timed out" }`},
		{"only whitespace", chunks("  \n"), `{ "result": 1, "text": "Connection over control channel timed out" }`},
		{"partial command", chunks(` {"comm`), `{ "result": 1, "text": "Connection over control channel timed out, discarded partial command of 6 bytes" }`},
		{"partial with comment", chunks("{\"a\" /* x */ :"), `{ "result": 1, "text": "Connection over control channel timed out, discarded partial command of 7 bytes" }`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got := exchange(t, env.path, tc.in, 0, false)
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
				t.Errorf("timed out after %v", d)
			}
		})
	}
	t.Run("restarted on every read", func(t *testing.T) {
		// Three chunks 1 s apart take 2 s in all, longer than the 1.5 s
		// idle timeout: only a timer restarted by each read lets the
		// command through. Each gap leaves 0.5 s for a loaded machine.
		env := startKea(t, "tor", nil, Options{IdleTimeout: 1500 * time.Millisecond})
		got := exchange(t, env.path, chunks(`{"comma`, `nd":"con`, `fig-get"}`), time.Second, false)
		if want := `{ "arguments": {  }, "result": 0 }`; string(got) != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

// TestKeaDefaultTimeout checks the real 10 s default once.
func TestKeaDefaultTimeout(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	env := startKea(t, "dto", nil, Options{})
	start := time.Now()
	got := exchange(t, env.path, nil, 0, false)
	if want := `{ "result": 1, "text": "Connection over control channel timed out" }`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if d := time.Since(start); d < 10*time.Second || d > 12*time.Second {
		t.Errorf("default timeout took %v", d)
	}
}

func TestKeaEPIPE(t *testing.T) {
	t.Parallel()
	env := startKea(t, "pipe", nil, Options{})
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", env.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(`{"command":"big","arguments":{"size":8388608}}`)); err != nil {
			t.Fatal(err)
		}
		// Read a little so that the server is surely writing, then leave.
		c.Read(make([]byte, 10))
		c.Close()
	}
	got, err := Call(context.Background(), env.path, []byte(`{"command":"config-get"}`))
	if err != nil || string(got) != `{ "arguments": {  }, "result": 0 }` {
		t.Fatalf("after EPIPE: %s, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for env.kea.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	logs := env.log.String()
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "level=WARN") {
		t.Errorf("EPIPE logged loudly:\n%s", logs)
	}
	if !strings.Contains(logs, "client left before reading the reply") {
		t.Errorf("EPIPE not logged at all:\n%s", logs)
	}
}

func TestKeaSocat(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "socat", "socat")
	env := startKea(t, "socat", nil, Options{})
	out, err := exec.Command("sh", "-c", `echo '{"command":"list-commands"}' | socat - UNIX-CONNECT:`+env.path).CombinedOutput()
	if err != nil {
		t.Fatalf("socat: %v: %s", err, out)
	}
	names := env.d.Names()
	want := fmt.Sprintf(`{ "arguments": [ "%s" ], "result": 0 }`, strings.Join(names, `", "`))
	if string(out) != want {
		t.Errorf("socat got %s\nwant %s", out, want)
	}
}

func TestKeaClient(t *testing.T) {
	t.Parallel()
	env := startKea(t, "cli", map[string]any{"x": "y"}, Options{StreamOptions: ctl.StreamOptions{MaxConns: 1}, IdleTimeout: 5 * time.Second})
	got, err := Call(context.Background(), env.path, []byte(`{"command":"config-get"}`))
	if err != nil || string(got) != `{ "arguments": { "x": "y" }, "result": 0 }` {
		t.Fatalf("got %s, %v", got, err)
	}
	// Abstract names work too.
	abs := fmt.Sprintf("@tb-kea-%d-%d", os.Getpid(), time.Now().UnixNano())
	if _, err := Serve(env.srv, ctl.SocketSpec{Addr: abs}, Options{}); err != nil {
		t.Fatal(err)
	}
	if got, err := Call(context.Background(), abs, []byte(`{"command":"config-get"}`)); err != nil || !bytes.Contains(got, []byte(`"x": "y"`)) {
		t.Fatalf("abstract: %s, %v", got, err)
	}
	// A missing socket keeps the OS error text.
	_, err = Call(context.Background(), filepath.Join(testutil.ShortDir(t), "none"), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing socket: %v", err)
	}
	// A rejected connection (limit 1) still returns the reject reply
	// even if the write races the server's close.
	hold, err := net.Dial("unix", env.path)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	waitActive(t, env.kea, 1)
	got, err = Call(context.Background(), env.path, []byte(`{"command":"config-get"}`))
	if err != nil || string(got) != `{ "result": 1, "text": "too many connections (limit 1)" }` {
		t.Errorf("over limit: %s, %v", got, err)
	}
	// The context bounds the call.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hold.Close()
	waitActive(t, env.kea, 0)
	start := time.Now()
	_, err = Call(ctx, env.path, []byte(`{"command":`))
	if err == nil || time.Since(start) > 2*time.Second || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("deadline: %v after %v", err, time.Since(start))
	}
}

func waitActive(t testing.TB, k *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for k.Active() != n {
		if time.Now().After(deadline) {
			t.Fatalf("active connections: %d, want %d", k.Active(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestKeaConnLimit(t *testing.T) {
	t.Parallel()
	env := startKea(t, "lim", nil, Options{StreamOptions: ctl.StreamOptions{MaxConns: 5}})
	var held []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("unix", env.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	waitActive(t, env.kea, 5)
	start := time.Now()
	got := exchange(t, env.path, nil, 0, false)
	if want := `{ "result": 1, "text": "too many connections (limit 5)" }`; string(got) != want {
		t.Errorf("6th connection got %q", got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("reject took %v", d)
	}
	for i, c := range held {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(`{"command":"config-get"}`)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil || string(b) != `{ "arguments": {  }, "result": 0 }` {
			t.Errorf("held connection %d: %s, %v", i, b, err)
		}
	}
}

// holdEnv makes the test binary, re-run as a child, a holder of idle
// connections: the file limit here (20,000) cannot hold both ends of
// 10,000 connections in one process.
const holdEnv = "TB_KEA_HOLD"

// TestKeaHoldHelper is the child side of TestKeaManyIdleConnections.
func TestKeaHoldHelper(t *testing.T) {
	spec := os.Getenv(holdEnv)
	if spec == "" {
		return // runs only as a child of another test
	}
	path, count, _ := strings.Cut(spec, ",")
	var n int
	fmt.Sscan(count, &n)
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", path)
		// A full accept backlog gives EAGAIN on unix sockets: wait
		// for the server to catch up.
		for try := 0; err != nil && errors.Is(err, syscall.EAGAIN) && try < 1000; try++ {
			time.Sleep(time.Millisecond)
			c, err = net.Dial("unix", path)
		}
		if err != nil {
			fmt.Printf("dial %d: %v\n", i, err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
}

func TestKeaManyIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	const n = 10000
	env := startKea(t, "many", nil, Options{StreamOptions: ctl.StreamOptions{MaxConns: 12000}, IdleTimeout: time.Minute})
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeaHoldHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", holdEnv, env.path, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line := make([]byte, 64)
	k, _ := stdout.Read(line)
	if !strings.HasPrefix(string(line[:k]), "ready") {
		t.Fatalf("helper: %q", line[:k])
	}
	waitActive(t, env.kea, n)
	var best time.Duration
	for try := 0; try < 3; try++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := Call(ctx, env.path, []byte(`{"command":"config-get"}`))
		cancel()
		d := time.Since(start)
		if err != nil || string(got) != `{ "arguments": {  }, "result": 0 }` {
			t.Fatalf("fresh client: %s, %v", got, err)
		}
		if try == 0 || d < best {
			best = d
		}
	}
	t.Logf("answer with %d idle connections open: %v", n, best)
	if best > 100*time.Millisecond {
		t.Errorf("fresh client answered after %v, want < 100ms", best)
	}
	// The fresh clients' connections end just after their reply: the
	// count settles back to exactly the idle ones, which all stay open.
	waitActive(t, env.kea, n)
}

func TestKeaClose(t *testing.T) {
	t.Parallel()
	env := startKea(t, "close", nil, Options{IdleTimeout: time.Minute})
	idle, err := net.Dial("unix", env.path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	partial, err := net.Dial("unix", env.path)
	if err != nil {
		t.Fatal(err)
	}
	defer partial.Close()
	partial.Write([]byte(`{"comm`))
	busy := make(chan []byte)
	go func() {
		got, err := Call(context.Background(), env.path, []byte(`{"command":"sleep","arguments":{"ms":300}}`))
		if err != nil {
			t.Error(err)
		}
		busy <- got
	}()
	waitActive(t, env.kea, 3)
	time.Sleep(50 * time.Millisecond) // let the sleep command start
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closed := make(chan error)
	go func() { closed <- env.srv.Close(ctx) }()
	for _, c := range []net.Conn{idle, partial} {
		c.SetReadDeadline(time.Now().Add(time.Second))
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 {
			t.Errorf("idle connection on close: %q, %v", b, err)
		}
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("idle connections closed after %v", d)
	}
	if got := <-busy; string(got) != `{ "result": 0, "text": "slept" }` {
		t.Errorf("in-flight reply %s", got)
	}
	if err := <-closed; err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(env.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestKeaCloseDeadlineCancels(t *testing.T) {
	t.Parallel()
	env := startKea(t, "hard", nil, Options{})
	busy := make(chan []byte)
	go func() {
		got, _ := Call(context.Background(), env.path, []byte(`{"command":"sleep","arguments":{"ms":60000}}`))
		busy <- got
	}()
	waitActive(t, env.kea, 1)
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	env.srv.Close(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v", d)
	}
	got := <-busy
	if len(got) != 0 && string(got) != `{ "result": 1, "text": "cancelled" }` {
		t.Errorf("cancelled command reply %s", got)
	}
}

func BenchmarkKea(b *testing.B) {
	env := startKea(b, "bench", nil, Options{})
	req := []byte(`{"command":"list-commands"}`)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Call(ctx, env.path, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeaKeepOpen: after KeepOpenCommand a connection answers request
// after request, including requests that arrive together or split; it
// closes silently when idle, and after a framing error with the error.
// Without it, a second request on the connection is never read.
func TestKeaKeepOpen(t *testing.T) {
	t.Parallel()
	env := startKea(t, "ko", nil, Options{IdleTimeout: 300 * time.Millisecond})
	const cfgGet = `{ "arguments": {  }, "result": 0 }`
	keep := `{"command": "` + KeepOpenCommand + `"}`
	tests := []struct {
		name  string
		in    []string // written one after another
		want  string   // everything read until the server closes
		close bool     // the client half-closes after writing
	}{
		{name: "one at a time", in: []string{keep, `{"command":"config-get"}`, `{"command":"config-get"}`},
			want: string(keptOpen) + cfgGet + cfgGet},
		{name: "together in one write", in: []string{keep + `{"command":"config-get"} {"command":"nosuch"}`},
			want: string(keptOpen) + cfgGet + `{ "result": 2, "text": "'nosuch' command not supported." }`},
		{name: "split", in: []string{`{"command": "tickbox-ke`, `ep-open"}{"comm`, `and":"config-get"}`},
			want: string(keptOpen) + cfgGet},
		{name: "framing error ends it", in: []string{keep, `{"command":"config-get"}`, `}`},
			want: string(keptOpen) + cfgGet + `{ "result": 1, "text": "invalid first character }" }`},
		{name: "client leaves", in: []string{keep, `{"command":"config-get"}`}, close: true,
			want: string(keptOpen) + cfgGet},
		{name: "asked too late: one request per connection", in: []string{`{"command":"config-get"}` + keep}, want: cfgGet},
		{name: "with arguments: an unknown command", in: []string{`{"command": "` + KeepOpenCommand + `", "arguments": {}}`},
			want: `{ "result": 2, "text": "'` + KeepOpenCommand + `' command not supported." }`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", env.path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, w := range tc.in {
				if _, err := io.WriteString(c, w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.close {
				c.(*net.UnixConn).CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (got %s)", err, got)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("the server took %v to close", time.Since(start))
			}
		})
	}

	// The client side: DialKeepOpen and Conn.Call.
	conn, err := DialKeepOpen(context.Background(), env.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 3 {
		got, err := conn.Call(context.Background(), []byte(`{"command":"config-get"}`))
		if err != nil || string(got) != cfgGet {
			t.Fatalf("Call: %s %v", got, err)
		}
	}
	// Idle past the server's timeout: the server closes silently, and
	// the next call says no reply came.
	time.Sleep(time.Second)
	if _, err := conn.Call(context.Background(), []byte(`{"command":"config-get"}`)); !errors.Is(err, ErrNoReply) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Call on a connection the server closed: %v", err)
	}
}
