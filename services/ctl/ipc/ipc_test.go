package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// ipcTestEnv is a server with the test commands, listening on a short
// socket path.
type ipcTestEnv struct {
	srv  *ctl.Server
	ipc  *Server
	path string
	logs *testutil.LockedBuffer
	// slowIn is closed by the slow command when it started; slowGo lets
	// it return.
	slowIn, slowGo chan struct{}
}

// ipcTestCommands registers the commands the IPC tests use.
func ipcTestCommands(d *ctl.Registry, env *ipcTestEnv) {
	d.MustRegister(
		&ctl.Command{
			Name: "echo", Comment: "return the arguments", AnyArgs: true,
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result { return ctl.OK("", c.Args.Any()) },
		},
		&ctl.Command{
			Name: "mdio_read", Comment: "read a PHY register",
			Params: []ctl.Param{
				{Name: "phy", Type: ctl.Int, Required: true, Ranged: true, Min: 1, Max: 3, Help: "Port/PHY",
					Aliases: []ctl.Alias{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "AB", Value: "3"}}},
				{Name: "address", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 31, Help: "MDIO register address"},
				{Name: "page", Type: ctl.Int, Default: int64(-1), Ranged: true, Min: -1, Max: 255, Help: "Register page",
					Aliases: []ctl.Alias{{Name: "nop", Value: "-1"}}},
			},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				v := int64(0x7949) + c.Args.Int("address") - 1
				if c.Args.Int("phy") == 3 {
					return ctl.OK("", map[string]any{"result_phy0": v, "result_phy1": v})
				}
				return ctl.OK("", v)
			},
		},
		&ctl.Command{
			// nose cuts a parameter's name in errors to 79 bytes.
			Name: "long", Comment: "has a long parameter description",
			Params:  []ctl.Param{{Name: "n", Type: ctl.Int, Help: strings.Repeat("d", 100)}},
			Handler: func(context.Context, *ctl.Call) ctl.Result { return ctl.OK("", nil) },
		},
		&ctl.Command{
			Name: "said", Comment: "returns a text only, as nose's LOG",
			Handler: func(context.Context, *ctl.Call) ctl.Result { return ctl.OK("success", nil) },
		},
		&ctl.Command{
			Name: "fail", Comment: "always fails",
			Handler: func(context.Context, *ctl.Call) ctl.Result { return ctl.Fail("boom: %d", 42) },
		},
		&ctl.Command{
			Name: "textual", Comment: "returns text and a map",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK("hello\nworld", map[string]any{"a": int64(1), "b": "x\"y"})
			},
		},
		&ctl.Command{
			Name: "clash", Comment: "returns reserved keys",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"id": int64(5), "success": "x", "type": "t", "z": 1.5})
			},
		},
		&ctl.Command{
			Name: "writer", Comment: "writes output, then returns",
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				fmt.Fprint(c.Out, "out1")
				fmt.Fprint(c.Out, "out2\n")
				return ctl.OK("", nil)
			},
		},
	)
	if env == nil {
		return
	}
	d.MustRegister(
		&ctl.Command{
			Name: "say", Comment: "broadcasts its word, then replies",
			Params: []ctl.Param{{Name: "word", Type: ctl.String, Required: true}},
			Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
				env.ipc.Broadcast("said " + c.Args.String("word"))
				return ctl.OK("", nil)
			},
		},
		&ctl.Command{
			Name: "slow", Comment: "waits for the test",
			Handler: func(ctx context.Context, c *ctl.Call) ctl.Result {
				close(env.slowIn)
				select {
				case <-env.slowGo:
				case <-ctx.Done():
				}
				return ctl.OK("", "slow done")
			},
		},
		&ctl.Command{
			Name: "watch", Comment: "streams ticks", Stream: true,
			Handler: func(ctx context.Context, c *ctl.Call) ctl.Result {
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(c.Out, "tick %d", i); err != nil {
						return ctl.Fail("write: %v", err)
					}
					select {
					case <-ctx.Done():
						return ctl.OK("stopped", nil)
					case <-time.After(2 * time.Millisecond):
					}
				}
			},
		},
	)
}

func newIPCEnv(t testing.TB, opts Options) *ipcTestEnv {
	t.Helper()
	env := &ipcTestEnv{logs: &testutil.LockedBuffer{}, slowIn: make(chan struct{}), slowGo: make(chan struct{})}
	d := ctl.NewRegistry(ctl.Options{Name: "test", Version: "1.0", Logger: slog.New(slog.NewTextHandler(env.logs, nil))})
	ipcTestCommands(d, env)
	env.srv = ctl.NewServer(d)
	env.path = Addr(filepath.Join(testutil.ShortDir(t), "t.socket"))
	ipc, err := Serve(env.srv, ctl.SocketSpec{Addr: env.path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	env.ipc = ipc
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := env.srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return env
}

func (e *ipcTestEnv) dial(t testing.TB) *Client {
	t.Helper()
	c, err := Dial(e.path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads one line and checks it is one well-formed JSON object.
func ipcReadLine(t testing.TB, c *Client) string {
	t.Helper()
	l, err := c.ReadLine()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !json.Valid(l) || l[0] != '{' {
		t.Fatalf("malformed line %q", l)
	}
	return string(l)
}

// ev is a log event as the front end writes it: '<', '>' and '&' as
// they are (nose's writer escapes only what JSON requires).
func ev(msg string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	e.Encode(msg)
	return `{"type":"log","msg":` + strings.TrimSuffix(b.String(), "\n") + `}`
}

func TestIPCAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mdio", "/tmp/mdio.socket"},
		{"nose-1", "/tmp/nose-1.socket"},
		{"/run/x.sock", "/run/x.sock"},
		{"./rel/x", "./rel/x"},
		{"a/b", "a/b"},
	} {
		if got := Addr(tc.in); got != tc.want {
			t.Errorf("Addr(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIPCConformance(t *testing.T) {
	env := newIPCEnv(t, Options{})
	mdioRead, _ := env.srv.Registry().Lookup("mdio_read")
	var usageEvents []string
	for _, l := range strings.SplitAfter(strings.TrimRight(Help([]*ctl.Command{mdioRead}, "mdio_read", true), "\n"), "\n") {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		usageEvents = append(usageEvents, ev(l))
	}
	pad := func(n int) string {
		// A request line of exactly n bytes.
		base := `{"command":"echo","id":1,"x":""}`
		return strings.Replace(base, `""`, `"`+strings.Repeat("p", n-len(base))+`"`, 1)
	}
	errEv := func(msg string) string { return ev("error: " + msg + "\n") }
	tests := []struct {
		name string
		line string
		want []string // events, then the reply (JSON form only)
	}{
		{"json", `{"command":"mdio_read","phy":1,"address":1,"id":1}`, []string{`{"id":1,"result":31049,"success":true}`}},
		{"json no id", `{"command":"mdio_read","phy":1,"address":1}`, []string{`{"id":-1,"result":31049,"success":true}`}},
		{"json id first", `{"id":77,"command":"mdio_read","phy":1,"address":1}`, []string{`{"id":77,"result":31049,"success":true}`}},
		{"json negative id", `{"id":-5,"command":"mdio_read","phy":1,"address":1}`, []string{`{"id":-5,"result":31049,"success":true}`}},
		{"json both phys", `{"command":"mdio_read","phy":3,"address":2,"id":2}`, []string{`{"id":2,"result_phy0":31050,"result_phy1":31050,"success":true}`}},
		{"json port alias", `{"command":"mdio_read","phy":"AB","address":2,"id":2}`, []string{`{"id":2,"result_phy0":31050,"result_phy1":31050,"success":true}`}},
		{"json port alias lower case", `{"command":"mdio_read","phy":"a","address":2,"page":"NOP","id":2}`, []string{`{"id":2,"result":31050,"success":true}`}},
		{"json hex string", `{"command":"mdio_read","phy":"0x1","address":"0x1f","id":3}`, []string{`{"id":3,"result":31079,"success":true}`}},
		{"json spaces", "  { \"command\" : \"mdio_read\", \"phy\":1, \"address\":1, \"id\":4 }  ", []string{`{"id":4,"result":31049,"success":true}`}},
		{"json crlf", "{\"command\":\"mdio_read\",\"phy\":1,\"address\":1,\"id\":4}\r", []string{`{"id":4,"result":31049,"success":true}`}},
		{"out of range", `{"command":"mdio_read","phy":4,"address":1,"id":5}`, []string{errEv("mdio_read: parameter 'phy' out of range: 4 not in 1..3"), `{"id":5,"error":"mdio_read: parameter 'phy' out of range: 4 not in 1..3","success":false}`}},
		{"missing param", `{"command":"mdio_read","phy":1,"id":5}`, []string{errEv("mdio_read: parameter 'address' is missing"), `{"id":5,"error":"mdio_read: parameter 'address' is missing","success":false}`}},
		{"unknown key ignored", `{"command":"mdio_read","phy":1,"address":1,"foo":1,"update":true,"id":5}`, []string{`{"id":5,"result":31049,"success":true}`}},
		{"unknown command", `{"command":"nope","id":6}`, []string{errEv("command nope not found"), `{"id":6,"error":"command nope not found","success":false}`}},
		{"bad json", `{"command":`, []string{errEv("invalid JSON: unexpected end of JSON input"), `{"id":-1,"error":"invalid JSON: unexpected end of JSON input","success":false}`}},
		{"trailing junk", `{"command":"echo"} x`, []string{errEv("invalid JSON: invalid character 'x' after top-level value"), `{"id":-1,"error":"invalid JSON: invalid character 'x' after top-level value","success":false}`}},
		{"float id truncated", `{"command":"echo","id":4.5}`, []string{`{"id":4,"success":true}`}},
		{"negative float id", `{"command":"echo","id":-2.9}`, []string{`{"id":-2,"success":true}`}},
		{"exponent id", `{"command":"echo","id":1e3}`, []string{`{"id":1000,"success":true}`}},
		{"huge id", `{"command":"echo","id":1e300}`, []string{`{"id":-1,"success":true}`}},
		{"string id", `{"command":"echo","id":"7"}`, []string{`{"id":-1,"success":true}`}},
		{"null id", `{"command":"echo","id":null}`, []string{`{"id":-1,"success":true}`}},
		{"object id", `{"command":"echo","id":{"a":1}}`, []string{`{"id":-1,"success":true}`}},
		{"no command", `{"id":9}`, []string{errEv("missing command name"), `{"id":9,"error":"missing command name","success":false}`}},
		{"command not string", `{"command":1,"id":9}`, []string{errEv("'command' must be a string, got integer"), `{"id":9,"error":"'command' must be a string, got integer","success":false}`}},
		{"failure", `{"command":"fail","id":10}`, []string{errEv("boom: 42"), `{"id":10,"error":"boom: 42","success":false}`}},
		{"text and map", `{"command":"textual","id":11}`, []string{`{"id":11,"a":1,"b":"x\"y","success":true}`}},
		{"text only", `{"command":"said","id":11}`, []string{ev("success\n"), `{"id":11,"success":true}`}},
		{"reserved keys", `{"command":"clash","id":12}`, []string{`{"id":12,"result_id":5,"result_success":"x","result_type":"t","z":1.5,"success":true}`}},
		{"echo values", `{"command":"echo","id":13,"s":"\u00e9\u2028","n":-0.5,"l":[1,"a",null],"m":{"k":true}}`, []string{`{"id":13,"l":[1,"a",null],"m":{"k":true},"n":-0.5,"s":"é\u2028","success":true}`}},
		{"output as events", `{"command":"writer","id":14}`, []string{ev("out1\n"), ev("out2\n"), `{"id":14,"success":true}`}},
		{"json help", `{"command":"help","id":15}`, append(helpEvents(env, "all"), `{"id":15,"success":true}`)},
		// nose stores a JSON number for an integer parameter as a double
		// converted to an integer: the fraction is dropped.
		{"json fraction truncated", `{"command":"mdio_read","phy":1.9,"address":1.9,"id":16}`, []string{`{"id":16,"result":31049,"success":true}`}},
		{"json fraction towards zero", `{"command":"mdio_read","phy":1,"address":-0.5,"id":16}`, []string{`{"id":16,"result":31048,"success":true}`}},
		{"json negative page truncated", `{"command":"mdio_read","phy":1,"address":31.99,"page":-1.5,"id":16}`, []string{`{"id":16,"result":31079,"success":true}`}},
		{"json exponent", `{"command":"mdio_read","phy":1,"address":2e0,"id":16}`, []string{`{"id":16,"result":31050,"success":true}`}},
		{"json fraction then range", `{"command":"mdio_read","phy":1,"address":32.5,"id":16}`, []string{errEv("mdio_read: parameter 'address' out of range: 32 not in 0..31"), `{"id":16,"error":"mdio_read: parameter 'address' out of range: 32 not in 0..31","success":false}`}},
		{"json huge real", `{"command":"mdio_read","phy":1,"address":1e300,"id":16}`, []string{errEv("mdio_read: parameter 'address' must be an integer, got 1e300"), `{"id":16,"error":"mdio_read: parameter 'address' must be an integer, got 1e300","success":false}`}},
		{"json fraction in a string", `{"command":"mdio_read","phy":1,"address":"1.9","id":16}`, []string{errEv(`mdio_read: parameter 'address' must be an integer, got "1.9"`), `{"id":16,"error":"mdio_read: parameter 'address' must be an integer, got \"1.9\"","success":false}`}},

		{"text", `mdio_read 1 1`, []string{ev("31049\n")}},
		{"text port alias", `mdio_read A 1 nop`, []string{ev("31049\n")}},
		{"text named hex", `mdio_read --phy=0x3 --address 0x2`, []string{ev("result_phy0: 31050\n"), ev("result_phy1: 31050\n")}},
		{"text named after --", `echo -- --x`, []string{ev("0: --x\n")}},
		{"text quoted", `echo "a b" 'c d' x\ y "" '\'q'`, []string{ev("0: a b\n"), ev("1: c d\n"), ev("2: x y\n"), ev("3: \n"), ev("4: 'q\n")}},
		{"text help flag", `mdio_read --help`, usageEvents},
		{"text help search", `help mdio_read`, helpEvents(env, "mdio_read")},
		{"text help nothing", `help zzzz`, []string{ev("Commands matching 'zzzz':\n"), ev("\n"), ev("No matches. Use 'help' to list all commands.\n")}},
		{"text text", `textual`, []string{ev("hello\n"), ev("world\n")}},
		{"text args", `clash`, []string{ev("id: 5\n"), ev("success: x\n"), ev("type: t\n"), ev("z: 1.5\n")}},
		{"text failure", `fail`, []string{errEv("boom: 42")}},
		// The text form's parameter errors are nose's, in nose's order:
		// each word as it comes, value included, then the missing ones.
		{"text out of range", `mdio_read 1 32`, []string{errEv("parameter 1/address (MDIO register address) out of range: 32 > 31.")}},
		{"text below range", `mdio_read 1 1 -2`, []string{errEv("parameter 2/page (Register page) out of range: -2 < -1.")}},
		{"text not a number", `mdio_read 1 x`, []string{errEv("parameter 1/address (MDIO register address) requires an integer, not 'x'.")}},
		{"text fraction", `mdio_read 1 1.9`, []string{errEv("parameter 1/address (MDIO register address) requires an integer, not '1.9'.")}},
		{"text overflow", `mdio_read 1 99999999999999999999`, []string{errEv("parameter 1/address (MDIO register address) requires an integer, not '99999999999999999999'.")}},
		{"text bad page before unused word", `mdio_read 1 1 # c`, []string{errEv("parameter 2/page (Register page) requires an integer, not '#'.")}},
		{"text bad word before --help", `mdio_read x --help`, []string{errEv("parameter 0/phy (Port/PHY) requires an integer, not 'x'.")}},
		{"text bad named value", `mdio_read --address=99 --phy=x`, []string{errEv("parameter 1/address (MDIO register address) out of range: 99 > 31.")}},
		{"text missing", `mdio_read 1`, []string{errEv("parameter 1/address (MDIO register address) is required.")}},
		{"text missing first", `mdio_read --address=1`, []string{errEv("parameter 0/phy (Port/PHY) is required.")}},
		{"text word for a named one", `mdio_read --address=1 1 1 1`, []string{errEv("parameter 1/address (MDIO register address) provided more than once")}},
		{"text expects an argument", `mdio_read 1 --address`, []string{errEv("parameter 1/address (MDIO register address) expects an argument")}},
		{"text long description cut", `long x`, []string{errEv("parameter 0/n (" + strings.Repeat("d", 79-len("parameter 0/n (")) + " requires an integer, not 'x'.")}},
		{"text too many", `mdio_read 1 1 1 1`, []string{errEv("unused arguments starting with '1'.")}},
		{"text unknown option", `mdio_read --bogus=1`, []string{errEv("parameter --bogus not found")}},
		{"text option twice", `mdio_read 1 --phy=2`, []string{errEv("parameter 0/phy (Port/PHY) provided more than once")}},
		{"text option then word", `mdio_read --phy=2 1`, []string{errEv("parameter 0/phy (Port/PHY) provided more than once")}},
		{"text unknown", `nope 1`, []string{errEv("command nope not found")}},
		{"text open quote", `echo "abc d`, []string{ev("0: abc d\n")}},
		{"text trailing comment", `mdio_read 1 1 1 # c`, []string{errEv("unused arguments starting with '#'.")}},
		{"text writer", `writer`, []string{ev("out1\n"), ev("out2\n")}},
		{"max line ok", pad(DefaultMaxLine), []string{`{"id":1,"x":"` + strings.Repeat("p", DefaultMaxLine-len(`{"command":"echo","id":1,"x":""}`)) + `","success":true}`}},
		{"max line + 1", pad(DefaultMaxLine + 1), []string{errEv("line too long (max 4096 bytes)"), `{"id":-1,"error":"line too long (max 4096 bytes)","success":false}`}},
		{"very long text line", strings.Repeat("x", 100000), []string{errEv("line too long (max 4096 bytes)")}},
		{"very long json line", "{" + strings.Repeat("x", 100000), []string{errEv("line too long (max 4096 bytes)"), `{"id":-1,"error":"line too long (max 4096 bytes)","success":false}`}},
	}
	c := env.dial(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Send(tc.line); err != nil {
				t.Fatal(err)
			}
			// A marker request ends each row, so that a row with more
			// output than expected fails here, not in the next row.
			if err := c.Send(`{"command":"echo","id":424242}`); err != nil {
				t.Fatal(err)
			}
			want := append(append([]string(nil), tc.want...), `{"id":424242,"success":true}`)
			for i, w := range want {
				if got := ipcReadLine(t, c); got != w {
					t.Fatalf("line %d:\n got %s\nwant %s", i, got, w)
				}
			}
		})
	}
	// Blank and comment-only lines get no reply: the next line read is
	// the reply to the request after them. The connection survived all
	// the errors above.
	if _, err := io.WriteString(ipcRawConn(c), "\n   \n\r\n# just a comment\n{\"command\":\"echo\",\"id\":99}\n"); err != nil {
		t.Fatal(err)
	}
	if got := ipcReadLine(t, c); got != `{"id":99,"success":true}` {
		t.Fatalf("after blank lines got %s", got)
	}
	logs := env.logs.String()
	for _, want := range []string{"line too long", "invalid JSON", "unknown command"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func ipcRawConn(c *Client) *net.UnixConn { return c.c }

// helpEvents is nose's help listing for filter as log events.
func helpEvents(env *ipcTestEnv, filter string) []string {
	cmds := env.srv.Registry().Commands()
	for _, n := range []string{"exit", "help"} {
		if _, ok := env.srv.Registry().Lookup(n); !ok {
			cmds = append(cmds, (&ipcSession{}).ipcBuiltin(n))
		}
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	var out []string
	for _, l := range strings.SplitAfter(strings.TrimRight(Help(cmds, filter, false), "\n"), "\n") {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		out = append(out, ev(l))
	}
	return out
}

func TestIPCPipelined(t *testing.T) {
	env := newIPCEnv(t, Options{})
	c := env.dial(t)
	const n = 1000
	var req bytes.Buffer
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&req, "{\"command\":\"mdio_read\",\"phy\":1,\"address\":%d,\"id\":%d}\n", i%32, i)
		} else {
			fmt.Fprintf(&req, "mdio_read A %d\n", i%32) // text form: one event
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ipcRawConn(c).Write(req.Bytes())
		errc <- err
	}()
	for i := 0; i < n; i++ {
		v := 0x7949 + i%32 - 1
		var want []string
		if i%2 == 0 {
			want = []string{fmt.Sprintf(`{"id":%d,"result":%d,"success":true}`, i, v)}
		} else {
			want = []string{ev(fmt.Sprintf("%d\n", v))}
		}
		for _, w := range want {
			if got := ipcReadLine(t, c); got != w {
				t.Fatalf("request %d: got %s, want %s", i, got, w)
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestIPCEventsBetweenRequestAndReply(t *testing.T) {
	env := newIPCEnv(t, Options{})
	c := env.dial(t)
	other := env.dial(t)
	// A round trip makes sure the server registered the connection.
	if _, err := other.Do(`{"command":"echo","id":1}`, nil); err != nil {
		t.Fatal(err)
	}

	// A command that broadcasts before replying: its event comes first,
	// and the other client sees it too.
	if err := c.Send(`{"command":"say","word":"hi","id":1}`); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ev("said hi\n"), `{"id":1,"success":true}`} {
		if got := ipcReadLine(t, c); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if got := ipcReadLine(t, other); got != ev("said hi\n") {
		t.Fatalf("other client got %s", got)
	}

	// A broadcast while a slow command runs arrives before its reply.
	if err := c.Send(`{"command":"slow","id":2}`); err != nil {
		t.Fatal(err)
	}
	<-env.slowIn
	env.ipc.Broadcast("PHY A: link up 1000MBit (master)\n")
	fmt.Fprintf(env.ipc.Writer(), "via writer")
	close(env.slowGo)
	for _, want := range []string{
		ev("PHY A: link up 1000MBit (master)\n"),
		ev("via writer\n"),
		`{"id":2,"result":"slow done","success":true}`,
	} {
		if got := ipcReadLine(t, c); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

func TestIPCBroadcastManyClients(t *testing.T) {
	env := newIPCEnv(t, Options{})
	var cs []*Client
	for i := 0; i < 5; i++ {
		c := env.dial(t)
		// A round trip makes sure the server registered the connection.
		if got, err := c.Do(`{"command":"echo","id":1}`, nil); err != nil || string(got) != `{"id":1,"success":true}` {
			t.Fatalf("client %d: %s, %v", i, got, err)
		}
		cs = append(cs, c)
	}
	for i := 0; i < 3; i++ {
		env.ipc.Broadcast(fmt.Sprintf("event %d", i))
	}
	for n, c := range cs {
		for i := 0; i < 3; i++ {
			if got, want := ipcReadLine(t, c), ev(fmt.Sprintf("event %d\n", i)); got != want {
				t.Fatalf("client %d: got %s, want %s", n, got, want)
			}
		}
	}
}

// A client that never reads must not stall broadcasts or other clients:
// its events are dropped and counted, everyone else carries on.
func TestIPCSlowClient(t *testing.T) {
	env := newIPCEnv(t, Options{QueueBytes: 4096})
	stuck := env.dial(t)
	if _, err := stuck.Do(`{"command":"echo","id":1}`, nil); err != nil {
		t.Fatal(err)
	}
	good := env.dial(t)
	if _, err := good.Do(`{"command":"echo","id":1}`, nil); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("m", 1000)
	start := time.Now()
	const n = 5000 // 5 MB: far beyond the socket buffers
	done := make(chan error, 1)
	go func() {
		// The reading client may lose events too if it reads slower than
		// the broadcaster; its reply must arrive regardless.
		for {
			l, err := good.ReadLine()
			if err != nil {
				done <- err
				return
			}
			if string(l) == `{"id":2,"success":true}` {
				done <- nil
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		env.ipc.Broadcast(msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("broadcasting took %v", d)
	}
	if env.ipc.Dropped() == 0 {
		t.Fatal("no events dropped for the client that does not read")
	}
	if err := good.Send(`{"command":"echo","id":2}`); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading client: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading client got no reply")
	}
	if !strings.Contains(env.logs.String(), "dropping events") {
		t.Error("no log line about dropped events")
	}
}

func TestIPCStream(t *testing.T) {
	env := newIPCEnv(t, Options{})
	c := env.dial(t)
	if err := c.Send(`{"command":"watch","id":1}`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got, want := ipcReadLine(t, c), ev(fmt.Sprintf("tick %d\n", i)); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	// The next line stops the stream; its reply comes before the new
	// request's.
	if err := c.Send(`{"command":"echo","id":2}`); err != nil {
		t.Fatal(err)
	}
	for {
		got := ipcReadLine(t, c)
		if strings.HasPrefix(got, `{"type":"log","msg":"tick `) {
			continue
		}
		if want := ev("stopped\n"); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
		break
	}
	if got := ipcReadLine(t, c); got != `{"id":1,"success":true}` {
		t.Fatalf("got %s", got)
	}
	if got := ipcReadLine(t, c); got != `{"id":2,"success":true}` {
		t.Fatalf("got %s", got)
	}
	// Text form: the stream's result is its text as an event; EOF ends
	// it too.
	if err := c.Send(`watch`); err != nil {
		t.Fatal(err)
	}
	if got := ipcReadLine(t, c); got != ev("tick 0\n") {
		t.Fatalf("got %s", got)
	}
	c.CloseWrite()
	var last string
	for {
		l, err := c.ReadLine()
		if err != nil {
			break
		}
		last = string(l)
	}
	if want := ev("stopped\n"); last != want {
		t.Fatalf("last line %s, want %s", last, want)
	}
}

func TestIPCExit(t *testing.T) {
	env := newIPCEnv(t, Options{})
	for _, line := range []string{"exit", `{"command":"exit","id":4}`} {
		c := env.dial(t)
		if err := c.Send(line); err != nil {
			t.Fatal(err)
		}
		// A request after exit is not run. The JSON form gets its bare
		// reply; the text form, as in nose, nothing.
		c.Send(`{"command":"echo","id":5}`)
		if line[0] == '{' {
			if got := ipcReadLine(t, c); got != `{"id":4,"success":true}` {
				t.Fatalf("%s: got %s", line, got)
			}
		}
		if l, err := c.ReadLine(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: after exit got %q, %v; want EOF", line, l, err)
		}
	}
}

func TestIPCConnectionLimit(t *testing.T) {
	env := newIPCEnv(t, Options{StreamOptions: ctl.StreamOptions{MaxConns: 1}})
	first := env.dial(t)
	if _, err := first.Do(`{"command":"echo","id":1}`, nil); err != nil {
		t.Fatal(err)
	}
	second := env.dial(t)
	if got, want := ipcReadLine(t, second), `{"id":-1,"error":"too many connections (limit 1)","success":false}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, err := second.ReadLine(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF after the limit error, got %v", err)
	}
	if _, err := first.Do(`{"command":"echo","id":2}`, nil); err != nil {
		t.Fatal(err)
	}
}

func TestIPCConnect(t *testing.T) {
	env := newIPCEnv(t, Options{})
	path := filepath.Join(testutil.ShortDir(t), "peer.socket")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ret := make(chan error, 1)
	go func() { ret <- Connect(ctx, env.srv, path, Options{}) }()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	peer := &Client{c: uc, r: bufio.NewReader(uc)}
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := peer.Do(`{"command":"mdio_read","phy":1,"address":1,"id":1}`, nil)
	if err != nil || string(got) != `{"id":1,"result":31049,"success":true}` {
		t.Fatalf("got %s, %v", got, err)
	}
	env.ipc.Broadcast("to the dialled-out peer too")
	if got := ipcReadLine(t, peer); got != ev("to the dialled-out peer too\n") {
		t.Fatalf("got %s", got)
	}
	// The peer closing ends Connect with nil.
	uc.Close()
	select {
	case err := <-ret:
		if err != nil {
			t.Fatalf("Connect returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connect did not return after the peer closed")
	}

	// Cancelling ctx ends it with ctx's error.
	go func() { ret <- Connect(ctx, env.srv, path, Options{}) }()
	uc2, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer uc2.Close()
	cancel()
	select {
	case err := <-ret:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Connect returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connect did not return after cancel")
	}

	// Nothing listening: a clear error.
	if err := Connect(context.Background(), env.srv, path+".none", Options{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("dial to nothing: %v", err)
	}
}

func TestIPCCloseEndsClients(t *testing.T) {
	env := newIPCEnv(t, Options{})
	c := env.dial(t)
	if _, err := c.Do(`{"command":"echo","id":1}`, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := env.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("close took %v with an idle client", d)
	}
	if _, err := c.ReadLine(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF after close, got %v", err)
	}
	if _, err := os.Stat(env.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

func TestIPCSocat(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	env := newIPCEnv(t, Options{})
	names := env.srv.Registry().Names()
	list, _ := json.Marshal(names)
	for _, tc := range []struct{ in, want string }{
		{`{"command":"list-commands","id":3}` + "\n",
			fmt.Sprintf(`{"id":3,"result":%s,"success":true}`+"\n", list)},
		{"mdio_read A 1\n{\"command\":\"nope\",\"id\":2.5}\n",
			ev("31049\n") + "\n" + ev("error: command nope not found\n") + "\n" + `{"id":2,"error":"command nope not found","success":false}` + "\n"},
	} {
		cmd := exec.Command("socat", "-t", "5", "-", "UNIX-CONNECT:"+env.path)
		cmd.Stdin = strings.NewReader(tc.in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("socat: %v", err)
		}
		if string(out) != tc.want {
			t.Fatalf("socat got\n%s\nwant\n%s", out, tc.want)
		}
	}
}

// The idle server costs nothing per connection beyond its goroutines:
// many clients at once are served.
func TestIPCManyClients(t *testing.T) {
	env := newIPCEnv(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(env.path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			for j := 0; j < 20; j++ {
				got, err := c.Do(fmt.Sprintf(`{"command":"echo","id":%d,"c":%d}`, j, i), nil)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf(`{"id":%d,"c":%d,"success":true}`, j, i); string(got) != want {
					errs <- fmt.Errorf("got %s, want %s", got, want)
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
}

func TestIPCJSONEncoding(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"plain", `"plain"`},
		{"q\"b\\n\n\t\r\x01\x7f", `"q\"b\\n\n\t\r\u0001\u007f"`},
		{"bad \xff utf8", `"bad \ufffd utf8"`},
		{"<&>", `"<&>"`},
		{1e21, `1e+21`},
		{1e-7, `1e-7`},
		{123.25, `123.25`},
		{int64(-3), `-3`},
		{[]string{"a"}, `["a"]`},
		{map[string]int{"b": 2, "a": 1}, `{"a":1,"b":2}`},
		{struct {
			X int `json:"x"`
		}{5}, `{"x":5}`},
		{json.Number("12"), `12`},
	} {
		got, err := appendJSONValue(nil, tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("%#v: got %s, %v; want %s", tc.in, got, err, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%#v: invalid JSON %s", tc.in, got)
		}
	}
	if _, err := appendJSONValue(nil, map[string]any{"x": 0.0 / zero()}); err == nil {
		t.Error("NaN encoded without error")
	}
	// Typed maps and structs are flattened like map[string]any.
	b, err := appendResult(nil, "1", ctl.OK("", struct {
		ID int `json:"id"`
		V  int `json:"v"`
	}{1, 2}))
	if err != nil || string(b) != `{"id":1,"result_id":1,"v":2,"success":true}`+"\n" {
		t.Errorf("struct result: %s, %v", b, err)
	}
}

func zero() float64 { return 0 }

func TestIPCUnencodableResult(t *testing.T) {
	env := newIPCEnv(t, Options{})
	env.srv.Registry().MustRegister(&ctl.Command{Name: "nan", Handler: func(context.Context, *ctl.Call) ctl.Result {
		return ctl.OK("", map[string]any{"x": 0.0 / zero()})
	}})
	c := env.dial(t)
	// The text form's error is its one event, the JSON form's an event
	// and the reply.
	const msg = "internal error: cannot encode result: unsupported value: NaN"
	for _, tc := range []struct{ line, reply string }{
		{"nan", ""},
		{`{"command":"nan","id":1}`, `{"id":1,"error":"` + msg + `","success":false}`},
	} {
		if err := c.Send(tc.line); err != nil {
			t.Fatal(err)
		}
		if got := ipcReadLine(t, c); got != ev("error: "+msg+"\n") {
			t.Fatalf("%s: got %s", tc.line, got)
		}
		if tc.reply != "" {
			if got := ipcReadLine(t, c); got != tc.reply {
				t.Fatalf("%s: got %s", tc.line, got)
			}
		}
	}
}

// FuzzIPCLine feeds one arbitrary request line through the connection
// code: the output is either nothing (blank or comment-only line) or log
// events followed by exactly one reply, every line one well-formed JSON
// object, and its size bounded.
func FuzzIPCLine(f *testing.F) {
	for _, s := range []string{
		`{"command":"mdio_read","phy":1,"address":1,"id":1}`,
		`{"command":"echo","id":2,"x":[1,{"a":null}],"s":"\u00e9"}`,
		`{"command":`, `{"id":1.5}`, `{"command":"help","command":1}`,
		`{"command":"mdio_read","phy":"AB","address":1,"page":"nop","id":4.5}`,
		`{"command":"mdio_read","phy":"b","address":1,"update":true,"id":"x"}`,
		`{"command":"echo","id":-1e400}`, `{"command":"echo","id":[1]}`,
		`mdio_read 1 1`, `mdio_read A 1 NOP`, `mdio_read --phy AB --address=1 # c`, `echo "a b" 'c' d\ e "open`,
		`echo -- --x \q \t`, `mdio_read --phy`, `mdio_read 1 --phy=1`, `#comment`,
		`mdio_read --help`, `help mdio`, `textual`, `exit`, `   `, `# only`, `"unterminated`,
		strings.Repeat("y", 300),
	} {
		f.Add([]byte(s))
	}
	d := ctl.NewRegistry(ctl.Options{Name: "fuzz", Version: "1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ipcTestCommands(d, nil)
	log := d.Logger()
	const maxLine = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		line := strings.ReplaceAll(string(data), "\n", " ")
		var total atomic.Uint64
		q := newIPCQueue(1<<30, &total, log)
		ss := &ipcSession{r: d, q: q, log: log, maxLine: maxLine}
		if err := ss.serve(context.Background(), strings.NewReader(line+"\n")); err != nil {
			t.Fatalf("serve: %v", err)
		}
		out := q.take()
		if len(out) > 8192+8*len(line) {
			t.Fatalf("output of %d bytes for a %d-byte line", len(out), len(line))
		}
		// A JSON line gets events and one reply; a text-form line only
		// events, none for a blank or comment line.
		content := strings.TrimSuffix(line, "\r")
		trimmed := strings.TrimLeft(content, " \t\r\n\v\f")
		isJSON := trimmed != "" && trimmed[0] == '{'
		if !isJSON && len(content) <= maxLine {
			if _, _, comment, err := ParseLine(content); err == nil && comment || trimmed == "" {
				if len(out) != 0 {
					t.Fatalf("output for an empty line: %q", out)
				}
				return
			}
		}
		if !isJSON && len(out) == 0 {
			return // a result with neither text nor arguments, such as exit
		}
		if len(out) == 0 || out[len(out)-1] != '\n' {
			t.Fatalf("output not newline-terminated: %q", out)
		}
		lines := strings.Split(string(out[:len(out)-1]), "\n")
		for i, l := range lines {
			if !json.Valid([]byte(l)) || l[0] != '{' {
				t.Fatalf("line %d not a JSON object: %q", i, l)
			}
			_, isEvent := Event([]byte(l))
			if isEvent != (!isJSON || i < len(lines)-1) {
				t.Fatalf("line %d of %d: event=%v: %q", i, len(lines), isEvent, l)
			}
		}
		if !isJSON {
			return
		}
		var reply struct {
			ID      *json.Number `json:"id"`
			Success *bool        `json:"success"`
			Error   *string      `json:"error"`
		}
		d := json.NewDecoder(strings.NewReader(lines[len(lines)-1]))
		d.UseNumber()
		if err := d.Decode(&reply); err != nil || reply.ID == nil || reply.Success == nil {
			t.Fatalf("reply lacks id or success: %q", lines[len(lines)-1])
		}
		if _, err := reply.ID.Int64(); err != nil {
			t.Fatalf("reply id not an integer: %q", lines[len(lines)-1])
		}
		if !*reply.Success && (reply.Error == nil || *reply.Error == "") {
			t.Fatalf("failure without an error text: %q", lines[len(lines)-1])
		}
	})
}

// BenchmarkIPCPipelinedEcho measures pipelined requests on one
// connection, the pattern of a tool driving a daemon in bulk.
func BenchmarkIPCPipelinedEcho(b *testing.B) {
	env := newIPCEnv(b, Options{})
	c := env.dial(b)
	c.SetDeadline(time.Time{})
	line := []byte(`{"command":"echo","id":1,"x":1}` + "\n")
	var batch []byte
	for i := 0; i < 64; i++ {
		batch = append(batch, line...)
	}
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		n := b.N
		for n > 0 {
			k := min(n, 64)
			if _, err := ipcRawConn(c).Write(batch[:k*len(line)]); err != nil {
				errc <- err
				return
			}
			n -= k
		}
		errc <- nil
	}()
	want := `{"id":1,"x":1,"success":true}`
	for i := 0; i < b.N; i++ {
		l, err := c.ReadLine()
		if err != nil {
			b.Fatal(err)
		}
		if string(l) != want {
			b.Fatalf("got %s", l)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// A daemon's own help or exit command wins over the front end's.
func TestIPCRegistryOverridesBuiltins(t *testing.T) {
	env := newIPCEnv(t, Options{})
	env.srv.Registry().MustRegister(&ctl.Command{Name: "exit", Comment: "daemon exit", Handler: func(context.Context, *ctl.Call) ctl.Result {
		return ctl.OK("", "daemon's exit")
	}})
	c := env.dial(t)
	got, err := c.Do(`{"command":"exit","id":1}`, nil)
	if err != nil || string(got) != `{"id":1,"result":"daemon's exit","success":true}` {
		t.Fatalf("got %s, %v", got, err)
	}
	// The connection is still open, and help shows the daemon's exit.
	var help strings.Builder
	got, err = c.Do(`{"command":"help","id":2}`, func(msg string) { help.WriteString(msg) })
	if err != nil || string(got) != `{"id":2,"success":true}` {
		t.Fatalf("got %s, %v", got, err)
	}
	if !strings.Contains(help.String(), "  exit\n    daemon exit\n") {
		t.Fatalf("help:\n%s", help.String())
	}
}

// TestTruncateReals checks that only an Input with TruncateReals (the IPC
// JSON form) takes a JSON number with a fraction for an Int parameter;
// every other framing (Kea's channel) keeps refusing it.
func TestTruncateReals(t *testing.T) {
	cmd := &ctl.Command{Name: "c", Params: []ctl.Param{{Name: "n", Type: ctl.Int, Required: true, Ranged: true, Min: -5, Max: 5}}}
	for _, tc := range []struct {
		name  string
		raw   any
		trunc bool
		want  int64
		err   string
	}{
		{"strict fraction", json.Number("1.9"), false, 0, `c: parameter 'n' must be an integer, got "1.9"`},
		{"strict exponent", json.Number("1e0"), false, 0, `c: parameter 'n' must be an integer, got "1e0"`},
		{"strict float64", 1.5, false, 0, "c: parameter 'n' must be an integer, got 1.5"},
		{"strict integer", json.Number("3"), false, 3, ""},
		{"truncated", json.Number("1.9"), true, 1, ""},
		{"towards zero", json.Number("-1.9"), true, -1, ""},
		{"negative fraction", json.Number("-0.5"), true, 0, ""},
		{"exponent", json.Number("4e0"), true, 4, ""},
		{"float64 truncated", 2.5, true, 2, ""},
		{"range after truncation", json.Number("5.5"), true, 5, ""},
		{"out of range after truncation", json.Number("6.1"), true, 0, "c: parameter 'n' out of range: 6 not in -5..5"},
		{"outside 64 bits", json.Number("1e19"), true, 0, "c: parameter 'n' must be an integer, got 1e19"},
		{"string stays strict", "1.9", true, 0, `c: parameter 'n' must be an integer, got "1.9"`},
	} {
		a, err := cmd.Bind(ctl.Input{Named: map[string]any{"n": tc.raw}, TruncateReals: tc.trunc})
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: err %v, want %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := a.Int("n"); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
