#include "textflag.h"

// func foldBlocks(p []byte, seed uint64, k *[2]uint64) (lo, hi uint64)
//
// The same fold as fcsfold_amd64.s: V0 is the running block, its low
// lane (the first eight bytes, the higher powers) times x^191 mod P
// plus its high lane times x^127 mod P, XORed with the next block.
// PMULL multiplies the low 64-bit lanes of its operands, PMULL2 the
// high ones; each leaves a 128-bit product.
TEXT ·foldBlocks(SB), NOSPLIT, $0-56
	MOVD p_base+0(FP), R0
	MOVD p_len+8(FP), R1
	MOVD seed+24(FP), R2
	MOVD k+32(FP), R3
	VLD1 (R3), [V2.D2]        // V2 = [x^191 mod P, x^127 mod P]
	VLD1.P 16(R0), [V0.D2]
	VMOV V0.D[0], R4
	EOR  R2, R4
	VMOV R4, V0.D[0]          // the seed enters the first lane
	SUB  $16, R1

loop:
	CMP     $16, R1
	BLO     done
	VLD1.P  16(R0), [V5.D2]
	VPMULL  V0.D1, V2.D1, V3.Q1 // low lane times x^191
	VPMULL2 V0.D2, V2.D2, V4.Q1 // high lane times x^127
	VEOR    V3.B16, V4.B16, V0.B16
	VEOR    V5.B16, V0.B16, V0.B16
	SUB     $16, R1
	B       loop

done:
	VMOV V0.D[0], R4
	VMOV V0.D[1], R5
	MOVD R4, lo+40(FP)
	MOVD R5, hi+48(FP)
	RET
