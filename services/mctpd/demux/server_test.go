package demux

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

const dmLocal = 8 // the local address of the tests' loopback router

type dmFixture struct {
	logs  *testutil.Logs
	dm    *Server
	names []string
}

// dmNames returns unique abstract names, so parallel tests (and a real
// demux daemon on the host) do not collide.
func dmNames() []string {
	id := rand.Uint64()
	return []string{fmt.Sprintf("tbtest-%x-mux", id), fmt.Sprintf("tbtest-%x-demux", id)}
}

// newDMFixture serves a demux on fresh names with the sender sender
// makes for it, the loopback sender at dmLocal when sender is nil.
func newDMFixture(t testing.TB, opts Options, sender func(*Server) Sender) *dmFixture {
	t.Helper()
	f := &dmFixture{logs: testutil.NewLogs(), names: dmNames()}
	var h slog.Handler = f.logs
	switch t.(type) {
	case *testing.B, *testing.F:
		// A benchmark's or a fuzz target's logs would only grow.
		h = slog.DiscardHandler
	}
	opts.Log = slog.New(h)
	dm, err := New(f.names, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := Loopback(dm, dmLocal)
	if sender != nil {
		s = sender(dm)
	}
	if err := dm.Serve(s); err != nil {
		t.Fatal(err)
	}
	f.dm = dm
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dm.Close(ctx)
	})
	return f
}

// dial registers a client and waits until the demux has it.
func (f *dmFixture) dial(t testing.TB, name string, typ byte) *Conn {
	t.Helper()
	before := f.dm.Stats().Registrations
	c, err := Dial(name, typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testutil.WaitFor(t, "registration", 5*time.Second, func() bool { return f.dm.Stats().Registrations > before })
	return c
}

// dmRaw is a seqpacket connection that does not register on its own.
func dmRaw(t testing.TB, name string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: "@" + name, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type dmMsg struct {
	addr, typ byte
	body      string
}

func dmRecv(t testing.TB, c *Conn) dmMsg {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	a, ty, b, err := c.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return dmMsg{a, ty, string(b)}
}

// dmNothing asserts that nothing arrives on c within a short while.
func dmNothing(t testing.TB, c *Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	a, ty, b, err := c.Recv()
	if err == nil {
		t.Fatalf("unexpected message %d %#x %q", a, ty, b)
	}
	if !errors.Is(err, syscall.ETIMEDOUT) && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("recv: %v", err)
	}
}

func dmEOF(t testing.TB, c *net.UnixConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err == nil && n > 0 {
		t.Fatalf("read %q, want EOF", buf[:n])
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want EOF", err)
	}
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	f := newDMFixture(t, Options{}, nil)
	// Registration's extra bytes are discarded, not routed.
	raw := dmRaw(t, f.names[0])
	if _, err := raw.Write([]byte{5, dmLocal, 5, 'x'}); err != nil {
		t.Fatal(err)
	}
	c5 := f.dial(t, f.names[1], 5)
	c6 := f.dial(t, f.names[0], 6)
	testutil.WaitFor(t, "clients", 5*time.Second, func() bool { return f.dm.Stats().Clients[5] == 2 })

	if err := c5.Send(dmLocal, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, c5), (dmMsg{dmLocal, 5, "hello"}); got != want {
		t.Fatalf("loopback = %+v, want %+v", got, want)
	}
	// The raw client registered type 5 too, across the other name.
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "\x08\x05hello" {
		t.Fatalf("raw client got %q %v", buf[:n], err)
	}
	dmNothing(t, c6)

	// A type other than the registered one is routed as sent.
	if err := c5.SendType(dmLocal, 6, []byte("to six")); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, c6), (dmMsg{dmLocal, 6, "to six"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// A 2-byte frame is an MCTP message of its type byte alone, which
	// libmctp's demux daemon does not deliver: dropped and counted, and
	// the next message still arrives.
	if err := c6.Send(dmLocal, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "empty message dropped", 5*time.Second, func() bool { return f.dm.Stats().DropRoute == 1 })
	if err := c6.Send(dmLocal, []byte{0}); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, c6), (dmMsg{dmLocal, 6, "\x00"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	testutil.WaitFor(t, "counters", 5*time.Second, func() bool { return f.dm.Stats().Delivered == 3 })
	st := f.dm.Stats()
	if st.In != 4 || st.Out != 4 || st.Delivered != 3 || st.Registrations != 3 || st.DropRoute != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestExactTypeFanout(t *testing.T) {
	t.Parallel()
	f := newDMFixture(t, Options{}, nil)
	a := f.dial(t, f.names[0], 0x01)
	b := f.dial(t, f.names[1], 0x01)
	hi := f.dial(t, f.names[0], 0x81)

	if n := f.dm.Deliver(9, 0x01, []byte("pldm")); n != 2 {
		t.Fatalf("Deliver reached %d clients, want 2", n)
	}
	for _, c := range []*Conn{a, b} {
		if got, want := dmRecv(t, c), (dmMsg{9, 0x01, "pldm"}); got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	dmNothing(t, hi)
	body := []byte("x81")
	if n := f.dm.Deliver(10, 0x81, body); n != 1 {
		t.Fatalf("Deliver reached %d clients, want 1", n)
	}
	body[0] = 'X' // Deliver does not keep the caller's slice
	if got, want := dmRecv(t, hi), (dmMsg{10, 0x81, "x81"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	dmNothing(t, a)
	if n := f.dm.DeliverFrame([]byte{11, 0x01, 'f'}); n != 2 {
		t.Fatalf("DeliverFrame reached %d, want 2", n)
	}
	if got, want := dmRecv(t, b), (dmMsg{11, 0x01, "f"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	st := f.dm.Stats()
	if st.Clients[0x01] != 2 || st.Clients[0x81] != 1 || len(st.Clients) != 2 {
		t.Fatalf("clients = %v", st.Clients)
	}
}

func TestDrops(t *testing.T) {
	t.Parallel()
	f := newDMFixture(t, Options{}, nil)
	c := f.dial(t, f.names[0], 5)
	raw := dmRaw(t, f.names[0])
	raw.Write([]byte{5})
	testutil.WaitFor(t, "clients", 5*time.Second, func() bool { return f.dm.Stats().Clients[5] == 2 })

	if _, err := raw.Write([]byte{dmLocal}); err != nil { // under 2 bytes
		t.Fatal(err)
	}
	if err := c.Send(9, []byte("away")); err != nil { // no wire
		t.Fatal(err)
	}
	if err := c.SendType(dmLocal, 7, []byte("nobody")); err != nil { // no client of type 7
		t.Fatal(err)
	}
	if n := f.dm.DeliverFrame([]byte{1}); n != 0 {
		t.Fatal("short frame delivered")
	}
	if n := f.dm.Deliver(1, 0x42, nil); n != 0 {
		t.Fatal("delivered without clients")
	}
	// Both connections keep working afterwards.
	if _, err := raw.Write([]byte{dmLocal, 5, 'o', 'k'}); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, c), (dmMsg{dmLocal, 5, "ok"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Each connection has its own reader: c's messages may still be on
	// their way when raw's "ok" is back, so wait for the counters to
	// settle, then check them exactly.
	want := func(st Stats) bool {
		return st.DropShort == 2 && st.DropRoute == 1 && st.DropNoClient == 2 && st.In == 3
	}
	testutil.WaitFor(t, "drop counters", 5*time.Second, func() bool { return want(f.dm.Stats()) })
	if st := f.dm.Stats(); !want(st) {
		t.Fatalf("stats = %+v", st)
	}
	for _, msg := range []string{
		"demux: client message under 2 bytes; dropped",
		"demux: router dropped client message",
		"demux: no client for message type; dropped",
		"demux: message under 2 bytes for clients dropped",
	} {
		if len(f.logs.Find(msg)) != 1 {
			t.Errorf("want one %q log line; logs:\n%s", msg, f.logs.Dump())
		}
	}
	if r := f.logs.Find("demux: router dropped client message"); len(r) == 1 && !strings.Contains(r[0].Attrs["err"], ErrNoRoute.Error()) {
		t.Errorf("route drop log lacks the reason: %v", r[0].Attrs)
	}
}

func TestTooBig(t *testing.T) {
	t.Parallel()
	f := newDMFixture(t, Options{MaxMessage: 16}, nil)
	c := f.dial(t, f.names[0], 5)
	if err := c.Send(dmLocal, bytes.Repeat([]byte{1}, 15)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(dmLocal, []byte("fits")); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, c), (dmMsg{dmLocal, 5, "fits"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if st := f.dm.Stats(); st.DropTooBig != 1 || st.In != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestDisconnects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		dgram []byte // sent after connecting (nil: register 5 first)
		then  []byte // sent after registering
	}{
		{name: "type 0 closes", dgram: []byte{0, 1, 2}},
		{name: "zero-length registration", dgram: []byte{}},
		{name: "zero-length after registering", dgram: []byte{5}, then: []byte{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDMFixture(t, Options{}, nil)
			raw := dmRaw(t, f.names[0])
			if _, err := raw.Write(tc.dgram); err != nil {
				t.Fatal(err)
			}
			if tc.then != nil {
				testutil.WaitFor(t, "registration", 5*time.Second, func() bool { return f.dm.Stats().Clients[5] == 1 })
				if _, err := raw.Write(tc.then); err != nil {
					t.Fatal(err)
				}
			}
			dmEOF(t, raw)
			testutil.WaitFor(t, "no clients", 5*time.Second, func() bool { return len(f.dm.Stats().Clients) == 0 })
			if n := f.dm.Deliver(1, 5, []byte("x")); n != 0 {
				t.Fatal("delivered to a disconnected client")
			}
			if st := f.dm.Stats(); tc.then == nil && st.Registrations != 0 {
				t.Fatalf("registered: %+v", st)
			}
		})
	}
}

// TestSlowClient: a client that never reads is disconnected once its
// queue overflows, while a client of the same type receives everything.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		body int
	}{
		{name: "message limit", body: 64},
		{name: "byte limit", opts: Options{QueueBytes: 32 << 10}, body: 1024},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDMFixture(t, tc.opts, nil)
			slow := f.dial(t, f.names[0], 0x7e)
			fast := f.dial(t, f.names[1], 0x7e)
			const n = 2000
			got := make(chan []byte, 1)
			go func() {
				for {
					fast.SetDeadline(time.Now().Add(5 * time.Second))
					_, _, b, err := fast.Recv()
					if err != nil {
						close(got)
						return
					}
					got <- b
				}
			}()
			body := make([]byte, tc.body)
			for i := 0; i < n; i++ {
				body[0], body[1] = byte(i>>8), byte(i)
				if r := f.dm.Deliver(dmLocal, 0x7e, body); r == 0 {
					t.Fatalf("message %d reached no client", i)
				}
				b, ok := <-got
				if !ok || b[0] != byte(i>>8) || b[1] != byte(i) {
					t.Fatalf("fast client: message %d missing or out of order", i)
				}
			}
			st := f.dm.Stats()
			if st.Overflows != 1 || st.Clients[0x7e] != 1 || st.DropOverflow == 0 {
				t.Fatalf("stats = %+v", st)
			}
			if len(f.logs.Find("demux: client queue overflow; disconnecting it")) != 1 {
				t.Fatalf("no overflow log line; logs:\n%s", f.logs.Dump())
			}
			// The slow client gets what reached its socket, in order,
			// then EOF.
			for i := 0; ; i++ {
				slow.SetDeadline(time.Now().Add(5 * time.Second))
				_, _, b, err := slow.Recv()
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					if i == 0 {
						t.Fatal("slow client received nothing")
					}
					break
				}
				if err != nil {
					t.Fatalf("slow client: %v", err)
				}
				if b[0] != byte(i>>8) || b[1] != byte(i) {
					t.Fatalf("slow client: message %d out of order", i)
				}
			}
		})
	}
}

// TestQueueDrainsInOrder holds a client's reads while messages pile up
// beyond its socket's buffer, then reads: what the direct writes could
// not place was queued and sent by the writer in sendmmsg batches (more
// than one batch's worth), and the client gets every message, byte for
// byte, in order, with nothing dropped.
func TestQueueDrainsInOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body int
		n    int
	}{
		{name: "type byte and body of 0", body: 0, n: 400},
		{name: "64 B", body: 64, n: 480},
		{name: "4 KiB", body: 4 << 10, n: 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The smallest send buffer the kernel allows, so that the
			// queue takes most of the messages.
			f := newDMFixture(t, Options{SendBuffer: 1}, nil)
			c := f.dial(t, f.names[0], 0x7e)
			body := make([]byte, tc.body)
			for i := range body {
				body[i] = byte(i * 7)
			}
			for i := 0; i < tc.n; i++ {
				b := body
				if len(b) >= 2 {
					b[0], b[1] = byte(i>>8), byte(i)
				}
				if r := f.dm.Deliver(dmLocal, 0x7e, b); r != 1 {
					t.Fatalf("message %d reached %d clients", i, r)
				}
			}
			for i := 0; i < tc.n; i++ {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				addr, typ, b, err := c.Recv()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				want := body
				if len(want) >= 2 {
					want[0], want[1] = byte(i>>8), byte(i)
				}
				if addr != dmLocal || typ != 0x7e || !bytes.Equal(b, want) {
					t.Fatalf("message %d: addr %d type %#x, %d bytes; want %d bytes in order", i, addr, typ, len(b), len(want))
				}
			}
			st := f.dm.Stats()
			if st.Out != uint64(tc.n) || st.Delivered != uint64(tc.n) || st.Overflows != 0 || st.DropOverflow != 0 {
				t.Fatalf("stats = %+v; want %d out and delivered, no overflow", st, tc.n)
			}
		})
	}
}

// TestPeerRefused connects as uid 65534 from a child process.
func TestPeerRefused(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		f := newDMFixture(t, Options{}, nil)
		out := runAsNobody(t, f.names[0])
		if out != "recv: closed" {
			t.Fatalf("child: %q, want the connection closed", out)
		}
		recs := f.logs.Find("refused peer")
		if len(recs) != 1 || recs[0].Attrs["uid"] != "65534" {
			t.Fatalf("no refusal log line; logs:\n%s", f.logs.Dump())
		}
		if f.dm.Stats().Registrations != 0 {
			t.Fatal("refused peer registered")
		}
	})
	t.Run("allowed", func(t *testing.T) {
		f := newDMFixture(t, Options{StreamOptions: unixsock.StreamOptions{Peers: unixsock.PeerPolicy{UIDs: []uint32{65534}}}}, nil)
		done := make(chan string, 1)
		go func() { done <- runAsNobody(t, f.names[1]) }()
		testutil.WaitFor(t, "child registered", 5*time.Second, func() bool { return f.dm.Stats().Clients[5] == 1 })
		f.dm.Deliver(dmLocal, 5, []byte("hi"))
		if out := <-done; out != "recv: <nil>" {
			t.Fatalf("child: %q", out)
		}
	})
}

// TestDefaultNames serves the real names, in a private network
// namespace when possible (abstract names are per namespace), so that a
// demux daemon on the host or another test package is not disturbed.
func TestDefaultNames(t *testing.T) {
	t.Parallel()
	res := make(chan error, 1)
	go func() {
		// The thread stays in the new namespace; never unlocking it makes
		// the runtime discard the thread when this goroutine ends.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			t.Logf("no private network namespace (%v); using the host's", err)
		}
		res <- func() error {
			dm, err := New(DefaultNames, Options{Log: slog.New(testutil.NewLogs())})
			if err != nil {
				return err
			}
			if err := dm.Serve(Loopback(dm, dmLocal)); err != nil {
				return err
			}
			defer dm.Close(context.Background())
			if got := strings.Join(dm.Addrs(), " "); got != "@mctp-mux @mctp-demux" {
				return fmt.Errorf("addrs = %q", got)
			}
			for _, name := range DefaultNames {
				c, err := Dial(name, 1)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.Send(dmLocal, []byte(name)); err != nil {
					return err
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _, b, err := c.Recv()
				if err != nil {
					return err
				}
				if string(b) != name {
					// Both clients are type 1: each sees both messages.
					if _, _, b2, err := c.Recv(); err != nil || string(b2) != name {
						return fmt.Errorf("%s: got %q %q %v", name, b, b2, err)
					}
				}
			}
			return nil
		}()
	}()
	if err := <-res; errors.Is(err, unixsock.ErrInUse) {
		testutil.Require(t, fmt.Sprintf("the default names are in use on this host: %v", err))
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestSocat uses socat as an independent seqpacket client on an
// abstract name.
func TestSocat(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "socat", "socat")
	f := newDMFixture(t, Options{}, nil)
	cmd := exec.Command("socat", "-t", "0.2", "-", "ABSTRACT-CONNECT:"+f.names[0]+",socktype=5")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if _, err := stdin.Write([]byte{0x05}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "socat registered", 5*time.Second, func() bool { return f.dm.Stats().Clients[5] == 1 })
	// Written only after registration, so socat sends it as its own
	// packet.
	if _, err := stdin.Write([]byte{dmLocal, 0x05, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	r := bufio.NewReader(stdout)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read socat output: %v (stderr %s)", err, stderr.String())
	}
	if string(got) != "\x08\x05hi" {
		t.Fatalf("socat got %q", got)
	}
	// Messages from the daemon reach socat too.
	f.dm.Deliver(0x1d, 0x05, []byte("yo"))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "\x1d\x05yo" {
		t.Fatalf("socat got %q %v", got, err)
	}
	stdin.Close()
	testutil.WaitFor(t, "socat gone", 5*time.Second, func() bool { return len(f.dm.Stats().Clients) == 0 })
}

// FuzzMessage sends arbitrary datagrams, the first being the
// registration, and checks the demux against a model of libmctp's rules.
// The input is a sequence of one-byte lengths followed by that many
// bytes.
//
// One demux serves every input: starting and closing a server per input
// took most of the target's time. Inputs run one at a time; each starts
// once the previous input's client is gone, its writer included (the
// demux drops a client from Clients before its writer stops), and checks
// how the counters grew from there.
func FuzzMessage(f *testing.F) {
	var gone atomic.Uint64
	fx := newDMFixture(f, Options{OnDisconnect: func(mctp.ClientID) { gone.Add(1) }}, nil)
	f.Add([]byte("\x01\x05\x06\x08\x05hello"))
	f.Add([]byte("\x01\x00"))
	f.Add([]byte("\x00"))
	f.Add([]byte("\x03\x05\x01\x02\x01\x08\x04\x08\x05ab\x00\x02\x08\x05"))
	f.Add([]byte("\x01\x81\x03\x08\x01x\x03\x08\x81y\x03\x09\x81z"))
	f.Add([]byte("\x01\x05\x02\x08\x05\x03\x08\x05\x00\x02\x08\x06"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var dgrams [][]byte
		for len(in) > 0 && len(dgrams) < 64 {
			n := int(in[0])
			in = in[1:]
			if n > len(in) {
				n = len(in)
			}
			dgrams = append(dgrams, in[:n])
			in = in[n:]
		}
		if len(dgrams) == 0 {
			return
		}
		testutil.WaitFor(t, "the previous input's client gone", 5*time.Second, func() bool { return gone.Load() == fx.dm.Stats().Registrations })
		base := fx.dm.Stats()
		raw, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: "@" + fx.names[0], Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()

		// The model.
		var want []string
		var short, route, noClient, in2 uint64
		closed := false
		typ := byte(0)
		if len(dgrams[0]) == 0 || dgrams[0][0] == 0 {
			closed = true
		} else {
			typ = dgrams[0][0]
		}
		sent := 0
		for i, d := range dgrams {
			if _, err := raw.Write(d); err != nil {
				break
			}
			sent++
			if i == 0 {
				if !closed {
					testutil.WaitFor(t, "registration", 5*time.Second, func() bool { return fx.dm.Stats().Clients[typ] == 1 })
				}
				continue
			}
			if closed {
				break
			}
			switch {
			case len(d) == 0:
				closed = true
			case len(d) < 2:
				short++
			case d[0] != dmLocal:
				in2++
				route++
			case len(d) == 2:
				// A type byte alone: libmctp delivers nothing under
				// 2 bytes, so the loopback router refuses it.
				in2++
				route++
			case d[1] != typ:
				in2++
				noClient++
			default:
				in2++
				want = append(want, string(append([]byte{dmLocal}, d[1:]...)))
			}
		}
		buf := make([]byte, 512)
		if closed {
			// Echoes queued before the disconnect may or may not be
			// written first; whatever arrives is a prefix of the model's.
			for i := 0; ; i++ {
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := raw.Read(buf)
				if err != nil || n == 0 {
					if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("read: %v", err)
					}
					break
				}
				if i >= len(want) || string(buf[:n]) != want[i] {
					t.Fatalf("after disconnect, message %d = %q; want %q", i, buf[:n], want)
				}
			}
			testutil.WaitFor(t, "client gone", 5*time.Second, func() bool { return len(fx.dm.Stats().Clients) == 0 })
		}
		testutil.WaitFor(t, "messages processed", 5*time.Second, func() bool {
			st := fx.dm.Stats()
			return st.DropShort-base.DropShort == short && st.DropRoute-base.DropRoute == route &&
				st.DropNoClient-base.DropNoClient == noClient && st.In-base.In == in2
		})
		if closed {
			return
		}
		for i, w := range want {
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := raw.Read(buf)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if string(buf[:n]) != w {
				t.Fatalf("message %d = %q, want %q", i, buf[:n], w)
			}
		}
		st := fx.dm.Stats()
		if st.Out-base.Out != uint64(len(want)) || st.Overflows != base.Overflows || st.DropTooBig != base.DropTooBig {
			t.Fatalf("stats = %+v from %+v, want %d more out", st, base, len(want))
		}
	})
}

// BenchmarkLoopback measures 64-byte messages round-tripping from a
// client through the loopback sender and back to it.
func BenchmarkLoopback(b *testing.B) {
	f := newDMFixture(b, Options{}, nil)
	c := f.dial(b, f.names[0], 5)
	body := bytes.Repeat([]byte{0xa5}, 64)
	const window = 256 // below the client's queue, so none overflow
	credit := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		credit <- struct{}{}
	}
	var wg sync.WaitGroup
	var recvErr error
	wg.Add(1)
	b.ResetTimer()
	go func() {
		defer wg.Done()
		for i := 0; i < b.N; i++ {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _, got, err := c.Recv()
			if err != nil || len(got) != len(body) {
				recvErr = fmt.Errorf("message %d: %d bytes, %v", i, len(got), err)
				return
			}
			credit <- struct{}{}
		}
	}()
	for i := 0; i < b.N; i++ {
		<-credit
		if err := c.Send(dmLocal, body); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	if recvErr != nil {
		b.Fatal(recvErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestCloseWithUnreadKeepsSent: a client that sends and closes
// without reading what came back (its own loopback copies) still has
// every message it sent routed; the kernel reports the unread data to the
// demux as ECONNRESET ahead of the client's last messages.
func TestCloseWithUnreadKeepsSent(t *testing.T) {
	t.Parallel()
	f := newDMFixture(t, Options{}, nil)
	for round := 0; round < 5; round++ {
		before := f.dm.Stats().In
		c := f.dial(t, f.names[0], 0x30)
		testutil.WaitFor(t, "registration", 5*time.Second, func() bool { return f.dm.Stats().Clients[0x30] == 1 })
		const n = 200
		for i := 0; i < n; i++ {
			if err := c.Send(dmLocal, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for f.dm.Stats().In-before != n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := f.dm.Stats().In - before; got != n {
			t.Fatalf("round %d: %d of %d messages routed; stats %+v", round, got, n, f.dm.Stats())
		}
		testutil.WaitFor(t, "client gone", 5*time.Second, func() bool { return f.dm.Stats().Clients[0x30] == 0 })
	}
}
