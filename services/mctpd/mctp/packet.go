// Package mctp is mctpd's MCTP core (DSP0236):
//
//   - Header, Fragment: packet headers and fragmentation;
//   - Reassembler: reassembly with libmctp's rules plus a timeout and a
//     bounded number of contexts;
//   - Responder: the type 0 control responder;
//   - Router: the router between the local clients and the physical
//     bindings (routing, tagged routing with Tags, bridging), with the
//     Null binding;
//   - ClientID, ClientMessage, Clients: the local clients as the router
//     sees them; mctpd's demuxes (services/mctpd/demux) serve them.
package mctp

import (
	"errors"
	"fmt"
)

// Packet layout constants.
const (
	// HeaderLen is the transport header: version, dest, src, flags.
	HeaderLen = 4
	// Version is the header version nibble DSP0236 1.x uses.
	Version = 1
	// MaxMessage is the largest reassembled message, as in libmctp.
	MaxMessage = 64 << 10
	// BroadcastEID and NullEID are the special destinations every
	// endpoint accepts besides its own EID.
	BroadcastEID = 0xFF
	NullEID      = 0x00
)

// Flag bits of the fourth header byte.
const (
	flagSOM   = 0x80
	flagEOM   = 0x40
	seqShift  = 4
	seqMask   = 0x3
	flagTO    = 0x08
	tagMask   = 0x7
	verMask   = 0x0F
	maxTagVal = tagMask
)

// ErrShortPacket and ErrVersion are the header decode errors.
var (
	ErrShortPacket = errors.New("mctp: packet shorter than the 4-byte header")
	ErrVersion     = errors.New("mctp: unsupported header version")
)

// Header is the decoded 4-byte MCTP transport header.
type Header struct {
	Dest, Src byte
	SOM, EOM  bool
	// Seq is the packet sequence number, 0..3.
	Seq uint8
	// TO is the tag owner bit: set on requests, clear on responses.
	TO bool
	// Tag is the message tag, 0..7.
	Tag uint8
}

// Flags returns the fourth header byte.
func (h Header) Flags() byte {
	b := (h.Seq&seqMask)<<seqShift | h.Tag&tagMask
	if h.SOM {
		b |= flagSOM
	}
	if h.EOM {
		b |= flagEOM
	}
	if h.TO {
		b |= flagTO
	}
	return b
}

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	return append(b, Version, h.Dest, h.Src, h.Flags())
}

// ParseHeader decodes the header of pkt. Only the low nibble of the
// first byte is the version; the high nibble is reserved and ignored,
// as libmctp does.
func ParseHeader(pkt []byte) (Header, error) {
	if len(pkt) < HeaderLen {
		return Header{}, fmt.Errorf("%w (%d bytes)", ErrShortPacket, len(pkt))
	}
	if pkt[0]&verMask != Version {
		return Header{}, fmt.Errorf("%w %#02x", ErrVersion, pkt[0])
	}
	f := pkt[3]
	return Header{
		Dest: pkt[1],
		Src:  pkt[2],
		SOM:  f&flagSOM != 0,
		EOM:  f&flagEOM != 0,
		Seq:  f >> seqShift & seqMask,
		TO:   f&flagTO != 0,
		Tag:  f & tagMask,
	}, nil
}

// Fragment splits msg (type byte first) into packets of at most mtu
// payload bytes, sequence numbers starting at 0 and counting mod 4. An
// empty msg gives no packets: a message always carries its type byte.
func Fragment(dest, src byte, to bool, tag uint8, msg []byte, mtu int) [][]byte {
	return FragmentSeq(dest, src, to, tag, msg, mtu, 0)
}

// FragmentSeq is Fragment with the first packet's sequence number given:
// the router continues each binding's sequence from one message to the
// next, as libmctp's core does with its per-bus tx_seq (a receiver
// takes the SOM's number as the start, so either reassembles).
func FragmentSeq(dest, src byte, to bool, tag uint8, msg []byte, mtu int, seq uint8) [][]byte {
	if len(msg) == 0 || mtu <= 0 {
		return nil
	}
	n := (len(msg) + mtu - 1) / mtu
	pkts := make([][]byte, 0, n)
	// One backing array for every packet instead of one allocation per
	// packet; each packet's capacity ends at its length, so appending to
	// one can never overwrite the next.
	buf := make([]byte, 0, n*HeaderLen+len(msg))
	for i := 0; i < n; i++ {
		part := msg[i*mtu : min((i+1)*mtu, len(msg))]
		h := Header{Dest: dest, Src: src, SOM: i == 0, EOM: i == n-1, Seq: (seq + uint8(i)) & seqMask, TO: to, Tag: tag & tagMask}
		start := len(buf)
		buf = append(h.Append(buf), part...)
		pkts = append(pkts, buf[start:len(buf):len(buf)])
	}
	return pkts
}
