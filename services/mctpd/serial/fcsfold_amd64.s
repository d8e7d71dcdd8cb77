#include "textflag.h"

// func foldBlocks(p []byte, seed uint64, k *[2]uint64) (lo, hi uint64)
TEXT ·foldBlocks(SB), NOSPLIT, $0-56
	MOVQ  p_base+0(FP), SI
	MOVQ  p_len+8(FP), CX
	MOVQ  seed+24(FP), AX
	MOVQ  k+32(FP), DX
	MOVOU (SI), X0
	MOVQ  AX, X1
	PXOR  X1, X0
	MOVOU (DX), X2 // X2 = [x^191 mod P, x^127 mod P]
	ADDQ  $16, SI
	SUBQ  $16, CX

loop:
	CMPQ      CX, $16
	JB        done
	MOVOU     X0, X3
	PCLMULQDQ $0x00, X2, X0 // first lane (the higher powers) times x^191
	PCLMULQDQ $0x11, X2, X3 // second lane times x^127
	PXOR      X3, X0
	MOVOU     (SI), X4
	PXOR      X4, X0
	ADDQ      $16, SI
	SUBQ      $16, CX
	JMP       loop

done:
	MOVQ   X0, AX
	MOVQ   AX, lo+40(FP)
	PSHUFD $0x4e, X0, X1
	MOVQ   X1, AX
	MOVQ   AX, hi+48(FP)
	RET
