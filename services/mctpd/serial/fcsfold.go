package serial

import "encoding/binary"

// The FCS by carry-less multiplication. A CRC is the remainder of the
// message polynomial modulo P = x^16 + x^12 + x^5 + 1, so a 16-byte block
// X followed by 16 more bytes B leaves the same remainder as the single
// block X·x^128 mod P + B. With X split into halves Xh·x^64 + Xl, that is
// Xh·(x^192 mod P) + Xl·(x^128 mod P) + B: two 64×16-bit carry-less
// products, which fit in 128 bits again. Folding a frame's 16-byte blocks
// this way leaves one block whose FCS (from zero) equals the FCS of all of
// them; the table finishes that block and the tail.
//
// The FCS is bit-reflected: the first bit on the wire (bit 0 of the first
// byte) is the highest power. Loaded little-endian, a 64-bit lane holds
// x^(63-i) in bit i, and the carry-less product of two such lanes holds
// x^(126-k) in bit k: one power short of the 128-bit block's x^(127-k).
// The constants are therefore x^191 and x^127 mod P, not x^192 and x^128.

// foldMin is the shortest input folded rather than table-driven: below
// it the final table pass over the folded block costs more than folding
// saves.
const foldMin = 48

// foldK holds x^191 mod P and x^127 mod P as reflected 64-bit lanes.
var foldK = [2]uint64{reflectedMod(191), reflectedMod(127)}

// reflectedMod returns x^n mod P as a lane holding x^(63-i) in bit i.
func reflectedMod(n int) uint64 {
	const poly = 0x1021 // P without its x^16 term
	r := uint32(1)      // x^0
	for range n {
		r <<= 1
		if r&0x10000 != 0 {
			r ^= 0x10000 | poly
		}
	}
	var lane uint64
	for j := range 16 {
		if r&(1<<j) != 0 {
			lane |= 1 << (63 - j)
		}
	}
	return lane
}

// fcsFolded is fcsUpdate for inputs of foldMin bytes or more on CPUs
// with carry-less multiplication. The running FCS enters as the first
// two bytes' XOR, which is what a reflected CRC register does with them.
func fcsFolded(fcs uint16, p []byte) uint16 {
	n := len(p) &^ 15
	lo, hi := foldBlocks(p[:n], uint64(fcs), &foldK)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], lo)
	binary.LittleEndian.PutUint64(b[8:], hi)
	return fcsTable(fcsTable(0, b[:]), p[n:])
}

// FCSPath names how FCS computes on this CPU: the carry-less multiply
// instruction that folds it ("PCLMULQDQ" on amd64, "PMULL" on arm64) or
// "table" where there is none. For benchmarks and reports.
func FCSPath() string {
	if canFold {
		return foldPath
	}
	return "table"
}

// FCSByTable is FCS by table alone, whatever the CPU can do: the
// baseline benchmarks compare the folded path with.
func FCSByTable(p []byte) uint16 { return fcsTable(fcsInit, p) }
