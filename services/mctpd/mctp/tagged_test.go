package mctp_test

// The tagged routing tests run the router with real demuxes
// (services/mctpd/demux), which import this package: hence an external
// test package, with export_test.go for the few internals they read.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// taggedFixture is a router on a recording wire with a plain and a
// tagged demux attached, as mctpd runs it.
type taggedFixture struct {
	w             *mctp.TestWire
	r             *mctp.Router
	plain, tagged *demux.Server
	pname, tname  string
}

func newTaggedFixture(t *testing.T) *taggedFixture {
	t.Helper()
	f := &taggedFixture{w: mctp.NewTestWire("w", 64)}
	f.pname = "tbtags-" + rand.Text()[:12]
	f.tname = f.pname + "-tagged"
	var err error
	// The demuxes first, then the router with them as its clients, then
	// the demuxes serve with the router as their sender, as mctpd wires
	// them.
	if f.plain, err = demux.New([]string{f.pname}, demux.Options{}); err != nil {
		t.Fatal(err)
	}
	// ClientGone is a method value of the router, which does not exist
	// yet: the hook reads it once it does.
	var r *mctp.Router
	if f.tagged, err = demux.New([]string{f.tname}, demux.Options{Tagged: true, OnDisconnect: func(id mctp.ClientID) { r.ClientGone(id) }}); err != nil {
		t.Fatal(err)
	}
	r, err = mctp.New(mctp.Options{EID: 8, Bindings: []binding.Binding{f.w}, Clients: f.plain, Tagged: f.tagged})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	t.Cleanup(func() {
		f.plain.Close(context.Background())
		f.tagged.Close(context.Background())
	})
	if err := f.plain.Serve(r); err != nil {
		t.Fatal(err)
	}
	if err := f.tagged.Serve(demux.SenderFunc(r.SendTagged)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *taggedFixture) dial(t *testing.T, tagged bool, typ byte) *demux.Conn {
	t.Helper()
	d, dial, name := f.plain, demux.Dial, f.pname
	if tagged {
		d, dial, name = f.tagged, demux.DialTagged, f.tname
	}
	n := d.Registered(typ)
	c, err := dial(name, typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	testutil.WaitFor(t, "client registered", 5*time.Second, func() bool { return d.Registered(typ) == n+1 })
	return c
}

// sentPacket waits for the next packet on the wire.
func (f *taggedFixture) sentPacket(t *testing.T) []byte {
	t.Helper()
	var got [][]byte
	testutil.WaitFor(t, "a packet on the wire", 5*time.Second, func() bool { got = append(got, f.w.Take()...); return len(got) > 0 })
	if len(got) != 1 {
		t.Fatalf("sent %d packets: % x", len(got), got)
	}
	return got[0]
}

func recvTag(t *testing.T, c *demux.Conn) (src, tag, typ byte, body []byte) {
	t.Helper()
	src, tag, typ, body, err := c.RecvTag()
	if err != nil {
		t.Fatal(err)
	}
	return src, tag, typ, body
}

// TestRouterTagged follows tagged requests and responses through the
// router: allocation on the wire, the response to its owner alone,
// remote requests with their tag, responses sent with the client's tag,
// exhaustion and disconnects, and plain clients kept to libmctp's
// behaviour.
func TestRouterTagged(t *testing.T) {
	f := newTaggedFixture(t)
	a, b := f.dial(t, true, 5), f.dial(t, true, 5)
	plain := f.dial(t, false, 5)

	// Two requests from a and b to EID 9 leave with TO=1 and tags 1, 2.
	if err := a.SendTag(9, mctp.TagRequest, 5, []byte{0xaa}); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); !bytes.Equal(p, []byte{1, 9, 8, 0xc9, 5, 0xaa}) {
		t.Fatalf("a's request % x", p)
	}
	if err := b.SendTag(9, mctp.TagRequest, 5, []byte{0xbb}); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); !bytes.Equal(p, []byte{1, 9, 8, 0xda, 5, 0xbb}) {
		t.Fatalf("b's request % x", p)
	}
	// Responses, b's first, each reach their requester only.
	f.r.Receive(f.w, []byte{1, 8, 9, 0xc2, 5, 0xb0})
	f.r.Receive(f.w, []byte{1, 8, 9, 0xc1, 5, 0xa0})
	if src, tag, typ, body := recvTag(t, a); src != 9 || tag != 1 || typ != 5 || !bytes.Equal(body, []byte{0xa0}) {
		t.Fatalf("a got %d %#x %d % x", src, tag, typ, body)
	}
	if src, tag, typ, body := recvTag(t, b); src != 9 || tag != 2 || typ != 5 || !bytes.Equal(body, []byte{0xb0}) {
		t.Fatalf("b got %d %#x %d % x", src, tag, typ, body)
	}

	// A remote request reaches both tagged clients with TO and its tag,
	// and the plain client as libmctp's demux gives it.
	f.r.Receive(f.w, []byte{1, 8, 9, 0xcd, 5, 0x11})
	for _, c := range []*demux.Conn{a, b} {
		if src, tag, _, body := recvTag(t, c); src != 9 || tag != mctp.TagOwner|5 || !bytes.Equal(body, []byte{0x11}) {
			t.Fatalf("request to tagged: %d %#x % x", src, tag, body)
		}
	}
	if src, typ, body, err := plain.Recv(); err != nil || src != 9 || typ != 5 || !bytes.Equal(body, []byte{0x11}) {
		t.Fatalf("request to plain: %d %d % x %v", src, typ, body, err)
	}
	// a answers it with TO=0 and tag 5.
	if err := a.SendTag(9, 5, 5, []byte{0x12}); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); !bytes.Equal(p, []byte{1, 9, 8, 0xe5, 5, 0x12}) {
		t.Fatalf("a's response % x", p)
	}
	// A response on tag 0, or on a tag nobody holds, goes to plain
	// clients only.
	f.r.Receive(f.w, []byte{1, 8, 9, 0xc0, 5, 0x20})
	f.r.Receive(f.w, []byte{1, 8, 9, 0xc3, 5, 0x30})
	for _, want := range []byte{0x20, 0x30} {
		if _, _, body, err := plain.Recv(); err != nil || !bytes.Equal(body, []byte{want}) {
			t.Fatalf("plain: % x %v, want %#x", body, err, want)
		}
	}

	// Seven outstanding requests to EID 10; the eighth gets an error
	// frame and is not sent.
	for i := 0; i < 7; i++ {
		if err := a.SendTag(10, mctp.TagRequest, 5, nil); err != nil {
			t.Fatal(err)
		}
		// The binding's sequence goes on from the three messages
		// before: 3, 0, 1, ...
		if p := f.sentPacket(t); p[3] != 0xc8|byte(i+3)&3<<4|byte(i+1) {
			t.Fatalf("request %d: % x", i, p)
		}
	}
	if err := b.SendTag(10, mctp.TagRequest, 5, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if src, tag, typ, body := recvTag(t, b); src != 10 || tag != mctp.TagError || typ != 5 || len(body) == 0 || body[0] != mctp.TagErrNoTag {
		t.Fatalf("exhaustion: %d %#x %d %q", src, tag, typ, body)
	}
	// A bad tag byte is answered the same way.
	if err := b.SendTag(10, 0x0b, 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, tag, _, body := recvTag(t, b); tag != mctp.TagError || body[0] != mctp.TagErrBadTag {
		t.Fatalf("bad tag byte: %#x %q", tag, body)
	}
	if got := f.w.Take(); len(got) != 0 {
		t.Fatalf("refused requests sent: % x", got)
	}
	st := f.r.Stats()
	if st.TagsOutstanding != 7 || st.Drops[mctp.DropTagExhausted] != 1 || st.Drops[mctp.DropTagByte] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// a leaves: its tags are free again, and a late response to one
	// of them is dropped, not given to b or the plain client.
	a.Close()
	testutil.WaitFor(t, "no tag outstanding", 5*time.Second, func() bool { return f.r.Stats().TagsOutstanding == 0 })
	f.r.Receive(f.w, []byte{1, 8, 10, 0xc3, 5, 0x33})
	if n := f.r.Stats().Drops[mctp.DropTagOwnerGone]; n != 1 {
		t.Fatalf("tag-owner-gone drops %d", n)
	}
	if err := b.SendTag(10, mctp.TagRequest, 5, nil); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); p[3]&0x0f != mctp.TagOwner|1 {
		t.Fatalf("after a left: % x", p)
	}

	// A request that cannot be sent gives its tag back.
	f.w.SetRefuse(errors.New("queue full"))
	if err := b.SendTag(11, mctp.TagRequest, 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, tag, _, body := recvTag(t, b); tag != mctp.TagError || body[0] != mctp.TagErrSend {
		t.Fatalf("send error: %#x %q", tag, body)
	}
	f.w.SetRefuse(nil)
	if n := f.r.Stats().TagsOutstanding; n != 1 {
		t.Fatalf("outstanding %d after a failed send", n)
	}

	// Control requests to the local EID: the reply comes with the
	// allocated tag to the tagged requester only.
	ctrl, plainCtrl := f.dial(t, true, mctp.TypeControlReplies), f.dial(t, false, mctp.TypeControlReplies)
	if err := ctrl.SendTag(8, mctp.TagRequest, mctp.TypeControl, []byte{0x80 | 7, mctp.CmdGetEID}); err != nil {
		t.Fatal(err)
	}
	if src, tag, typ, body := recvTag(t, ctrl); src != 8 || tag&mctp.TagOwner != 0 || tag == 0 || typ != mctp.TypeControlReplies ||
		!bytes.Equal(body, []byte{7, mctp.CmdGetEID, 0, 8, 1, 0}) {
		t.Fatalf("local get-eid: %d %#x %#x % x", src, tag, typ, body)
	}
	plainCtrl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if src, typ, body, err := plainCtrl.Recv(); err == nil {
		t.Fatalf("plain control client got the tagged reply: %d %#x % x", src, typ, body)
	}
	plainCtrl.SetDeadline(time.Now().Add(5 * time.Second))
	// A plain control request still reaches plain clients only.
	if err := plainCtrl.SendType(8, mctp.TypeControl, []byte{0x80 | 6, mctp.CmdGetEID}); err != nil {
		t.Fatal(err)
	}
	if src, _, body, err := plainCtrl.Recv(); err != nil || src != 8 || !bytes.Equal(body, []byte{6, mctp.CmdGetEID, 0, 8, 1, 0}) {
		t.Fatalf("plain get-eid: % x %v", body, err)
	}
	ctrl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, _, body, err := ctrl.RecvTag(); err == nil {
		t.Fatalf("tagged control client got a plain reply: % x", body)
	}
	// The responder lists tagged clients' types too.
	if ts := f.r.ClientTypes(); !bytes.Equal(ts, []byte{5}) {
		t.Fatalf("types %v", ts)
	}
}

// FuzzTaggedFrame parses a tagged client frame as mctpd does: the demux
// splits it, then the tag byte decides between an allocated request and
// a response with a given tag, or an error.
func FuzzTaggedFrame(f *testing.F) {
	f.Add([]byte("\x09\x88\x05\x01\x02"))
	f.Add([]byte("\x09\x03\x05"))
	f.Add([]byte("\x09\x08\x05"))
	f.Add([]byte("\x09\x88"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := demux.ParseFrame(b, true)
		if err != nil {
			if len(b) >= 3 {
				t.Fatalf("%x: %v", b, err)
			}
			return
		}
		if m.Addr != b[0] || m.Tag != b[1] || m.Type != b[2] || !bytes.Equal(m.Body, b[3:]) {
			t.Fatalf("%x: %+v", b, m)
		}
		alloc, tag, err := mctp.ParseClientTag(m.Tag)
		switch {
		case err != nil:
			if m.Tag == mctp.TagRequest || m.Tag <= mctp.TagValue || !errors.Is(err, mctp.ErrTagByte) {
				t.Fatalf("tag byte %#02x: %v", m.Tag, err)
			}
		case alloc:
			if m.Tag != mctp.TagRequest || tag != 0 {
				t.Fatalf("tag byte %#02x: alloc with tag %d", m.Tag, tag)
			}
		default:
			// A response leaves with exactly the client's tag.
			if tag != m.Tag || tag > mctp.TagValue {
				t.Fatalf("tag byte %#02x: response tag %d", m.Tag, tag)
			}
			h := mctp.Header{TO: false, Tag: tag}
			if h.Flags()&(mctp.FlagTO|mctp.TagMask) != m.Tag {
				t.Fatalf("tag byte %#02x: header flags %#02x", m.Tag, h.Flags())
			}
		}
	})
}
