package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/services/ctl"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type daemon struct {
	running
	name string
	kea  string
	log  *syncBuf
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
	dir, err := os.MkdirTemp("", "mctpd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{name: name, kea: filepath.Join(dir, "k.sock"), log: &syncBuf{}}
	args := append([]string{"-demux", name, "-kea", d.kea, "-state", filepath.Join(dir, "state")}, extra...)
	args = append(args, bind...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan running, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, d.log, func(r running) { ready <- r }) }()
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

func dial(t *testing.T, d *daemon, typ byte) *ctl.DemuxConn {
	t.Helper()
	c, err := ctl.DialDemux(d.name, typ)
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

func recvMsg(t *testing.T, c *ctl.DemuxConn) (byte, byte, []byte) {
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
		{[]string{"i2c", "1"}, 2, "want i2c BUS ADDR [OWN]"},
		{[]string{"i2c", "1", "0x7f"}, 2, "want a 7-bit address"},
		{[]string{"i2c", "1", "0x1d", "zz"}, 2, "OWN"},
	} {
		err := run(context.Background(), tc.args, io.Discard, nil)
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
	for _, c := range []*ctl.DemuxConn{a, b} {
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
	waitFor(t, func() bool { return d.router.Stats().Drops["send-error"] == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached")
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

func kea(t *testing.T, d *daemon, cmd string, args map[string]any) map[string]any {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"command": cmd, "arguments": args})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ctl.KeaCall(ctx, d.kea, req)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(resp, &m); err != nil {
		t.Fatalf("%s: %v", resp, err)
	}
	return m
}

func TestKea(t *testing.T) {
	d := start(t)
	dial(t, d, 2)
	registered(t, d, 2, 1)
	m := kea(t, d, "endpoints-get", nil)
	a := m["arguments"].(map[string]any)
	if a["eid"] != 8.0 || len(a["uuid"].(string)) != 36 || a["types"].([]any)[0] != 2.0 {
		t.Errorf("endpoints-get: %v", m)
	}
	m = kea(t, d, "routes-get", nil)
	if r := m["arguments"].(map[string]any)["routes"].([]any); len(r) != 1 || r[0].(map[string]any)["binding"] != "null" {
		t.Errorf("routes-get: %v", m)
	}
	m = kea(t, d, "eid-set", map[string]any{"eid": 20})
	if m["result"] != 0.0 || d.router.EID() != 20 {
		t.Errorf("eid-set: %v", m)
	}
	m = kea(t, d, "eid-set", map[string]any{"eid": 5})
	if m["result"] == 0.0 || d.router.EID() != 20 {
		t.Errorf("eid-set 5: %v", m)
	}
	m = kea(t, d, "stats-get", nil)
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
		c, err := ctl.DialDemux(d.name, byte(i%255+1))
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
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("socat is required (./test.sh installs it): %v", err)
	}
	a, b, _ := ptyPair(t)
	d8 := startBinding(t, []string{"serial", a}, "-e", "8")
	d9 := startBinding(t, []string{"serial", b}, "-e", "9")
	c8, c9 := dial(t, d8, 5), dial(t, d9, 5)
	registered(t, d8, 5, 1)
	registered(t, d9, 5, 1)
	c8.SetDeadline(time.Now().Add(30 * time.Second))
	c9.SetDeadline(time.Now().Add(30 * time.Second))

	// Sizes are MCTP message sizes: the type byte plus the body.
	for _, size := range []int{1, 63, 64, 65, 1000, 65536} {
		for _, dir := range []struct {
			from, to *ctl.DemuxConn
			src, dst byte
		}{{c8, c9, 8, 9}, {c9, c8, 9, 8}} {
			body := make([]byte, size-1)
			for i := range body {
				body[i] = byte(i*7 + size) // includes 0x7e and 0x7d: escaping
			}
			if err := dir.from.Send(dir.dst, body); err != nil {
				t.Fatalf("send %d bytes %d->%d: %v", size, dir.src, dir.dst, err)
			}
			src, typ, got, err := dir.to.Recv()
			if err != nil {
				t.Fatalf("recv %d bytes %d->%d: %v\n8: %s\n9: %s", size, dir.src, dir.dst, err, d8.log, d9.log)
			}
			if src != dir.src || typ != 5 || !bytes.Equal(got, body) {
				t.Fatalf("%d bytes %d->%d: got src %d type %d, %d bytes (equal %v)", size, dir.src, dir.dst, src, typ, len(got), bytes.Equal(got, body))
			}
		}
	}

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
}

// ptyPair starts socat with two linked ptys and returns their paths and
// a function that restarts socat on the same paths (after it ended).
func ptyPair(t *testing.T) (a, b string, restart func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mctpty")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
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
	return a, b, func() { stop(); start() }
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
	ctrl := dial(t, d8, 0x80)
	registered(t, d8, 0x80, 1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("side 8 never reached the restarted side 9\n8: %s\n9: %s", d8.log, d9.log)
		}
		ctrl.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if ctrl.SendType(9, 0x00, []byte{0x80 | 0x01, 0x02}) == nil {
			if src, _, _, err := ctrl.Recv(); err == nil && src == 9 {
				break
			}
		}
	}
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
