package console

import (
	"bufio"
	"bytes"
	"context"
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
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/tickbox-fw/tickbox/internal/testutil"
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
func tickerCommand(name, prefix string, persistent bool, interval time.Duration) *ctl.Command {
	return &ctl.Command{
		Name:       name,
		Comment:    "stream numbered lines",
		Stream:     true,
		Persistent: persistent,
		Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(call.Out, "%s %d", prefix, i); err != nil {
					return ctl.Fail("output: %v", err)
				}
				select {
				case <-ctx.Done():
					return ctl.Result{}
				case <-t.C:
				}
			}
		},
	}
}

// testCommands are registered on every test console.
func testCommands(block chan struct{}) []*ctl.Command {
	return []*ctl.Command{
		{
			Name:    "add",
			Comment: "add two numbers",
			Params: []ctl.Param{
				{Name: "a", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 100},
				{Name: "b", Type: ctl.Int, Default: int64(1)},
			},
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				return ctl.OK("", map[string]any{"sum": call.Args.Int("a") + call.Args.Int("b")})
			},
		},
		{
			Name:    "echo",
			Comment: "print the words",
			Params:  []ctl.Param{{Name: "words", Rest: true}},
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				return ctl.OK(strings.Join(call.Args.Rest(), " "), nil)
			},
		},
		{
			Name:    "say",
			Comment: "write through Out",
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				fmt.Fprint(call.Out, "first")
				fmt.Fprint(call.Out, "second\n")
				return ctl.OK("done", nil)
			},
		},
		{
			Name: "fail",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.Fail("broken %d", 42)
			},
		},
		{
			Name: "block",
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				fmt.Fprint(call.Out, "blocking")
				<-block
				return ctl.OK("unblocked", nil)
			},
		},
		{
			Name:   "flood",
			Stream: true,
			Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
				line := []byte(strings.Repeat("f", 1023))
				for ctx.Err() == nil {
					if _, err := call.Out.Write(line); err != nil {
						return ctl.Fail("output: %v", err)
					}
				}
				return ctl.Result{}
			},
		},
		tickerCommand("ticker", "tick", false, 2*time.Millisecond),
		tickerCommand("pticker", "ptick", true, 2*time.Millisecond),
	}
}

type testConsole struct {
	srv   *ctl.Server
	cs    *Server
	d     *ctl.Registry
	path  string
	block chan struct{}
}

func startConsole(t *testing.T, opts Options) *testConsole {
	t.Helper()
	d := ctl.NewRegistry(ctl.Options{Name: "test", Version: "1.2.3", Logger: testLogger(t)})
	tc := &testConsole{d: d, block: make(chan struct{}), path: filepath.Join(testutil.ShortDir(t), "c.sock")}
	d.MustRegister(testCommands(tc.block)...)
	tc.srv = ctl.NewServer(d)
	cs, err := Serve(tc.srv, ctl.SocketSpec{Addr: tc.path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tc.cs = cs
	ctltest.CloseOnCleanup(t, tc.srv)
	return tc
}

func (tc *testConsole) dial(t *testing.T) *net.UnixConn {
	t.Helper()
	c, err := Dial(tc.path)
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
	c, err := Dial(path)
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

// checkHelpTable checks the layout of a "?" listing: gone's header, the
// q and ? rows, then one row per command name, sorted, every row padded
// to the same columns. gonecompat compares it with gone's own output.
func checkHelpTable(t *testing.T, d *ctl.Registry, got string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 3+len(d.Names()) {
		t.Fatalf("? gave %d lines for %d commands:\n%s", len(lines), len(d.Names()), got)
	}
	if lines[0] != strings.TrimSuffix(consoleHelpHeader, "\n") {
		t.Errorf("header %q", lines[0])
	}
	syntaxAt := strings.Index(lines[2], "[cmd]")
	dashAt := strings.Index(lines[1], " - ")
	if !strings.HasPrefix(lines[1], "q ") || !strings.HasPrefix(lines[2], "? ") || syntaxAt < 0 ||
		strings.TrimSpace(lines[1][dashAt:]) != "- exit and close the connection" ||
		strings.TrimSpace(lines[2][dashAt:]) != "- help" {
		t.Errorf("q and ? rows: %q, %q", lines[1], lines[2])
	}
	for i, n := range d.Names() {
		row := lines[3+i]
		c, _ := d.Lookup(n)
		if len(row) != len(lines[1]) || row[:syntaxAt] != fmt.Sprintf("%-*s", syntaxAt, n) ||
			row[syntaxAt:dashAt] != fmt.Sprintf("%-*s", dashAt-syntaxAt, c.Synopsis()) ||
			strings.TrimRight(row[dashAt:], " ") != strings.TrimRight(" - "+c.Comment, " ") {
			t.Errorf("row %d: %q (q row %q)", i, row, lines[1])
		}
	}
}

func TestConsoleConformance(t *testing.T) {
	tc := startConsole(t, Options{MaxLine: 64})
	add, _ := tc.d.Lookup("add")
	long := "x" + strings.Repeat("y", 100)
	tests := []struct {
		name, in, want string
	}{
		{"usage", "? add\n", add.LongUsage()},
		{"usage with spaces", "\t?   add \n", add.LongUsage()},
		{"usage unknown", "? nosuch\n", "Unknown command, try: ?\n"},
		{"unknown", "nosuch 1 2\n", "Unknown command, try: ?\n"},
		{"unknown with help", "nosuch --help\n", "Unknown command, try: ?\n"},
		{"help flag", "add --help\n", add.LongUsage()},
		{"blank lines", "\n   \n\t\n\v\f\r\n", ""},
		{"hash is a word", "# just a comment\n", "Unknown command, try: ?\n"},
		{"hash argument", "echo a # b\n", "a # b\n"},
		{"result args", "add 1 2\n", "sum: 3\n"},
		{"default param", "add 7\n", "sum: 8\n"},
		{"named params", "add --b=5 --a=0x10\n", "sum: 21\n"},
		{"named twice", "add --a=1 --a=2\n", "Error:  parameter 'a' is given twice\n"},
		{"missing param", "add\n", "Error:  add: parameter 'a' is missing\n"},
		{"extra param", "add 1 2 3\n", "Error:  add: unexpected parameter \"3\": takes at most 2\n"},
		{"out of range", "add 1000\n", "Error:  add: parameter 'a' out of range: 1000 not in 0..100\n"},
		{"bad int", "add one\n", "Error:  add: parameter 'a' must be an integer, got \"one\"\n"},
		{"unknown named", "add 1 --c=2\n", "Error:  add: parameter 'c' is not supported\n"},
		{"failure", "fail\n", "Error:  broken 42\n"},
		{"quotes are literal", "echo \"a  b\" 'c d' e\\ f\n", "\"a b\" 'c d' e\\ f\n"},
		{"unicode spaces", "echo\u00a0a\u3000b\n", "a b\n"},
		{"out writes are lines", "say\n", "first\nsecond\ndone\n"},
		{"text only", "version-get\n", "1.2.3\n"},
		{"quit", "q\nadd 1 2\n", ""},
		{"quit with args", "q now\nadd 1 2\n", ""},
		{"quit glued", "qq\n", "Unknown command, try: ?\n"},
		{"sequence", "add 1 1\n\necho hi\n", "sum: 2\nhi\n"},
		{"last line without newline", "add 2 2", "sum: 4\n"},
		{"crlf", "add 3 3\r\n", "sum: 6\n"},
		{"bang", "! add 1 2\nadd 3 4\n", "sum: 3\n"},
		{"bang glued", "!echo x\necho y\n", "Unknown command, try: ?\ny\n"},
		{"bang unknown", "! nosuch\necho y\necho z\n", "Unknown command, try: ?\ny\n"},
		{"bang unknown then failure", "! nosuch\nfail\necho z\n", "Unknown command, try: ?\nError:  broken 42\n"},
		{"bang unknown then usage", "! nosuch\n? add\necho z\n", "Unknown command, try: ?\n" + add.LongUsage()},
		{"bang alone", "!\necho y\n", "y\n"},
		{"bang quit is a command", "! q\necho y\n", "Unknown command, try: ?\ny\n"},
		{"bang failure", "! add\necho y\n", "Error:  add: parameter 'a' is missing\n"},
		{"line too long", long + "\nadd 1 2\n", "Error:  line too long (more than 64 bytes)\nsum: 3\n"},
		{"builtin help", "version-get --help\n", "usage: version-get\n  report the version and build\n"},
		{"help of help", "? ?\n", "Unknown command, try: ?\n"},
		{"help of quit", "? q\n", "Unknown command, try: ?\n"},
		{"stream refuses arguments", "ticker 1\necho y\n", "Error:  ticker: unexpected parameter \"1\": takes at most 0\ny\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := converse(t, tc.path, tt.in); got != tt.want {
				t.Errorf("input %q:\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
	for _, in := range []string{"?\n", "? add echo\n", "  ?\t\n"} {
		checkHelpTable(t, tc.d, converse(t, tc.path, in))
	}
	// "! ?" runs the "?" command, which does not exist; "! nosuch" then
	// "?" prints the table and half-closes.
	if got := converse(t, tc.path, "! ?\necho y\n"); got != "Unknown command, try: ?\ny\n" {
		t.Errorf("! ?: %q", got)
	}
	got := converse(t, tc.path, "! nosuch\n?\necho y\n")
	table, ok := strings.CutPrefix(got, consoleUnknown)
	if !ok {
		t.Fatalf("! nosuch then ?: %q", got)
	}
	checkHelpTable(t, tc.d, table)
	// status-get has only structured data: it is shown as key: value.
	st := converse(t, tc.path, "status-get\n")
	if !strings.Contains(st, fmt.Sprintf("pid: %d\n", os.Getpid())) || !strings.Contains(st, "reloads: 0\n") {
		t.Errorf("status-get: %q", st)
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

// TestConsoleOptions checks the opt-in behaviours: shell-like quoting
// and arguments after the text.
func TestConsoleOptions(t *testing.T) {
	quoting := startConsole(t, Options{Quoting: true})
	args := startConsole(t, Options{ShowArgs: true})
	tests := []struct {
		name string
		tc   *testConsole
		in   string
		want string
	}{
		{"quotes", quoting, "echo \"a  b\" 'c d' e\\ f\n", "a  b c d e f\n"},
		{"comment", quoting, "# just a comment\n\techo x # y\n", "x\n"},
		{"unterminated quote", quoting, "echo \"abc\necho y\n", "Error:  unterminated quote\ny\n"},
		// A line that cannot be split is no "!" line either: nothing
		// is closed.
		{"bang unterminated quote", quoting, "! echo \"abc\necho y\n", "Error:  unterminated quote\ny\n"},
		{"quoted bang", quoting, "'!' echo x\necho y\n", "x\n"},
		{"quoting keeps gone errors", quoting, "fail\n", "Error:  broken 42\n"},
		{"args after text", args, "version-get\n", "1.2.3\nextended:\n"},
		{"args alone", args, "add 1 2\n", "sum: 3\n"},
		{"writes and args", args, "say\n", "first\nsecond\ndone\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := converse(t, tt.tc.path, tt.in)
			if tt.name == "args after text" {
				if !strings.HasPrefix(got, tt.want) {
					t.Errorf("input %q:\n got %q\nwant prefix %q", tt.in, got, tt.want)
				}
				return
			}
			if got != tt.want {
				t.Errorf("input %q:\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
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
	tc := startConsole(t, Options{})
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
	tc := startConsole(t, Options{})
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
	tc := startConsole(t, Options{})
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
	// Blank lines do not cancel a stream, as in gone; any line with a
	// word does, even one that does nothing.
	io.WriteString(c, "ticker\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 2" })
	io.WriteString(c, "\n \t\n\n")
	readUntil(t, c, r, func(l string) bool { return l == "tick 8" })
	io.WriteString(c, "!\necho done\n")
	readUntil(t, c, r, func(l string) bool { return l == "done" })
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if l, err := r.ReadString('\n'); err == nil || l != "" {
		t.Fatalf("stream went on after \"!\": %q %v", l, err)
	}
}

func TestConsoleStreamEOF(t *testing.T) {
	tc := startConsole(t, Options{})
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
	tc := startConsole(t, Options{})
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
	tc := startConsole(t, Options{})
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
	tc := startConsole(t, Options{StreamOptions: ctl.StreamOptions{MaxConns: 1}})
	c1 := tc.dial(t)
	r1 := bufio.NewReader(c1)
	io.WriteString(c1, "add 1 2\n")
	if l := readLine(t, c1, r1); l != "sum: 3" {
		t.Fatalf("first client got %q", l)
	}
	c2 := tc.dial(t)
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c2)
	if err != nil || string(out) != "Error:  too many connections (limit 1)\n" {
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
	tc := startConsole(t, Options{WriteTimeout: 50 * time.Millisecond})
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
	testutil.NeedTool(t, "socat", "socat")
	tc := startConsole(t, Options{})
	run := func(input string) string {
		cmd := exec.Command("socat", "-", "UNIX-CONNECT:"+tc.path)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("socat %q: %v", input, err)
		}
		return string(out)
	}
	checkHelpTable(t, tc.d, run("?\n"))
	if got := run("version-get\n"); got != "1.2.3\n" {
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
	tc := startConsole(t, Options{})
	c, err := Dial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Pipe(ctx, c, strings.NewReader("add 1 2\necho hi\n"), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "sum: 3\nhi\n" {
		t.Fatalf("got %q", out.String())
	}
	// A context end stops a session that would run forever.
	c, err = Dial(tc.path)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, "ticker\n")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := Pipe(ctx2, c, pr, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	if _, err := Dial(filepath.Join(testutil.ShortDir(t), "none.sock")); err == nil || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
}

func TestRenderResult(t *testing.T) {
	type st struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tests := []struct {
		name            string
		r               ctl.Result
		wrote, showArgs bool
		want            string
	}{
		{"empty", ctl.Result{}, false, false, ""},
		{"text", ctl.OK("hello", nil), false, false, "hello\n"},
		{"text newline", ctl.OK("a\nb\n", nil), false, false, "a\nb\n"},
		{"text after writes", ctl.OK("done", nil), true, false, "done\n"},
		{"error", ctl.Fail("bad thing"), false, false, "Error:  bad thing\n"},
		{"error ending in newline", ctl.Fail("bad\n"), false, false, "Error:  bad\n\n"},
		{"error no text", ctl.Result{Code: ctl.Conflict}, false, false, "Error:  command failed (result 4)\n"},
		{"unsupported", ctl.UnsupportedResult("x"), false, false, "Error:  'x' command not supported.\n"},
		{"empty code", ctl.Result{Code: ctl.Empty, Text: "nothing"}, false, false, "nothing\n"},
		{"text hides args", ctl.OK("1.2.3", map[string]any{"extended": "x"}), false, false, "1.2.3\n"},
		{"writes hide args", ctl.OK("", map[string]any{"a": 1}), true, false, ""},
		{"args shown", ctl.OK("1.2.3", map[string]any{"extended": "x"}), true, true, "1.2.3\nextended: x\n"},
		{"map", ctl.OK("", map[string]any{"b": 2, "a": "x", "c": true, "d": nil}), false, false, "a: x\nb: 2\nc: true\nd: null\n"},
		{"nested", ctl.OK("t", map[string]any{"m": map[string]any{"k": 1.5}, "l": []any{"p", 2}, "e": []any{}, "o": map[string]any{}}), false, true,
			"t\ne: []\nl:\n  - p\n  - 2\nm:\n  k: 1.5\no: {}\n"},
		{"multiline string", ctl.OK("", map[string]any{"extended": "one\ntwo\n"}), false, false, "extended:\n  one\n  two\n"},
		{"list", ctl.OK("", []any{"a", "b"}), false, false, "a\nb\n"},
		{"list with text", ctl.OK("2", []any{"a", "b"}), false, true, "2\na\nb\n"},
		{"list of maps", ctl.OK("", []any{map[string]any{"x": 1}}), false, false, "{\"x\":1}\n"},
		{"struct", ctl.OK("", st{"n", 3}), false, false, "count: 3\nname: n\n"},
		{"scalar", ctl.OK("", 42), false, false, "42\n"},
		{"string arg", ctl.OK("", "multi\nline"), false, false, "multi\nline\n"},
		{"big int", ctl.OK("", map[string]any{"n": int64(1) << 60}), false, false, "n: 1152921504606846976\n"},
		{"error hides args", ctl.Result{Code: ctl.Error, Text: "partial", Args: map[string]any{"done": 1}}, false, false, "Error:  partial\n"},
		{"error with args shown", ctl.Result{Code: ctl.Error, Text: "partial", Args: map[string]any{"done": 1}}, false, true, "Error:  partial\ndone: 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderResult(tt.r, tt.wrote, tt.showArgs); got != tt.want {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
	// Arguments JSON cannot encode still print something.
	if got := renderResult(ctl.OK("", map[string]any{"f": func() {}}), false, false); got == "" {
		t.Errorf("unencodable arguments rendered nothing")
	}
}

func TestGoneWords(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"", nil},
		{" \t\r\v\f", nil},
		{"a", []string{"a"}},
		{"  a  b\tc ", []string{"a", "b", "c"}},
		{"\"a b\" 'c'", []string{"\"a", "b\"", "'c'"}},
		{"# x", []string{"#", "x"}},
		{"a\\ b", []string{"a\\", "b"}},
		{"a\u00a0b\u2028c\u3000d\u0085e", []string{"a", "b", "c", "d", "e"}},
		{"a\u200bb", []string{"a\u200bb"}}, // zero-width space is not a space
		{"\xff \xfe\x00", []string{"\xff", "\xfe\x00"}},
		{"!x ! y", []string{"!x", "!", "y"}},
	}
	for _, tt := range tests {
		if got := goneWords(tt.line); !slices.Equal(got, tt.want) {
			t.Errorf("goneWords(%q) = %q, want %q", tt.line, got, tt.want)
		}
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
// socket pair, then EOF, once as gone reads lines and once with quoting.
// The session must end, output must stay bounded by the input, no
// session may be left registered, and single lines get the reply their
// class demands.
func FuzzConsoleLine(f *testing.F) {
	for _, s := range []string{"?", "? add", "add 1 2", "q", "! echo x", "nosuch", "count", "add --help", "echo \"a b",
		"\x00\xff", "!", "! nosuch\necho y", "? add echo", "echo\ta\u00a0b", "# echo", "count\n\n\necho x"} {
		f.Add([]byte(s))
	}
	d := ctl.NewRegistry(ctl.Options{Name: "fuzz", Version: "0", Logger: slog.New(slog.DiscardHandler)})
	d.MustRegister(testCommands(nil)[:4]...) // add, echo, say, fail
	d.MustRegister(&ctl.Command{
		Name:   "count",
		Stream: true,
		Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
			for i := 0; i < 100 && ctx.Err() == nil; i++ {
				fmt.Fprintf(call.Out, "n %d", i)
			}
			<-ctx.Done()
			return ctl.OK("counted", nil)
		},
	})
	const maxLine = 256
	console := func(quoting bool) *Server {
		return &Server{
			r: d, log: slog.New(slog.DiscardHandler),
			opts:     Options{MaxLine: maxLine, WriteTimeout: 5 * time.Second, Quoting: quoting},
			handoff:  make(chan struct{}),
			sessions: make(map[*consoleSession]struct{}),
		}
	}
	consoles := []*Server{console(false), console(true)}
	var fixed int // the longest output not derived from the input
	fixed += len(consoleHelpHeader) + 2*len("? [cmd] - exit and close the connection\n")
	for _, c := range d.Commands() {
		fixed += len(c.ShortUsage()) + len(c.LongUsage()) + 64
	}
	fixed += 100*len("n 100\n") + 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		for _, cs := range consoles {
			out := fuzzSession(t, cs, in, fixed)
			checkFuzzLine(t, cs, d, string(in), string(out))
		}
	})
}

// fuzzSession runs one session on in and returns its output.
func fuzzSession(t *testing.T, cs *Server, in []byte, fixed int) []byte {
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
	// Every input byte can at most start a line whose reply is fixed
	// text, or be echoed back.
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
	return out
}

// checkFuzzLine checks the reply to a single line by its class.
func checkFuzzLine(t *testing.T, cs *Server, d *ctl.Registry, line, out string) {
	mode := fmt.Sprintf("quoting=%v", cs.opts.Quoting)
	if strings.Contains(line, "\n") {
		return
	}
	if len(line) > cs.opts.MaxLine {
		if want := fmt.Sprintf("Error:  line too long (more than %d bytes)\n", cs.opts.MaxLine); out != want {
			t.Fatalf("%s: long line: got %q, want %q", mode, out, want)
		}
		return
	}
	words, err := cs.split(line)
	if err != nil {
		if want := "Error:  " + err.Error() + "\n"; out != want {
			t.Fatalf("%s: bad line %q: got %q, want %q", mode, line, out, want)
		}
		return
	}
	if !cs.opts.Quoting && !slices.Equal(words, strings.FieldsFunc(line, unicode.IsSpace)) {
		t.Fatalf("words of %q: %q differ from a split on Unicode spaces", line, words)
	}
	if len(words) == 0 || words[0] == "q" || (words[0] == "!" && len(words) == 1) {
		if out != "" {
			t.Fatalf("%s: line %q: got %q, want nothing", mode, line, out)
		}
		return
	}
	if words[0] == "?" {
		switch {
		case len(words) != 2:
			if !strings.HasPrefix(out, consoleHelpHeader) {
				t.Fatalf("%s: %q: got %q, want the command table", mode, line, out)
			}
		case out != consoleUnknown && !strings.HasPrefix(out, "usage: "+words[1]):
			t.Fatalf("%s: %q: got %q, want a usage or %q", mode, line, out, consoleUnknown)
		}
		return
	}
	if words[0] == "!" {
		words = words[1:]
	}
	if _, ok := d.Lookup(words[0]); !ok && out != consoleUnknown {
		t.Fatalf("%s: unknown command %q: got %q", mode, line, out)
	}
	for _, l := range strings.Split(out, "\n") {
		// status-get's request counters have an "error" key per front
		// end ("    error: 3"): structured data, not an error line.
		if strings.Contains(l, "error: ") && !requestCounter.MatchString(l) {
			t.Fatalf("%s: %q: an error line that is not gone's: %q", mode, line, out)
		}
	}
}

// requestCounter matches the line of status-get's console rendering
// that holds a front end's count of failed requests.
var requestCounter = regexp.MustCompile(`^    error: [0-9]+$`)
