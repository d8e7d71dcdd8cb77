package dgram

import (
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
)

// dgFixture is a daemon with test commands behind a datagram socket.
type dgFixture struct {
	logs *testutil.Logs
	srv  *ctl.Server
	dg   *Server
	path string

	mu    sync.Mutex
	calls []string // "name:arg1,arg2" in run order
}

func (f *dgFixture) record(name string, args ...string) {
	f.mu.Lock()
	f.calls = append(f.calls, name+":"+strings.Join(args, ","))
	f.mu.Unlock()
}

func (f *dgFixture) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func newDGFixture(t testing.TB, opts Options, extra ...*ctl.Command) *dgFixture {
	t.Helper()
	f := &dgFixture{logs: testutil.NewLogs()}
	var h slog.Handler = f.logs
	if _, bench := t.(*testing.B); bench {
		h = slog.DiscardHandler // keeping b.N records would skew the numbers
	}
	d := ctl.NewRegistry(ctl.Options{Name: "test", Logger: slog.New(h)})
	d.MustRegister(
		&ctl.Command{Name: "echo", AnyArgs: true, Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			var args []string
			for i := 0; ; i++ {
				v, ok := c.Args.Any()[strconv.Itoa(i)]
				if !ok {
					break
				}
				args = append(args, v.(string))
			}
			f.record("echo", args...)
			return ctl.OK(strings.Join(args, " "), nil)
		}},
		&ctl.Command{Name: "exit", Handler: func(context.Context, *ctl.Call) ctl.Result {
			f.record("exit")
			return ctl.OK("exiting", nil)
		}},
		&ctl.Command{Name: "set", Params: []ctl.Param{
			{Name: "phy", Type: ctl.Int, Required: true, Ranged: true, Min: 0, Max: 31},
			{Name: "mode", Type: ctl.String, Choices: []string{"fast", "slow"}, Default: "fast"},
		}, Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			f.record("set", strconv.FormatInt(c.Args.Int("phy"), 10), c.Args.String("mode"))
			fmt.Fprintf(c.Out, "set phy %d\n", c.Args.Int("phy"))
			return ctl.OK("done", nil)
		}},
		&ctl.Command{Name: "rec", Params: []ctl.Param{{Name: "n", Type: ctl.Int, Required: true}}, Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			f.record("rec", strconv.FormatInt(c.Args.Int("n"), 10))
			return ctl.OK("", nil)
		}},
		&ctl.Command{Name: "block_clock", Params: []ctl.Param{
			{Name: "on", Type: ctl.Bool, Required: true},
			{Name: "clocks", Type: ctl.String, Rest: true},
		}, Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
			f.record("block_clock", append([]string{strconv.FormatBool(c.Args.Bool("on"))}, c.Args.Rest()...)...)
			return ctl.OK("", nil)
		}},
		&ctl.Command{Name: "fail", Handler: func(context.Context, *ctl.Call) ctl.Result {
			f.record("fail")
			return ctl.Fail("it broke")
		}},
		&ctl.Command{Name: "watch", Stream: true, Handler: func(ctx context.Context, c *ctl.Call) ctl.Result {
			f.record("watch")
			<-ctx.Done()
			return ctl.OK("", nil)
		}},
	)
	d.MustRegister(extra...)
	f.srv = ctl.NewServer(d)
	f.path = filepath.Join(testutil.ShortDir(t), "control-v1.sock")
	dg, err := Serve(f.srv, ctl.SocketSpec{Addr: f.path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.dg = dg
	ctltest.CloseOnCleanup(t, f.srv)
	return f
}

// processed is the number of datagrams fully handled.
func (s Stats) processed() uint64 { return s.Run + s.Failed + s.Rejected + s.Dropped }

func (f *dgFixture) waitProcessed(t testing.TB, n uint64) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%d datagrams processed", n), 5*time.Second, func() bool { return f.dg.Stats().processed() >= n })
}

// sendRaw sends one datagram with its own socket, bypassing Send.
func dgSendRaw(t testing.TB, path string, b []byte) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestDgramConformance(t *testing.T) {
	exact127 := "echo=" + strings.Repeat("x", MaxLen-len("echo="))
	tests := []struct {
		name  string
		dgram []byte
		calls []string // expected handler calls
		msg   string   // a log message that must appear
		attrs map[string]string
		stats Stats
	}{
		{name: "plain", dgram: []byte("exit"), calls: []string{"exit:"}, msg: "control: command run",
			attrs: map[string]string{"command": "exit", "text": "exiting"}, stats: Stats{Received: 1, Run: 1}},
		{name: "params", dgram: []byte("echo=a,b"), calls: []string{"echo:a,b"}, msg: "control: command run",
			attrs: map[string]string{"command": "echo", "text": "a b"}, stats: Stats{Received: 1, Run: 1}},
		{name: "zero-param command ignores parameters", dgram: []byte("exit=now"), calls: []string{"exit:"},
			msg: "control: ignoring parameters of a command that takes none", stats: Stats{Received: 1, Run: 1}},
		{name: "trailing newline", dgram: []byte("echo=a\n"), calls: []string{"echo:a"}, msg: "control: command run",
			stats: Stats{Received: 1, Run: 1}},
		{name: "typed params", dgram: []byte("set=0x1f,slow"), calls: []string{"set:31,slow"}, msg: "control: command run",
			attrs: map[string]string{"output": "set phy 31\n"}, stats: Stats{Received: 1, Run: 1}},
		{name: "rest params", dgram: []byte("block_clock=1,phc0,phc1"), calls: []string{"block_clock:true,phc0,phc1"},
			msg: "control: command run", stats: Stats{Received: 1, Run: 1}},
		{name: "empty param part", dgram: []byte("set="), msg: "control: command failed",
			attrs: map[string]string{"text": "set: parameter 'phy' is missing"}, stats: Stats{Received: 1, Failed: 1}},
		{name: "param out of range", dgram: []byte("set=32"), msg: "control: command failed",
			attrs: map[string]string{"text": "set: parameter 'phy' out of range: 32 not in 0..31", "result": "1"},
			stats: Stats{Received: 1, Failed: 1}},
		{name: "bad choice", dgram: []byte("set=1,medium"), msg: "control: command failed",
			attrs: map[string]string{"text": `set: parameter 'mode' must be one of fast|slow, got "medium"`},
			stats: Stats{Received: 1, Failed: 1}},
		{name: "too many params", dgram: []byte("rec=1,2"), msg: "control: command failed",
			stats: Stats{Received: 1, Failed: 1}},
		{name: "handler failure", dgram: []byte("fail"), calls: []string{"fail:"}, msg: "control: command failed",
			attrs: map[string]string{"text": "it broke"}, stats: Stats{Received: 1, Failed: 1}},
		{name: "unknown", dgram: []byte("bogus=1,2"), msg: "control: unknown command bogus received",
			stats: Stats{Received: 1, Failed: 1}},
		{name: "unknown with newline", dgram: []byte("frob\n"), msg: "control: unknown command frob received",
			stats: Stats{Received: 1, Failed: 1}},
		{name: "streaming", dgram: []byte("watch"), msg: "control: command streams its output and cannot run over the datagram socket; use the console",
			stats: Stats{Received: 1, Failed: 1}},
		{name: "empty", dgram: []byte{}, msg: "control: empty datagram; ignored", stats: Stats{Received: 1, Rejected: 1}},
		{name: "only newline", dgram: []byte("\n"), msg: "control: empty datagram; ignored", stats: Stats{Received: 1, Rejected: 1}},
		{name: "127 bytes accepted", dgram: []byte(exact127), calls: []string{"echo:" + exact127[5:]},
			msg: "control: command run", stats: Stats{Received: 1, Run: 1}},
		{name: "128 bytes rejected", dgram: []byte(exact127 + "y"), msg: "control: over-long datagram rejected",
			attrs: map[string]string{"len": "128"}, stats: Stats{Received: 1, Rejected: 1}},
		{name: "64 KiB rejected", dgram: append([]byte("exit="), bytes.Repeat([]byte("z"), 64<<10-5)...),
			msg: "control: over-long datagram rejected", attrs: map[string]string{"len": "65536"}, stats: Stats{Received: 1, Rejected: 1}},
		{name: "over 64 KiB truncated by the kernel and rejected", dgram: append([]byte("exit="), bytes.Repeat([]byte("z"), 100<<10)...),
			msg: "control: over-long datagram rejected", attrs: map[string]string{"len": "more than 65536"}, stats: Stats{Received: 1, Rejected: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDGFixture(t, Options{})
			dgSendRaw(t, f.path, tc.dgram)
			f.waitProcessed(t, 1)
			if got := f.dg.Stats(); got != tc.stats {
				t.Errorf("stats = %+v, want %+v", got, tc.stats)
			}
			if got := f.callList(); strings.Join(got, "|") != strings.Join(tc.calls, "|") {
				t.Errorf("calls = %q, want %q", got, tc.calls)
			}
			recs := f.logs.Find(tc.msg)
			if len(recs) != 1 {
				t.Fatalf("want one %q log line; logs:\n%s", tc.msg, f.logs.Dump())
			}
			for k, v := range tc.attrs {
				if recs[0].Attrs[k] != v {
					t.Errorf("log attr %s = %q, want %q", k, recs[0].Attrs[k], v)
				}
			}
			if recs[0].Attrs["frontend"] != "dgram" {
				t.Errorf("log line lacks frontend=dgram: %v", recs[0].Attrs)
			}
		})
	}
}

// TestDgramManyInOrder sends datagrams as fast as one client can write
// them. A client writes faster than commands run (a write is a syscall,
// a command a registry call plus a log line), so a burst is absorbed by
// the in-process queue; the first case uses the default queue with a
// burst that fits it, the second a queue sized for 10,000.
func TestDgramManyInOrder(t *testing.T) {
	for _, tc := range []struct {
		n     int
		queue int
	}{
		{n: DefaultQueue, queue: 0},
		{n: 10000, queue: 10000},
	} {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			t.Parallel()
			dgManyInOrder(t, tc.n, tc.queue)
		})
	}
}

func dgManyInOrder(t *testing.T, n, queue int) {
	f := newDGFixture(t, Options{QueueLen: queue})
	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = "rec=" + strconv.Itoa(i)
	}
	if err := Send(f.path, cmds...); err != nil {
		t.Fatal(err)
	}
	f.waitProcessed(t, uint64(n))
	st := f.dg.Stats()
	if st != (Stats{Received: uint64(n), Run: uint64(n)}) {
		t.Fatalf("stats = %+v, want all %d run", st, n)
	}
	calls := f.callList()
	for i, c := range calls {
		if c != "rec:"+strconv.Itoa(i) {
			t.Fatalf("call %d = %q: out of order", i, c)
		}
	}
}

// TestDgramQueueFullBackpressure blocks the executor and checks that a
// full in-process queue makes the reader wait, so the kernel queue fills
// and the client's writes block, instead of losing commands; every
// command then runs, in order.
func TestDgramQueueFullBackpressure(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	block := &ctl.Command{Name: "block", Handler: func(context.Context, *ctl.Call) ctl.Result {
		started <- struct{}{}
		<-release
		return ctl.OK("", nil)
	}}
	f := newDGFixture(t, Options{QueueLen: 2}, block)
	if err := Send(f.path, "block"); err != nil {
		t.Fatal(err)
	}
	<-started
	// Far more than the kernel queue (net.unix.max_dgram_qlen, 10 by
	// default) plus the in-process queue hold: the sender must block.
	const n = 600
	cmds := make([]string, n)
	for i := range cmds {
		cmds[i] = "rec=" + strconv.Itoa(i)
	}
	sent := make(chan error, 1)
	go func() { sent <- Send(f.path, cmds...) }()
	testutil.WaitFor(t, "reader stalled on the full queue", 5*time.Second, func() bool { return f.dg.Stats().Stalls >= 1 })
	select {
	case err := <-sent:
		t.Fatalf("sender finished while the executor was blocked (err %v): datagrams were not held back", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	f.waitProcessed(t, n+1)
	st := f.dg.Stats()
	if st.Run != n+1 || st.Dropped != 0 || st.Received != n+1 {
		t.Fatalf("stats = %+v, want all %d run and none dropped", st, n+1)
	}
	calls := f.callList()
	if len(calls) != n {
		t.Fatalf("%d calls, want %d", len(calls), n)
	}
	for i, c := range calls {
		if c != "rec:"+strconv.Itoa(i) {
			t.Fatalf("call %d = %q: order lost", i, c)
		}
	}
	if recs := f.logs.Find("control: command queue full; reading paused until commands complete"); len(recs) == 0 {
		t.Fatalf("missing stall log line; logs:\n%s", f.logs.Dump())
	}
}

func TestDgramSocat(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "socat", "socat")
	f := newDGFixture(t, Options{})
	cmd := exec.Command("socat", "-", "UNIX-SENDTO:"+f.path)
	cmd.Stdin = strings.NewReader("echo=a,b")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("socat: %v: %s", err, out)
	}
	// echo | socat sends a trailing newline, which is tolerated.
	sh := exec.Command("sh", "-c", `echo 'echo=c' | socat - UNIX-SENDTO:"$0"`, f.path)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("socat: %v: %s", err, out)
	}
	f.waitProcessed(t, 2)
	if got := strings.Join(f.callList(), "|"); got != "echo:a,b|echo:c" {
		t.Fatalf("calls = %q", got)
	}
}

// TestDgramCloseRunsQueued checks that Close runs the commands already
// read, and removes the socket file.
func TestDgramCloseRunsQueued(t *testing.T) {
	t.Parallel()
	f := newDGFixture(t, Options{})
	if err := Send(f.path, "rec=1", "rec=2", "rec=3"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "received", 5*time.Second, func() bool { return f.dg.Stats().Received == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.dg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.callList(), "|"); got != "rec:1|rec:2|rec:3" {
		t.Fatalf("calls = %q", got)
	}
	if _, err := os.Lstat(f.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
	if err := f.dg.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestDgramReady: commands that arrive before the daemon is ready are
// held, then run in order once it is; a front end closed before that
// drops them, counted, without waiting for its deadline.
func TestDgramReady(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ready bool // else the front end is closed while holding them
	}{
		{"ready", true},
		{"closed before ready", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ready := make(chan struct{})
			f := newDGFixture(t, Options{Ready: ready})
			if err := Send(f.path, "rec=1", "rec=2", "rec=3"); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "received", 5*time.Second, func() bool { return f.dg.Stats().Received == 3 })
			time.Sleep(50 * time.Millisecond) // a command run too early would show by now
			if got := f.callList(); len(got) != 0 {
				t.Fatalf("ran before ready: %q", got)
			}
			if tc.ready {
				close(ready)
				f.waitProcessed(t, 3)
				if got := strings.Join(f.callList(), "|"); got != "rec:1|rec:2|rec:3" {
					t.Fatalf("calls = %q", got)
				}
				return
			}
			start := time.Now()
			if err := f.dg.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("close took %s", d)
			}
			if got := f.callList(); len(got) != 0 {
				t.Fatalf("ran although never ready: %q", got)
			}
			if st := f.dg.Stats(); st.Dropped != 3 || st.Run != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestDgramHandoff checks that datagrams sent while no process reads the
// socket wait in the kernel and are run by the front end that adopts it.
func TestDgramHandoff(t *testing.T) {
	t.Parallel()
	f := newDGFixture(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hf, err := f.dg.Stop(ctx, true)
	if err != nil || hf == nil || hf.Sock == nil {
		t.Fatalf("handoff: %v %+v", err, hf)
	}
	if !hf.Owned {
		t.Error("handoff does not pass ownership of the socket file")
	}
	if err := Send(f.path, "rec=7", "rec=8"); err != nil {
		t.Fatalf("send while handed off: %v", err)
	}
	// Adopt it as the next image would.
	d2 := ctl.NewRegistry(ctl.Options{Name: "test", Logger: slog.New(f.logs)})
	var mu sync.Mutex
	var got []int64
	d2.MustRegister(&ctl.Command{Name: "rec", Params: []ctl.Param{{Name: "n", Type: ctl.Int, Required: true}}, Handler: func(_ context.Context, c *ctl.Call) ctl.Result {
		mu.Lock()
		got = append(got, c.Args.Int("n"))
		mu.Unlock()
		return ctl.OK("", nil)
	}})
	srv2 := ctl.NewServerFrom(d2, unixsock.Hold(hf.Sock, true))
	dg2, err := Serve(srv2, ctl.SocketSpec{Addr: f.path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close(ctx)
	testutil.WaitFor(t, "handed-over datagrams run", 5*time.Second, func() bool { return dg2.Stats().Run == 2 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[7 8]" {
		t.Fatalf("got %v", got)
	}
}

// TestDgramHelperProcess is not a test: it is the child process that
// dgRunAsNobody starts under another uid.
func TestDgramHelperProcess(t *testing.T) {
	action := os.Getenv("TICKBOX_CTL_TEST_HELPER")
	if action == "" {
		return // runs only as a child of another test
	}
	arg := os.Getenv("TICKBOX_CTL_TEST_ARG")
	switch action {
	case "senddgram":
		if err := Send(arg, "exit"); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
	}
	os.Exit(0)
}

// dgRunAsNobody runs TestDgramHelperProcess as uid/gid 65534 and returns
// its output. The test binary is copied to a world-readable directory
// first, because go test builds it in a private one.
func dgRunAsNobody(t *testing.T, action, arg string) string {
	t.Helper()
	testutil.NeedRoot(t, "switch to uid 65534")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ctl.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, "-test.run=^TestDgramHelperProcess$")
	cmd.Env = append(os.Environ(), "TICKBOX_CTL_TEST_HELPER="+action, "TICKBOX_CTL_TEST_ARG="+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestSendDgramErrors(t *testing.T) {
	t.Parallel()
	dir := testutil.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	missing := filepath.Join(dir, "missing.sock")

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // a datagram socket leaves its file behind

	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}

	stream := filepath.Join(dir, "stream.sock")
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stream, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()

	long := "/" + strings.Repeat("d", 120)

	tests := []struct {
		name, path, want string
		errno            error
	}{
		{"missing", missing, "connect: No such file or directory", syscall.ENOENT},
		{"stale socket", stale, "connect: Connection refused", syscall.ECONNREFUSED},
		{"regular file", regular, "connect: Connection refused", syscall.ECONNREFUSED},
		{"stream socket", stream, "connect: Protocol wrong type for socket", syscall.EPROTOTYPE},
		{"too long", long, "address too long: " + long, ErrAddressTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Send(tc.path, "exit")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !errors.Is(err, tc.errno) {
				t.Fatalf("errors.Is(%v, %v) is false", err, tc.errno)
			}
		})
	}

	t.Run("permission denied", func(t *testing.T) {
		f := newDGFixture(t, Options{})
		if err := os.Chmod(filepath.Dir(f.path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, 0); err != nil {
			t.Fatal(err)
		}
		if got := dgRunAsNobody(t, "senddgram", f.path); got != "connect: Permission denied" {
			t.Fatalf("as uid 65534: %q, want %q", got, "connect: Permission denied")
		}
		if err := os.Chmod(f.path, 0o666); err != nil {
			t.Fatal(err)
		}
		if got := dgRunAsNobody(t, "senddgram", f.path); got != "ok" {
			t.Fatalf("as uid 65534 with mode 0666: %q", got)
		}
		f.waitProcessed(t, 1)
		if got := strings.Join(f.callList(), "|"); got != "exit:" {
			t.Fatalf("calls = %q", got)
		}
	})
}

func TestStrerror(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{syscall.ENOENT, "No such file or directory"},
		{syscall.EACCES, "Permission denied"},
		{fmt.Errorf("wrapped: %w", syscall.ECONNREFUSED), "Connection refused"},
		{errors.New("plain"), "plain"},
	} {
		if got := strerror(tc.err); got != tc.want {
			t.Errorf("strerror(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseDgram(t *testing.T) {
	tests := []struct {
		in     string
		name   string
		params []string
		err    bool
	}{
		{in: "logrotate", name: "logrotate"},
		{in: "exit=now", name: "exit", params: []string{"now"}},
		{in: "pid_adjust=0.1,0.2,0.3,ptp", name: "pid_adjust", params: []string{"0.1", "0.2", "0.3", "ptp"}},
		{in: "selectinstance=a=b", name: "selectinstance", params: []string{"a=b"}},
		{in: "x=a,,b", name: "x", params: []string{"a", "", "b"}},
		{in: "x=", name: "x"},
		{in: "x\n", name: "x"},
		{in: "x\n\n", name: "x"},
		{in: "logrotate \t\r\n\v\f", name: "logrotate"},
		{in: "pid_adjust=,0.05\n", name: "pid_adjust", params: []string{"", "0.05"}},
		{in: "block_clock=1,system \n", name: "block_clock", params: []string{"1", "system"}},
		{in: " logrotate", name: " logrotate"},
		{in: "block_clock=1, system", name: "block_clock", params: []string{"1", " system"}},
		{in: "stepclocks\x00junk", name: "stepclocks"},
		{in: "testmode=no_sync_pkts\n\x00\n", name: "testmode", params: []string{"no_sync_pkts"}},
		{in: "\x00logrotate", err: true},
		{in: " \n\t", err: true},
		{in: "=a", name: "", params: []string{"a"}},
		{in: "", err: true},
		{in: "\n", err: true},
		{in: strings.Repeat("a", MaxLen), name: strings.Repeat("a", MaxLen)},
		{in: strings.Repeat("a", MaxLen+1), err: true},
	}
	for _, tc := range tests {
		name, params, err := Parse([]byte(tc.in))
		if (err != nil) != tc.err {
			t.Errorf("Parse(%q) err = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if name != tc.name || fmt.Sprintf("%q", params) != fmt.Sprintf("%q", tc.params) {
			t.Errorf("Parse(%q) = %q %q, want %q %q", tc.in, name, params, tc.name, tc.params)
		}
	}
}

// re joins a parsed datagram back into its text.
func re(name string, params []string) string {
	if params != nil {
		return name + "=" + strings.Join(params, ",")
	}
	return name
}

// FuzzDgram checks the datagram parser's invariants, and that a datagram
// over the limit never runs a command end to end.
func FuzzDgram(f *testing.F) {
	f.Add([]byte("exit"))
	f.Add([]byte("echo=a,b"))
	f.Add([]byte(""))
	f.Add([]byte(strings.Repeat("x", 200)))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, params, err := Parse(b)
		if len(b) > MaxLen {
			if err == nil {
				t.Fatalf("over-long datagram of %d bytes parsed", len(b))
			}
			return
		}
		trimmed := b
		if i := bytes.IndexByte(trimmed, 0); i >= 0 {
			trimmed = trimmed[:i]
		}
		trimmed = bytes.TrimRight(trimmed, " \t\r\n\v\f")
		if len(trimmed) == 0 {
			if err == nil {
				t.Fatal("empty datagram parsed")
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", b, err)
		}
		if strings.Contains(name, "=") {
			t.Fatalf("name %q contains '='", name)
		}
		if strings.ContainsRune(name, 0) || strings.TrimRight(re(name, params), " \t\r\n\v\f") != re(name, params) {
			t.Fatalf("NUL or trailing white space survived: %q %q", name, params)
		}
		// Round trip: joining the parts gives the trimmed datagram back.
		if j := re(name, params); j != string(trimmed) && j+"=" != string(trimmed) {
			t.Fatalf("round trip %q -> %q %q -> %q", b, name, params, j)
		}
		total := len(name)
		for _, p := range params {
			total += len(p)
		}
		if total > len(b) {
			t.Fatalf("output larger than input")
		}
	})
}

// BenchmarkDgram measures end-to-end datagram commands per second with
// the default queue. The sender keeps at most half the in-process queue
// outstanding so that no datagram is dropped; any loss fails it.
func BenchmarkDgram(b *testing.B) {
	fx := newDGFixture(b, Options{})
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: fx.path, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	before := fx.dg.Stats()
	msg := []byte("rec=1")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for uint64(i)-(fx.dg.Stats().processed()-before.processed()) > DefaultQueue/2 {
			time.Sleep(10 * time.Microsecond)
		}
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	want := before.Run + uint64(b.N)
	for fx.dg.Stats().processed()-before.processed() < uint64(b.N) {
		time.Sleep(10 * time.Microsecond)
	}
	b.StopTimer()
	st := fx.dg.Stats()
	if st.Run != want || st.Dropped != 0 {
		b.Fatalf("lost datagrams: %+v, want %d run", st, want)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "dgrams/s")
}
