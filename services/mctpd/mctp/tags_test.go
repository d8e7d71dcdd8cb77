package mctp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

func TestParseClientTag(t *testing.T) {
	for b := 0; b < 256; b++ {
		alloc, tag, err := ParseClientTag(byte(b))
		switch {
		case b == 0x88:
			if !alloc || err != nil {
				t.Errorf("%#02x: alloc %v %v", b, alloc, err)
			}
		case b <= 7:
			if alloc || tag != uint8(b) || err != nil {
				t.Errorf("%#02x: alloc %v tag %d %v", b, alloc, tag, err)
			}
		default:
			if !errors.Is(err, ErrTagByte) {
				t.Errorf("%#02x: %v, want ErrTagByte", b, err)
			}
		}
	}
}

// TestTags runs scripts of allocator operations against a fake clock.
func TestTags(t *testing.T) {
	type step struct {
		op    string // alloc, match, release, gone, wait, count
		eid   byte
		owner ctl.DemuxClientID
		tag   uint8 // alloc: the tag wanted (0: ErrNoTag); match, release: the tag
		ok    bool  // match: whether it matches
		n     int   // gone: tags released; count: outstanding
		wait  time.Duration
	}
	const timeout = 6 * time.Second
	full := []step{}
	for i := uint8(1); i <= 7; i++ {
		full = append(full, step{op: "alloc", eid: 9, owner: ctl.DemuxClientID(i), tag: i})
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"allocate and route the reply", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "count", n: 2},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
			{op: "match", eid: 9, tag: 2, ok: false},  // answered once
			{op: "match", eid: 10, tag: 1, ok: false}, // another EID's tag 1
			{op: "match", eid: 9, tag: 0, ok: false},  // libmctp's tag
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "count", n: 0},
		}},
		{"round robin skips recent tags", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "alloc", eid: 9, owner: 1, tag: 2},
			{op: "alloc", eid: 10, owner: 1, tag: 1}, // per destination
		}},
		{"exhaustion", append(append([]step{}, full...),
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
			step{op: "alloc", eid: 10, owner: 8, tag: 1},
			step{op: "match", eid: 9, tag: 4, owner: 4, ok: true},
			step{op: "alloc", eid: 9, owner: 8, tag: 4},
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
		)},
		{"expiry", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "wait", wait: timeout - time.Millisecond},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "count", n: 2},
			{op: "wait", wait: time.Millisecond},
			{op: "count", n: 1},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
		}},
		{"expired tags are reused when full", append(append([]step{}, full...),
			step{op: "wait", wait: timeout},
			step{op: "alloc", eid: 9, owner: 9, tag: 1},
			step{op: "count", n: 1},
		)},
		{"owner disconnect", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "alloc", eid: 10, owner: 1, tag: 1},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "gone", owner: 1, n: 2},
			{op: "gone", owner: 1, n: 0},
			{op: "count", n: 1},
			// The response still matches, with no owner: it is dropped,
			// not handed to other clients.
			{op: "match", eid: 9, tag: 1, owner: 0, ok: true},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
		}},
		{"a gone owner's tag is free at once", append(append([]step{}, full...),
			step{op: "gone", owner: 3, n: 1},
			step{op: "count", n: 6},
			step{op: "alloc", eid: 9, owner: 8, tag: 3},
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
			step{op: "match", eid: 9, tag: 3, owner: 8, ok: true},
		)},
		{"release after a failed send", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "release", eid: 9, tag: 1},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "count", n: 0},
		}},
		{"broadcast and null requests match any source until expiry", []step{
			{op: "alloc", eid: 0xff, owner: 1, tag: 1},
			{op: "alloc", eid: 0, owner: 2, tag: 2}, // same key as broadcast
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "match", eid: 10, tag: 1, owner: 1, ok: true},
			{op: "match", eid: 12, tag: 2, owner: 2, ok: true},
			{op: "alloc", eid: 9, owner: 3, tag: 1},
			{op: "match", eid: 9, tag: 1, owner: 3, ok: true}, // the exact EID first
			{op: "wait", wait: timeout},
			{op: "match", eid: 10, tag: 1, ok: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			tags := NewTags(TagOptions{Timeout: timeout, Now: func() time.Time { return now }})
			for i, s := range tc.steps {
				switch s.op {
				case "alloc":
					tag, err := tags.Alloc(s.eid, s.owner)
					if s.tag == 0 {
						if !errors.Is(err, ErrNoTag) {
							t.Fatalf("step %d: alloc to %d: tag %d %v, want ErrNoTag", i, s.eid, tag, err)
						}
					} else if err != nil || tag != s.tag {
						t.Fatalf("step %d: alloc to %d: tag %d %v, want %d", i, s.eid, tag, err, s.tag)
					}
				case "match":
					owner, ok := tags.Match(s.eid, s.tag)
					if ok != s.ok || (ok && owner != s.owner) {
						t.Fatalf("step %d: match %d tag %d: %d %v, want %d %v", i, s.eid, s.tag, owner, ok, s.owner, s.ok)
					}
				case "release":
					tags.Release(s.eid, s.tag)
				case "gone":
					if n := tags.ReleaseOwner(s.owner); n != s.n {
						t.Fatalf("step %d: released %d, want %d", i, n, s.n)
					}
				case "wait":
					now = now.Add(s.wait)
				case "count":
					if n := tags.Outstanding(); n != s.n {
						t.Fatalf("step %d: outstanding %d, want %d", i, n, s.n)
					}
				}
			}
		})
	}
}

// taggedFixture is a router on a recording wire with a plain and a
// tagged demux attached, as mctpd runs it.
type taggedFixture struct {
	w             *wire
	r             *Router
	plain, tagged *ctl.Demux
	pname, tname  string
}

func newTaggedFixture(t *testing.T) *taggedFixture {
	t.Helper()
	f := &taggedFixture{w: &wire{name: "w", mtu: 64}}
	var err error
	f.r, err = New(Options{EID: 8, Bindings: []binding.Binding{f.w}})
	if err != nil {
		t.Fatal(err)
	}
	srv := ctl.NewServer(ctl.NewRegistry(ctl.Options{Name: "t", Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(func() { srv.Close(context.Background()) })
	f.pname = "tbtags-" + rand.Text()[:12]
	f.tname = f.pname + "-tagged"
	if f.plain, err = srv.ServeDemux([]string{f.pname}, ctl.DemuxOptions{Router: f.r}); err != nil {
		t.Fatal(err)
	}
	if f.tagged, err = srv.ServeDemux([]string{f.tname}, ctl.DemuxOptions{Router: f.r, Tagged: true, OnDisconnect: f.r.ClientGone}); err != nil {
		t.Fatal(err)
	}
	f.r.AttachTagged(f.tagged)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx, f.plain) }()
	t.Cleanup(func() { cancel(); <-done })
	for f.r.attached() == nil {
		time.Sleep(time.Millisecond)
	}
	return f
}

func (f *taggedFixture) dial(t *testing.T, tagged bool, typ byte) *ctl.DemuxConn {
	t.Helper()
	d, dial, name := f.plain, ctl.DialDemux, f.pname
	if tagged {
		d, dial, name = f.tagged, ctl.DialDemuxTagged, f.tname
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
	testutil.WaitFor(t, "a packet on the wire", 5*time.Second, func() bool { got = append(got, f.w.take()...); return len(got) > 0 })
	if len(got) != 1 {
		t.Fatalf("sent %d packets: % x", len(got), got)
	}
	return got[0]
}

func recvTag(t *testing.T, c *ctl.DemuxConn) (src, tag, typ byte, body []byte) {
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
	if err := a.SendTag(9, TagRequest, 5, []byte{0xaa}); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); !bytes.Equal(p, []byte{1, 9, 8, 0xc9, 5, 0xaa}) {
		t.Fatalf("a's request % x", p)
	}
	if err := b.SendTag(9, TagRequest, 5, []byte{0xbb}); err != nil {
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
	for _, c := range []*ctl.DemuxConn{a, b} {
		if src, tag, _, body := recvTag(t, c); src != 9 || tag != TagOwner|5 || !bytes.Equal(body, []byte{0x11}) {
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
		if err := a.SendTag(10, TagRequest, 5, nil); err != nil {
			t.Fatal(err)
		}
		// The binding's sequence goes on from the three messages
		// before: 3, 0, 1, ...
		if p := f.sentPacket(t); p[3] != 0xc8|byte(i+3)&3<<4|byte(i+1) {
			t.Fatalf("request %d: % x", i, p)
		}
	}
	if err := b.SendTag(10, TagRequest, 5, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if src, tag, typ, body := recvTag(t, b); src != 10 || tag != TagError || typ != 5 || len(body) == 0 || body[0] != TagErrNoTag {
		t.Fatalf("exhaustion: %d %#x %d %q", src, tag, typ, body)
	}
	// A bad tag byte is answered the same way.
	if err := b.SendTag(10, 0x0b, 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, tag, _, body := recvTag(t, b); tag != TagError || body[0] != TagErrBadTag {
		t.Fatalf("bad tag byte: %#x %q", tag, body)
	}
	if got := f.w.take(); len(got) != 0 {
		t.Fatalf("refused requests sent: % x", got)
	}
	st := f.r.Stats()
	if st.TagsOutstanding != 7 || st.Drops[DropTagExhausted] != 1 || st.Drops[DropTagByte] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// a leaves: its tags are free again, and a late response to one
	// of them is dropped, not given to b or the plain client.
	a.Close()
	testutil.WaitFor(t, "no tag outstanding", 5*time.Second, func() bool { return f.r.Stats().TagsOutstanding == 0 })
	f.r.Receive(f.w, []byte{1, 8, 10, 0xc3, 5, 0x33})
	if n := f.r.Stats().Drops[DropTagOwnerGone]; n != 1 {
		t.Fatalf("tag-owner-gone drops %d", n)
	}
	if err := b.SendTag(10, TagRequest, 5, nil); err != nil {
		t.Fatal(err)
	}
	if p := f.sentPacket(t); p[3]&0x0f != TagOwner|1 {
		t.Fatalf("after a left: % x", p)
	}

	// A request that cannot be sent gives its tag back.
	f.w.setRefuse(errors.New("queue full"))
	if err := b.SendTag(11, TagRequest, 5, nil); err != nil {
		t.Fatal(err)
	}
	if _, tag, _, body := recvTag(t, b); tag != TagError || body[0] != TagErrSend {
		t.Fatalf("send error: %#x %q", tag, body)
	}
	f.w.setRefuse(nil)
	if n := f.r.Stats().TagsOutstanding; n != 1 {
		t.Fatalf("outstanding %d after a failed send", n)
	}

	// Control requests to the local EID: the reply comes with the
	// allocated tag to the tagged requester only.
	ctrl, plainCtrl := f.dial(t, true, TypeControlReplies), f.dial(t, false, TypeControlReplies)
	if err := ctrl.SendTag(8, TagRequest, TypeControl, []byte{0x80 | 7, CmdGetEID}); err != nil {
		t.Fatal(err)
	}
	if src, tag, typ, body := recvTag(t, ctrl); src != 8 || tag&TagOwner != 0 || tag == 0 || typ != TypeControlReplies ||
		!bytes.Equal(body, []byte{7, CmdGetEID, 0, 8, 1, 0}) {
		t.Fatalf("local get-eid: %d %#x %#x % x", src, tag, typ, body)
	}
	plainCtrl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if src, typ, body, err := plainCtrl.Recv(); err == nil {
		t.Fatalf("plain control client got the tagged reply: %d %#x % x", src, typ, body)
	}
	plainCtrl.SetDeadline(time.Now().Add(5 * time.Second))
	// A plain control request still reaches plain clients only.
	if err := plainCtrl.SendType(8, TypeControl, []byte{0x80 | 6, CmdGetEID}); err != nil {
		t.Fatal(err)
	}
	if src, _, body, err := plainCtrl.Recv(); err != nil || src != 8 || !bytes.Equal(body, []byte{6, CmdGetEID, 0, 8, 1, 0}) {
		t.Fatalf("plain get-eid: % x %v", body, err)
	}
	ctrl.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, _, body, err := ctrl.RecvTag(); err == nil {
		t.Fatalf("tagged control client got a plain reply: % x", body)
	}
	// The responder lists tagged clients' types too.
	if ts := f.r.clientTypes(); !bytes.Equal(ts, []byte{5}) {
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
		m, err := ctl.ParseDemuxFrame(b, true)
		if err != nil {
			if len(b) >= 3 {
				t.Fatalf("%x: %v", b, err)
			}
			return
		}
		if m.Addr != b[0] || m.Tag != b[1] || m.Type != b[2] || !bytes.Equal(m.Body, b[3:]) {
			t.Fatalf("%x: %+v", b, m)
		}
		alloc, tag, err := ParseClientTag(m.Tag)
		switch {
		case err != nil:
			if m.Tag == TagRequest || m.Tag <= TagValue || !errors.Is(err, ErrTagByte) {
				t.Fatalf("tag byte %#02x: %v", m.Tag, err)
			}
		case alloc:
			if m.Tag != TagRequest || tag != 0 {
				t.Fatalf("tag byte %#02x: alloc with tag %d", m.Tag, tag)
			}
		default:
			// A response leaves with exactly the client's tag.
			if tag != m.Tag || tag > TagValue {
				t.Fatalf("tag byte %#02x: response tag %d", m.Tag, tag)
			}
			h := Header{TO: false, Tag: tag}
			if h.Flags()&(flagTO|tagMask) != m.Tag {
				t.Fatalf("tag byte %#02x: header flags %#02x", m.Tag, h.Flags())
			}
		}
	})
}
