package gonecompat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/One-com/gone/daemon/ctrl"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
)

const version = "1.2.3"

// goneCommand is a command for gone's ctrl server. invoke returns what
// gone's Invoke does, less the persistent line (not exercised here).
type goneCommand struct {
	syntax, comment, usage string
	invoke                 func(ctx context.Context, w io.Writer, args []string) (async func(), err error)
}

func (g *goneCommand) ShortUsage() (string, string) { return g.syntax, g.comment }
func (g *goneCommand) Usage(_ string, w io.Writer)  { io.WriteString(w, g.usage) }
func (g *goneCommand) Invoke(ctx context.Context, w io.Writer, _ string, args []string) (func(), string, error) {
	async, err := g.invoke(ctx, w, args)
	return async, "", err
}

// tickboxCommands are the test commands on the ctl side. goneCommands
// writes the same commands for gone: each pair must print the same bytes
// for the same words.
func tickboxCommands() []*ctl.Command {
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
			Comment: "write lines, then a result",
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				fmt.Fprint(call.Out, "first")
				fmt.Fprint(call.Out, "second\n")
				return ctl.OK("done", nil)
			},
		},
		{
			Name:    "fail",
			Comment: "always fails",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				return ctl.Fail("broken %d", 42)
			},
		},
		{
			Name:    "count",
			Comment: "three lines, then wait to be stopped",
			Stream:  true,
			Handler: func(ctx context.Context, call *ctl.Call) ctl.Result {
				for i := range 3 {
					fmt.Fprintf(call.Out, "n %d", i)
				}
				<-ctx.Done()
				return ctl.OK("stopped", nil)
			},
		},
		{
			Name:    "sing",
			Comment: "two lines, then ends by itself",
			Stream:  true,
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				fmt.Fprint(call.Out, "la")
				fmt.Fprint(call.Out, "la")
				return ctl.OK("", nil)
			},
		},
	}
}

func goneCommands(d *ctl.Registry) map[string]ctrl.Command {
	plain := func(f func(w io.Writer, args []string) error) func(context.Context, io.Writer, []string) (func(), error) {
		return func(_ context.Context, w io.Writer, args []string) (func(), error) { return nil, f(w, args) }
	}
	// noArgs refuses arguments as ctl's registry does for a command
	// without parameters.
	noArgs := func(name string, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("%s: unexpected parameter %q: takes at most 0", name, args[0])
		}
		return nil
	}
	cmds := map[string]ctrl.Command{
		"add": &goneCommand{
			syntax: "a [b]", comment: "add two numbers",
			usage: "usage: add a [b]\n  add two numbers\n  --a=INT (required, range 0..100)\n  --b=INT (default 1)\n",
			invoke: plain(func(w io.Writer, args []string) error {
				if len(args) == 0 {
					return errors.New("add: parameter 'a' is missing")
				}
				if len(args) > 2 {
					return fmt.Errorf("add: unexpected parameter %q: takes at most 2", args[2])
				}
				vals := []int64{0, 1}
				for i, s := range args {
					v, err := strconv.ParseInt(s, 0, 64)
					if err != nil {
						return fmt.Errorf("add: parameter '%s' must be an integer, got %q", []string{"a", "b"}[i], s)
					}
					vals[i] = v
				}
				if vals[0] < 0 || vals[0] > 100 {
					return fmt.Errorf("add: parameter 'a' out of range: %d not in 0..100", vals[0])
				}
				fmt.Fprintf(w, "sum: %d\n", vals[0]+vals[1])
				return nil
			}),
		},
		"echo": &goneCommand{
			syntax: "[words...]", comment: "print the words",
			usage: "usage: echo [words...]\n  print the words\n  --words=STRING (repeatable)\n",
			invoke: plain(func(w io.Writer, args []string) error {
				if len(args) > 0 {
					fmt.Fprintln(w, strings.Join(args, " "))
				}
				return nil
			}),
		},
		"say": &goneCommand{
			comment: "write lines, then a result",
			usage:   "usage: say\n  write lines, then a result\n",
			invoke: plain(func(w io.Writer, args []string) error {
				if err := noArgs("say", args); err != nil {
					return err
				}
				fmt.Fprintln(w, "first")
				fmt.Fprintln(w, "second")
				fmt.Fprintln(w, "done")
				return nil
			}),
		},
		"fail": &goneCommand{
			comment: "always fails",
			usage:   "usage: fail\n  always fails\n",
			invoke: plain(func(_ io.Writer, args []string) error {
				if err := noArgs("fail", args); err != nil {
					return err
				}
				return errors.New("broken 42")
			}),
		},
		"count": &goneCommand{
			comment: "three lines, then wait to be stopped",
			usage:   "usage: count\n  three lines, then wait to be stopped\n  Streams output until cancelled by the next command line.\n",
			invoke: func(ctx context.Context, w io.Writer, args []string) (func(), error) {
				if err := noArgs("count", args); err != nil {
					return nil, err
				}
				return func() {
					for i := range 3 {
						fmt.Fprintf(w, "n %d\n", i)
					}
					<-ctx.Done()
				}, nil
			},
		},
		"sing": &goneCommand{
			comment: "two lines, then ends by itself",
			usage:   "usage: sing\n  two lines, then ends by itself\n  Streams output until cancelled by the next command line.\n",
			invoke: func(_ context.Context, w io.Writer, args []string) (func(), error) {
				if err := noArgs("sing", args); err != nil {
					return nil, err
				}
				return func() { fmt.Fprint(w, "la\nla\n") }, nil
			},
		},
	}
	// The daemon's built-in commands, written for gone too, so that both
	// command tables hold the same names.
	var names []string
	for _, c := range d.Commands() {
		names = append(names, c.Name)
	}
	builtin := func(comment string, f func(w io.Writer) error) *goneCommand {
		return &goneCommand{comment: comment, invoke: plain(func(w io.Writer, _ []string) error { return f(w) })}
	}
	for _, c := range d.Commands() {
		if _, ok := cmds[c.Name]; ok {
			continue
		}
		var g *goneCommand
		switch c.Name {
		case "list-commands":
			g = builtin(c.Comment, func(w io.Writer) error {
				_, err := io.WriteString(w, strings.Join(names, "\n")+"\n")
				return err
			})
		case "version-get":
			g = builtin(c.Comment, func(w io.Writer) error { _, err := fmt.Fprintln(w, version); return err })
		case "build-report":
			g = builtin(c.Comment, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, ctl.BuildReport("gonecompat", version))
				return err
			})
		case "config-get":
			// No configuration: an empty map, which prints nothing.
			g = builtin(c.Comment, func(io.Writer) error { return nil })
		case "status-get":
			g = builtin(c.Comment, func(w io.Writer) error { _, err := fmt.Fprintf(w, "pid: %d\n", os.Getpid()); return err })
		case "shutdown":
			g = builtin(c.Comment, func(w io.Writer) error { _, err := fmt.Fprintln(w, "Shutting down."); return err })
		case "commands-get":
			// Its text counts the commands; the schema is in its
			// arguments, which the console shows only on request.
			g = builtin(c.Comment, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%d commands\n", len(names)); return err })
			g.syntax = c.Synopsis()
		default:
			panic(fmt.Sprintf("built-in command %q has no gone equivalent in this test: write one", c.Name))
		}
		if c.ShortUsage() != strings.TrimSpace(c.Name+" "+g.syntax)+" - "+c.Comment {
			panic(fmt.Sprintf("built-in command %q has a syntax; its gone equivalent needs it", c.Name))
		}
		g.usage = c.LongUsage()
		cmds[c.Name] = g
	}
	return cmds
}

// newDaemon returns the ctl side's registry.
func newDaemon() *ctl.Registry {
	d := ctl.NewRegistry(ctl.Options{Name: "gonecompat", Version: version, Logger: slog.New(slog.DiscardHandler)})
	d.MustRegister(tickboxCommands()...)
	return d
}

// gone's command table is one per process.
var registerOnce sync.Once

// pair is the two servers under comparison.
type pair struct {
	gone, tickbox string // socket paths
	names         int    // rows in the "?" table besides q and ?
}

func start(t *testing.T, opts console.Options) pair {
	t.Helper()
	dir, err := os.MkdirTemp("", "gonecompat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := newDaemon()
	gcmds := goneCommands(d)
	registerOnce.Do(func() {
		for n, c := range gcmds {
			ctrl.RegisterCommand(n, c)
		}
	})
	p := pair{gone: filepath.Join(dir, "gone.sock"), tickbox: filepath.Join(dir, "tickbox.sock"), names: len(gcmds)}

	gs := &ctrl.Server{Addr: p.gone}
	if err := gs.Listen(); err != nil {
		t.Fatalf("gone listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve() }()
	t.Cleanup(func() {
		gs.Shutdown()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("gone serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("gone server did not stop")
		}
	})

	srv := ctl.NewServer(d)
	if _, err := console.Serve(srv, ctl.SocketSpec{Addr: p.tickbox}, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// converse sends input, half-closes and returns everything written back
// until the server closes its side.
func converse(t *testing.T, path, input string) string {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	out, err := io.ReadAll(c)
	// A server that closes with input unread ("q" with more lines after
	// it) makes Linux report a reset after the data it sent.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read from %s: %v (got %q)", filepath.Base(path), err, out)
	}
	return string(out)
}

const header = "---- commands --------------------------------------------------------------"

// sortTables sorts the command rows of every "?" table in out. gone
// prints them in Go map order, which changes from run to run; ctl sorts
// them. The header and the q and ? rows stay where they are.
func sortTables(out string, rows int) string {
	lines := strings.SplitAfter(out, "\n")
	for i, l := range lines {
		if l == header+"\n" && i+3+rows <= len(lines) {
			slices.Sort(lines[i+3 : i+3+rows])
		}
	}
	return strings.Join(lines, "")
}

func TestTranscripts(t *testing.T) {
	p := start(t, console.Options{})
	long := "echo " + strings.Repeat("w ", 1000) // 2005 bytes: within both limits
	tests := []struct{ name, in string }{
		{"help", "?\n"},
		{"help twice", "?\n?\n"},
		{"help of a command", "? add\n"},
		{"help of a command with spaces", "  ?   add  \n"},
		{"help of a stream", "? count\n"},
		{"help of a built-in", "? version-get\n"},
		{"help of unknown", "? nosuch\n"},
		{"help of help", "? ?\n"},
		{"help of quit", "? q\n"},
		{"help with two words", "? add echo\n"},
		{"help glued", "?add\n"},
		{"unknown", "nosuch\n"},
		{"unknown with args", "nosuch 1 2\n"},
		{"unknown then known", "nosuch\necho y\n"},
		{"bang alone", "!\necho y\n"},
		{"bang alone with spaces", "  !  \necho y\n"},
		{"bang command", "! echo x\necho y\n"},
		{"bang command with args", "! add 1 2\nadd 3 4\n"},
		{"bang glued", "!echo x\necho y\n"},
		{"bang unknown keeps the connection", "! nosuch\necho y\necho z\n"},
		{"bang unknown twice", "! nosuch\n! other\necho y\necho z\n"},
		{"bang unknown then help", "! nosuch\n?\necho z\n"},
		{"bang unknown then usage", "! nosuch\n? add\necho z\n"},
		{"bang unknown then usage of unknown", "! nosuch\n? nosuch\necho z\n"},
		{"bang unknown then failure", "! nosuch\nfail\necho z\n"},
		{"bang unknown then bang alone", "! nosuch\n!\necho z\n"},
		{"bang failure", "! fail\necho y\n"},
		{"bang bad argument", "! add x\necho y\n"},
		{"bang help", "! ?\necho y\n"},
		{"bang quit", "! q\necho y\n"},
		{"bang bang", "! ! echo x\necho y\n"},
		{"bang stream", "! count\n"},
		{"bang stream then line", "! count\necho y\n"},
		{"quit", "q\necho y\n"},
		{"quit with args", "q now\necho y\n"},
		{"quit glued", "qq\n"},
		{"blank lines", "\n\n   \n\t\n"},
		{"blank lines around", "\n echo a \n\n"},
		{"extra whitespace", "   echo    a     b   \n"},
		{"tabs", "\techo\ta\t\tb\t\n"},
		{"vertical tab and form feed", "echo\va\fb\n"},
		{"no-break space", "echo\u00a0a\u2003b\n"},
		{"carriage return", "echo a\r\necho b\r\n"},
		{"bare carriage return", "echo a\rb\n"},
		{"double quotes", "echo \"a  b\" c\n"},
		{"single quotes", "echo 'a b' it's\n"},
		{"unterminated quote", "echo \"abc\n"},
		{"backslash", "echo a\\ b c\\\n"},
		{"hash", "echo a # b\n"},
		{"hash first", "# echo a\n"},
		{"hash glued", "#echo\n"},
		{"control bytes", "echo \x00\x01 \x7f\n"},
		{"invalid utf-8", "echo \xff\xfe a\n"},
		{"last line without newline", "echo a\necho b"},
		{"result arguments", "add 1 2\n"},
		{"default argument", "add 7\n"},
		{"hex argument", "add 0x10 0\n"},
		{"missing argument", "add\n"},
		{"extra argument", "add 1 2 3\n"},
		{"bad argument", "add one\n"},
		{"out of range", "add 1000\n"},
		{"failure", "fail\n"},
		{"failure with args", "fail now\n"},
		{"writes and result", "say\n"},
		{"stream then line", "count\necho after\n"},
		{"stream then blank lines", "count\n\n\n"},
		{"stream then unknown", "count\nnosuch\n"},
		{"stream then help", "count\n?\n"},
		{"stream then bang alone", "count\n!\necho y\n"},
		{"stream then quit", "count\nq\n"},
		{"stream to EOF", "count\n"},
		{"stream ending by itself", "sing\necho after\n"},
		{"stream with an argument", "count 1\necho after\n"},
		{"version", "version-get\n"},
		{"list", "list-commands\n"},
		{"config", "config-get\n"},
		{"long line", long + "\n"},
		{"sequence", "add 1 1\n\necho hi\n? fail\nnosuch\nfail\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := converse(t, p.gone, tt.in)
			got := converse(t, p.tickbox, tt.in)
			if sortTables(got, p.names) != got {
				t.Errorf("input %q: ctl's command table is not sorted:\n%s", tt.in, got)
			}
			if sortTables(got, p.names) != sortTables(want, p.names) {
				t.Errorf("input %q:\n ctl: %q\ngone: %q", tt.in, got, want)
			}
		})
	}
}

// TestTranscriptDifferences pins the deliberate differences from gone:
// each row gives both outputs, so that a change on either side shows.
func TestTranscriptDifferences(t *testing.T) {
	tests := []struct {
		name      string
		opts      console.Options
		in        string
		gone, ctl string
	}{
		{
			// ctl bounds a line (4096 bytes by default) and skips it
			// with an error; gone takes up to 64 KiB and then drops
			// the connection.
			name: "line over the bound",
			opts: console.Options{MaxLine: 64},
			in:   "echo " + strings.Repeat("x", 100) + "\necho y\n",
			gone: strings.Repeat("x", 100) + "\ny\n",
			ctl:  "Error:  line too long (more than 64 bytes)\ny\n",
		},
		{
			// Quoting is an option; gone has none.
			name: "quoting",
			opts: console.Options{Quoting: true},
			in:   "echo \"a  b\" c # d\n",
			gone: "\"a b\" c # d\n",
			ctl:  "a  b c\n",
		},
		{
			name: "quoting error",
			opts: console.Options{Quoting: true},
			in:   "echo \"abc\n",
			gone: "\"abc\n",
			ctl:  "Error:  unterminated quote\n",
		},
		{
			// "cmd --help" is ctl's usage request for every command;
			// a gone command receives the word as an argument.
			name: "help flag",
			in:   "echo --help\n",
			gone: "--help\n",
			ctl:  "usage: echo [words...]\n  print the words\n  --words=STRING (repeatable)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, tt.opts)
			if got := converse(t, p.gone, tt.in); got != tt.gone {
				t.Errorf("gone: got %q, want %q", got, tt.gone)
			}
			if got := converse(t, p.tickbox, tt.in); got != tt.ctl {
				t.Errorf("ctl: got %q, want %q", got, tt.ctl)
			}
		})
	}
}
