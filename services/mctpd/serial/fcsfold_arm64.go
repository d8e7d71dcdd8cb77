package serial

import "golang.org/x/sys/cpu"

// canFold reports whether foldBlocks may run: PMULL (the 64×64-bit
// polynomial multiply of the crypto extension, which ARMv8 makes
// optional). Without it the table does all the work.
var canFold = cpu.ARM64.HasPMULL

// foldPath names the instruction foldBlocks uses, for tests and
// benchmarks that report which path ran.
const foldPath = "PMULL"

// foldBlocks folds len(p)/16 blocks (len(p) a multiple of 16, at least
// 16) into one, seed XORed into the first block's low lane, and returns
// the result's two lanes. In fcsfold_arm64.s.
//
//go:noescape
func foldBlocks(p []byte, seed uint64, k *[2]uint64) (lo, hi uint64)
