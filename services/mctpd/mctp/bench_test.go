package mctp

import (
	"fmt"
	"testing"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// BenchmarkFragmentReassemble is the core's hot path for one message
// crossing a binding: Fragment at the baseline MTU on the sending side,
// then ParseHeader and Reassembler.Add for every packet on the receiving
// side. Sizes are whole MCTP messages (type byte included): 64 B is one
// packet, 4 KiB is 64.
func BenchmarkFragmentReassemble(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			msg := make([]byte, size)
			msg[0] = 0x7e
			for i := 1; i < size; i++ {
				msg[i] = byte(i)
			}
			r := NewReassembler(ReassemblerOptions{Drop: func(reason string) { b.Fatalf("dropped: %s", reason) }})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var out []byte
				for _, p := range Fragment(9, 8, true, 0, msg, binding.BaselineMTU) {
					h, err := ParseHeader(p)
					if err != nil {
						b.Fatal(err)
					}
					out = r.Add(h, p[HeaderLen:])
				}
				if len(out) != size || out[size-1] != msg[size-1] {
					b.Fatalf("reassembled %d bytes, want %d", len(out), size)
				}
			}
		})
	}
}
