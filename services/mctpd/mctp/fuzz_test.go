package mctp

import (
	"bytes"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// FuzzReassembly feeds a stream of packets (each prefixed by a length
// byte) through the router's receive path, once with a single binding
// and once into a two-binding bridge, and, separately, checks that a
// message fragmented at a fuzzed MTU reassembles to itself.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte("\x07\x01\x08\x09\xc8\x00\x80\x02"))
	f.Add([]byte("\x06\x01\x08\x09\x88\x01\x02\x05\x01\x08\x09\x18\x03\x05\x01\x08\x09\x68\x04"))
	f.Add([]byte("\x05\x01\x08\x09\x88\x01\x05\x01\x08\x09\x28\x02\x05\x01\x08\x09\x98\x03"))
	f.Add([]byte("\x04\x01\x08\xff\xc8\x04\x01\x0a\x09\xc8\x03\x01\x08\x09"))
	f.Add([]byte("\x07\x01\x08\x09\xc8\x00\xa3\x02\x07\x01\x08\x09\xc8\x00\x80\xf0"))
	f.Add([]byte("\x05\x01\x08\x09\xc8\x05\x05\x01\x08\x09\xa8\x01\x05\x01\x08\x09\x78\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := &fakeClock{t: time.Unix(0, 0)}
		w := &wire{name: "w", mtu: binding.BaselineMTU}
		r, err := New(Options{EID: 8, Bindings: []binding.Binding{w}, Reassembly: ReassemblerOptions{Now: clk.now, MaxContexts: 4}})
		if err != nil {
			t.Fatal(err)
		}
		// The bridge: a (baseline MTU) to b (MTU 16).
		a, b := &wire{name: "a", mtu: binding.BaselineMTU}, &wire{name: "b", mtu: 16}
		br, err := New(Options{EID: 8, Bindings: []binding.Binding{a, b}})
		if err != nil {
			t.Fatal(err)
		}
		rest := data
		for len(rest) > 0 {
			n := int(rest[0])
			rest = rest[1:]
			n = min(n, len(rest))
			r.Receive(w, rest[:n])
			br.Receive(a, append([]byte(nil), rest[:n]...))
			// A forwarded packet is exactly the received one, for
			// another endpoint, within b's MTU; anything else on b is
			// wrong, since a local reply goes back on a.
			for _, p := range b.take() {
				h, err := ParseHeader(p)
				if !bytes.Equal(p, rest[:n]) || err != nil || h.Dest == 8 || h.Dest == NullEID || h.Dest == BroadcastEID || h.Src == BroadcastEID || len(p) > HeaderLen+16 {
					t.Fatalf("bridge sent % x for % x", p, rest[:n])
				}
			}
			if br.reasm.Pending() > DefaultMaxContexts {
				t.Fatalf("bridge: %d contexts", br.reasm.Pending())
			}
			clk.add(time.Second)
			if p := r.reasm.Pending(); p > 4 {
				t.Fatalf("%d contexts", p)
			}
		}
		if st := br.Stats(); st.PacketsForwarded > st.PacketsIn {
			t.Fatalf("bridge forwarded %d of %d packets", st.PacketsForwarded, st.PacketsIn)
		}
		for _, p := range append(w.take(), a.take()...) {
			if len(p) > HeaderLen+binding.BaselineMTU {
				t.Fatalf("reply packet of %d bytes", len(p))
			}
			// Only the responder sends here: a whole control reply,
			// TO clear, instance masked with 0x1f (Rq, D and the
			// reserved bit clear), never to a transport command.
			if len(p) < HeaderLen+4 || p[3]&0xc8 != 0xc0 || p[4] != TypeControl || p[5]&^0x1f != 0 || p[6] >= CmdFirstTransport {
				t.Fatalf("reply % x", p)
			}
		}
		if len(data) == 0 {
			return
		}
		mtu := int(data[0])%80 + 1
		ra := NewReassembler(ReassemblerOptions{})
		var got []byte
		for _, p := range Fragment(8, 9, true, data[0]&7, data, mtu) {
			h, err := ParseHeader(p)
			if err != nil {
				t.Fatal(err)
			}
			if m := ra.Add(h, p[HeaderLen:]); m != nil {
				got = m
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round trip at MTU %d: % x", mtu, got)
		}
	})
}
