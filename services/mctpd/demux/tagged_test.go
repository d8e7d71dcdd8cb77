package demux

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// replyRouter answers each message to its sender alone, with the
// message's tag plus one, and records who sent what.
type replyRouter struct {
	mu   sync.Mutex
	d    *Server
	seen []Message
}

// replyTo returns a fixture's sender: r, answering through d.
func (r *replyRouter) replyTo(d *Server) Sender {
	r.d = d
	return r
}

func (r *replyRouter) Send(_ context.Context, m Message) error {
	r.mu.Lock()
	r.seen = append(r.seen, m)
	r.mu.Unlock()
	if !r.d.DeliverTo(m.Client, m.Addr, m.Tag+1, m.Type, m.Body) {
		return errors.New("sender gone")
	}
	return nil
}

func (r *replyRouter) clients() []mctp.ClientID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []mctp.ClientID
	for _, m := range r.seen {
		ids = append(ids, m.Client)
	}
	return ids
}

type tagMsg struct {
	addr, tag, typ byte
	body           string
}

func tagRecv(t *testing.T, c *Conn) tagMsg {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	a, tag, ty, b, err := c.RecvTag()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return tagMsg{a, tag, ty, string(b)}
}

func tagNothing(t *testing.T, c *Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if a, tag, ty, b, err := c.RecvTag(); err == nil {
		t.Fatalf("unexpected message %d %#x %#x %q", a, tag, ty, b)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
}

func dialTagged(t *testing.T, f *dmFixture, typ byte) *Conn {
	t.Helper()
	before := f.dm.Stats().Registrations
	c, err := DialTagged(f.names[0], typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testutil.WaitFor(t, "registration", 5*time.Second, func() bool { return f.dm.Stats().Registrations > before })
	return c
}

// A tagged demux carries the tag byte both ways, gives the router each
// sender's identity, delivers to one client with DeliverTo and reports
// disconnects.
func TestTaggedDeliverTo(t *testing.T) {
	t.Parallel()
	r := &replyRouter{}
	var mu sync.Mutex
	var gone []mctp.ClientID
	f := newDMFixture(t, Options{Tagged: true, OnDisconnect: func(id mctp.ClientID) {
		mu.Lock()
		gone = append(gone, id)
		mu.Unlock()
	}}, r.replyTo)
	if !f.dm.Tagged() {
		t.Fatal("Tagged() false")
	}
	a, b := dialTagged(t, f, 5), dialTagged(t, f, 5)
	if f.dm.Registered(5) != 2 || f.dm.Registered(6) != 0 {
		t.Fatalf("Registered: %d %d", f.dm.Registered(5), f.dm.Registered(6))
	}
	// Each sender gets its own answer only, although both registered
	// the same type.
	if err := a.SendTag(9, 0x10, 5, []byte("from a")); err != nil {
		t.Fatal(err)
	}
	if got, want := tagRecv(t, a), (tagMsg{9, 0x11, 5, "from a"}); got != want {
		t.Fatalf("a got %+v, want %+v", got, want)
	}
	tagNothing(t, b)
	if err := b.SendTag(10, 0x20, 7, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := tagRecv(t, b), (tagMsg{10, 0x21, 7, ""}); got != want {
		t.Fatalf("b got %+v, want %+v", got, want)
	}
	tagNothing(t, a)
	ids := r.clients()
	if len(ids) != 2 || ids[0] == 0 || ids[1] == 0 || ids[0] == ids[1] {
		t.Fatalf("client IDs %v: want two distinct non-zero", ids)
	}

	// Fan-out by type keeps the tag byte.
	if n := f.dm.DeliverTag(8, 0x0b, 5, []byte("all")); n != 2 {
		t.Fatalf("DeliverTag reached %d", n)
	}
	for _, c := range []*Conn{a, b} {
		if got, want := tagRecv(t, c), (tagMsg{8, 0x0b, 5, "all"}); got != want {
			t.Fatalf("fan-out %+v, want %+v", got, want)
		}
	}
	// A 2-byte datagram is short on a tagged demux; the client stays.
	raw := dmRaw(t, f.names[0])
	raw.Write([]byte{5})
	testutil.WaitFor(t, "raw client", 5*time.Second, func() bool { return f.dm.Registered(5) == 3 })
	if _, err := raw.Write([]byte{9, 5}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "short drop", 5*time.Second, func() bool { return f.dm.Stats().DropShort == 1 })
	if len(f.logs.Find("demux: client message under 3 bytes; dropped")) != 1 {
		t.Errorf("no short-drop log line:\n%s", f.logs.Dump())
	}
	if n := f.dm.DeliverFrame([]byte{1, 2}); n != 0 {
		t.Fatal("2-byte frame delivered on a tagged demux")
	}

	// Plain methods are refused on a tagged connection.
	if err := a.Send(9, nil); !errors.Is(err, errTaggedConn) {
		t.Errorf("Send on tagged: %v", err)
	}
	if _, _, _, err := a.Recv(); !errors.Is(err, errTaggedConn) {
		t.Errorf("Recv on tagged: %v", err)
	}

	// Disconnects are reported with the client's ID, and DeliverTo a
	// gone client fails.
	a.Close()
	testutil.WaitFor(t, "disconnect", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gone) == 1
	})
	mu.Lock()
	g := gone[0]
	mu.Unlock()
	if g != ids[0] {
		t.Fatalf("OnDisconnect(%d), want %d", g, ids[0])
	}
	if f.dm.DeliverTo(g, 1, 2, 5, nil) {
		t.Fatal("DeliverTo a gone client succeeded")
	}
	if f.dm.DeliverTo(0, 1, 2, 5, nil) {
		t.Fatal("DeliverTo client 0 succeeded")
	}
}

// On a plain demux the tag is not part of the frame: libmctp's bytes
// are unchanged, and DeliverTo reaches one client.
func TestPlainDeliverTo(t *testing.T) {
	t.Parallel()
	r := &replyRouter{}
	f := newDMFixture(t, Options{}, r.replyTo)
	a, b := f.dial(t, f.names[0], 5), f.dial(t, f.names[0], 5)
	if err := a.Send(9, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, want := dmRecv(t, a), (dmMsg{9, 5, "x"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	dmNothing(t, b)
	if n := f.dm.DeliverTag(8, 0xee, 5, []byte("y")); n != 2 {
		t.Fatalf("DeliverTag reached %d", n)
	}
	raw := dmRaw(t, f.names[0])
	raw.Write([]byte{6})
	testutil.WaitFor(t, "raw", 5*time.Second, func() bool { return f.dm.Registered(6) == 1 })
	f.dm.DeliverTag(8, 0xee, 6, []byte("y"))
	buf := make([]byte, 16)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := raw.Read(buf)
	if err != nil || string(buf[:n]) != "\x08\x06y" {
		t.Fatalf("plain frame %q %v", buf[:n], err)
	}
	if err := a.SendTag(9, 0, 5, nil); !errors.Is(err, errPlainConn) {
		t.Errorf("SendTag on plain: %v", err)
	}
}

// FuzzFrame checks ParseFrame: a frame parses exactly when it
// holds its header, the fields are where the format puts them, and
// laying the message out again gives the input back.
func FuzzFrame(f *testing.F) {
	f.Add([]byte("\x09\x88\x05hello"), true)
	f.Add([]byte("\x09\x05hello"), false)
	f.Add([]byte("\x09\x03"), true)
	f.Add([]byte("\x09"), false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, b []byte, tagged bool) {
		hdr := 2
		if tagged {
			hdr = 3
		}
		m, err := ParseFrame(b, tagged)
		if len(b) < hdr {
			if err == nil || !errors.Is(err, ErrShort) {
				t.Fatalf("%x (tagged %v): %v, want ErrShort", b, tagged, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%x (tagged %v): %v", b, tagged, err)
		}
		out := []byte{m.Addr}
		if tagged {
			out = append(out, m.Tag)
		} else if m.Tag != 0 {
			t.Fatalf("plain frame gave tag %#x", m.Tag)
		}
		out = append(append(out, m.Type), m.Body...)
		if !bytes.Equal(out, b) || m.Client != 0 {
			t.Fatalf("%x parsed to %+v", b, m)
		}
	})
}
