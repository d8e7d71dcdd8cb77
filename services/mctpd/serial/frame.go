// Package serial is mctpd's DSP0253 binding: MCTP packets framed for a
// UART (or a pty) with HDLC-like flags, byte stuffing and a 16-bit FCS,
// compatible with openbmc/libmctp and the Linux mctp-serial driver.
package serial

import (
	"bytes"
	"sync/atomic"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

const (
	flagByte   = 0x7e
	escapeByte = 0x7d
	escapeXOR  = 0x20
	revision   = 0x01

	// minPacket is the MCTP transport header; anything shorter cannot be
	// a packet, so the receiver refuses such a length outright.
	minPacket = 4
	// maxPacket is the largest packet the one-byte length field can
	// announce: DSP0253's byte count covers the whole MCTP packet
	// (header and payload, before escaping), as in libmctp and Linux.
	maxPacket = 255
)

// MaxMTU is the largest payload a DSP0253 frame can carry: the byte count
// field (at most 255) minus the 4-byte MCTP header.
const MaxMTU = maxPacket - minPacket

// fcsTables are the RFC 1662 FCS-16 table (reflected polynomial 0x8408)
// in fcsTables[0], and in fcsTables[k] the effect of a byte followed by k
// zero bytes, so that fcsTable can take sixteen bytes per step (slicing
// by sixteen): the byte-at-a-time loop was the binding's largest CPU
// cost, and sixteen independent loads per step run about a third faster
// than eight on the 255-byte packets of the largest MTU. 8 KiB, computed
// once at package initialisation; never written afterwards.
var fcsTables = func() (t [16][256]uint16) {
	for i := range t[0] {
		v := uint16(i)
		for range 8 {
			if v&1 != 0 {
				v = v>>1 ^ 0x8408
			} else {
				v >>= 1
			}
		}
		t[0][i] = v
	}
	for k := 1; k < len(t); k++ {
		for i := range t[k] {
			v := t[k-1][i]
			t[k][i] = v>>8 ^ t[0][byte(v)]
		}
	}
	return t
}()

// fcsInit is the FCS start value. DSP0253 (like libmctp and Linux) uses
// the RFC 1662 algorithm without the final complement, i.e.
// CRC-16/MCRF4XX.
const fcsInit = 0xffff

// fcsUpdate continues fcs over p: by folding with carry-less
// multiplication (PCLMULQDQ on amd64, PMULL on arm64) where the CPU has
// it and p is long enough (see fcsfold.go), otherwise by table.
func fcsUpdate(fcs uint16, p ...byte) uint16 {
	if canFold && len(p) >= foldMin {
		return fcsFolded(fcs, p)
	}
	return fcsTable(fcs, p)
}

// fcsTable is fcsUpdate by table, sixteen bytes per step.
func fcsTable(fcs uint16, p []byte) uint16 {
	t := &fcsTables
	for len(p) >= 16 {
		_ = p[15] // one bounds check for the step
		fcs = t[15][p[0]^byte(fcs)] ^ t[14][p[1]^byte(fcs>>8)] ^
			t[13][p[2]] ^ t[12][p[3]] ^ t[11][p[4]] ^ t[10][p[5]] ^ t[9][p[6]] ^ t[8][p[7]] ^
			t[7][p[8]] ^ t[6][p[9]] ^ t[5][p[10]] ^ t[4][p[11]] ^ t[3][p[12]] ^ t[2][p[13]] ^ t[1][p[14]] ^ t[0][p[15]]
		p = p[16:]
	}
	if len(p) >= 8 {
		fcs = t[7][p[0]^byte(fcs)] ^ t[6][p[1]^byte(fcs>>8)] ^
			t[5][p[2]] ^ t[4][p[3]] ^ t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		fcs = fcs>>8 ^ t[0][byte(fcs)^b]
	}
	return fcs
}

// FCS returns the CRC-16/MCRF4XX of p (init 0xFFFF, no final XOR).
func FCS(p []byte) uint16 { return fcsUpdate(fcsInit, p...) }

// Encode frames one MCTP packet: 7E 01 len <escaped packet> FCS_hi FCS_lo
// 7E. Only packet bytes are escaped; the length and the FCS are sent raw
// because libmctp and Linux both do so and the receiver reads them by
// position. The length
// field is one byte, so callers must keep pkt within 255 bytes (Binding.Send
// refuses anything above MTU+4).
func Encode(pkt []byte) []byte {
	out := make([]byte, 0, len(pkt)+len(pkt)/8+7)
	return appendFrame(out, pkt)
}

// AppendFrame is Encode appending the frame to dst, as SendBatch frames
// a message's packets into one buffer; the same length limit applies.
func AppendFrame(dst, pkt []byte) []byte { return appendFrame(dst, pkt) }

func appendFrame(out, pkt []byte) []byte {
	n := byte(len(pkt))
	out = append(out, flagByte, revision, n)
	fcs := fcsUpdate(fcsInit, revision, n)
	// Copy runs of bytes that need no escape in one go: flag and escape
	// bytes are rare, and appending byte by byte cost as much as the FCS.
	for i := 0; i < len(pkt); {
		j := i + plainRun(pkt[i:])
		out = append(out, pkt[i:j]...)
		if j < len(pkt) {
			out = append(out, escapeByte, pkt[j]^escapeXOR)
			j++
		}
		i = j
	}
	fcs = fcsUpdate(fcs, pkt...)
	return append(out, byte(fcs>>8), byte(fcs), flagByte)
}

// plainRun returns the length of p's prefix without flag or escape
// bytes. bytes.IndexByte is vectorised; a byte-by-byte loop here and in
// the deframer was a third of the framing path's CPU. The escape is
// looked for first: flags never occur inside a frame on the wire, so
// a flag scan first would run to the end of the packet for every run
// between escapes, where this way both scans stop at the run's end.
func plainRun(p []byte) int {
	n := len(p)
	if i := bytes.IndexByte(p, escapeByte); i >= 0 {
		n = i
	}
	if i := bytes.IndexByte(p[:n], flagByte); i >= 0 {
		n = i
	}
	return n
}

// DeframerStats counts what a Deframer saw; each error kind is separate so
// a noisy line can be told apart from a peer with the wrong MTU.
type DeframerStats struct {
	Frames      uint64 // packets delivered
	BadFCS      uint64 // FCS mismatch
	BadLength   uint64 // length field outside 4..MTU+4
	BadEscape   uint64 // 7D followed by anything but 5E or 5D
	BadRevision uint64 // byte after the start flag was not 01 or 7E
	Overrun     uint64 // no end flag where the length said the frame ends
	Truncated   uint64 // a flag arrived inside the packet bytes
	Garbage     uint64 // bytes discarded while waiting for a start flag
}

type rxState uint8

const (
	stHunt   rxState = iota // discard until a flag
	stFlag                  // after a flag: more flags or the revision
	stLen                   // expect the length byte
	stData                  // packet bytes
	stEscape                // after 7D inside the packet
	stFCSHi                 // first FCS byte (raw)
	stFCSLo                 // second FCS byte (raw)
	stEnd                   // expect the end flag
)

// Deframer turns a serial byte stream back into packets. It keeps its
// state across Write (and Feed) calls, so how the stream is split does not matter,
// and after any error it hunts for the next flag, which is how it
// resynchronises after line noise or a peer starting mid-frame. The end
// flag of one frame may also serve as the start flag of the next.
//
// Write and Feed must not be called concurrently; Stats may be called from any
// goroutine.
type Deframer struct {
	maxLen int
	state  rxState
	want   int
	buf    []byte
	fcs    uint16
	rxFCS  uint16
	// arena is where delivered packets are copied: one allocation
	// per arenaLength bytes of packets instead of one per packet, which
	// profiles of the receive side showed as a per-frame cost. Packets
	// never overlap in it, and each is capped at its own length, so
	// each is still the receiver's alone.
	arena []byte

	frames, badFCS, badLength, badEscape, badRevision atomic.Uint64
	overrun, truncated, garbage                       atomic.Uint64
}

// arenaLength is the size of each packet arena: a pty read's worth.
// A receiver that keeps one packet for long keeps at most this much
// alive.
const arenaLength = 4096

// NewDeframer returns a Deframer accepting packets of 4..mtu+4 bytes. An
// mtu below the baseline is raised to it (DSP0236 requires every binding to
// carry baseline packets) and one above 251 is capped by the length byte.
func NewDeframer(mtu int) *Deframer {
	mtu = max(mtu, binding.BaselineMTU)
	mtu = min(mtu, MaxMTU)
	return &Deframer{maxLen: mtu + minPacket, buf: make([]byte, 0, mtu+minPacket)}
}

// Write consumes p and returns the packets completed by it, in order. Each
// returned slice belongs to the caller, as Feed's do.
func (d *Deframer) Write(p []byte) [][]byte {
	var out [][]byte
	d.Feed(p, func(pkt []byte) { out = append(out, pkt) })
	return out
}

// Feed consumes p and calls emit for each packet it completes, in order,
// without collecting them first. Each packet is emit's: packets may
// share a backing array (up to 4 KiB) allocated for them, but never
// overlap, and each slice's capacity ends with it, so appending to one
// cannot reach another.
func (d *Deframer) Feed(p []byte, emit func(pkt []byte)) {
	for i := 0; i < len(p); {
		if d.state == stData {
			// Fast path: copy the run of unescaped packet bytes in one go.
			end := min(len(p), i+d.want-len(d.buf))
			if j := i + plainRun(p[i:end]); j > i {
				d.buf = append(d.buf, p[i:j]...)
				if len(d.buf) == d.want {
					d.complete()
				}
				i = j
				continue
			}
		}
		if pkt := d.push(p[i]); pkt != nil {
			emit(pkt)
		}
		i++
	}
}

func (d *Deframer) push(c byte) []byte {
	switch d.state {
	case stHunt:
		if c == flagByte {
			d.state = stFlag
		} else {
			d.garbage.Add(1)
		}
	case stFlag:
		switch c {
		case flagByte:
		case revision:
			d.state = stLen
		default:
			d.badRevision.Add(1)
			d.state = stHunt
		}
	case stLen:
		// The byte count is sent raw, like the FCS, and read by
		// position, as Linux does: a 126-byte packet (possible above
		// the baseline MTU) has the count 7E. Where 126 is over the
		// limit, a 7E here still restarts the hunt at that flag.
		n := int(c)
		if n < minPacket || n > d.maxLen {
			d.badLength.Add(1)
			d.resync(c)
			return nil
		}
		d.want = n
		d.buf = d.buf[:0]
		d.fcs = fcsUpdate(fcsInit, revision, c)
		d.state = stData
	case stData:
		switch c {
		case flagByte:
			d.truncated.Add(1)
			d.state = stFlag
		case escapeByte:
			d.state = stEscape
		default:
			d.data(c)
		}
	case stEscape:
		switch c {
		case flagByte ^ escapeXOR, escapeByte ^ escapeXOR:
			d.state = stData
			d.data(c ^ escapeXOR)
		default:
			d.badEscape.Add(1)
			d.resync(c)
		}
	case stFCSHi:
		d.rxFCS = uint16(c) << 8
		d.state = stFCSLo
	case stFCSLo:
		d.rxFCS |= uint16(c)
		d.state = stEnd
	case stEnd:
		if c != flagByte {
			d.overrun.Add(1)
			d.state = stHunt
			return nil
		}
		d.state = stFlag
		if d.rxFCS != d.fcs {
			d.badFCS.Add(1)
			return nil
		}
		d.frames.Add(1)
		return d.keep(d.buf)
	}
	return nil
}

// keep copies a completed packet into the arena, starting a new arena
// when the current one has no room left for it.
func (d *Deframer) keep(pkt []byte) []byte {
	if cap(d.arena)-len(d.arena) < len(pkt) {
		d.arena = make([]byte, 0, max(arenaLength, len(pkt)))
	}
	start := len(d.arena)
	d.arena = append(d.arena, pkt...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

// data appends one unescaped packet byte and moves on to the FCS once the
// announced length is complete.
func (d *Deframer) data(c byte) {
	d.buf = append(d.buf, c)
	if len(d.buf) == d.want {
		d.complete()
	}
}

// complete takes the FCS over the whole unescaped packet in one call
// (the header's share is already in d.fcs): one pass that the folding
// path can take, instead of one per run between escapes and reads.
func (d *Deframer) complete() {
	d.fcs = fcsUpdate(d.fcs, d.buf...)
	d.state = stFCSHi
}

// resync drops the current frame; a flag that caused the error is kept as
// the start of the next frame.
func (d *Deframer) resync(c byte) {
	if c == flagByte {
		d.state = stFlag
	} else {
		d.state = stHunt
	}
}

// Stats returns a snapshot of the counters.
func (d *Deframer) Stats() DeframerStats {
	return DeframerStats{
		Frames:      d.frames.Load(),
		BadFCS:      d.badFCS.Load(),
		BadLength:   d.badLength.Load(),
		BadEscape:   d.badEscape.Load(),
		BadRevision: d.badRevision.Load(),
		Overrun:     d.overrun.Load(),
		Truncated:   d.truncated.Load(),
		Garbage:     d.garbage.Load(),
	}
}
