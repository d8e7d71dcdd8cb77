package serial

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// numbered returns message m of sender s: four packets at the baseline
// MTU carrying s, m and the packet's index, with flag and escape bytes
// in them; together long enough for the direct path.
func numbered(s, m int) [][]byte {
	var pkts [][]byte
	for i := range 4 {
		p := []byte{1, 9, 8, byte(s), 0x7e, 0x7d, byte(i)}
		p = binary.BigEndian.AppendUint32(p, uint32(m))
		pkts = append(pkts, append(p, bytes.Repeat([]byte{byte(m)}, 57)...))
	}
	return pkts
}

// TestDirectWriteOrdering has several goroutines send numbered messages
// at once, so that direct writes and queued frames mix: every packet must
// arrive intact (no interleaved frames, no bad FCS), and each sender's
// packets in the order it sent them.
func TestDirectWriteOrdering(t *testing.T) {
	pair := newPtyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx := startBinding(t, ctx, pair.a)
	rx := startBindingBuffered(t, ctx, pair.b, 1<<14)
	testutil.WaitFor(t, "both ends open", 5*time.Second, func() bool { return tx.port.Load() != nil && rx.port.Load() != nil })
	const senders, msgs = 4, 300
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := 0; m < msgs; {
				err := tx.SendBatch(numbered(s, m))
				if errors.Is(err, ErrQueueFull) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("sender %d message %d: %v", s, m, err)
					return
				}
				m++
			}
		}()
	}
	next := make([]int, senders) // next packet expected from each sender, as m*4+i
	deadline := time.After(10 * time.Second)
	for n := 0; n < senders*msgs*4; n++ {
		select {
		case p := <-rx.rx:
			s := int(p[3])
			if s >= senders || len(p) != 68 {
				t.Fatalf("unexpected packet % x", p)
			}
			m, i := int(binary.BigEndian.Uint32(p[7:])), int(p[6])
			if m*4+i != next[s] {
				t.Fatalf("sender %d: got message %d packet %d, want packet %d of the stream", s, m, i, next[s])
			}
			if want := numbered(s, m)[i]; !bytes.Equal(p, want) {
				t.Fatalf("sender %d message %d packet %d: % x, want % x", s, m, i, p, want)
			}
			next[s]++
		case <-deadline:
			t.Fatalf("received %d of %d packets", n, senders*msgs*4)
		}
	}
	wg.Wait()
	testutil.WaitFor(t, "all frames written", 5*time.Second, func() bool { return tx.queued.Load() == 0 })
	if st := tx.Stats(); st["tx_frames"] != senders*msgs*4 || st["tx_errors"] != 0 {
		t.Errorf("tx stats %v", st)
	}
	if st := rx.Stats(); st["rx_bad_fcs"]+st["rx_garbage_bytes"]+st["rx_truncated"]+st["rx_overrun"] != 0 {
		t.Errorf("rx stats %v", st)
	}
}

// TestDirectWritePartial fills the line while nobody reads the far end,
// until a direct write leaves a remainder (or nothing goes out at all) and
// the writer has to finish it; once a reader starts, every packet must
// arrive intact and in order.
func TestDirectWritePartial(t *testing.T) {
	pair := newPtyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx := startBinding(t, ctx, pair.a)
	testutil.WaitFor(t, "sender open", 5*time.Second, func() bool { return tx.port.Load() != nil })
	var sent [][]byte
	partial := false
	for m := 0; m < 20000 && !partial; m++ {
		if tx.queued.Load() != 0 {
			// Wait for the writer to catch up, so the next send
			// tries the direct path; if the line is full it cannot.
			time.Sleep(time.Millisecond)
			if tx.queued.Load() != 0 {
				continue
			}
		}
		before := tx.Stats()["tx_bytes"]
		pkts := numbered(0, m)
		wire := 0
		for _, p := range pkts {
			wire += len(Encode(p))
		}
		if err := tx.SendBatch(pkts); err != nil {
			t.Fatalf("message %d: %v", m, err)
		}
		sent = append(sent, pkts...)
		// A direct write that took everything counts its bytes at
		// once; a remainder, however short, is queued for the writer.
		// (Compared with the exact encoded length: a write that stopped
		// inside the last frame must count as partial too, or the loop
		// would wait on the queued tail until the writer gives up on
		// the full line and drops it.)
		if tx.queued.Load() != 0 && tx.Stats()["tx_bytes"]-before < uint64(wire) {
			partial = true
		}
	}
	if !partial {
		t.Fatal("the line never filled: no direct write left a remainder")
	}
	rx := startBindingBuffered(t, ctx, pair.b, len(sent))
	for i, want := range sent {
		select {
		case p := <-rx.rx:
			if !bytes.Equal(p, want) {
				t.Fatalf("packet %d: % x, want % x", i, p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d packets", i, len(sent))
		}
	}
	testutil.WaitFor(t, "all frames written", 5*time.Second, func() bool { return tx.queued.Load() == 0 })
	if st := tx.Stats(); st["tx_frames"] != uint64(len(sent)) || st["tx_errors"] != 0 {
		t.Errorf("tx stats %v, want %d frames", st, len(sent))
	}
}

// TestDirectWriteError writes to a tty whose other side is gone, so that
// write(2) fails with EIO: SendBatch returns the error, counts the frames
// as tx_errors, queues nothing and keeps serving later calls.
func TestDirectWriteError(t *testing.T) {
	pair := newPtyPair(t)
	b := New(pair.a, 0, slog.New(slog.DiscardHandler))
	f := openPort(t, b)
	defer f.Close()
	pair.stop() // closes the pty's master: writes to our end fail
	pkts := numbered(0, 1)
	for i := range 4 {
		err := b.SendBatch(pkts)
		if err == nil || errors.Is(err, ErrQueueFull) {
			t.Fatalf("send %d to a hung-up tty: %v, want a write error", i, err)
		}
		if b.queued.Load() != 0 {
			t.Fatalf("send %d: %d frames queued after a failed write", i, b.queued.Load())
		}
	}
	if st := b.Stats(); st["tx_errors"] != 16 || st["tx_frames"] != 0 {
		t.Errorf("stats %v: want 16 tx_errors", st)
	}
}

// TestSmallBatchQueued checks that a lone small frame is not written
// directly, so that pipelined small messages still share writes.
func TestSmallBatchQueued(t *testing.T) {
	pair := newPtyPair(t)
	b := New(pair.a, 0, slog.New(slog.DiscardHandler))
	f := openPort(t, b)
	defer f.Close()
	if err := b.Send([]byte{1, 9, 8, 0xc0, 0x7e}); err != nil {
		t.Fatal(err)
	}
	if b.queued.Load() != 1 || b.Stats()["tx_bytes"] != 0 {
		t.Fatalf("a lone frame: %d queued, stats %v; want it queued for the writer", b.queued.Load(), b.Stats())
	}
	// Check that numbered's messages take the direct path.
	b.queued.Store(0)
	if err := b.SendBatch(numbered(0, 0)); err != nil || b.queued.Load() != 0 || b.Stats()["tx_frames"] != 4 {
		t.Fatalf("four baseline packets: %v, %d queued, stats %v; want them written directly", err, b.queued.Load(), b.Stats())
	}
}
