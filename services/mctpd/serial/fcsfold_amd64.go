package serial

import "golang.org/x/sys/cpu"

// canFold reports whether foldBlocks may run: PCLMULQDQ (and SSE2,
// which every amd64 CPU has).
var canFold = cpu.X86.HasPCLMULQDQ

// foldPath names the instruction foldBlocks uses, for tests and
// benchmarks that report which path ran.
const foldPath = "PCLMULQDQ"

// foldBlocks folds len(p)/16 blocks (len(p) a multiple of 16, at least
// 16) into one, seed XORed into the first block's low lane, and returns
// the result's two lanes. In fcsfold_amd64.s.
//
//go:noescape
func foldBlocks(p []byte, seed uint64, k *[2]uint64) (lo, hi uint64)
