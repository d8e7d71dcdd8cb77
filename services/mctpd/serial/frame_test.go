package serial

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// workedFrames are two frames worked out by hand from DSP0253 and
// libmctp: a Get EID request from EID 9 to 8, and a data message whose
// body needs escaping.
var workedFrames = []struct {
	name, pkt, frame string
}{
	{"get EID request 9 to 8", "01 08 09 c8 00 80 02", "7e 01 07 01 08 09 c8 00 80 02 01 dd 7e"},
	{"escaped data 9 to 8", "01 08 09 c0 01 11 22 7e 7d", "7e 01 09 01 08 09 c0 01 11 22 7d 5e 7d 5d 66 d4 7e"},
}

func TestFCSCheckValue(t *testing.T) {
	if got := FCS([]byte("123456789")); got != 0x6f91 {
		t.Fatalf("FCS(123456789) = %#04x, want 0x6f91", got)
	}
}

// refFCS is CRC-16/MCRF4XX bit by bit, the definition the tables and
// the eight-byte steps of fcsUpdate must agree with.
func refFCS(fcs uint16, p []byte) uint16 {
	for _, b := range p {
		fcs ^= uint16(b)
		for range 8 {
			if fcs&1 != 0 {
				fcs = fcs>>1 ^ 0x8408
			} else {
				fcs >>= 1
			}
		}
	}
	return fcs
}

// refEncode frames pkt byte by byte, escaping as DSP0253 says.
func refEncode(pkt []byte) []byte {
	out := []byte{flagByte, revision, byte(len(pkt))}
	for _, b := range pkt {
		if b == flagByte || b == escapeByte {
			out = append(out, escapeByte, b^escapeXOR)
		} else {
			out = append(out, b)
		}
	}
	fcs := refFCS(fcsInit, append([]byte{revision, byte(len(pkt))}, pkt...))
	return append(out, byte(fcs>>8), byte(fcs), flagByte)
}

func TestFCSMatchesBitwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		fill  func([]byte)
		start uint16
	}{
		{"random", func(b []byte) {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}, fcsInit},
		{"zeros", func(b []byte) { clear(b) }, fcsInit},
		{"ones from 0", func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
		}, 0},
		{"ramp from 0x1234", func(b []byte) {
			for i := range b {
				b[i] = byte(i)
			}
		}, 0x1234},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n := 0; n <= 300; n++ {
				p := make([]byte, n)
				tc.fill(p)
				want := refFCS(tc.start, p)
				if got := fcsUpdate(tc.start, p...); got != want {
					t.Fatalf("%d bytes: fcsUpdate = %#04x, bitwise %#04x", n, got, want)
				}
				// Any split gives the same result.
				for cut := 0; cut <= n; cut += 3 {
					if got := fcsUpdate(fcsUpdate(tc.start, p[:cut]...), p[cut:]...); got != want {
						t.Fatalf("%d bytes cut at %d: %#04x, want %#04x", n, cut, got, want)
					}
				}
			}
		})
	}
}

func TestEncodeMatchesBytewise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name string
		pick func() byte
	}{
		{"random", func() byte { return byte(rng.Uint32()) }},
		{"mostly flags and escapes", func() byte { return []byte{flagByte, escapeByte, 0x20, 0x5e}[rng.IntN(4)] }},
		{"no specials", func() byte { return 0x41 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every length the byte count allows, the baseline's 68 and
			// the largest MTU's 255 included, encodes as the bytewise
			// reference does and decodes back byte-exact.
			d := NewDeframer(MaxMTU)
			for n := minPacket; n <= maxPacket; n++ {
				pkt := make([]byte, n)
				for i := range pkt {
					pkt[i] = tc.pick()
				}
				got, want := Encode(pkt), refEncode(pkt)
				if !bytes.Equal(got, want) {
					t.Fatalf("Encode(% x)\n = % x\nwant % x", pkt, got, want)
				}
				if back := d.Write(got); len(back) != 1 || !bytes.Equal(back[0], pkt) {
					t.Fatalf("%d bytes: decoded % x, want [% x]", n, back, pkt)
				}
			}
			if s := d.Stats(); s != (DeframerStats{Frames: maxPacket - minPacket + 1}) {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

func TestWorkedFrames(t *testing.T) {
	for _, tc := range workedFrames {
		t.Run(tc.name, func(t *testing.T) {
			pkt, frame := testutil.Unhex(t, tc.pkt), testutil.Unhex(t, tc.frame)
			if got := Encode(pkt); !bytes.Equal(got, frame) {
				t.Errorf("Encode = % x\nwant     % x", got, frame)
			}
			d := NewDeframer(binding.BaselineMTU)
			got := d.Write(frame)
			if len(got) != 1 || !bytes.Equal(got[0], pkt) {
				t.Fatalf("Deframe = % x, want [% x]", got, pkt)
			}
			if s := d.Stats(); s != (DeframerStats{Frames: 1}) {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

func TestFCSNotEscaped(t *testing.T) {
	// Search for a packet whose FCS contains a flag or escape byte and
	// check it travels raw and still decodes.
	for i := range 1 << 16 {
		pkt := []byte{1, 8, 9, 0xc0, byte(i), byte(i >> 8)}
		fr := Encode(pkt)
		hi, lo := fr[len(fr)-3], fr[len(fr)-2]
		if hi != flagByte && lo != flagByte && hi != escapeByte && lo != escapeByte {
			continue
		}
		if len(fr) != 3+len(pkt)+3 {
			t.Fatalf("FCS was escaped: % x", fr)
		}
		got := NewDeframer(0).Write(fr)
		if len(got) != 1 || !bytes.Equal(got[0], pkt) {
			t.Fatalf("frame % x: got % x", fr, got)
		}
		return
	}
	t.Fatal("no packet with a 7E/7D byte in its FCS found")
}

func TestDeframerErrors(t *testing.T) {
	good := workedFrames[0]
	goodFrame := testutil.Unhex(t, good.frame)
	goodPkt := testutil.Unhex(t, good.pkt)
	badFCS := bytes.Clone(goodFrame)
	badFCS[len(badFCS)-2] ^= 1
	maxPkt := make([]byte, 68)
	maxPkt[0] = 1
	tooLong := Encode(make([]byte, 69))

	tests := []struct {
		name  string
		in    []byte
		want  int
		stats DeframerStats
	}{
		{"garbage then frame", append([]byte{1, 2, 3, 0x7d, 0x5e}, goodFrame...), 1, DeframerStats{Frames: 1, Garbage: 5}},
		{"bad FCS then frame", append(badFCS, goodFrame...), 1, DeframerStats{Frames: 1, BadFCS: 1}},
		{"bad revision", append([]byte{0x7e, 0x02, 0x07}, goodFrame...), 1, DeframerStats{Frames: 1, BadRevision: 1, Garbage: 1}},
		{"length 3", append([]byte{0x7e, 0x01, 0x03, 1, 2, 3}, goodFrame...), 1, DeframerStats{Frames: 1, BadLength: 1, Garbage: 3}},
		{"length 69", append(tooLong, goodFrame...), 1, DeframerStats{Frames: 1, BadLength: 1, Garbage: 69 + 2}},
		{"length 68 accepted", Encode(maxPkt), 1, DeframerStats{Frames: 1}},
		{"bad escape", append([]byte{0x7e, 0x01, 0x04, 1, 0x7d, 0x11, 2, 3, 0, 0}, goodFrame...), 1, DeframerStats{Frames: 1, BadEscape: 1, Garbage: 4}},
		{"escape then flag", append([]byte{0x7e, 0x01, 0x04, 1, 0x7d}, goodFrame...), 1, DeframerStats{Frames: 1, BadEscape: 1}},
		{"flag inside packet", append([]byte{0x7e, 0x01, 0x07, 1, 8}, goodFrame...), 1, DeframerStats{Frames: 1, Truncated: 1}},
		{"missing end flag", append(goodFrame[:len(goodFrame)-1:len(goodFrame)-1], append([]byte{0x55}, goodFrame...)...), 1, DeframerStats{Frames: 1, Overrun: 1}},
		{"shared flag between frames", append(bytes.Clone(goodFrame), goodFrame[1:]...), 2, DeframerStats{Frames: 2}},
		{"repeated flags", append([]byte{0x7e, 0x7e, 0x7e}, goodFrame...), 1, DeframerStats{Frames: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDeframer(binding.BaselineMTU)
			got := d.Write(tc.in)
			if len(got) != tc.want {
				t.Fatalf("got %d packets (% x), want %d", len(got), got, tc.want)
			}
			for _, p := range got {
				if tc.name != "length 68 accepted" && !bytes.Equal(p, goodPkt) {
					t.Errorf("packet % x, want % x", p, goodPkt)
				}
			}
			if s := d.Stats(); s != tc.stats {
				t.Errorf("stats = %+v, want %+v", s, tc.stats)
			}
		})
	}
}

func TestDeframerMTU(t *testing.T) {
	tests := []struct {
		mtu, pkt int
		ok       bool
	}{
		{100, 104, true},
		{100, 105, false},
		{binding.BaselineMTU, 104, false},
		{binding.BaselineMTU, 68, true},
		{MaxMTU, 255, true},
		{MaxMTU, 126, true},               // its byte count is 7E, read by position
		{binding.BaselineMTU, 126, false}, // here a 7E count is a flag
		{MaxMTU, 125, true},               // count 7D, raw as well
		{MaxMTU + 100, 255, true},         // capped by the length byte
		{0, 68, true},                     // raised to the baseline
		{0, 69, false},
	}
	for _, tc := range tests {
		pkt := make([]byte, tc.pkt)
		pkt[0] = 1
		got := NewDeframer(tc.mtu).Write(Encode(pkt))
		if ok := len(got) == 1 && bytes.Equal(got[0], pkt); ok != tc.ok {
			t.Errorf("MTU %d, %d-byte packet: got %d packets, want accepted=%v", tc.mtu, tc.pkt, len(got), tc.ok)
		}
	}
}

func TestSplitFeeds(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, tc := range workedFrames {
		stream = append(stream, byte(i), 0x7d)
		stream = append(stream, testutil.Unhex(t, tc.frame)...)
		want = append(want, testutil.Unhex(t, tc.pkt))
	}
	stream = append(stream, Encode(bytes.Repeat([]byte{0x7e, 0x7d}, 30))...)
	want = append(want, bytes.Repeat([]byte{0x7e, 0x7d}, 30))

	whole := NewDeframer(0)
	gotWhole := whole.Write(stream)
	for chunk := 1; chunk <= len(stream); chunk++ {
		d := NewDeframer(0)
		var got [][]byte
		for off := 0; off < len(stream); off += chunk {
			got = append(got, d.Write(stream[off:min(off+chunk, len(stream))])...)
		}
		if !equalPackets(got, want) || !equalPackets(gotWhole, want) {
			t.Fatalf("chunk %d: got % x, whole % x, want % x", chunk, got, gotWhole, want)
		}
		if d.Stats() != whole.Stats() {
			t.Fatalf("chunk %d: stats %+v, whole %+v", chunk, d.Stats(), whole.Stats())
		}
	}
}

func equalPackets(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func FuzzDeframer(f *testing.F) {
	for _, tc := range workedFrames {
		f.Add(testutil.Unhex(f, tc.frame))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := NewDeframer(0)
		pkts := whole.Write(in)
		if len(pkts) > len(in)/7 {
			t.Fatalf("%d packets from %d bytes", len(pkts), len(in))
		}
		d := NewDeframer(0)
		var byByte [][]byte
		for i := range in {
			byByte = append(byByte, d.Write(in[i:i+1])...)
		}
		if !equalPackets(pkts, byByte) || d.Stats() != whole.Stats() {
			t.Fatalf("byte-at-a-time differs: % x vs % x", byByte, pkts)
		}
		for _, p := range NewDeframer(MaxMTU).Write(in) {
			if len(p) < minPacket || len(p) > maxPacket {
				t.Fatalf("packet length %d out of range at MaxMTU", len(p))
			}
			again := NewDeframer(MaxMTU).Write(Encode(p))
			if len(again) != 1 || !bytes.Equal(again[0], p) {
				t.Fatalf("re-encode at MaxMTU of % x gave % x", p, again)
			}
		}
		for _, p := range pkts {
			if len(p) < minPacket || len(p) > binding.BaselineMTU+minPacket {
				t.Fatalf("packet length %d out of range", len(p))
			}
			again := NewDeframer(0).Write(Encode(p))
			if len(again) != 1 || !bytes.Equal(again[0], p) {
				t.Fatalf("re-encode of % x gave % x", p, again)
			}
		}
	})
}

// TestDeframerPacketsOwned checks that packets handed out from the
// shared arena are each the receiver's: they do not overlap, their
// capacity ends with them (appending to one cannot overwrite the next),
// and later Feeds do not change packets already delivered.
func TestDeframerPacketsOwned(t *testing.T) {
	d := NewDeframer(MaxMTU)
	var stream []byte
	var want [][]byte
	for i := range 40 { // more than one arena's worth
		p := bytes.Repeat([]byte{byte(i), 0x7e}, 60)
		want = append(want, p)
		stream = append(stream, Encode(p)...)
	}
	var got [][]byte
	for len(stream) > 0 {
		n := min(len(stream), 1000)
		d.Feed(stream[:n], func(p []byte) { got = append(got, p) })
		stream = stream[n:]
	}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i, p := range got {
		if cap(p) != len(p) {
			t.Fatalf("packet %d: capacity %d beyond its length %d", i, cap(p), len(p))
		}
		_ = append(p, 0xff) // must reallocate, not touch packet i+1
	}
	for i, p := range got {
		if !bytes.Equal(p, want[i]) {
			t.Fatalf("packet %d changed: % x, want % x", i, p, want[i])
		}
	}
}

// TestFCSPaths checks the table and, where the CPU can, the folding path
// each against the bitwise definition over every length up to 1100 bytes
// and a spread of running values, so that neither hides behind the
// other's length range.
func TestFCSPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	p := make([]byte, 1100)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	paths := fcsPaths()
	if !canFold {
		t.Logf("no carry-less multiplication on %s: table path only", runtime.GOARCH)
	}
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			for n := path.min; n <= len(p); n++ {
				for _, start := range []uint16{fcsInit, 0, 0x1234, uint16(rng.Uint32())} {
					want := refFCS(start, p[:n])
					if got := path.f(start, p[:n]); got != want {
						t.Fatalf("%d bytes from %#04x: %#04x, bitwise %#04x", n, start, got, want)
					}
				}
			}
		})
	}
}

// fcsPath is one way of computing the FCS and the shortest input it
// takes.
type fcsPath struct {
	name string
	min  int
	f    func(uint16, []byte) uint16
}

// fcsPaths lists the table and, where the CPU can fold, the folding
// path.
func fcsPaths() []fcsPath {
	paths := []fcsPath{{"table", 0, fcsTable}}
	if canFold {
		paths = append(paths, fcsPath{"folded", 16, fcsFolded})
	}
	return paths
}
