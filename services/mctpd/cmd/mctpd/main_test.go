package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

type daemon struct {
	running
	name string
	kea  string
	log  *testutil.LockedBuffer
	// stop ends the daemon and waits for it; it is safe to call twice.
	stop func()
}

// start runs mctpd with the null binding on a random demux name.
func start(t *testing.T, extra ...string) *daemon {
	t.Helper()
	return startBinding(t, []string{"null"}, extra...)
}

// startBinding runs mctpd with the given binding and its parameters.
func startBinding(t *testing.T, bind []string, extra ...string) *daemon {
	t.Helper()
	name := "mctpd-test-" + rand.Text()[:10]
	dir := testutil.ShortDir(t)
	d := &daemon{name: name, kea: filepath.Join(dir, "k.sock"), log: &testutil.LockedBuffer{}}
	args := append([]string{"-demux", name, "-kea", d.kea, "-state", filepath.Join(dir, "state")}, extra...)
	args = append(args, bind...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan running, 1)
	done := make(chan error, 1)
	go func() { done <- (hooks{ready: func(r running) { ready <- r }}).run(ctx, args, io.Discard, d.log) }()
	select {
	case d.running = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("mctpd: %v\n%s", err, d.log)
	}
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("mctpd: %v", err)
			}
		})
	}
	t.Cleanup(d.stop)
	return d
}

func dial(t *testing.T, d *daemon, typ byte) *demux.Conn {
	t.Helper()
	c, err := demux.Dial(d.name, typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// registered waits until the demux has n clients of typ: registration
// has no reply, so a test must not send before it took effect.
func registered(t *testing.T, d *daemon, typ byte, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if d.demux.Stats().Clients[typ] == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("clients of type %d: %d, want %d", typ, d.demux.Stats().Clients[typ], n)
}

func recvMsg(t *testing.T, c *demux.Conn) (byte, byte, []byte) {
	t.Helper()
	a, ty, b, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return a, ty, b
}

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-e", "0", "null"}, 2, "not a valid local EID"},
		{[]string{"-bogus", "null"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"-log-level", "loud", "null"}, 2, `invalid value "loud" for flag -log-level`},
		{[]string{"-e", "7", "null"}, 2, "not a valid local EID"},
		{[]string{"-e", "255", "null"}, 2, "not a valid local EID"},
		{[]string{"-e", "300", "null"}, 2, "not a valid local EID"},
		{[]string{"bogus"}, 2, `unknown binding "bogus"`},
		{[]string{}, 2, "no binding"},
		{[]string{"null", "x"}, 2, "takes no parameters"},
		{[]string{"-route", "9=serial", "null"}, 2, `no binding "serial"`},
		{[]string{"-route", "x=null", "null"}, 2, "route"},
		{[]string{"serial"}, 2, "binding serial needs a DEVICE"},
		{[]string{"serial", "/dev/x", "-baud", "0"}, 2, "want serial DEVICE [-baud N]"},
		{[]string{"serial", "/dev/x", "extra"}, 2, "want serial DEVICE [-baud N]"},
		{[]string{"serial", "/dev/x", "-mtu", "63"}, 2, "-mtu 63: want 64 (the baseline, the default) to 251"},
		{[]string{"serial", "/dev/x", "-mtu", "252"}, 2, "-mtu 252: want 64"},
		{[]string{"serial", "/dev/x", "-mtu", "0"}, 2, "-mtu 0: want 64"},
		{[]string{"serial", "/dev/x", "-mtu", "-5"}, 2, "-mtu -5: want 64"},
		{[]string{"serial", "/dev/x", "-mtu", "big"}, 2, "want serial DEVICE [-baud N] [-mtu N]"},
		{[]string{"serial", "/dev/x", "-mtu"}, 2, "want serial DEVICE [-baud N] [-mtu N]"},
		{[]string{"null", "+", "serial", "/dev/x", "-mtu", "300"}, 2, "-mtu 300"},
		{[]string{"i2c", "1"}, 2, "want i2c BUS ADDR [OWN]"},
		{[]string{"i2c", "1", "0x7f"}, 2, "want a 7-bit address"},
		{[]string{"i2c", "1", "0x1d", "zz"}, 2, "OWN"},
		{[]string{"null", "+", "null"}, 2, "binding null given twice"},
		{[]string{"serial", "/dev/x", "+", "serial", "/dev/x", "-baud", "9600"}, 2, "binding serial:/dev/x given twice"},
		{[]string{"+"}, 2, "empty binding before '+'"},
		{[]string{"+", "null"}, 2, "empty binding before '+'"},
		{[]string{"null", "+"}, 2, "empty binding after the last '+'"},
		{[]string{"null", "+", "+", "serial", "/dev/x"}, 2, "empty binding before '+'"},
		{[]string{"null", "+", "serial"}, 2, "binding serial needs a DEVICE"},
		{[]string{"null", "+", "bogus"}, 2, `unknown binding "bogus"`},
		{[]string{"-route", "9=serial:/dev/z", "null", "+", "serial", "/dev/x"}, 2, `no binding "serial:/dev/z" (bindings: null, serial:/dev/x)`},
	} {
		err := hooks{}.run(context.Background(), tc.args, io.Discard, io.Discard)
		var ee *cli.ExitError
		if !errors.As(err, &ee) || ee.Code != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want exit %d with %q", tc.args, err, tc.code, tc.msg)
		}
	}
}

func TestLoopback(t *testing.T) {
	d := start(t)
	a, b, other := dial(t, d, 1), dial(t, d, 1), dial(t, d, 0x81)
	registered(t, d, 1, 2)
	registered(t, d, 0x81, 1)
	if err := a.Send(8, []byte{0x11, 0x22}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*demux.Conn{a, b} {
		src, typ, body := recvMsg(t, c)
		if src != 8 || typ != 1 || !bytes.Equal(body, []byte{0x11, 0x22}) {
			t.Errorf("got %d %d % x", src, typ, body)
		}
	}
	// 0x81 is not type 1: that client sees nothing.
	other.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, _, err := other.Recv(); err == nil {
		t.Error("type 0x81 client got a type 1 message")
	}
	// A remote destination over the null binding is refused and counted.
	if err := a.Send(9, []byte{1}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the send-error drop", 5*time.Second, func() bool { return d.router.Stats().Drops["send-error"] == 1 })
}

func TestControl(t *testing.T) {
	d := start(t, "-e", "9")
	c := dial(t, d, 0x80)
	dial(t, d, 1)
	dial(t, d, 0x7e)
	registered(t, d, 0x7e, 1)
	registered(t, d, 1, 1)
	for _, tc := range []struct{ req, resp string }{
		{"8002", "0002000901 00"},
		{"8305", "0305000300017e"},
		{"8404ff", "040400 04 f1f0ff00 f1f1ff00 f1f2ff00 f1f3f300"},
		{"8599", "059905"},
		{"86010010", "0601000010 00"},
		{"8702", "070200100100"},
		// Reserved bit 5 of the instance byte is not echoed (libmctp
		// masks it with 0x1f).
		{"a802", "080200100100"},
	} {
		req, _ := hex.DecodeString(tc.req)
		eid := d.router.EID()
		if err := c.SendType(eid, 0, req); err != nil {
			t.Fatal(err)
		}
		src, typ, body := recvMsg(t, c)
		want, _ := hex.DecodeString(strings.ReplaceAll(tc.resp, " ", ""))
		if typ != 0x80 || src != eid || !bytes.Equal(body, want) {
			t.Errorf("%s: from %d type %d % x, want % x", tc.req, src, typ, body, want)
		}
	}
	if d.router.EID() != 0x10 {
		t.Errorf("EID %d after Set EID", d.router.EID())
	}
}

func TestKea(t *testing.T) {
	d := start(t)
	dial(t, d, 2)
	registered(t, d, 2, 1)
	m := testutil.KeaCommand(t, d.kea, "endpoints-get", nil)
	a := m["arguments"].(map[string]any)
	if a["eid"] != 8.0 || len(a["uuid"].(string)) != 36 || a["types"].([]any)[0] != 2.0 {
		t.Errorf("endpoints-get: %v", m)
	}
	m = testutil.KeaCommand(t, d.kea, "routes-get", nil)
	if r := m["arguments"].(map[string]any)["routes"].([]any); len(r) != 1 || r[0].(map[string]any)["binding"] != "null" {
		t.Errorf("routes-get: %v", m)
	}
	m = testutil.KeaCommand(t, d.kea, "eid-set", map[string]any{"eid": 20})
	if m["result"] != 0.0 || d.router.EID() != 20 {
		t.Errorf("eid-set: %v", m)
	}
	m = testutil.KeaCommand(t, d.kea, "eid-set", map[string]any{"eid": 5})
	if m["result"] == 0.0 || d.router.EID() != 20 {
		t.Errorf("eid-set 5: %v", m)
	}
	m = testutil.KeaCommand(t, d.kea, "stats-get", nil)
	st := m["arguments"].(map[string]any)
	if _, ok := st["mctp"].(map[string]any)["drops"]; !ok {
		t.Errorf("stats-get: %v", m)
	}
	if st["demux"].(map[string]any)["clients"].(map[string]any)["2"] != 1.0 {
		t.Errorf("stats-get clients: %v", st["demux"])
	}
}

// A client that stops reading is disconnected; another client of the
// same type still receives every message.
func TestSlowClient(t *testing.T) {
	d := start(t)
	slow, fast := dial(t, d, 5), dial(t, d, 5)
	sender := dial(t, d, 6)
	registered(t, d, 5, 2)
	const n = 3000
	body := bytes.Repeat([]byte{0xaa}, 1000)
	got := make(chan int, 1)
	var received atomic.Int64
	go func() {
		i := 0
		for ; i < n; i++ {
			if _, _, _, err := fast.Recv(); err != nil {
				break
			}
			received.Add(1)
		}
		got <- i
	}()
	for i := 0; i < n; i++ {
		// Keep within what a reading client's queue holds, so only the
		// client that does not read overflows.
		for wait := 0; int64(i)-received.Load() > 200; wait++ {
			if wait > 5000 {
				t.Fatalf("fast client stalled at %d of %d", received.Load(), i)
			}
			time.Sleep(time.Millisecond)
		}
		if err := sender.SendType(8, 5, body); err != nil {
			t.Fatal(err)
		}
	}
	if g := <-got; g != n {
		t.Fatalf("fast client got %d of %d", g, n)
	}
	if d.demux.Stats().Overflows != 1 {
		t.Errorf("overflows %d", d.demux.Stats().Overflows)
	}
	_ = slow
}

// Floods of registrations and malformed datagrams leave the daemon
// serving.
func TestAbuse(t *testing.T) {
	d := start(t)
	for i := 0; i < 200; i++ {
		c, err := demux.Dial(d.name, byte(i%255+1))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	addr := &net.UnixAddr{Name: "@" + d.name, Net: "unixpacket"}
	for _, dgrams := range [][][]byte{
		{{}},                       // zero-length registration
		{{0}},                      // type 0 then close
		{{1}, {}},                  // disconnect by empty datagram
		{{1}, {8}},                 // short message
		{{1}, make([]byte, 70000)}, // over the maximum
		{{1, 2, 3}, {8, 1, 0xff}},  // registration with junk, then a message
	} {
		c, err := net.DialUnix("unixpacket", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range dgrams {
			if _, err := c.Write(g); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Logf("write: %v", err)
			}
		}
		c.Close()
	}
	c := dial(t, d, 0x80)
	registered(t, d, 0x80, 1)
	if err := c.SendType(8, 0, []byte{0x80, 0x02}); err != nil {
		t.Fatal(err)
	}
	if _, _, body := recvMsg(t, c); !bytes.Equal(body, []byte{0x00, 0x02, 0x00, 0x08, 0x01, 0x00}) {
		t.Fatalf("get-eid after abuse: % x", body)
	}
}

// TestSerialPair runs two mctpd, EIDs 8 and 9, on the two ends of a socat
// pty pair: demux clients exchange messages of every size class byte-exact
// in both directions, and a control request reaches the far responder.
func TestSerialPair(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	c8, c9 := dial(t, d8, 5), dial(t, d9, 5)
	registered(t, d8, 5, 1)
	registered(t, d9, 5, 1)
	exchange(t, end{c8, 8}, end{c9, 9}, []int{2, 63, 64, 65, 1000, 65536}, d8, d9)

	// Get EID from the far endpoint, through the local demux.
	ctrl := dial(t, d8, 0x80)
	registered(t, d8, 0x80, 1)
	if err := ctrl.SendType(9, 0x00, []byte{0x80 | 0x03, 0x02}); err != nil {
		t.Fatal(err)
	}
	src, typ, got, err := ctrl.Recv()
	if err != nil {
		t.Fatalf("get-eid reply: %v", err)
	}
	// Control replies reach the clients registered for 0x80
	// (mctp.TypeControlReplies): type 0 registration closes a socket.
	if want := []byte{0x03, 0x02, 0x00, 0x09, 0x01, 0x00}; src != 9 || typ != 0x80 || !bytes.Equal(got, want) {
		t.Fatalf("get-eid reply: src %d type %#x % x, want src 9 type 0x80 % x", src, typ, got, want)
	}

	// The mctp CLI reads the far endpoint's EID, versions, message types
	// (control plus the type its demux client registered) and persistent
	// UUID across the serial line.
	tool := mctpTool(t)
	for _, tc := range []struct{ cmd, want string }{
		{"get-eid", "eid 9 type 0x01 medium 0x00\n"},
		{"get-version", "1.0\n1.1\n1.2\n1.3.3\n"},
		{"get-types", "types 0 5\n"},
		{"get-uuid", "uuid " + mctp.FormatUUID(d9.router.UUID()) + "\n"},
	} {
		out, err := exec.Command(tool, "-demux", d8.name, "ctrl", tc.cmd, "-eid", "9", "-timeout", "5s").CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("mctp ctrl %s -eid 9: %v: %q, want %q", tc.cmd, err, out, tc.want)
		}
	}
}

// TestSerialPairMTU runs two mctpd with -mtu 251 on a pty pair: messages
// of 2 to 65536 bytes, sizes around each packet boundary and the 122-byte
// payload whose packet's byte count is 7E among them, arrive byte-exact
// both ways, in as few packets as the larger MTU allows.
func TestSerialPairMTU(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a, "-mtu", "251"}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b, "-baud", "9600", "-mtu", "251"}, "-e", "9")
	for _, d := range []*daemon{d8, d9} {
		if bi := d.router.BindingInfo(); len(bi) != 1 || bi[0].MTU != 251 {
			t.Fatalf("%s bindings: %+v, want MTU 251", d.name, bi)
		}
	}
	c8, c9 := dial(t, d8, 5), dial(t, d9, 5)
	registered(t, d8, 5, 1)
	registered(t, d9, 5, 1)
	waitReachable(t, d8, 9)
	sizes := []int{2, 63, 64, 65, 121, 122, 123, 250, 251, 252, 373, 502, 503, 1000, 4096, 65535, 65536}
	before := d9.router.Stats().PacketsIn
	exchange(t, end{c8, 8}, end{c9, 9}, sizes, d8, d9)
	want := uint64(0)
	for _, n := range sizes {
		want += uint64((n + 250) / 251)
	}
	if got := d9.router.Stats().PacketsIn - before; got != want {
		t.Errorf("EID 9 received %d packets, want %d (one per 251 bytes of each message)", got, want)
	}
	for _, d := range []*daemon{d8, d9} {
		st := d.router.Stats()
		if len(st.Drops) != 0 {
			t.Errorf("%s drops: %v", d.name, st.Drops)
		}
		for name, bs := range st.Bindings {
			if bs["rx_bad_length"]+bs["rx_bad_fcs"]+bs["rx_truncated"]+bs["tx_queue_full"] != 0 {
				t.Errorf("%s %s: %v", d.name, name, bs)
			}
		}
	}
}

// TestSerialMixedMTU joins a daemon at -mtu 251 and one at the baseline:
// the baseline side receives the larger packets (its receiver accepts up
// to 251 bytes of payload), and its own messages go out at 64.
func TestSerialMixedMTU(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a, "-mtu", "251"}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	c8, c9 := dial(t, d8, 5), dial(t, d9, 5)
	registered(t, d8, 5, 1)
	registered(t, d9, 5, 1)
	waitReachable(t, d8, 9)
	in8, in9 := d8.router.Stats().PacketsIn, d9.router.Stats().PacketsIn
	exchange(t, end{c8, 8}, end{c9, 9}, []int{1000}, d8, d9)
	if got := d9.router.Stats().PacketsIn - in9; got != 4 {
		t.Errorf("baseline side received %d packets of a 1000-byte message, want 4 (MTU 251)", got)
	}
	if got := d8.router.Stats().PacketsIn - in8; got != 16 {
		t.Errorf("MTU 251 side received %d packets of a 1000-byte message, want 16 (MTU 64)", got)
	}
}

// end is one demux client of an exchange and its daemon's EID.
type end struct {
	c   *demux.Conn
	eid byte
}

// exchange sends a message of each size (MCTP message sizes: the type
// byte plus the body) from x to y and back, and checks that each arrives
// byte-exact with the right source. The clients are registered for the
// same type; logs are printed on failure.
func exchange(t *testing.T, x, y end, sizes []int, logs ...*daemon) {
	t.Helper()
	x.c.SetDeadline(time.Now().Add(30 * time.Second))
	y.c.SetDeadline(time.Now().Add(30 * time.Second))
	dump := func() string {
		var b strings.Builder
		for _, d := range logs {
			b.WriteString("\n" + d.name + ":\n" + d.log.String())
		}
		return b.String()
	}
	for _, size := range sizes {
		for _, dir := range []struct{ from, to end }{{x, y}, {y, x}} {
			body := make([]byte, size-1)
			for i := range body {
				body[i] = byte(i*7 + size) // includes 0x7e and 0x7d: escaping
			}
			if err := dir.from.c.Send(dir.to.eid, body); err != nil {
				t.Fatalf("send %d bytes %d->%d: %v", size, dir.from.eid, dir.to.eid, err)
			}
			src, typ, got, err := dir.to.c.Recv()
			if err != nil {
				t.Fatalf("recv %d bytes %d->%d: %v%s", size, dir.from.eid, dir.to.eid, err, dump())
			}
			if src != dir.from.eid || typ != x.c.Type() || !bytes.Equal(got, body) {
				t.Fatalf("%d bytes %d->%d: got src %d type %d, %d bytes (equal %v)", size, dir.from.eid, dir.to.eid, src, typ, len(got), bytes.Equal(got, body))
			}
		}
	}
}

// waitReachable sends Get EID from d to eid until a reply to the latest
// request comes back, and fails after 20 s. Bindings open their ttys in
// the background, and a link reconnects with backoff, so a path is
// usable only once a request has crossed it. Each try has its own
// instance ID: replies to earlier tries arrive before the one waited
// for, so every packet of the wait has passed once it returns.
func waitReachable(t *testing.T, d *daemon, eid byte) {
	t.Helper()
	ctrl := dial(t, d, 0x80)
	registered(t, d, 0x80, 1)
	defer func() {
		ctrl.Close()
		registered(t, d, 0x80, 0)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for inst := byte(0); ; inst = (inst + 1) & 0x1f {
		if time.Now().After(deadline) {
			t.Fatalf("EID %d never answered EID %d\n%s", eid, d.router.EID(), d.log)
		}
		ctrl.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if ctrl.SendType(eid, 0x00, []byte{0x80 | inst, 0x02}) != nil {
			continue
		}
		for {
			src, _, body, err := ctrl.Recv()
			if err != nil {
				break
			}
			if src == eid && len(body) > 0 && body[0] == inst {
				return
			}
		}
	}
}

// ptyPair starts socat with two linked ptys and returns their paths and
// a function that restarts socat on the same paths (after it ended).
func ptyPair(t *testing.T) (a, b string, restart func()) {
	t.Helper()
	a, b, restart, _ = ptyPairSignal(t)
	return a, b, restart
}

// ptyPairSignal is ptyPair that also returns a function signalling the
// running socat: SIGSTOP stalls the line as a peer that stops reading
// would, SIGCONT lets it flow again.
func ptyPairSignal(t *testing.T) (a, b string, restart func(), signal func(os.Signal)) {
	t.Helper()
	dir := testutil.ShortDir(t)
	a, b = filepath.Join(dir, "a"), filepath.Join(dir, "b")
	var mu sync.Mutex
	var cur *exec.Cmd
	start := func() {
		os.Remove(a)
		os.Remove(b)
		c := exec.Command("socat", "pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		cur = c
		mu.Unlock()
		for i := 0; ; i++ {
			_, ea := os.Stat(a)
			_, eb := os.Stat(b)
			if ea == nil && eb == nil {
				return
			}
			if i > 500 {
				t.Fatal("socat did not create the pty pair")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop := func() {
		mu.Lock()
		c := cur
		mu.Unlock()
		c.Process.Kill()
		c.Wait()
	}
	start()
	t.Cleanup(stop)
	signal = func(sig os.Signal) {
		mu.Lock()
		c := cur
		mu.Unlock()
		if err := c.Process.Signal(sig); err != nil {
			t.Errorf("signal socat: %v", err)
		}
	}
	// A stopped socat would not die of SIGKILL's successor otherwise.
	t.Cleanup(func() { signal(syscall.SIGCONT) })
	return a, b, func() { stop(); start() }, signal
}

// TestSerialRestart kills one side of a serial pair and starts it again:
// everything sent after it came back arrives, in both directions.
func TestSerialRestart(t *testing.T) {
	a, b, restartLink := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	c8 := dial(t, d8, 5)
	registered(t, d8, 5, 1)

	// Kill side 9 (and with it the link: socat ends when a pty closes,
	// so it is started again as a cable is plugged back in).
	d9.stop()
	restartLink()
	d9 = startBinding(t, []string{"serial", b}, "-e", "9")
	c9 := dial(t, d9, 5)
	registered(t, d9, 5, 1)

	// Side 8's binding reconnects on its own (with backoff); it is back
	// once a Get EID crosses.
	waitReachable(t, d8, 9)
	c8.SetDeadline(time.Now().Add(20 * time.Second))
	c9.SetDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < 50; i++ {
		body := []byte{byte(i), 0x7e, 0x7d, byte(i)}
		if err := c8.Send(9, body); err != nil {
			t.Fatal(err)
		}
		if src, typ, got, err := c9.Recv(); err != nil || src != 8 || typ != 5 || !bytes.Equal(got, body) {
			t.Fatalf("8->9 message %d after the restart: %d %d % x %v", i, src, typ, got, err)
		}
		if err := c9.Send(8, body); err != nil {
			t.Fatal(err)
		}
		if src, typ, got, err := c8.Recv(); err != nil || src != 9 || typ != 5 || !bytes.Equal(got, body) {
			t.Fatalf("9->8 message %d after the restart: %d %d % x %v", i, src, typ, got, err)
		}
	}
}

// TestSerialBridge runs three mctpd on two socat pty pairs: A (EID 8) —
// B (EID 10, bridging two serial bindings) — C (EID 9). Demux clients
// on A and C exchange messages through the bridge byte-exact both ways,
// the mctp client's Get EID crosses it in both directions, B's own
// clients reach both sides (by route and by the default route), and
// B's stats and Kea commands show the bindings and the forwarded
// packets per pair.
func TestSerialBridge(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	ab, ba, _ := ptyPair(t) // A's and B's ends of link 1
	bc, cb, _ := ptyPair(t) // B's and C's ends of link 2
	b1, b2 := "serial:"+ba, "serial:"+bc
	dA := startBinding(t, []string{"serial", ab}, "-e", "8", "-route", "9=serial:"+ab)
	// 9 is routed; 8 is reached as "the other binding" of the two.
	dB := startBinding(t, []string{"serial", ba, "-baud", "115200", "+", "serial", bc}, "-e", "10", "-route", "9="+b2)
	dC := startBinding(t, []string{"serial", cb}, "-e", "9", "-route", "8=serial:"+cb)
	waitReachable(t, dA, 9)
	waitReachable(t, dC, 8)
	before := forwarded(dB.router.Stats().Forwarded)

	cA, cC := dial(t, dA, 5), dial(t, dC, 5)
	registered(t, dA, 5, 1)
	registered(t, dC, 5, 1)
	sizes := []int{2, 64, 65, 1000, 65536}
	exchange(t, end{cA, 8}, end{cC, 9}, sizes, dA, dB, dC)

	// The mctp client, as a user runs it.
	tool := mctpTool(t)
	for _, q := range []struct {
		d    *daemon
		eid  string
		want string
	}{{dA, "9", "eid 9 "}, {dC, "8", "eid 8 "}, {dA, "10", "eid 10 "}} {
		out, err := exec.Command(tool, "-demux", q.d.name, "ctrl", "get-eid", "-eid", q.eid, "-timeout", "5s").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), q.want) {
			t.Fatalf("mctp ctrl get-eid -eid %s: %v: %q, want %q...", q.eid, err, out, q.want)
		}
	}

	// Packets per message at the baseline MTU, one way, plus one Get
	// EID request and one reply each way (the Get EID to B itself is
	// not forwarded).
	var want uint64 = 2
	for _, s := range sizes {
		want += uint64((s + 63) / 64)
	}
	st := dB.router.Stats()
	after := forwarded(st.Forwarded)
	for _, pair := range [][2]string{{b1, b2}, {b2, b1}} {
		if got := after[pair] - before[pair]; got != want {
			t.Errorf("forwarded %s -> %s: %d, want %d (stats %+v)", pair[0], pair[1], got, want, st)
		}
	}
	for _, r := range []string{"loop", "no-route", "mtu", "forward-send", "dest-not-local"} {
		if st.Drops[r] != 0 {
			t.Errorf("drops %v", st.Drops)
		}
	}

	// B's own clients: 9 by its route, 8 by the default route.
	cB := dial(t, dB, 5)
	registered(t, dB, 5, 1)
	for _, to := range []end{{cA, 8}, {cC, 9}} {
		if err := cB.Send(to.eid, []byte{0x7e, to.eid}); err != nil {
			t.Fatal(err)
		}
		if src, typ, got, err := to.c.Recv(); err != nil || src != 10 || typ != 5 || !bytes.Equal(got, []byte{0x7e, to.eid}) {
			t.Fatalf("B -> %d: %d %d % x %v", to.eid, src, typ, got, err)
		}
	}

	// The Kea view of the bridge.
	m := testutil.KeaCommand(t, dB.kea, "stats-get", nil)
	ms := m["arguments"].(map[string]any)["mctp"].(map[string]any)
	fw := ms["forwarded"].([]any)
	if len(fw) != 2 || fw[0].(map[string]any)["in"] != b1 || fw[0].(map[string]any)["out"] != b2 ||
		fw[0].(map[string]any)["packets"].(float64) < float64(want) || ms["packets-forwarded"].(float64) < float64(2*want) {
		t.Errorf("stats-get forwarded: %v", ms)
	}
	if bs := ms["bindings"].(map[string]any); len(bs) != 2 || bs[b1] == nil || bs[b2] == nil {
		t.Errorf("stats-get bindings: %v", bs)
	}
	m = testutil.KeaCommand(t, dB.kea, "endpoints-get", nil)
	a := m["arguments"].(map[string]any)
	bs := a["bindings"].([]any)
	if a["bridge"] != true || len(bs) != 2 {
		t.Fatalf("endpoints-get: %v", a)
	}
	first, second := bs[0].(map[string]any), bs[1].(map[string]any)
	if first["name"] != b1 || first["mtu"] != 64.0 || first["default"] != true || first["forward-to"] != b2 ||
		second["name"] != b2 || second["default"] != false || second["forward-to"] != b1 {
		t.Errorf("endpoints-get bindings: %v", bs)
	}
	m = testutil.KeaCommand(t, dB.kea, "routes-get", nil)
	rs := m["arguments"].(map[string]any)["routes"].([]any)
	wantRoutes := []map[string]any{
		{"first": 9.0, "last": 9.0, "binding": b2, "default": false},
		{"first": 0.0, "last": 255.0, "binding": b1, "default": true},
	}
	if len(rs) != len(wantRoutes) {
		t.Fatalf("routes-get: %v", m)
	}
	for i, w := range wantRoutes {
		for k, v := range w {
			if rs[i].(map[string]any)[k] != v {
				t.Errorf("routes-get route %d: %v, want %v", i, rs[i], w)
			}
		}
	}
	if len(m["arguments"].(map[string]any)["bindings"].([]any)) != 2 {
		t.Errorf("routes-get bindings: %v", m)
	}
}

// forwarded indexes forwarded-packet counts by (in, out).
func forwarded(fs []mctp.ForwardStat) map[[2]string]uint64 {
	m := map[[2]string]uint64{}
	for _, f := range fs {
		m[[2]string{f.In, f.Out}] = f.Packets
	}
	return m
}

// tools holds the mctp client, built once for the tests that run it.
var tools struct {
	once sync.Once
	dir  string
	mctp string
	err  error
}

// mctpTool builds the mctp client (once per test binary) and returns
// its path.
func mctpTool(t *testing.T) string {
	t.Helper()
	tools.once.Do(func() {
		tools.dir, tools.err = os.MkdirTemp("", "mctpbin")
		if tools.err != nil {
			return
		}
		tools.mctp = filepath.Join(tools.dir, "mctp")
		if out, err := exec.Command("go", "build", "-o", tools.mctp, "../mctp").CombinedOutput(); err != nil {
			tools.err = fmt.Errorf("build mctp: %w\n%s", err, out)
		}
	})
	if tools.err != nil {
		t.Fatal(tools.err)
	}
	return tools.mctp
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tools.dir != "" {
		os.RemoveAll(tools.dir)
	}
	os.Exit(code)
}

func TestSplitBindings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want [][]string
		err  string
	}{
		{nil, [][]string{nil}, ""},
		{[]string{"null"}, [][]string{{"null"}}, ""},
		{[]string{"serial", "/dev/a", "-baud", "9600"}, [][]string{{"serial", "/dev/a", "-baud", "9600"}}, ""},
		{[]string{"serial", "/dev/a", "+", "i2c", "1", "0x1d"}, [][]string{{"serial", "/dev/a"}, {"i2c", "1", "0x1d"}}, ""},
		{[]string{"a", "+", "b", "+", "c"}, [][]string{{"a"}, {"b"}, {"c"}}, ""},
		{[]string{"a", "+x", "b"}, [][]string{{"a", "+x", "b"}}, ""},
		{[]string{"+"}, nil, "before"},
		{[]string{"a", "+"}, nil, "after"},
		{[]string{"a", "+", "+", "b"}, nil, "before"},
	} {
		got, err := splitBindings(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || cli.Code(err, 1) != 2 {
				t.Errorf("%q: %v, want a usage error with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) || len(got) != len(tc.want) {
			t.Errorf("%q: %q %v, want %q", tc.args, got, err, tc.want)
		}
	}
}

// FuzzSplitBindings splits space-separated arguments: a success gives
// non-empty groups without a lone "+" that join back to the input; a
// failure means an empty group.
func FuzzSplitBindings(f *testing.F) {
	f.Add("serial /dev/ttyS1 -baud 115200 + serial /dev/ttyS2")
	f.Add("serial /dev/ttyUSB0 + i2c 1 0x1d")
	f.Add("+ null")
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Fields(s)
		groups, err := splitBindings(args)
		empty := len(args) > 0 && (args[0] == "+" || args[len(args)-1] == "+" || strings.Contains(" "+strings.Join(args, " ")+" ", " + + "))
		if err != nil {
			if !empty {
				t.Fatalf("%q refused: %v", args, err)
			}
			return
		}
		if empty {
			t.Fatalf("%q accepted: %q", args, groups)
		}
		if len(args) == 0 {
			if len(groups) != 1 || len(groups[0]) != 0 {
				t.Fatalf("no arguments: %q", groups)
			}
			return
		}
		var joined []string
		for i, g := range groups {
			if len(g) == 0 || slices.Contains(g, "+") {
				t.Fatalf("%q: group %q", args, g)
			}
			if i > 0 {
				joined = append(joined, "+")
			}
			joined = append(joined, g...)
		}
		if !slices.Equal(joined, args) {
			t.Fatalf("%q split to %q", args, groups)
		}
	})
}

// dialTagged registers a client of d's tagged demux.
func dialTagged(t *testing.T, d *daemon, typ byte) *demux.Conn {
	t.Helper()
	n := d.tagged.Registered(typ)
	c, err := demux.DialTagged(d.name+"-tagged", typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	testutil.WaitFor(t, "client registered", 5*time.Second, func() bool { return d.tagged.Registered(typ) == n+1 })
	return c
}

// TestSerialPairTagged runs two mctpd on a socat pty pair and their
// tagged demuxes: two tagged clients on side 8 each have a request
// outstanding to EID 9 at once, a tagged responder on side 9 answers
// them in reverse order with TO=0 and each request's tag, and each
// requester gets exactly its own reply, while a plain client of the
// same type on side 8 gets none. The mctp client's ctrl -tagged reads
// the far EID across the line.
func TestSerialPairTagged(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	if d8.tagged == nil || d8.tagged.Addrs()[0] != "@"+d8.name+"-tagged" {
		t.Fatalf("tagged demux not on the derived name: %v", d8.tagged)
	}
	waitReachable(t, d8, 9)

	req1, req2 := dialTagged(t, d8, 5), dialTagged(t, d8, 5)
	plain8 := dial(t, d8, 5)
	registered(t, d8, 5, 1)
	resp := dialTagged(t, d9, 5)
	plain9 := dial(t, d9, 5)
	registered(t, d9, 5, 1)

	bodies := map[*demux.Conn][]byte{req1: {0x01, 0x7e}, req2: {0x02, 0x7d}}
	for _, c := range []*demux.Conn{req1, req2} {
		if err := c.SendTag(9, mctp.TagRequest, 5, bodies[c]); err != nil {
			t.Fatal(err)
		}
	}
	// Both requests reach the responder, with TO=1 and distinct tags,
	// before either is answered.
	type request struct {
		tag  byte
		body []byte
	}
	var reqs []request
	for range 2 {
		src, tag, typ, body, err := resp.RecvTag()
		if err != nil {
			t.Fatalf("responder: %v\n%s\n%s", err, d8.log, d9.log)
		}
		if src != 8 || typ != 5 || tag&mctp.TagOwner == 0 || tag&^(mctp.TagOwner|mctp.TagValue) != 0 {
			t.Fatalf("request: src %d type %d tag %#x", src, typ, tag)
		}
		reqs = append(reqs, request{tag, body})
	}
	if reqs[0].tag == reqs[1].tag {
		t.Fatalf("both requests have tag %#x", reqs[0].tag)
	}
	// The plain client of side 9 sees the requests as libmctp's demux
	// gives them.
	for range 2 {
		if src, typ, _, err := plain9.Recv(); err != nil || src != 8 || typ != 5 {
			t.Fatalf("plain client of side 9: %d %d %v", src, typ, err)
		}
	}
	if d8.router.Stats().TagsOutstanding != 2 {
		t.Errorf("outstanding tags on side 8: %d", d8.router.Stats().TagsOutstanding)
	}
	// Answer the second request first: replies are routed by tag, not
	// by order.
	for i := len(reqs) - 1; i >= 0; i-- {
		reply := append([]byte{0xee}, reqs[i].body...)
		if err := resp.SendTag(8, reqs[i].tag&mctp.TagValue, 5, reply); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*demux.Conn{req1, req2} {
		src, tag, typ, body, err := c.RecvTag()
		if err != nil {
			t.Fatalf("reply: %v", err)
		}
		want := append([]byte{0xee}, bodies[c]...)
		if src != 9 || typ != 5 || tag&mctp.TagOwner != 0 || !bytes.Equal(body, want) {
			t.Fatalf("reply: src %d type %d tag %#x % x, want % x", src, typ, tag, body, want)
		}
		// Exactly one reply each.
		c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, _, body, err := c.RecvTag(); err == nil {
			t.Fatalf("second reply % x", body)
		}
	}
	// The plain client of the same type on side 8 saw no tagged reply.
	plain8.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if src, typ, body, err := plain8.Recv(); err == nil {
		t.Fatalf("plain client got %d %d % x", src, typ, body)
	}
	if n := d8.router.Stats().TagsOutstanding; n != 0 {
		t.Errorf("outstanding tags after the replies: %d", n)
	}

	// The mctp client across the line, on the tagged demux.
	tool := mctpTool(t)
	out, err := exec.Command(tool, "-demux", d8.name, "-tagged", "ctrl", "get-eid", "-eid", "9", "-timeout", "5s").CombinedOutput()
	if err != nil || string(out) != "eid 9 type 0x01 medium 0x00\n" {
		t.Errorf("mctp -tagged ctrl get-eid -eid 9: %v: %q", err, out)
	}
}

// TestTaggedDemuxFlag checks where the tagged demux is served.
func TestTaggedDemuxFlag(t *testing.T) {
	d := start(t, "-tagged-demux", "")
	if d.tagged != nil {
		t.Fatalf("tagged demux served with -tagged-demux \"\": %v", d.tagged.Addrs())
	}
	name := "mctpd-test-" + rand.Text()[:10]
	d = start(t, "-tagged-demux", name)
	if d.tagged == nil || d.tagged.Addrs()[0] != "@"+name || !d.tagged.Tagged() {
		t.Fatalf("tagged demux: %v", d.tagged)
	}
	m := testutil.KeaCommand(t, d.kea, "stats-get", nil)
	if _, ok := m["arguments"].(map[string]any)["demux-tagged"]; !ok {
		t.Errorf("stats-get lacks demux-tagged: %v", m)
	}
	c, err := demux.DialTagged(name, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.WaitFor(t, "client registered", 5*time.Second, func() bool { return d.tagged.Registered(7) == 1 })
	m = testutil.KeaCommand(t, d.kea, "endpoints-get", nil)
	if ts := m["arguments"].(map[string]any)["types"].([]any); len(ts) != 1 || ts[0] != 7.0 {
		t.Errorf("endpoints-get types %v, want the tagged client's 7", ts)
	}
}

// TestControlLocalEdges: a transport-specific command (0xF0-0xFF) gets
// no reply, as from libmctp, and reaches the control clients as it
// was sent; a message of its type byte alone is not looped back.
func TestControlLocalEdges(t *testing.T) {
	d := start(t)
	c := dial(t, d, 0x80)
	five := dial(t, d, 5)
	registered(t, d, 0x80, 1)
	registered(t, d, 5, 1)
	for _, req := range [][]byte{{0x81, 0xf0}, {0x82, 0xff, 0x01}} {
		if err := c.SendType(8, 0, req); err != nil {
			t.Fatal(err)
		}
		if src, typ, body := recvMsg(t, c); src != 8 || typ != 0x80 || !bytes.Equal(body, req) {
			t.Errorf("transport command % x: got %d %#x % x, want the request itself", req, src, typ, body)
		}
	}
	// A normal request after them is answered.
	if err := c.SendType(8, 0, []byte{0x83, 0x02}); err != nil {
		t.Fatal(err)
	}
	if _, _, body := recvMsg(t, c); !bytes.Equal(body, []byte{0x03, 0x02, 0x00, 0x08, 0x01, 0x00}) {
		t.Errorf("get eid after transport commands: % x", body)
	}
	for _, typ := range []byte{5, 0} {
		if err := five.SendType(8, typ, nil); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "two short-message drops", 5*time.Second, func() bool { return d.router.Stats().Drops["short-message"] == 2 })
	if err := five.Send(8, []byte{0x42}); err != nil {
		t.Fatal(err)
	}
	if src, typ, body := recvMsg(t, five); src != 8 || typ != 5 || !bytes.Equal(body, []byte{0x42}) {
		t.Errorf("after the short messages: %d %d % x", src, typ, body)
	}
}

// TestClientCloseLog: clients closing, with or without messages to them
// unread, are logged at debug level only, never as a failed read.
func TestClientCloseLog(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var extra []string
		if verbose {
			extra = []string{"-v"}
		}
		d := start(t, extra...)
		idle := dial(t, d, 5)
		unread := dial(t, d, 6)
		registered(t, d, 5, 1)
		registered(t, d, 6, 1)
		// Two messages to the second client, which it never reads.
		for range 2 {
			if err := idle.SendType(8, 6, []byte{1}); err != nil {
				t.Fatal(err)
			}
		}
		testutil.WaitFor(t, "two messages out", 5*time.Second, func() bool { return d.demux.Stats().Out == 2 })
		idle.Close()
		unread.Close()
		registered(t, d, 5, 0)
		registered(t, d, 6, 0)
		log := d.log.String()
		if strings.Contains(log, "read failed") || strings.Contains(log, "level=INFO msg=\"demux: client disconnected") || strings.Contains(log, "level=WARN") {
			t.Errorf("verbose %v: close logged above debug:\n%s", verbose, log)
		}
		if got := strings.Count(log, "level=DEBUG msg=\"demux: client disconnected"); verbose && got != 2 {
			t.Errorf("debug log has %d disconnects, want 2:\n%s", got, log)
		}
	}
}

// TestSerialWireEdges runs two mctpd on a pty pair: a message of a type
// byte alone goes on the wire as libmctp sends it and the far side drops
// it, counted; a client message over 64 KiB is dropped by the demux,
// logged and counted, and never reaches the wire, while 64 KiB passes.
func TestSerialWireEdges(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	c8, c9 := dial(t, d8, 5), dial(t, d9, 5)
	registered(t, d8, 5, 1)
	registered(t, d9, 5, 1)
	waitReachable(t, d8, 9)
	name := d8.router.Bindings()[0]
	frames := func() uint64 { return d8.router.Stats().Bindings[name]["tx_frames"] }

	// tx_frames counts a frame once its write returned, which may be
	// after the far side read it: wait for the count.
	before := frames()
	if err := c8.Send(9, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the short-message drop", 5*time.Second, func() bool { return d9.router.Stats().Drops["short-message"] == 1 })
	testutil.WaitFor(t, "one more frame", 5*time.Second, func() bool { return frames() == before+1 })

	before = frames()
	if err := c8.Send(9, make([]byte, 65536)); err != nil { // 65537-byte message
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the too-big drop", 5*time.Second, func() bool { return d8.demux.Stats().DropTooBig == 1 })
	// The drop is counted a moment before it is logged.
	testutil.WaitFor(t, "the too-big drop logged", 5*time.Second, func() bool {
		return strings.Contains(d8.log.String(), "demux: client message too big; dropped")
	})
	c9.SetDeadline(time.Now().Add(30 * time.Second))
	body := bytes.Repeat([]byte{0x7e, 0x7d, 0x01}, 65535/3)
	if err := c8.Send(9, body); err != nil { // 65536-byte message: the limit
		t.Fatal(err)
	}
	if src, typ, got, err := c9.Recv(); err != nil || src != 8 || typ != 5 || !bytes.Equal(got, body) {
		t.Fatalf("64 KiB message: %v src %d type %d %d bytes", err, src, typ, len(got))
	}
	testutil.WaitFor(t, "1024 more frames", 5*time.Second, func() bool { return frames() >= before+1024 })
	time.Sleep(50 * time.Millisecond)
	if got := frames() - before; got != 1024 {
		t.Errorf("%d frames sent, want 1024: the 64 KiB message alone", got)
	}
}

// TestSerialBurst sends 2,000 messages of 4 KiB from one demux client
// over a pty pair, as fast as the client can write them: the sending
// mctpd holds the client back while the serial queue is full instead
// of dropping, so every message arrives, in order, byte-exact. The line
// is first stalled (socat stopped, as a peer that stops reading): the
// sender is then held back for good, yet another client of the same
// daemon goes on exchanging messages with the local EID, a route the
// full serial queue must not hold up.
func TestSerialBurst(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	const n, size = 2000, 4096
	a, b, _, signal := ptyPairSignal(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	tx, rx, local := dial(t, d8, 5), dial(t, d9, 5), dial(t, d8, 6)
	registered(t, d8, 5, 1)
	registered(t, d8, 6, 1)
	registered(t, d9, 5, 1)
	waitReachable(t, d8, 9)
	msg := func(i int) []byte {
		body := make([]byte, size-1)
		for j := range body {
			body[j] = byte(i*31 + j) // every byte value, 0x7e and 0x7d among them
		}
		body[0], body[1] = byte(i>>8), byte(i)
		return body
	}
	signal(syscall.SIGSTOP)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	tx.SetDeadline(deadline)
	rx.SetDeadline(deadline)
	var sentN atomic.Int64
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := tx.Send(9, msg(i)); err != nil {
				sent <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			sentN.Add(1)
		}
		sent <- nil
	}()
	received := make(chan error, 1)
	go func() {
		for i := range n {
			src, typ, body, err := rx.Recv()
			if err != nil {
				received <- fmt.Errorf("message %d of %d: %w", i, n, err)
				return
			}
			if src != 8 || typ != 5 || !bytes.Equal(body, msg(i)) {
				got := -1
				if len(body) >= 2 {
					got = int(body[0])<<8 | int(body[1])
				}
				received <- fmt.Errorf("message %d: src %d type %d, %d bytes, number %d", i, src, typ, len(body), got)
				return
			}
		}
		received <- nil
	}()

	// The stalled line fills the serial queue; the sender is held back.
	for i := 0; d8.router.Stats().SendWaits == 0; i++ {
		if i > 2000 {
			t.Fatalf("the stalled line never filled the serial queue: %+v", d8.router.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Meanwhile the local route flows: each loopback round trip is
	// bounded far below the send timeout that a wait behind the serial
	// queue would last.
	var loops int
	var worst time.Duration
	// The stall stays well under the serial writer's 5 s no-progress timeout.
	for t1 := time.Now(); time.Since(t1) < 300*time.Millisecond || loops < 10; loops++ {
		t0 := time.Now()
		local.SetDeadline(t0.Add(5 * time.Second))
		if err := local.Send(8, []byte{byte(loops), 0xaa}); err != nil {
			t.Fatalf("loopback send %d: %v", loops, err)
		}
		src, typ, body := recvMsg(t, local)
		if src != 8 || typ != 6 || !bytes.Equal(body, []byte{byte(loops), 0xaa}) {
			t.Fatalf("loopback %d: %d %d % x", loops, src, typ, body)
		}
		worst = max(worst, time.Since(t0))
		time.Sleep(5 * time.Millisecond)
	}
	held := sentN.Load()
	stall := time.Since(start)
	signal(syscall.SIGCONT)
	if held >= n {
		t.Errorf("the sender wrote all %d messages into a stalled line: nothing held it back", n)
	}

	if err := <-received; err != nil {
		t.Fatalf("%v\nsender stats: %+v", err, d8.router.Stats())
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	st := d8.router.Stats()
	t.Logf("%d x %d bytes in %v (line stalled for the first %v; %.0f KiB/s after); send-waits %d; sender held at %d messages; %d loopback exchanges during the stall, slowest %v",
		n, size, elapsed.Round(time.Millisecond), stall.Round(time.Millisecond), float64(n*size)/1024/(elapsed-stall).Seconds(), st.SendWaits, held, loops, worst)
	if len(st.Drops) != 0 || d8.demux.Stats().DropRoute != 0 {
		t.Errorf("sender drops %v, demux %+v", st.Drops, d8.demux.Stats())
	}
	if worst > 2*time.Second {
		t.Errorf("loopback during the stall: slowest exchange %v, want under 2s", worst)
	}
	if d9st := d9.router.Stats(); len(d9st.Drops) != 0 {
		t.Errorf("receiver drops %v", d9st.Drops)
	}
}

// TestExitStatus runs mctpd as its main does: what it prints and the
// exit status for help, bad flags and bad bindings.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "usage: mctpd [flags] BINDING"},
		{[]string{"-h"}, 0, "-log-level LEVEL"},
		{[]string{"-bogus"}, 2, "mctpd: flag provided but not defined: -bogus\n"},
		{[]string{"-e", "0", "null"}, 2, "mctpd: -e 0: not a valid local EID"},
		{[]string{"floppy"}, 2, `mctpd: unknown binding "floppy"`},
		{[]string{"-state", "/dev/null/x", "null"}, 1, "mctpd: "},
	} {
		var out testutil.LockedBuffer
		code := cli.Exec(context.Background(), "mctpd", hooks{}.run, tc.args, &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, out.String())
		}
	}
}
