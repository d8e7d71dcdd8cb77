package mctp

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

func TestHeader(t *testing.T) {
	for _, tc := range []struct {
		hex string
		h   Header
	}{
		{"01 08 09 c8", Header{Dest: 8, Src: 9, SOM: true, EOM: true, TO: true}},
		{"01 09 08 c0", Header{Dest: 9, Src: 8, SOM: true, EOM: true}},
		{"01 ff 0a 9d", Header{Dest: 0xff, Src: 10, SOM: true, Seq: 1, TO: true, Tag: 5}},
		{"01 00 0a 37", Header{Dest: 0, Src: 10, Seq: 3, Tag: 7}},
		{"01 08 09 60", Header{Dest: 8, Src: 9, EOM: true, Seq: 2}},
	} {
		b := testutil.Unhex(t, tc.hex)
		if got := tc.h.Append(nil); !bytes.Equal(got, b) {
			t.Errorf("%+v encodes to % x, want % x", tc.h, got, b)
		}
		h, err := ParseHeader(b)
		if err != nil || h != tc.h {
			t.Errorf("% x decodes to %+v, %v; want %+v", b, h, err, tc.h)
		}
	}
	// The high nibble of the version byte is reserved and ignored.
	if h, err := ParseHeader(testutil.Unhex(t, "f1 08 09 c8")); err != nil || h.Dest != 8 {
		t.Errorf("reserved nibble: %+v %v", h, err)
	}
	if _, err := ParseHeader([]byte{1, 8, 9}); !errors.Is(err, ErrShortPacket) {
		t.Errorf("short: %v", err)
	}
	if _, err := ParseHeader(testutil.Unhex(t, "02 08 09 c8")); !errors.Is(err, ErrVersion) {
		t.Errorf("version 2: %v", err)
	}
}

func TestFragment(t *testing.T) {
	msg := make([]byte, 150)
	for i := range msg {
		msg[i] = byte(i)
	}
	pkts := Fragment(8, 9, true, 0, msg, 64)
	if len(pkts) != 3 {
		t.Fatalf("%d packets, want 3", len(pkts))
	}
	wantFlags := []byte{0x88, 0x18, 0x68}
	wantLen := []int{68, 68, 26}
	for i, p := range pkts {
		if p[3] != wantFlags[i] || len(p) != wantLen[i] || p[0] != 1 || p[1] != 8 || p[2] != 9 {
			t.Errorf("packet %d: % x (len %d)", i, p[:4], len(p))
		}
	}
	// Sequence numbers wrap mod 4.
	pkts = Fragment(8, 9, false, 3, make([]byte, 6), 1)
	for i, p := range pkts {
		h, _ := ParseHeader(p)
		if h.Seq != uint8(i%4) || h.Tag != 3 || h.TO {
			t.Errorf("packet %d: %+v", i, h)
		}
	}
	if Fragment(8, 9, true, 0, nil, 64) != nil {
		t.Error("empty message gave packets")
	}
	// The worked serial frame's packet: Get EID request 9→8.
	got := Fragment(8, 9, true, 0, []byte{0x00, 0x80, 0x02}, 64)
	if len(got) != 1 || !bytes.Equal(got[0], testutil.Unhex(t, "01 08 09 c8 00 80 02")) {
		t.Errorf("get-eid packet % x", got)
	}
}

type pkt struct {
	h       Header
	payload int
}

func som(seq uint8, n int) pkt { return pkt{Header{Src: 9, Dest: 8, SOM: true, Seq: seq}, n} }
func mid(seq uint8, n int) pkt { return pkt{Header{Src: 9, Dest: 8, Seq: seq}, n} }
func eom(seq uint8, n int) pkt { return pkt{Header{Src: 9, Dest: 8, EOM: true, Seq: seq}, n} }
func only(seq uint8, n int) pkt {
	return pkt{Header{Src: 9, Dest: 8, SOM: true, EOM: true, Seq: seq}, n}
}

func TestReassembly(t *testing.T) {
	big := MaxMessage / 64
	var tooBig []pkt
	tooBig = append(tooBig, som(0, 64))
	for i := 1; i < big; i++ {
		tooBig = append(tooBig, mid(uint8(i%4), 64))
	}
	exact := append(append([]pkt(nil), tooBig...), eom(uint8(big%4), 0))
	exact = append(exact[:len(exact)-2], eom(uint8((big-1)%4), 64))
	tooBig = append(tooBig, eom(uint8(big%4), 1))
	for _, tc := range []struct {
		name  string
		pkts  []pkt
		sizes []int // completed message sizes
		drops map[string]int
	}{
		{"single", []pkt{only(0, 10)}, []int{10}, nil},
		{"three", []pkt{som(0, 64), mid(1, 64), eom(2, 5)}, []int{133}, nil},
		{"seq wraps", []pkt{som(2, 8), mid(3, 8), mid(0, 8), eom(1, 8)}, []int{32}, nil},
		{"eom equal to som", []pkt{som(0, 8), eom(1, 8)}, []int{16}, nil},
		{"bad seq", []pkt{som(0, 8), mid(2, 8), eom(3, 8)}, nil, map[string]int{DropSeq: 1, DropNoContext: 1}},
		{"middle smaller", []pkt{som(0, 8), mid(1, 7), eom(2, 1)}, nil, map[string]int{DropMiddleSize: 1, DropNoContext: 1}},
		{"middle larger", []pkt{som(0, 8), mid(1, 9)}, nil, map[string]int{DropMiddleSize: 1}},
		{"eom larger", []pkt{som(0, 8), eom(1, 9)}, nil, map[string]int{DropEOMSize: 1}},
		{"no som", []pkt{mid(1, 8), eom(2, 8)}, nil, map[string]int{DropNoContext: 2}},
		{"new som restarts", []pkt{som(0, 8), mid(1, 8), som(0, 4), eom(1, 2)}, []int{6}, map[string]int{DropRestarted: 1}},
		{"empty", []pkt{only(0, 0)}, nil, map[string]int{DropEmpty: 1}},
		{"64 KiB", exact, []int{MaxMessage}, nil},
		{"over 64 KiB", tooBig, nil, map[string]int{DropTooBig: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drops := map[string]int{}
			r := NewReassembler(ReassemblerOptions{Drop: func(s string) { drops[s]++ }})
			var sizes []int
			for i, p := range tc.pkts {
				pl := bytes.Repeat([]byte{byte(i)}, p.payload)
				if m := r.Add(p.h, pl); m != nil {
					sizes = append(sizes, len(m))
				}
			}
			if len(sizes) != len(tc.sizes) {
				t.Fatalf("messages %v, want %v", sizes, tc.sizes)
			}
			for i := range sizes {
				if sizes[i] != tc.sizes[i] {
					t.Fatalf("messages %v, want %v", sizes, tc.sizes)
				}
			}
			if len(drops) != len(tc.drops) {
				t.Fatalf("drops %v, want %v", drops, tc.drops)
			}
			for k, v := range tc.drops {
				if drops[k] != v {
					t.Fatalf("drops %v, want %v", drops, tc.drops)
				}
			}
			if r.Pending() != 0 && tc.name != "middle larger" && tc.name != "eom larger" {
				t.Errorf("%d contexts left", r.Pending())
			}
		})
	}
}

func TestReassemblyKeys(t *testing.T) {
	r := NewReassembler(ReassemblerOptions{})
	// Two interleaved messages from different tags and sources.
	a := Header{Src: 9, Dest: 8, Tag: 1}
	b := Header{Src: 9, Dest: 8, Tag: 2}
	c := Header{Src: 10, Dest: 8, Tag: 1}
	for _, h := range []Header{a, b, c} {
		h.SOM = true
		if r.Add(h, []byte{h.Src, h.Tag}) != nil {
			t.Fatal("early message")
		}
	}
	for _, h := range []Header{c, b, a} {
		h.EOM, h.Seq = true, 1
		m := r.Add(h, []byte{0xee})
		if !bytes.Equal(m, []byte{h.Src, h.Tag, 0xee}) {
			t.Errorf("%+v: % x", h, m)
		}
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestReassemblyTimeoutAndEviction(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	drops := map[string]int{}
	r := NewReassembler(ReassemblerOptions{Now: clk.now, MaxContexts: 2, Drop: func(s string) { drops[s]++ }})
	r.Add(Header{Src: 9, Dest: 8, SOM: true}, []byte{1})
	clk.add(DefaultReassemblyTimeout - time.Millisecond)
	if m := r.Add(Header{Src: 9, Dest: 8, EOM: true, Seq: 1}, []byte{2}); len(m) != 2 {
		t.Fatalf("within the timeout: % x", m)
	}
	r.Add(Header{Src: 9, Dest: 8, SOM: true}, []byte{1})
	clk.add(DefaultReassemblyTimeout)
	if m := r.Add(Header{Src: 9, Dest: 8, EOM: true, Seq: 1}, []byte{2}); m != nil {
		t.Fatalf("after the timeout: % x", m)
	}
	if drops[DropTimeout] != 1 || drops[DropNoContext] != 1 {
		t.Fatalf("drops %v", drops)
	}
	// Three messages in progress with room for two: the oldest goes.
	for tag := uint8(0); tag < 3; tag++ {
		r.Add(Header{Src: 9, Dest: 8, SOM: true, Tag: tag}, []byte{tag})
	}
	if drops[DropEvicted] != 1 || r.Pending() != 2 {
		t.Fatalf("drops %v, pending %d", drops, r.Pending())
	}
	if m := r.Add(Header{Src: 9, Dest: 8, EOM: true, Seq: 1, Tag: 0}, []byte{9}); m != nil {
		t.Fatal("evicted message completed")
	}
	if m := r.Add(Header{Src: 9, Dest: 8, EOM: true, Seq: 1, Tag: 2}, []byte{9}); len(m) != 2 {
		t.Fatal("newest message lost")
	}
}

// TestReassemblyStaggeredTimeouts checks that each message in progress
// expires at its own deadline, however the contexts were opened and
// closed: the reassembler only scans for expired contexts when the
// earliest deadline it knows of has passed.
func TestReassemblyStaggeredTimeouts(t *testing.T) {
	const to = DefaultReassemblyTimeout
	type step struct {
		after time.Duration // clock advance before the packet
		h     Header
		done  bool // the packet completes a message
	}
	som := func(tag uint8) Header { return Header{Src: 9, Dest: 8, SOM: true, Tag: tag} }
	mid := func(tag, seq uint8) Header { return Header{Src: 9, Dest: 8, Seq: seq, Tag: tag} }
	eom := func(tag, seq uint8) Header { return Header{Src: 9, Dest: 8, EOM: true, Seq: seq, Tag: tag} }
	for _, tc := range []struct {
		name     string
		steps    []step
		timeouts int
	}{
		{"second context outlives the first", []step{
			{0, som(1), false},
			{to / 2, som(2), false},
			{to / 2, mid(2, 1), false}, // tag 1 expires here, tag 2 is half way
			{to/2 - time.Millisecond, eom(2, 2), true},
		}, 1},
		{"deadline recomputed after the oldest completes", []step{
			{0, som(1), false},
			{to / 2, som(2), false},
			{0, eom(1, 1), true},
			{to/2 + time.Millisecond, mid(2, 1), false}, // tag 1's old deadline passed: nothing to drop
			{to / 2, eom(2, 2), false},                  // tag 2's own deadline passed
		}, 1},
		{"a new message after an expiry gets a full timeout", []step{
			{0, som(1), false},
			{to, som(2), false}, // tag 1 expires here
			{to - time.Millisecond, eom(2, 1), true},
		}, 1},
		{"nothing expires", []step{
			{0, som(1), false},
			{to - time.Millisecond, eom(1, 1), true},
			{to, som(1), false},
			{to - time.Millisecond, eom(1, 1), true},
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			drops := map[string]int{}
			r := NewReassembler(ReassemblerOptions{Now: clk.now, Drop: func(s string) { drops[s]++ }})
			for i, st := range tc.steps {
				clk.add(st.after)
				m := r.Add(st.h, []byte{byte(i)})
				if (m != nil) != st.done {
					t.Fatalf("step %d (%+v): message % x, want complete %v (drops %v)", i, st.h, m, st.done, drops)
				}
			}
			if drops[DropTimeout] != tc.timeouts {
				t.Errorf("drops %v, want %d timeouts", drops, tc.timeouts)
			}
		})
	}
}

func TestResponder(t *testing.T) {
	eid := byte(8)
	r := &Responder{
		EID:    func() byte { return eid },
		SetEID: func(e byte) { eid = e },
		Types:  func() []byte { return []byte{0x01, 0x7e} },
		UUID:   [16]byte{0: 0x11, 15: 0xff},
	}
	for _, tc := range []struct{ name, req, resp string }{
		{"get eid", "00 80 02", "00 00 02 00 08 01 00"},
		{"get eid instance", "00 85 02", "00 05 02 00 08 01 00"},
		{"get eid long", "00 80 02 00", "00 00 02 03"},
		{"set eid", "00 81 01 00 0a", "00 01 01 00 00 0a 00"},
		{"get eid after set", "00 80 02", "00 00 02 00 0a 01 00"},
		{"set eid force", "00 81 01 01 0b", "00 01 01 00 00 0b 00"},
		{"set eid reset op", "00 81 01 02 0c", "00 01 01 02"},
		{"set eid discovered op", "00 81 01 03 0c", "00 01 01 02"},
		{"set eid reserved", "00 81 01 00 07", "00 01 01 02"},
		{"set eid zero", "00 81 01 00 00", "00 01 01 02"},
		{"set eid broadcast", "00 81 01 00 ff", "00 01 01 02"},
		{"set eid short", "00 81 01 00", "00 01 01 03"},
		{"version base", "00 82 04 ff", "00 02 04 00 04 f1f0ff00 f1f1ff00 f1f2ff00 f1f3f300"},
		{"version control", "00 82 04 00", "00 02 04 00 04 f1f0ff00 f1f1ff00 f1f2ff00 f1f3f300"},
		{"version pldm", "00 82 04 01", "00 02 04 80"},
		{"version short", "00 82 04", "00 02 04 03"},
		{"types", "00 83 05", "00 03 05 00 03 00 01 7e"},
		{"types long", "00 83 05 00", "00 03 05 03"},
		{"uuid", "00 84 03", "00 04 03 00 11 0000000000000000000000000000 ff"},
		{"unsupported", "00 84 0a", "00 04 0a 05"},
		{"unsupported long", "00 84 11 01 02", "00 04 11 05"},
	} {
		req := testutil.Unhex(t, tc.req)
		if !IsRequest(req) {
			t.Fatalf("%s: not a request", tc.name)
		}
		if got := r.Respond(req); !bytes.Equal(got, testutil.Unhex(t, tc.resp)) {
			t.Errorf("%s: % x, want %s", tc.name, got, tc.resp)
		}
	}
	for _, s := range []string{"00 00 02", "00 c0 02", "01 80 02", "00 80"} {
		if IsRequest(testutil.Unhex(t, s)) {
			t.Errorf("%s taken as a request", s)
		}
	}
}

func TestLoadUUID(t *testing.T) {
	dir := t.TempDir()
	u1, err := LoadUUID(dir + "/state")
	if err != nil {
		t.Fatal(err)
	}
	u2, err := LoadUUID(dir + "/state")
	if err != nil || u1 != u2 {
		t.Fatalf("not stable: %x %x %v", u1, u2, err)
	}
	if u1[6]>>4 != 4 {
		t.Errorf("version nibble %x", u1[6])
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in  string
		r   Route
		bad bool
	}{
		{in: "9=serial:/dev/ttyS1", r: Route{9, 9, "serial:/dev/ttyS1"}},
		{in: "10-20=null", r: Route{10, 20, "null"}},
		{in: "0x10-0x1f=null", r: Route{16, 31, "null"}},
		{in: "20-10=null", bad: true},
		{in: "9", bad: true},
		{in: "9=", bad: true},
		{in: "300=null", bad: true},
	} {
		r, err := ParseRoute(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && r != tc.r) {
			t.Errorf("%q: %+v %v", tc.in, r, err)
		}
	}
}

// wire is a binding that records packets sent and lets a test inject
// received ones; with refuse set, Send fails as a full queue does.
type wire struct {
	name   string
	mtu    int
	mu     sync.Mutex
	sent   [][]byte
	refuse error
}

func (w *wire) Name() string { return w.name }
func (w *wire) MTU() int     { return w.mtu }
func (w *wire) Send(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuse != nil {
		return w.refuse
	}
	w.sent = append(w.sent, append([]byte(nil), p...))
	return nil
}
func (w *wire) setRefuse(err error) {
	w.mu.Lock()
	w.refuse = err
	w.mu.Unlock()
}
func (w *wire) Run(ctx context.Context, _ func([]byte)) error { <-ctx.Done(); return nil }
func (w *wire) Stats() map[string]uint64                      { return map[string]uint64{} }
func (w *wire) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sent
	w.sent = nil
	return s
}

func TestRouterReceive(t *testing.T) {
	w := &wire{name: "w", mtu: 64}
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in string
		out      []string
		drop     string
	}{
		{"get eid", "01 08 09 c8 00 80 02", []string{"01 09 08 c0 00 00 02 00 08 01 00"}, ""},
		// Each reply continues the binding's sequence (libmctp's
		// per-bus tx_seq): 0, 1, 2, 3, then 0 again.
		{"get eid tag 5 to broadcast", "01 ff 09 cd 00 81 02", []string{"01 09 08 d5 00 01 02 00 08 01 00"}, ""},
		{"get eid to null eid", "01 00 09 c8 00 80 02", []string{"01 09 08 e0 00 00 02 00 08 01 00"}, ""},
		{"unsupported", "01 08 09 c8 00 80 77", []string{"01 09 08 f0 00 00 77 05"}, ""},
		{"request without TO", "01 08 09 c0 00 80 02", nil, DropNoClient},
		{"src broadcast", "01 08 ff c8 00 80 02", nil, DropSrcBroadcast},
		{"dest elsewhere", "01 0a 09 c8 00 80 02", nil, DropDest},
		{"short", "01 08 09", nil, DropShort},
		{"version", "02 08 09 c8 00 80 02", nil, DropVersion},
		// The instance byte of a reply is the request's masked with
		// 0x1f: the reserved bit 5 (and D) are not echoed.
		{"reserved instance bit", "01 08 09 c8 00 a3 02", []string{"01 09 08 c0 00 03 02 00 08 01 00"}, ""},
		{"reserved bit, instance 31", "01 08 09 c8 00 bf 05", []string{"01 09 08 d0 00 1f 05 00 01 00"}, ""},
		// Transport-specific commands get no reply, as from libmctp
		// without a binding handler; they go to control clients.
		{"transport command f0", "01 08 09 c8 00 80 f0", nil, DropNoClient},
		{"transport command ff", "01 08 09 c8 00 80 ff 01 02", nil, DropNoClient},
		{"command ef is answered", "01 08 09 c8 00 80 ef", []string{"01 09 08 e0 00 00 ef 05"}, ""},
		// A message of its type byte alone is dropped, as libmctp's
		// demux daemon delivers nothing under 2 bytes.
		{"type byte only", "01 08 09 c8 05", nil, DropShortMessage},
		{"control type byte only", "01 08 09 c8 00", nil, DropShortMessage},
		{"two bytes are a message", "01 08 09 c8 05 01", nil, DropNoClient},
	} {
		before := r.Stats().Drops[tc.drop]
		r.Receive(w, testutil.Unhex(t, tc.in))
		got := w.take()
		if len(got) != len(tc.out) {
			t.Fatalf("%s: sent % x", tc.name, got)
		}
		for i := range got {
			if !bytes.Equal(got[i], testutil.Unhex(t, tc.out[i])) {
				t.Errorf("%s: % x, want %s", tc.name, got[i], tc.out[i])
			}
		}
		if tc.drop != "" && r.Stats().Drops[tc.drop] != before+1 {
			t.Errorf("%s: drop %s not counted: %v", tc.name, tc.drop, r.Stats().Drops)
		}
	}
	// A Set EID request changes which destination is ours.
	r.Receive(w, testutil.Unhex(t, "01 00 09 c8 00 80 01 00 0a"))
	if got := w.take(); len(got) != 1 || !bytes.Equal(got[0], testutil.Unhex(t, "01 09 0a f0 00 00 01 00 00 0a 00")) {
		t.Fatalf("set eid reply % x", got)
	}
	r.Receive(w, testutil.Unhex(t, "01 08 09 c8 00 80 02"))
	if got := w.take(); len(got) != 0 {
		t.Fatalf("old EID answered: % x", got)
	}
}

func TestRouterSend(t *testing.T) {
	a, b := &wire{name: "a", mtu: 64}, &wire{name: "b", mtu: 8}
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{a, b}, Routes: []Route{{9, 9, "a"}, {10, 20, "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Client requests leave with TO=1 and tag 0, fragmented at the MTU.
	if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 1, Body: []byte{0x11, 0x22, 0x7e, 0x7d}}); err != nil {
		t.Fatal(err)
	}
	if got := a.take(); len(got) != 1 || !bytes.Equal(got[0], testutil.Unhex(t, "01 09 08 c8 01 11 22 7e 7d")) {
		t.Errorf("to 9: % x", got)
	}
	if err := r.Send(context.Background(), ClientMessage{Addr: 15, Type: 1, Body: make([]byte, 9)}); err != nil {
		t.Fatal(err)
	}
	got := b.take()
	if len(got) != 2 || !bytes.Equal(got[0][:4], testutil.Unhex(t, "01 0f 08 88")) || !bytes.Equal(got[1], testutil.Unhex(t, "01 0f 08 58 00 00")) {
		t.Errorf("to 15: % x", got)
	}
	// No route: the default route, the first binding.
	if err := r.Send(context.Background(), ClientMessage{Addr: 30, Type: 1, Body: []byte{0x33}}); err != nil {
		t.Errorf("to 30: %v", err)
	}
	// The second message on a continues a's sequence: seq 1.
	if got := a.take(); len(got) != 1 || !bytes.Equal(got[0], testutil.Unhex(t, "01 1e 08 d8 01 33")) {
		t.Errorf("to 30: % x", got)
	}
	st := r.Stats()
	if st.PacketsOut != 4 || st.MessagesOut != 3 || len(st.Drops) != 0 {
		t.Errorf("stats %+v", st)
	}
	// A refused packet is an error for the client and a counted drop.
	a.setRefuse(errors.New("queue full"))
	if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 1}); err == nil {
		t.Error("refused send succeeded")
	}
	a.setRefuse(nil)
	if st := r.Stats(); st.Drops[DropSend] != 1 {
		t.Errorf("stats %+v", st)
	}
	if _, err := New(Options{EID: 8, Bindings: []binding.Binding{a}, Routes: []Route{{9, 9, "zz"}}}); err == nil {
		t.Error("route to a missing binding accepted")
	}
	for _, eid := range []byte{0, 1, 7, 0xff} {
		if _, err := New(Options{EID: eid, Bindings: []binding.Binding{a}}); err == nil {
			t.Errorf("EID %d accepted", eid)
		}
	}
}

// TestRouterForward drives the bridge's decisions: packets for other
// endpoints leave unchanged on the routed (or, with two bindings, the
// other) binding; loops, missing routes, oversized packets and refused
// sends are dropped and counted; local destinations stay local.
func TestRouterForward(t *testing.T) {
	type setup struct {
		r     *Router
		wires map[string]*wire
	}
	mk := func(routes []Route, ws ...*wire) setup {
		s := setup{wires: map[string]*wire{}}
		var bs []binding.Binding
		for _, w := range ws {
			bs = append(bs, w)
			s.wires[w.name] = w
		}
		r, err := New(Options{EID: 8, Bindings: bs, Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		s.r = r
		return s
	}
	// Two bindings: a (MTU 64) and b (MTU 8); 20 is routed to a, 21 to b.
	two := mk([]Route{{20, 20, "a"}, {21, 21, "b"}}, &wire{name: "a", mtu: 64}, &wire{name: "b", mtu: 8})
	// Three bindings: 9 to y, 10-12 to z, 13 to x, nothing else.
	three := mk([]Route{{9, 9, "y"}, {10, 12, "z"}, {13, 13, "x"}}, &wire{name: "x", mtu: 64}, &wire{name: "y", mtu: 64}, &wire{name: "z", mtu: 64})
	full := errors.New("queue full")

	for _, tc := range []struct {
		name   string
		s      setup
		from   string
		in     string
		out    string // binding the packet leaves on unchanged; "" for none
		reply  string // for local requests: the reply sent back on from
		drop   string
		refuse string // binding that refuses sends for this case
	}{
		{name: "two: no route, to the other", s: two, from: "a", in: "01 09 0a c8 00 80 02", out: "b"},
		{name: "two: no route, back", s: two, from: "b", in: "01 0a 09 c0 00 00 02 00 09 01 00", out: "a"},
		{name: "two: middle packet as is, no reassembly", s: two, from: "a", in: "01 09 0a 1d 01 02 03", out: "b"},
		{name: "two: EOM with tag and TO kept", s: two, from: "b", in: "01 0c 09 6f ff", out: "a"},
		{name: "two: payload at the out MTU", s: two, from: "a", in: "01 09 0a c8 01 02 03 04 05 06 07 08", out: "b"},
		{name: "two: payload over the out MTU", s: two, from: "a", in: "01 09 0a c8 01 02 03 04 05 06 07 08 09", drop: DropMTU},
		{name: "two: routed back where it came from", s: two, from: "a", in: "01 14 0a c8 01 02", drop: DropLoop},
		{name: "two: routed to the other", s: two, from: "b", in: "01 14 0a c8 01 02", out: "a"},
		{name: "two: routed onward", s: two, from: "a", in: "01 15 0a c8 01 02", out: "b"},
		{name: "two: out binding refuses", s: two, from: "a", in: "01 09 0a c8 01 02", drop: DropForwardSend, refuse: "b"},
		{name: "two: src broadcast", s: two, from: "a", in: "01 09 ff c8 01 02", drop: DropSrcBroadcast},
		{name: "two: own EID stays local", s: two, from: "a", in: "01 08 0a c8 00 80 02", reply: "01 0a 08 c0 00 00 02 00 08 01 00"},
		{name: "two: broadcast stays local", s: two, from: "b", in: "01 ff 09 cb 00 81 02", reply: "01 09 08 c3 00 01 02 00 08 01 00"},
		{name: "two: null EID stays local", s: two, from: "b", in: "01 00 09 c8 00 82 02", reply: "01 09 08 d0 00 02 02 00 08 01 00"}, // b's second reply: seq 1
		{name: "three: routed", s: three, from: "x", in: "01 09 0a c8 01", out: "y"},
		{name: "three: routed from another", s: three, from: "z", in: "01 09 0a c8 01", out: "y"},
		{name: "three: range", s: three, from: "x", in: "01 0b 09 c8 01", out: "z"},
		{name: "three: loop", s: three, from: "y", in: "01 09 0a c8 01", drop: DropLoop},
		{name: "three: loop to the first binding", s: three, from: "x", in: "01 0d 0a c8 01", drop: DropLoop},
		{name: "three: back to the first binding", s: three, from: "y", in: "01 0d 0a c8 01", out: "x"},
		{name: "three: no route", s: three, from: "x", in: "01 1e 0a c8 01", drop: DropNoRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.s.r
			before := r.Stats()
			if tc.refuse != "" {
				tc.s.wires[tc.refuse].setRefuse(full)
				defer tc.s.wires[tc.refuse].setRefuse(nil)
			}
			in := testutil.Unhex(t, tc.in)
			r.Receive(tc.s.wires[tc.from], append([]byte(nil), in...))
			for name, w := range tc.s.wires {
				got := w.take()
				var want []string
				switch {
				case name == tc.out:
					want = []string{tc.in}
				case name == tc.from && tc.reply != "":
					want = []string{tc.reply}
				}
				if len(got) != len(want) {
					t.Fatalf("%s sent % x, want %v", name, got, want)
				}
				for i := range got {
					if !bytes.Equal(got[i], testutil.Unhex(t, want[i])) {
						t.Errorf("%s sent % x, want %s", name, got[i], want[i])
					}
				}
			}
			after := r.Stats()
			for k, v := range after.Drops {
				want := before.Drops[k]
				if k == tc.drop {
					want++
				}
				if v != want {
					t.Errorf("drop %s: %d, want %d (%v)", k, v, want, after.Drops)
				}
			}
			if tc.drop != "" && after.Drops[tc.drop] != before.Drops[tc.drop]+1 {
				t.Errorf("drop %s not counted: %v", tc.drop, after.Drops)
			}
			for i, f := range after.Forwarded {
				want := before.Forwarded[i].Packets
				if f.In == tc.from && f.Out == tc.out {
					want++
				}
				if f.Packets != want {
					t.Errorf("forwarded %s->%s: %d, want %d", f.In, f.Out, f.Packets, want)
				}
			}
			wantFwd := before.PacketsForwarded
			if tc.out != "" {
				wantFwd++
			}
			if after.PacketsForwarded != wantFwd || after.PacketsIn != before.PacketsIn+1 {
				t.Errorf("forwarded %d in %d, want %d and %d", after.PacketsForwarded, after.PacketsIn, wantFwd, before.PacketsIn+1)
			}
			if after.Reassembly != 0 {
				t.Errorf("%d reassembly contexts: forwarded packets must not be reassembled", after.Reassembly)
			}
		})
	}
	// Every ordered pair of distinct bindings has an entry.
	if f := three.r.Stats().Forwarded; len(f) != 6 || f[0].In != "x" || f[0].Out != "y" || f[5].In != "z" || f[5].Out != "y" {
		t.Errorf("forwarded pairs %+v", f)
	}
	if info := two.r.BindingInfo(); len(info) != 2 || !info[0].Default || info[1].Default || info[0].ForwardTo != "b" || info[1].ForwardTo != "a" || info[1].MTU != 8 {
		t.Errorf("two: binding info %+v", info)
	}
	if info := three.r.BindingInfo(); info[0].ForwardTo != "" || !info[0].Default {
		t.Errorf("three: binding info %+v", info)
	}
	if rs := three.r.Routes(); len(rs) != 4 || rs[3] != (Route{0, 255, "x"}) {
		t.Errorf("three: routes %+v", rs)
	}
}

// Clients send concurrently (the demux calls Send from each client's
// reader goroutine) and every remote message carries tag 0, so the
// packets of one message must leave contiguously: interleaved, the far
// end's reassembly (keyed by src, dest, tag) would mix or drop them.
func TestRouterSendConcurrent(t *testing.T) {
	w := &wire{name: "w", mtu: 64}
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}})
	if err != nil {
		t.Fatal(err)
	}
	const clients, each = 8, 20
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				body := bytes.Repeat([]byte{byte(c)}, 1000)
				if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 1, Body: body}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	ra := NewReassembler(ReassemblerOptions{Drop: func(s string) { t.Errorf("far end drops a packet: %s", s) }})
	n := 0
	for _, p := range w.take() {
		h, err := ParseHeader(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := ra.Add(h, p[HeaderLen:]); m != nil {
			if len(m) != 1001 || !bytes.Equal(m[1:], bytes.Repeat(m[1:2], 1000)) {
				t.Fatalf("message of %d bytes mixes clients", len(m))
			}
			n++
		}
	}
	if n != clients*each {
		t.Fatalf("%d of %d messages reassembled", n, clients*each)
	}
}

// TestRouterReceiveBatch checks the batched receive path: one clock
// reading per batch (Receive reads it per packet), the same messages as
// packet by packet, and the reassembly timeout measured from the batch's
// reading.
func TestRouterReceiveBatch(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	var reads atomic.Int64
	now := func() time.Time { reads.Add(1); return clk.now() }
	w := &wire{name: "w", mtu: 251}
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}, Reassembly: ReassemblerOptions{Now: now}})
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 4096)
	msg[0] = 0x70
	pkts := Fragment(8, 9, true, 1, msg, 251)
	if len(pkts) != 17 {
		t.Fatalf("%d packets", len(pkts))
	}
	for _, tc := range []struct {
		name    string
		receive func()
		reads   int64
	}{
		{"batch", func() { r.ReceiveBatch(w, pkts) }, 1},
		{"two batches", func() { r.ReceiveBatch(w, pkts[:5]); r.ReceiveBatch(w, pkts[5:]) }, 2},
		{"empty batch", func() { r.ReceiveBatch(w, nil); r.ReceiveBatch(w, pkts) }, 1},
		{"packet by packet", func() {
			for _, p := range pkts {
				r.Receive(w, p)
			}
		}, 17},
	} {
		reads.Store(0)
		before := r.Stats()
		tc.receive()
		after := r.Stats()
		if got := reads.Load(); got != tc.reads {
			t.Errorf("%s: %d clock readings, want %d", tc.name, got, tc.reads)
		}
		// No demux is attached, so the whole message is counted in and
		// then dropped as no-client.
		if after.MessagesIn != before.MessagesIn+1 || after.PacketsIn != before.PacketsIn+17 || after.Drops[DropNoClient] != before.Drops[DropNoClient]+1 {
			t.Errorf("%s: stats %+v, before %+v", tc.name, after, before)
		}
	}

	// A message whose first batch is older than the timeout is dropped
	// when the next batch arrives.
	r.ReceiveBatch(w, pkts[:8])
	clk.add(DefaultReassemblyTimeout)
	before := r.Stats()
	r.ReceiveBatch(w, pkts[8:])
	after := r.Stats()
	if after.MessagesIn != before.MessagesIn || after.Drops[DropTimeout] != before.Drops[DropTimeout]+1 {
		t.Errorf("timed-out message: stats %+v, before %+v", after, before)
	}
	// Just inside the timeout it completes.
	r.ReceiveBatch(w, pkts[:8])
	clk.add(DefaultReassemblyTimeout - time.Nanosecond)
	before = r.Stats()
	r.ReceiveBatch(w, pkts[8:])
	if after := r.Stats(); after.MessagesIn != before.MessagesIn+1 {
		t.Errorf("message within the timeout not completed: %+v", after)
	}
}

// batchWire is a wire that also takes whole messages.
type batchWire struct {
	wire
	batches []int
}

func (w *batchWire) SendBatch(pkts [][]byte) error {
	w.mu.Lock()
	if w.refuse != nil {
		w.mu.Unlock()
		return w.refuse
	}
	w.batches = append(w.batches, len(pkts))
	w.mu.Unlock()
	for _, p := range pkts {
		w.Send(p)
	}
	return nil
}

// TestRouterSendBatch: a binding that takes whole messages gets each in
// one call, with the same packets as one at a time; a refusal costs the
// whole message and one send-error drop.
func TestRouterSendBatch(t *testing.T) {
	w := &batchWire{wire: wire{name: "w", mtu: 251}}
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4095)
	if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 0x70, Body: body}); err != nil {
		t.Fatal(err)
	}
	got := w.take()
	want := Fragment(9, 8, true, 0, append([]byte{0x70}, body...), 251)
	if len(w.batches) != 1 || w.batches[0] != 17 || len(got) != len(want) {
		t.Fatalf("batches %v, %d packets; want one batch of 17", w.batches, len(got))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: % x, want % x", i, got[i], want[i])
		}
	}
	w.setRefuse(errors.New("full"))
	if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 0x70, Body: body}); err == nil {
		t.Fatal("refused batch reported as sent")
	}
	if st := r.Stats(); st.Drops[DropSend] != 1 || st.PacketsOut != 17 || st.MessagesOut != 1 {
		t.Errorf("stats after a refused batch: %+v", st)
	}
}

// busyWire is a binding.Backpressure wire whose queue is full until
// free is called, and whose link may be down.
type busyWire struct {
	wire
	mu   sync.Mutex
	full bool
	down bool
	room chan struct{}
}

func (b *busyWire) Room() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.room == nil {
		b.room = make(chan struct{})
	}
	return b.room
}

func (b *busyWire) SendBatch(pkts [][]byte) error {
	b.mu.Lock()
	full, down := b.full, b.down
	b.mu.Unlock()
	switch {
	case down:
		return binding.ErrLinkDown
	case full:
		return binding.ErrBusy
	}
	for _, p := range pkts {
		b.wire.Send(p)
	}
	return nil
}

// set changes the state and wakes the waiters, as a draining queue or a
// link coming up does.
func (b *busyWire) set(full, down bool) {
	b.mu.Lock()
	b.full, b.down = full, down
	if b.room != nil {
		close(b.room)
		b.room = nil
	}
	b.mu.Unlock()
}

// TestRouterBackpressure: a client's message waits while the binding is
// busy or down and goes out once it has room; it is dropped as
// send-timeout only when the binding stays stuck, and at once when ctx
// ends. A control reply from the receive path never waits.
func TestRouterBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		full, down bool
		release    bool // the binding recovers after a while
		cancel     bool
		drop       string
	}{
		{name: "full, then room", full: true, release: true},
		{name: "down, then up", down: true, release: true},
		{name: "full for good", full: true, drop: DropSendTimeout},
		{name: "down for good", down: true, drop: DropSendTimeout},
		{name: "full, ctx ends", full: true, cancel: true, drop: DropSend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &busyWire{wire: wire{name: "w", mtu: 64}}
			w.set(tc.full, tc.down)
			r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}, SendTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- r.Send(ctx, ClientMessage{Addr: 9, Type: 1, Body: []byte{1}}) }()
			// Progress that does not make room restarts the timeout:
			// wake the waiter a few times over longer than it.
			for range 4 {
				time.Sleep(100 * time.Millisecond)
				w.set(tc.full, tc.down)
			}
			switch {
			case tc.release:
				w.set(false, false)
			case tc.cancel:
				cancel()
			}
			err = <-done
			st := r.Stats()
			if st.SendWaits != 1 {
				t.Errorf("send-waits %d, want 1", st.SendWaits)
			}
			if tc.drop == "" {
				if err != nil || len(w.take()) != 1 || len(st.Drops) != 0 {
					t.Fatalf("err %v, drops %v", err, st.Drops)
				}
				return
			}
			if err == nil || st.Drops[tc.drop] != 1 || len(w.take()) != 0 {
				t.Fatalf("err %v, drops %v", err, st.Drops)
			}
			if tc.drop == DropSendTimeout && time.Since(start) < 600*time.Millisecond {
				t.Errorf("dropped after %v, before the last wake-up plus the timeout", time.Since(start))
			}
		})
	}
	// The receive path: a Get EID reply to a full binding is dropped at
	// once, not waited for.
	w := &busyWire{wire: wire{name: "w", mtu: 64}}
	w.set(true, false)
	r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}})
	if err != nil {
		t.Fatal(err)
	}
	r.Receive(w, testutil.Unhex(t, "01 08 09 c8 00 80 02"))
	if st := r.Stats(); st.Drops[DropSend] != 1 || st.SendWaits != 0 {
		t.Fatalf("reply to a full binding: %+v", st)
	}
	// A message over 64 KiB is never handed to the binding.
	w.set(false, false)
	if err := r.Send(context.Background(), ClientMessage{Addr: 9, Type: 1, Body: make([]byte, MaxMessage)}); !errors.Is(err, ErrTooBig) {
		t.Fatalf("65537-byte message: %v", err)
	}
	if st := r.Stats(); st.Drops[DropTxTooBig] != 1 || len(w.take()) != 0 {
		t.Fatalf("too big: %+v", st)
	}
}
