//go:build !amd64 && !arm64

package serial

// canFold is false where no folding routine is written: the table does
// all the work.
const canFold = false

// foldPath is empty: there is no folding instruction here.
const foldPath = ""

func foldBlocks([]byte, uint64, *[2]uint64) (lo, hi uint64) {
	panic("serial: foldBlocks without carry-less multiplication")
}
