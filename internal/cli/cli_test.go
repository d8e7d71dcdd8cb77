package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{Usage("bad %s", "flag"), 2},
		{Exit(1, errors.New("failed")), 1},
		{fmt.Errorf("wrapped: %w", Exit(3, errors.New("x"))), 3},
		{Plain(1, errors.New("f.cfg:3: bad")), 1},
		{Exit(4, nil), 4},
		{errors.New("plain"), 7},
	}
	for _, tc := range tests {
		if got := Code(tc.err, 7); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if got := Usage("bad %q", "x").Error(); got != `bad "x"` {
		t.Errorf("Usage text %q", got)
	}
}

// TestExec checks the exit status and the one line printed for each
// kind of result a RunFunc can return.
func TestExec(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"wrapped help", fmt.Errorf("x: %w", flag.ErrHelp), 0, ""},
		{"usage", Usage("-x %d: want 1..9", 0), 2, "prog: -x 0: want 1..9\n"},
		{"failure", Exit(1, errors.New("open /x: no such file or directory")), 1, "prog: open /x: no such file or directory\n"},
		{"plain error is a failure", errors.New("boom"), 1, "prog: boom\n"},
		{"wrapped usage", fmt.Errorf("port A: %w", Usage("bad spec")), 2, "prog: port A: bad spec\n"},
		{"plain", Plain(1, errors.New("f.cfg:2: unknown keyword 'x'")), 1, "f.cfg:2: unknown keyword 'x'\n"},
		{"silent", Exit(1, nil), 1, ""},
		{"own status", Exit(3, errors.New("degraded")), 3, "prog: degraded\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var gotArgs []string
			run := func(_ context.Context, args []string, o, e io.Writer) error {
				gotArgs = args
				if o != &stdout || e != &stderr {
					t.Error("run did not get the streams Exec was given")
				}
				return tc.err
			}
			code := Exec(context.Background(), "prog", run, []string{"a", "b"}, &stdout, &stderr)
			if code != tc.code || stderr.String() != tc.stderr || stdout.Len() != 0 {
				t.Errorf("exit %d, stderr %q, stdout %q; want %d, %q", code, stderr.String(), stdout.String(), tc.code, tc.stderr)
			}
			if strings.Join(gotArgs, " ") != "a b" {
				t.Errorf("run got args %q", gotArgs)
			}
		})
	}
}

// TestParseFlags runs a small program through Exec: flag mistakes and
// stray arguments exit 2 with the flag package's usage text, -h exits 0
// with it.
func TestParseFlags(t *testing.T) {
	run := func(maxArgs int) RunFunc {
		return func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := flag.NewFlagSet("prog", flag.ContinueOnError)
			fs.SetOutput(stderr)
			fs.Int("n", 1, "a `NUMBER`")
			return ParseFlags(fs, args, maxArgs)
		}
	}
	tests := []struct {
		args    []string
		maxArgs int
		code    int
		want    []string
	}{
		{nil, 0, 0, nil},
		{[]string{"-n", "3"}, 0, 0, nil},
		{[]string{"-h"}, 0, 0, []string{"Usage of prog", "-n NUMBER"}},
		{[]string{"-help"}, 0, 0, []string{"-n NUMBER"}},
		{[]string{"-bogus"}, 0, 2, []string{"flag provided but not defined: -bogus", "-n NUMBER", "prog: flag provided but not defined: -bogus\n"}},
		{[]string{"-n", "x"}, 0, 2, []string{`invalid value "x" for flag -n`, "-n NUMBER"}},
		{[]string{"extra"}, 0, 2, []string{`prog: unexpected argument "extra"`}},
		{[]string{"a", "b"}, 1, 2, []string{`prog: unexpected argument "b"`}},
		{[]string{"a", "b", "c"}, -1, 0, nil},
	}
	for _, tc := range tests {
		// A run that returns ParseFlags' error says its status itself.
		err := run(tc.maxArgs)(context.Background(), tc.args, io.Discard, io.Discard)
		if got := Code(err, ExitOK); got != tc.code {
			t.Errorf("%q: Code(%v) = %d, want %d", tc.args, err, got, tc.code)
		}
		var stderr bytes.Buffer
		code := Exec(context.Background(), "prog", run(tc.maxArgs), tc.args, io.Discard, &stderr)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, tc.code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: stderr lacks %q:\n%s", tc.args, w, stderr.String())
			}
		}
		if tc.want == nil && stderr.Len() != 0 {
			t.Errorf("%q: stderr %q, want nothing", tc.args, stderr.String())
		}
	}
}

func TestLogFlags(t *testing.T) {
	tests := []struct {
		args []string
		want slog.Level
		err  string
	}{
		{nil, slog.LevelInfo, ""},
		{[]string{"-v"}, slog.LevelDebug, ""},
		{[]string{"--verbose"}, slog.LevelDebug, ""},
		{[]string{"-v=false"}, slog.LevelInfo, ""},
		{[]string{"-log-level", "debug"}, slog.LevelDebug, ""},
		{[]string{"-log-level", "WARN"}, slog.LevelWarn, ""},
		{[]string{"--log-level=error"}, slog.LevelError, ""},
		{[]string{"-log-level", "warn+2"}, slog.LevelWarn + 2, ""},
		{[]string{"-v", "-log-level", "error"}, slog.LevelError, ""},
		{[]string{"-log-level", "error", "-v"}, slog.LevelDebug, ""},
		{[]string{"-log-level", "loud"}, 0, `log level "loud": want debug, info, warn or error`},
		{[]string{"-v=maybe"}, 0, "want true or false"},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		l := LogFlags(fs, "v", "verbose")
		err := fs.Parse(tc.args)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case l.Level() != tc.want:
			t.Errorf("%q: level %v, want %v", tc.args, l.Level(), tc.want)
		}
	}
}

func TestLogger(t *testing.T) {
	tests := []struct {
		args      []string
		debug     bool
		infoShown bool
	}{
		{nil, false, true},
		{[]string{"-v"}, true, true},
		{[]string{"-log-level", "warn"}, false, false},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		l := LogFlags(fs, "v")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		log := l.Logger(&buf)
		log.Debug("dbg")
		log.Info("inf")
		if got := strings.Contains(buf.String(), "level=DEBUG msg=dbg"); got != tc.debug {
			t.Errorf("%q: debug line shown %v:\n%s", tc.args, got, buf.String())
		}
		if got := strings.Contains(buf.String(), "level=INFO msg=inf"); got != tc.infoShown {
			t.Errorf("%q: info line shown %v:\n%s", tc.args, got, buf.String())
		}
		// The ring keeps what the log shows, line for line.
		lines, _, _ := l.Ring().Since(0, 0)
		var ring strings.Builder
		for _, ln := range lines {
			ring.WriteString(ln.Line + "\n")
		}
		if ring.String() != buf.String() {
			t.Errorf("%q: ring holds\n%s\nthe log\n%s", tc.args, ring.String(), buf.String())
		}
	}
	// The usage text names the flag and its levels.
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	LogFlags(fs, "v")
	fs.PrintDefaults()
	if !strings.Contains(buf.String(), "-log-level LEVEL") || !strings.Contains(buf.String(), "debug logging") {
		t.Errorf("usage:\n%s", buf.String())
	}
}

// TestSignalContext sends the test process SIGINT and SIGTERM: each
// cancels the context with the signal as its cause.
func TestSignalContext(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, stop := SignalContext(context.Background())
			defer stop()
			if Signal(ctx) != nil {
				t.Fatal("Signal of a live context is not nil")
			}
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("%v did not cancel the context", sig)
			}
			if got := Signal(ctx); got != sig {
				t.Fatalf("Signal = %v, want %v", got, sig)
			}
			var se *SignalError
			if !errors.As(context.Cause(ctx), &se) || se.Error() != "received "+sig.String() {
				t.Fatalf("cause %v", context.Cause(ctx))
			}
		})
	}
	// stop ends the context without naming a signal.
	ctx, stop := SignalContext(context.Background())
	stop()
	if ctx.Err() == nil || Signal(ctx) != nil {
		t.Fatalf("after stop: %v, signal %v", ctx.Err(), Signal(ctx))
	}
	// A parent's end ends it too.
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop = SignalContext(parent)
	defer stop()
	cancel()
	<-ctx.Done()
	if Signal(ctx) != nil {
		t.Fatalf("signal %v after the parent ended", Signal(ctx))
	}
}

// TestCatch checks that a signal caught before Handle runs waits for it
// (rather than taking its default action), and that Stop ends Handle.
func TestCatch(t *testing.T) {
	tests := []struct {
		name string
		sigs []syscall.Signal
	}{
		{"one", []syscall.Signal{syscall.SIGUSR1}},
		{"two kinds in order", []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sigs []os.Signal
			for _, s := range tc.sigs {
				sigs = append(sigs, s)
			}
			c := Catch(sigs...)
			defer c.Stop()
			got := make(chan os.Signal, len(sigs))
			for _, s := range tc.sigs {
				if err := syscall.Kill(os.Getpid(), s); err != nil {
					t.Fatal(err)
				}
				// One at a time: the kernel does not order different
				// pending signals.
				testutil.WaitFor(t, "the signal queued", 10*time.Second, func() bool { return len(c.ch) > 0 || len(got) > 0 })
				ctx, cancel := context.WithCancel(context.Background())
				go c.Handle(ctx, func(s os.Signal) { got <- s; cancel() })
				select {
				case g := <-got:
					if g != s {
						t.Fatalf("handled %v, want %v", g, s)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%v not handled", s)
				}
			}
			done := make(chan struct{})
			go func() { c.Handle(context.Background(), func(os.Signal) {}); close(done) }()
			c.Stop()
			c.Stop()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Handle did not return after Stop")
			}
		})
	}
}

// mainEnv makes the test binary run Main instead of the tests.
const mainEnv = "TICKBOX_CLI_MAIN"

func TestMain(m *testing.M) {
	switch os.Getenv(mainEnv) {
	case "":
		os.Exit(m.Run())
	case "wait":
		// Serves until SIGINT/SIGTERM, then says which one came.
		Main("waiter", func(ctx context.Context, args []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "ready")
			<-ctx.Done()
			fmt.Fprintln(stdout, "stopped by", Signal(ctx))
			return nil
		})
	case "args":
		Main("prog", func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := flag.NewFlagSet("prog", flag.ContinueOnError)
			fs.SetOutput(stderr)
			return ParseFlags(fs, args, 0)
		})
	}
}

// TestMainProcess runs Main in a child process: a signal stops it with
// status 0; a usage error exits 2 with the message on stderr.
func TestMainProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), mainEnv+"=wait")
			out := &testutil.LockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			testutil.WaitFor(t, "the child ready", 10*time.Second, func() bool { return strings.Contains(out.String(), "ready") })
			cmd.Process.Signal(sig)
			select {
			case err := <-done:
				if err != nil || !strings.Contains(out.String(), "stopped by "+sig.String()) {
					t.Fatalf("exit %v, output %q", err, out.String())
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("child did not stop on %v", sig)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-bogus"}, 2, "prog: flag provided but not defined: -bogus"},
		{[]string{"extra"}, 2, `prog: unexpected argument "extra"`},
		{nil, 0, ""},
	} {
		cmd := exec.Command(exe, tc.args...)
		cmd.Env = append(os.Environ(), mainEnv+"=args")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("%q: exit %d, output %q; want %d with %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}
