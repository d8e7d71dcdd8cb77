package serial

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// message4K returns a 4 KiB message split into baseline packets (4-byte
// header plus 64 bytes of payload), as the core fragments it. The payload
// is a byte ramp, so 2 in 256 bytes need escaping, as random data would.
func message4K() (msg []byte, pkts [][]byte) {
	msg = make([]byte, 4096)
	for i := range msg {
		msg[i] = byte(i)
	}
	for off := 0; off < len(msg); off += binding.BaselineMTU {
		pkt := append([]byte{1, 8, 9, 0xc0}, msg[off:off+binding.BaselineMTU]...)
		pkts = append(pkts, pkt)
	}
	return msg, pkts
}

// BenchmarkFraming measures Encode plus Deframer on 4 KiB messages; the
// MB/s figure is payload throughput, wire-overhead-% the extra bytes on the
// line relative to the raw message (MCTP headers included) and
// framing-overhead-% what DSP0253 framing adds to the MCTP packets.
func BenchmarkFraming(b *testing.B) {
	msg, pkts := message4K()
	b.SetBytes(int64(len(msg)))
	var wire, pktBytes int
	for _, p := range pkts {
		pktBytes += len(p)
	}
	for b.Loop() {
		d := NewDeframer(binding.BaselineMTU)
		wire = 0
		n := 0
		for _, p := range pkts {
			f := Encode(p)
			wire += len(f)
			n += len(d.Write(f))
		}
		if n != len(pkts) {
			b.Fatalf("deframed %d of %d packets", n, len(pkts))
		}
	}
	b.ReportMetric(100*float64(wire-len(msg))/float64(len(msg)), "wire-overhead-%")
	b.ReportMetric(100*float64(wire-pktBytes)/float64(pktBytes), "framing-overhead-%")
}

// ptyEnds opens both ends of a socat pty pair the way the binding does.
func ptyEnds(b *testing.B) (w, r *os.File) {
	b.Helper()
	p := newPtyPair(b)
	wf, err := New(p.a, 0, nil).open()
	if err != nil {
		b.Fatal(err)
	}
	rf, err := New(p.b, 0, nil).open()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { wf.Close(); rf.Close() })
	return wf, rf
}

// BenchmarkPtyRaw is the baseline: 4 KiB messages through a pty pair with
// no framing.
func BenchmarkPtyRaw(b *testing.B) {
	msg, _ := message4K()
	w, r := ptyEnds(b)
	buf := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		errc := make(chan error, 1)
		go func() { _, err := w.Write(msg); errc <- err }()
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPtyFramed sends the same messages fragmented and framed, and
// deframes them on the other end; compare its MB/s with BenchmarkPtyRaw.
func BenchmarkPtyFramed(b *testing.B) {
	msg, pkts := message4K()
	var frames []byte
	for _, p := range pkts {
		frames = append(frames, Encode(p)...)
	}
	w, r := ptyEnds(b)
	buf := make([]byte, readBufferLength)
	d := NewDeframer(binding.BaselineMTU)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		errc := make(chan error, 1)
		go func() { _, err := w.Write(frames); errc <- err }()
		for n := 0; n < len(pkts); {
			k, err := r.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			n += len(d.Write(buf[:k]))
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	if s := d.Stats(); s.Frames == 0 || s.BadFCS+s.BadLength+s.Garbage != 0 {
		b.Fatalf("deframer stats %+v", s)
	}
}

// BenchmarkFCS is the FCS alone over a baseline frame's 68 bytes and
// the 255 bytes of the largest MTU's, by table and (where the CPU has
// carry-less multiplication) by folding, in the same run.
func BenchmarkFCS(b *testing.B) {
	for _, n := range []int{68, 255} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		for _, path := range fcsPaths() {
			b.Run(fmt.Sprintf("%s/%d", path.name, n), func(b *testing.B) {
				b.SetBytes(int64(len(p)))
				var sink uint16
				for b.Loop() {
					sink ^= path.f(fcsInit, p)
				}
				_ = sink
			})
		}
	}
}

// BenchmarkPtyBindingMessage sends one 4 KiB message at a time (17
// packets at the largest MTU) from one Binding to another over a pty
// pair and waits for its last packet: the latency of an idle line. The
// direct case writes in SendBatch's caller; queued is the baseline, every
// message handed to the writer goroutine.
func BenchmarkPtyBindingMessage(b *testing.B) {
	for _, c := range []struct {
		name      string
		queueOnly bool
	}{{"direct", false}, {"queued", true}} {
		b.Run(c.name, func(b *testing.B) {
			p := newPtyPair(b)
			log := slog.New(slog.DiscardHandler)
			tx, err := NewMTU(p.a, 0, MaxMTU, log)
			if err != nil {
				b.Fatal(err)
			}
			rx, err := NewMTU(p.b, 0, MaxMTU, log)
			if err != nil {
				b.Fatal(err)
			}
			tx.queueOnly = c.queueOnly
			var pkts [][]byte
			for off := 0; off < 4096; off += MaxMTU {
				pkts = append(pkts, append([]byte{1, 9, 8, 0}, make([]byte, min(MaxMTU, 4096-off))...))
			}
			pkts[len(pkts)-1][3] = 0x40
			eom := make(chan struct{}, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{}, 2)
			go func() { tx.Run(ctx, func([]byte) {}); done <- struct{}{} }()
			go func() {
				rx.Run(ctx, func(pkt []byte) {
					if pkt[3]&0x40 != 0 {
						eom <- struct{}{}
					}
				})
				done <- struct{}{}
			}()
			b.Cleanup(func() { cancel(); <-done; <-done })
			testutil.WaitFor(b, "both ends open", 5*time.Second, func() bool { return tx.port.Load() != nil && rx.port.Load() != nil })
			b.SetBytes(4096)
			for b.Loop() {
				if err := tx.SendBatch(pkts); err != nil {
					b.Fatal(err)
				}
				<-eom
			}
		})
	}
}
