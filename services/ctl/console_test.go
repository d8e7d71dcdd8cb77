package ctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// tickerCommand streams "prefix N" lines every interval until cancelled.
func tickerCommand(name, prefix string, persistent bool, interval time.Duration) *Command {
	return &Command{
		Name:       name,
		Comment:    "stream numbered lines",
		Stream:     true,
		Persistent: persistent,
		Handler: func(ctx context.Context, call *Call) Result {
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(call.Out, "%s %d", prefix, i); err != nil {
					return Fail("output: %v", err)
				}
				select {
				case <-ctx.Done():
					return Result{}
				case <-t.C:
				}
			}
		},
	}
}

// testCommands are registered on every test console.
func testCommands(block chan struct{}) []*Command {
	return []*Command{
		{
			Name:    "add",
			Comment: "add two numbers",
			Params: []Param{
				{Name: "a", Type: Int, Required: true, Ranged: true, Min: 0, Max: 100},
				{Name: "b", Type: Int, Default: int64(1)},
			},
			Handler: func(_ context.Context, call *Call) Result {
				return OK("", map[string]any{"sum": call.Args.Int("a") + call.Args.Int("b")})
			},
		},
		{
			Name:    "echo",
			Comment: "print the words",
			Params:  []Param{{Name: "words", Rest: true}},
			Handler: func(_ context.Context, call *Call) Result {
				return OK(strings.Join(call.Args.Rest(), " "), nil)
			},
		},
		{
			Name:    "say",
			Comment: "write through Out",
			Handler: func(_ context.Context, call *Call) Result {
				fmt.Fprint(call.Out, "first")
				fmt.Fprint(call.Out, "second\n")
				return OK("done", nil)
			},
		},
		{
			Name: "fail",
			Handler: func(context.Context, *Call) Result {
				return Fail("broken %d", 42)
			},
		},
		{
			Name: "block",
			Handler: func(_ context.Context, call *Call) Result {
				fmt.Fprint(call.Out, "blocking")
				<-block
				return OK("unblocked", nil)
			},
		},
		{
			Name:   "flood",
			Stream: true,
			Handler: func(ctx context.Context, call *Call) Result {
				line := []byte(strings.Repeat("f", 1023))
				for ctx.Err() == nil {
					if _, err := call.Out.Write(line); err != nil {
						return Fail("output: %v", err)
					}
				}
				return Result{}
			},
		},
		tickerCommand("ticker", "tick", false, 2*time.Millisecond),
		tickerCommand("pticker", "ptick", true, 2*time.Millisecond),
	}
}

type testConsole struct {
	srv   *Server
	cs    *ConsoleServer
	d     *Daemon
	path  string
	block chan struct{}
}

func startConsole(t *testing.T, opts ConsoleOptions) *testConsole {
	t.Helper()
	d := NewDaemon(DaemonOptions{Name: "test", Version: "1.2.3", Logger: testLogger(t)})
	tc := &testConsole{d: d, block: make(chan struct{}), path: filepath.Join(shortDir(t), "c.sock")}
	d.MustRegister(testCommands(tc.block)...)
	tc.srv = NewServer(d)
	cs, err := tc.srv.ServeConsole(SocketSpec{Addr: tc.path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tc.cs = cs
	closeOnCleanup(t, tc.srv)
	return tc
}

func (tc *testConsole) dial(t *testing.T) *net.UnixConn {
	t.Helper()
	c, err := ConsoleDial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// converse sends input, half-closes and returns everything the console
// writes until it closes.
func converse(t *testing.T, path, input string) string {
	t.Helper()
	c, err := ConsoleDial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (got %q)", err, out)
	}
	return string(out)
}

func TestConsoleConformance(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{MaxLine: 64})
	add, _ := tc.d.Lookup("add")
	var list strings.Builder
	for _, c := range tc.d.Commands() {
		list.WriteString(c.ShortUsage() + "\n")
	}
	long := "x" + strings.Repeat("y", 100)
	tests := []struct {
		name, in, want string
	}{
		{"list", "?\n", list.String()},
		{"usage", "? add\n", add.LongUsage()},
		{"usage unknown", "? nosuch\n", "Unknown command, try: ?\n"},
		{"unknown", "nosuch 1 2\n", "Unknown command, try: ?\n"},
		{"unknown with help", "nosuch --help\n", "Unknown command, try: ?\n"},
		{"help flag", "add --help\n", add.LongUsage()},
		{"blank and comments", "\n   \n\t\n# just a comment\n", ""},
		{"result args", "add 1 2\n", "sum: 3\n"},
		{"default param", "add 7\n", "sum: 8\n"},
		{"named params", "add --b=5 --a=0x10\n", "sum: 21\n"},
		{"missing param", "add\n", "error: add: parameter 'a' is missing\n"},
		{"extra param", "add 1 2 3\n", "error: add: unexpected parameter \"3\": takes at most 2\n"},
		{"out of range", "add 1000\n", "error: add: parameter 'a' out of range: 1000 not in 0..100\n"},
		{"bad int", "add one\n", "error: add: parameter 'a' must be an integer, got \"one\"\n"},
		{"unknown named", "add 1 --c=2\n", "error: add: parameter 'c' is not supported\n"},
		{"failure", "fail\n", "error: broken 42\n"},
		{"quotes", "echo \"a  b\" 'c d' e\\ f\n", "a  b c d e f\n"},
		{"unterminated quote", "echo \"abc\n", "error: unterminated quote\n"},
		{"out writes are lines", "say\n", "first\nsecond\ndone\n"},
		{"quit", "q\nadd 1 2\n", ""},
		{"quit with args", "q now\nadd 1 2\n", ""},
		{"sequence", "add 1 1\n\necho hi\n", "sum: 2\nhi\n"},
		{"last line without newline", "add 2 2", "sum: 4\n"},
		{"crlf", "add 3 3\r\n", "sum: 6\n"},
		{"bang", "! add 1 2\nadd 3 4\n", "sum: 3\n"},
		{"bang without space", "!echo x\necho y\n", "x\n"},
		{"bang unknown", "! nosuch\necho y\n", "Unknown command, try: ?\n"},
		{"bang empty", "!\necho y\n", "error: usage: ! command [arguments]\n"},
		{"line too long", long + "\nadd 1 2\n", "error: line too long (more than 64 bytes)\nsum: 3\n"},
		{"builtin help", "version-get --help\n", "usage: version-get\n  report the version and build\n"},
		{"help of help", "? ?\n", "Unknown command, try: ?\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := converse(t, tc.path, tt.in); got != tt.want {
				t.Errorf("input %q:\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
	// status-get renders its map as sorted key: value lines.
	st := converse(t, tc.path, "status-get\n")
	if !strings.Contains(st, fmt.Sprintf("pid: %d\n", os.Getpid())) || !strings.Contains(st, "reloads: 0\n") {
		t.Errorf("status-get: %q", st)
	}
	vg := converse(t, tc.path, "version-get\n")
	if !strings.HasPrefix(vg, "1.2.3\nextended:\n  test 1.2.3\n  go: ") {
		t.Errorf("version-get: %q", vg)
	}
	if n := tc.cs.Active(); n != 0 {
		// Sessions end asynchronously after the client sees EOF.
		deadline := time.Now().Add(2 * time.Second)
		for tc.cs.Active() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := tc.cs.Active(); n != 0 {
			t.Errorf("%d sessions still active", n)
		}
	}
}

// readLine reads one line with a deadline.
func readLine(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read line: %v (partial %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

// readUntil reads lines until one satisfies match, returning it.
func readUntil(t *testing.T, c net.Conn, r *bufio.Reader, match func(string) bool) string {
	t.Helper()
	for {
		if l := readLine(t, c, r); match(l) {
			return l
		}
	}
}

func TestConsoleBangHalfClose(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c := tc.dial(t)
	if _, err := io.WriteString(c, "! add 1 2\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "sum: 3\n" {
		t.Fatalf("got %q, %v; want the reply then EOF", out, err)
	}
	// Our write side is still open: the console reads and drops more
	// input rather than resetting the connection.
	if _, err := io.WriteString(c, "add 5 5\n"); err != nil {
		t.Fatalf("write after half-close: %v", err)
	}
	c.CloseWrite()
	deadline := time.Now().Add(5 * time.Second)
	for tc.cs.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := tc.cs.Active(); n != 0 {
		t.Fatalf("session did not end after client EOF: %d active", n)
	}
}

func TestConsoleBangStream(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c := tc.dial(t)
	r := bufio.NewReader(c)
	io.WriteString(c, "! ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 3" })
	// The stream runs until EOF; then the console half-closes.
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(rest)), "\n") {
		if l != "" && !strings.HasPrefix(l, "tick ") {
			t.Errorf("unexpected line %q", l)
		}
	}
}

func TestConsoleStreamCancelledByNextLine(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c := tc.dial(t)
	r := bufio.NewReader(c)
	io.WriteString(c, "ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 3" })
	io.WriteString(c, "add 1 2\n")
	readUntil(t, c, r, func(l string) bool {
		if l != "sum: 3" && !strings.HasPrefix(l, "tick ") {
			t.Fatalf("unexpected line %q", l)
		}
		return l == "sum: 3"
	})
	// Nothing may follow: the stream is over.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if l, err := r.ReadString('\n'); err == nil || l != "" {
		t.Fatalf("stream went on after the next line: %q %v", l, err)
	}
	// A new stream replaces nothing else and a blank line does not
	// cancel it... but any non-blank line does.
	io.WriteString(c, "ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 2" })
	io.WriteString(c, "echo done\n")
	readUntil(t, c, r, func(l string) bool { return l == "done" })
}

func TestConsoleStreamEOF(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c := tc.dial(t)
	r := bufio.NewReader(c)
	io.WriteString(c, "ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 2" })
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("EOF did not end the stream: %v", err)
	}
	// A stream followed by more input in one write is cancelled at once.
	out := converse(t, tc.path, "ticker\necho after\n")
	if !strings.HasSuffix(out, "after\n") {
		t.Fatalf("got %q", out)
	}
}

func TestConsoleShutdownCancelsStream(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c := tc.dial(t)
	r := bufio.NewReader(c)
	io.WriteString(c, "ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 2" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := tc.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v", d)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(r); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed: %v", err)
	}
	if _, err := os.Lstat(tc.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
}

func TestConsoleShutdownCommand(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	done := make(chan error, 1)
	go func() { done <- tc.srv.Run(context.Background()) }()
	if out := converse(t, tc.path, "shutdown\n"); out != "Shutting down.\n" {
		t.Fatalf("got %q", out)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
}

func TestConsoleConnectionLimit(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{StreamOptions: StreamOptions{MaxConns: 1}})
	c1 := tc.dial(t)
	r1 := bufio.NewReader(c1)
	io.WriteString(c1, "add 1 2\n")
	if l := readLine(t, c1, r1); l != "sum: 3" {
		t.Fatalf("first client got %q", l)
	}
	c2 := tc.dial(t)
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c2)
	if err != nil || string(out) != "too many connections (limit 1)\n" {
		t.Fatalf("second client got %q, %v", out, err)
	}
	// The first is unaffected.
	io.WriteString(c1, "add 2 2\n")
	if l := readLine(t, c1, r1); l != "sum: 4" {
		t.Fatalf("first client got %q", l)
	}
}

// A command that writes while a client never reads must not pin the
// session: the write timeout ends it.
func TestConsoleWriteTimeout(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{WriteTimeout: 50 * time.Millisecond})
	c := tc.dial(t)
	io.WriteString(c, "flood\n")
	// One line proves the session runs; then the client stops reading.
	readLine(t, c, bufio.NewReader(c))
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		if tc.cs.Active() == 0 {
			t.Logf("session ended %v after the client stopped reading", time.Since(start))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("session of a client that never reads is still active")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConsoleSocat(t *testing.T) {
	needSocat(t)
	tc := startConsole(t, ConsoleOptions{})
	run := func(input string) string {
		cmd := exec.Command("socat", "-", "UNIX-CONNECT:"+tc.path)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("socat %q: %v", input, err)
		}
		return string(out)
	}
	if got := run("?\n"); !strings.HasPrefix(got, "add a [b] - add two numbers\n") || !strings.Contains(got, "\nversion-get - report the version and build\n") {
		t.Errorf("? via socat: %q", got)
	}
	if got := run("version-get\n"); !strings.HasPrefix(got, "1.2.3\nextended:\n") {
		t.Errorf("version-get via socat: %q", got)
	}
	if got := run("nosuch\n"); got != "Unknown command, try: ?\n" {
		t.Errorf("unknown via socat: %q", got)
	}
	if got := run("ticker\n"); !strings.HasPrefix(got, "tick 0\n") {
		t.Errorf("stream via socat: %q", got)
	}
}

func TestConsolePipe(t *testing.T) {
	tc := startConsole(t, ConsoleOptions{})
	c, err := ConsoleDial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ConsolePipe(ctx, c, strings.NewReader("add 1 2\necho hi\n"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "sum: 3\nhi\n" {
		t.Fatalf("got %q", out.String())
	}
	// A context end stops a session that would run forever.
	c, err = ConsoleDial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, "ticker\n")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := ConsolePipe(ctx2, c, pr, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if _, err := ConsoleDial(filepath.Join(shortDir(t), "none.sock")); err == nil || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
}

func TestRenderResult(t *testing.T) {
	type st struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tests := []struct {
		name string
		r    Result
		want string
	}{
		{"empty", Result{}, ""},
		{"text", OK("hello", nil), "hello\n"},
		{"text newline", OK("a\nb\n", nil), "a\nb\n"},
		{"error", Fail("bad thing"), "error: bad thing\n"},
		{"error no text", Result{Code: Conflict}, "error: command failed (result 4)\n"},
		{"unsupported", UnsupportedResult("x"), "error: 'x' command not supported.\n"},
		{"empty code", Result{Code: Empty, Text: "nothing"}, "nothing\n"},
		{"map", OK("", map[string]any{"b": 2, "a": "x", "c": true, "d": nil}), "a: x\nb: 2\nc: true\nd: null\n"},
		{"nested", OK("t", map[string]any{"m": map[string]any{"k": 1.5}, "l": []any{"p", 2}, "e": []any{}, "o": map[string]any{}}),
			"t\ne: []\nl:\n  - p\n  - 2\nm:\n  k: 1.5\no: {}\n"},
		{"multiline string", OK("", map[string]any{"extended": "one\ntwo\n"}), "extended:\n  one\n  two\n"},
		{"list", OK("2", []any{"a", "b"}), "2\na\nb\n"},
		{"list of maps", OK("", []any{map[string]any{"x": 1}}), "{\"x\":1}\n"},
		{"struct", OK("", st{"n", 3}), "count: 3\nname: n\n"},
		{"scalar", OK("", 42), "42\n"},
		{"string arg", OK("", "multi\nline"), "multi\nline\n"},
		{"big int", OK("", map[string]any{"n": int64(1) << 60}), "n: 1152921504606846976\n"},
		{"error with args", Result{Code: Error, Text: "partial", Args: map[string]any{"done": 1}}, "error: partial\ndone: 1\n"},
		{"unencodable", OK("", map[string]any{"f": func() {}}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := renderResult(tt.r)
			if tt.name == "unencodable" {
				if got == "" {
					t.Errorf("unencodable arguments rendered nothing")
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// socketPair returns two connected unix stream connections.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// FuzzConsoleLine feeds arbitrary input to a console session over a real
// socket pair, then EOF. The session must end, output must stay bounded
// by the input, no session may be left registered, and single lines get
// the reply their class demands.
func FuzzConsoleLine(f *testing.F) {
	for _, s := range []string{"?", "? add", "add 1 2", "q", "! echo x", "nosuch", "count", "add --help", "echo \"a b", "\x00\xff"} {
		f.Add([]byte(s))
	}
	d := NewDaemon(DaemonOptions{Name: "fuzz", Version: "0", Logger: slog.New(slog.DiscardHandler)})
	d.MustRegister(testCommands(nil)[:4]...) // add, echo, say, fail
	d.MustRegister(&Command{
		Name:   "count",
		Stream: true,
		Handler: func(ctx context.Context, call *Call) Result {
			for i := 0; i < 100 && ctx.Err() == nil; i++ {
				fmt.Fprintf(call.Out, "n %d", i)
			}
			<-ctx.Done()
			return OK("counted", nil)
		},
	})
	srv := NewServer(d)
	const maxLine = 256
	cs := &ConsoleServer{
		s: srv, log: slog.New(slog.DiscardHandler),
		opts:     ConsoleOptions{MaxLine: maxLine, WriteTimeout: 5 * time.Second},
		handoff:  make(chan struct{}),
		sessions: make(map[*consoleSession]struct{}),
	}
	var fixed int // the longest output not derived from the input
	for _, c := range d.Commands() {
		fixed += len(c.ShortUsage()) + len(c.LongUsage()) + 2
	}
	fixed += 100*len("n 100\n") + 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		client, server := socketPair(t)
		defer client.Close()
		served := make(chan struct{})
		go func() {
			defer close(served)
			cs.serve(context.Background(), server, "", nil)
		}()
		go func() {
			client.Write(in)
			client.CloseWrite()
		}()
		bound := fixed + 8*len(in)
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(io.LimitReader(client, int64(bound)+1))
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read: %v", err)
		}
		if len(out) > bound {
			t.Fatalf("output exceeds %d bytes for %d bytes of input", bound, len(in))
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after EOF")
		}
		cs.mu.Lock()
		left := len(cs.sessions)
		cs.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d sessions still registered", left)
		}
		line := string(in)
		if strings.ContainsAny(line, "\n\r") || len(line) > maxLine {
			return
		}
		trimmed := strings.TrimSpace(line)
		tc, perr := ParseText(trimmed)
		switch {
		case strings.HasPrefix(trimmed, "!"):
		case perr != nil:
			if want := "error: " + perr.Error() + "\n"; string(out) != want {
				t.Fatalf("bad line %q: got %q, want %q", line, out, want)
			}
		case tc.Name == "" || tc.Name == "q":
			if len(out) != 0 {
				t.Fatalf("line %q: got %q, want nothing", line, out)
			}
		case tc.Name == "?":
		default:
			if _, ok := d.Lookup(tc.Name); !ok && string(out) != consoleUnknown {
				t.Fatalf("unknown command %q: got %q", line, out)
			}
		}
	})
}
