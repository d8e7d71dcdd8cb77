package main

import (
	"bytes"
	"testing"

	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
)

// checkCut feeds stream to a frameCutter in chunks of size chunk and
// checks that the cut falls in the first frame of stream, which starts
// at offset start and carries pkt: after exactly half of pkt's bytes
// (at least one), never between an escape byte and the byte it escapes.
func checkCut(t *testing.T, stream []byte, start int, pkt []byte, chunk int) {
	t.Helper()
	var c frameCutter
	pos := -1
	for off := 0; off < len(stream) && pos < 0; off += chunk {
		end := min(off+chunk, len(stream))
		if n := c.Cut(stream[off:end]); n >= 0 {
			if n < 1 || n > end-off {
				t.Fatalf("chunk %d: cut %d outside the chunk of %d", chunk, n, end-off)
			}
			pos = off + n
		}
	}
	if pos < 0 {
		t.Fatalf("chunk %d: no cut in % x", chunk, stream)
	}
	body := stream[start+3 : pos]
	if len(body) == 0 || body[len(body)-1] == frameEscape {
		t.Fatalf("chunk %d: cut at %d right after the header or an escape: % x", chunk, pos, stream[start:pos])
	}
	passed := len(body) - bytes.Count(body, []byte{frameEscape})
	if want := max(1, len(pkt)/2); passed != want {
		t.Fatalf("chunk %d: cut after %d of %d packet bytes, want %d", chunk, passed, len(pkt), want)
	}
}

func TestFrameCut(t *testing.T) {
	tests := []struct {
		name    string
		garbage []byte // before the frame
		pkt     []byte
	}{
		{"small packet", nil, []byte{1, 9, 8, 0xc8, 0x7e, 1, 2, 3}},
		{"escapes everywhere", nil, bytes.Repeat([]byte{0x7e, 0x7d}, 40)},
		{"length byte is a flag", nil, bytes.Repeat([]byte{0x55}, 0x7e)},
		{"baseline packet", []byte{0x00, 0x7e, 0x02, 0x7e, 0x7e}, bytes.Repeat([]byte{0xa5, 0x7d, 0x10}, 22)},
		{"largest packet", []byte("noise"), bytes.Repeat([]byte{0x7e, 1, 2}, 85)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := serial.Encode(tc.pkt)
			stream := append(append(append([]byte{}, tc.garbage...), frame...), serial.Encode([]byte{1, 2, 3, 4})...)
			for _, chunk := range []int{1, 2, 3, 7, 64, len(stream)} {
				checkCut(t, stream, len(tc.garbage), tc.pkt, chunk)
			}
		})
	}
}

// TestFrameCutNone: a stream without a frame in it is never cut.
func TestFrameCutNone(t *testing.T) {
	for _, b := range [][]byte{nil, {0x7e, 0x7e, 0x7e}, {0x7e, 0x02, 0x10, 0x20}, []byte("plain text"), {0x7e, 0x01, 0x00, 0x12, 0x34, 0x7e}} {
		var c frameCutter
		if n := c.Cut(b); n != -1 {
			t.Errorf("% x cut at %d", b, n)
		}
	}
}

// FuzzFrameCut: on any stream the cutter stays within the slice it is
// given; a frame of any packet, after any bytes, is cut in its middle.
func FuzzFrameCut(f *testing.F) {
	f.Add([]byte{0x7e, 0x01, 0x05}, []byte{1, 9, 8, 0xc8, 0x7e})
	f.Add([]byte{}, bytes.Repeat([]byte{0x7d}, 70))
	f.Add([]byte{0x7e, 0x01, 0x7e, 0x7d}, bytes.Repeat([]byte{0x7e}, 126))
	f.Fuzz(func(t *testing.T, garbage, pkt []byte) {
		var c frameCutter
		for off := 0; off < len(garbage); {
			n := c.Cut(garbage[off:])
			if n == -1 {
				break
			}
			if n < 1 || off+n > len(garbage) {
				t.Fatalf("cut %d outside % x", n, garbage[off:])
			}
			off += n
		}
		if len(pkt) < 2 || len(pkt) > 255 {
			return
		}
		// The frame follows the garbage and three flags, after which
		// the cutter hunts whatever state the garbage left it in (a
		// flag may be taken as a length byte or an FCS byte first).
		start := len(garbage) + 3
		stream := append(append(append([]byte{}, garbage...), 0x7e, 0x7e, 0x7e), serial.Encode(pkt)...)
		var d frameCutter
		pos := -1
		for off := 0; off < len(stream); {
			n := d.Cut(stream[off:])
			if n == -1 {
				break
			}
			if off += n; off > start {
				pos = off
				break
			}
		}
		if pos < 0 {
			t.Fatalf("no cut in the frame of % x", pkt)
		}
		body := stream[start+3 : pos]
		passed := len(body) - bytes.Count(body, []byte{frameEscape})
		if passed != max(1, len(pkt)/2) || body[len(body)-1] == frameEscape {
			t.Fatalf("cut after %d of %d bytes (% x)", passed, len(pkt), body)
		}
	})
}
