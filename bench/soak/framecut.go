package main

// frameCutter follows a DSP0253 serial byte stream (7E 01 LEN <packet,
// 7D-escaped> FCSHI FCSLO 7E) as the pty relay passes it on, so that the
// relay can stop in the middle of a frame: after some of a packet's
// bytes and before the rest. It only tracks positions; it checks no
// FCS, since it never delivers anything.
type frameCutter struct {
	state cutState
	left  int // packet bytes still to come in cutData/cutEscape
	total int // the packet's length
}

type cutState uint8

const (
	cutHunt   cutState = iota // outside a frame: wait for a flag
	cutFlag                   // after a flag: more flags or the revision
	cutLen                    // the length byte (raw)
	cutData                   // packet bytes
	cutEscape                 // after 7D inside the packet
	cutFCSHi                  // FCS, raw
	cutFCSLo
	cutEnd // the end flag
)

const (
	frameFlag     = 0x7e
	frameEscape   = 0x7d
	frameRevision = 0x01
)

// Cut consumes b and returns the length of b's prefix after which the
// stream stands in the middle of a packet: at least one of its bytes
// passed, at least one still to come, and at most half of it passed. It
// returns -1 when no such point falls in b; the state then follows all
// of b. When it returns n, the state follows b[:n] only.
func (c *frameCutter) Cut(b []byte) int {
	for i, x := range b {
		c.push(x)
		if c.state == cutData && c.left > 0 && c.total-c.left >= max(1, c.total/2) {
			return i + 1
		}
	}
	return -1
}

func (c *frameCutter) push(x byte) {
	switch c.state {
	case cutHunt:
		if x == frameFlag {
			c.state = cutFlag
		}
	case cutFlag:
		switch x {
		case frameFlag:
		case frameRevision:
			c.state = cutLen
		default:
			c.state = cutHunt
		}
	case cutLen:
		c.total, c.left = int(x), int(x)
		c.state = cutData
		if c.left == 0 {
			c.state = cutFCSHi
		}
	case cutData:
		switch x {
		case frameFlag:
			// A flag inside a packet: the frame was cut short; this
			// flag starts the next one.
			c.state = cutFlag
		case frameEscape:
			c.state = cutEscape
		default:
			c.data()
		}
	case cutEscape:
		if x == frameFlag {
			c.state = cutFlag
			return
		}
		c.state = cutData
		c.data()
	case cutFCSHi:
		c.state = cutFCSLo
	case cutFCSLo:
		c.state = cutEnd
	case cutEnd:
		if x == frameFlag {
			c.state = cutFlag
		} else {
			c.state = cutHunt
		}
	}
}

func (c *frameCutter) data() {
	c.left--
	if c.left == 0 {
		c.state = cutFCSHi
	}
}
