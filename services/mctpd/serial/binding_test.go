package serial

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// ptyPair runs socat joining two ptys linked at dir/A and dir/B.
type ptyPair struct {
	t    testing.TB
	a, b string
	cmd  *exec.Cmd
}

func newPtyPair(t testing.TB) *ptyPair {
	t.Helper()
	testutil.NeedTool(t, "socat", "socat")
	dir := t.TempDir()
	p := &ptyPair{t: t, a: filepath.Join(dir, "A"), b: filepath.Join(dir, "B")}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *ptyPair) start() {
	p.t.Helper()
	p.cmd = exec.Command("socat", "pty,raw,echo=0,link="+p.a, "pty,raw,echo=0,link="+p.b)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("socat: %v", err)
	}
	testutil.WaitFor(p.t, "socat links", 5*time.Second, func() bool {
		_, errA := os.Stat(p.a)
		_, errB := os.Stat(p.b)
		return errA == nil && errB == nil
	})
}

func (p *ptyPair) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	p.cmd = nil
	// socat removes its links on SIGTERM; make sure, so a restart cannot
	// race with stale ones.
	os.Remove(p.a)
	os.Remove(p.b)
}

type runningBinding struct {
	*Binding
	rx   chan []byte
	done chan error
}

func startBinding(t *testing.T, ctx context.Context, dev string) *runningBinding {
	t.Helper()
	return startBindingBuffered(t, ctx, dev, 64)
}

// startBindingBuffered is startBinding with room for n received packets.
func startBindingBuffered(t *testing.T, ctx context.Context, dev string, n int) *runningBinding {
	t.Helper()
	b := New(dev, 115200, slog.New(slog.DiscardHandler))
	b.minRetry, b.maxRetry = 5*time.Millisecond, 50*time.Millisecond
	rb := &runningBinding{Binding: b, rx: make(chan []byte, n), done: make(chan error, 1)}
	go func() { rb.done <- b.Run(ctx, func(p []byte) { rb.rx <- p }) }()
	t.Cleanup(func() {
		select {
		case err := <-rb.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return rb
}

func expectPackets(t *testing.T, rb *runningBinding, want [][]byte) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-rb.rx:
			if !bytes.Equal(got, w) {
				t.Fatalf("packet %d: got % x, want % x", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d (% x) not received", i, w)
		}
	}
}

func testPackets() [][]byte {
	full := make([]byte, 68)
	for i := range full {
		full[i] = byte(0x70 + i%16) // includes 7D and 7E
	}
	return [][]byte{
		{0x01, 0x08, 0x09, 0xc8, 0x00, 0x80, 0x02},
		{0x01, 0x08, 0x09, 0xc0, 0x01, 0x11, 0x22, 0x7e, 0x7d},
		full,
	}
}

func TestBindingOverPty(t *testing.T) {
	pair := newPtyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startBinding(t, ctx, pair.a)
	b := startBinding(t, ctx, pair.b)
	defer cancel()
	up := func() bool { return a.port.Load() != nil && b.port.Load() != nil }
	testutil.WaitFor(t, "both ends open", 5*time.Second, up)

	pkts := testPackets()
	for _, p := range pkts {
		if err := a.Send(p); err != nil {
			t.Fatalf("a.Send: %v", err)
		}
	}
	expectPackets(t, b, pkts)
	for _, p := range pkts {
		if err := b.Send(p); err != nil {
			t.Fatalf("b.Send: %v", err)
		}
	}
	expectPackets(t, a, pkts)

	// Take the ptys away: both ends must notice, refuse sends, and come
	// back when the ptys reappear.
	pair.stop()
	testutil.WaitFor(t, "outage noticed", 5*time.Second, func() bool { return a.port.Load() == nil && b.port.Load() == nil })
	if err := a.Send(pkts[0]); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("Send while down: %v, want ErrLinkDown", err)
	}
	pair.start()
	testutil.WaitFor(t, "reconnect", 5*time.Second, up)
	if err := b.Send(pkts[1]); err != nil {
		t.Fatalf("b.Send after reconnect: %v", err)
	}
	expectPackets(t, a, pkts[1:2])
	if err := a.Send(pkts[2]); err != nil {
		t.Fatalf("a.Send after reconnect: %v", err)
	}
	expectPackets(t, b, pkts[2:3])

	for _, rb := range []*runningBinding{a, b} {
		s := rb.Stats()
		if s["outages"] != 1 || s["reconnects"] != 1 || s["tx_link_down"] == 0 && rb == a {
			t.Errorf("%s stats: %v", rb.Name(), s)
		}
		if s["rx_bad_fcs"]+s["rx_bad_length"]+s["rx_bad_escape"] != 0 {
			t.Errorf("%s receive errors: %v", rb.Name(), s)
		}
	}
}

func TestSendValidation(t *testing.T) {
	for _, mtu := range []int{binding.BaselineMTU, 100, MaxMTU} {
		b, err := NewMTU("/nonexistent/tty", 0, mtu, nil)
		if err != nil {
			t.Fatalf("NewMTU %d: %v", mtu, err)
		}
		if err := b.Send(make([]byte, 3)); err == nil {
			t.Errorf("MTU %d: 3-byte packet accepted", mtu)
		}
		if err := b.Send(make([]byte, mtu+5)); err == nil {
			t.Errorf("MTU %d: %d-byte packet accepted", mtu, mtu+5)
		}
		if err := b.Send(make([]byte, mtu+4)); !errors.Is(err, ErrLinkDown) {
			t.Errorf("MTU %d: Send of a full packet before open: %v, want ErrLinkDown", mtu, err)
		}
		if b.Name() != "serial:/nonexistent/tty" || b.MTU() != mtu {
			t.Errorf("Name/MTU = %q/%d, want MTU %d", b.Name(), b.MTU(), mtu)
		}
	}
	if b := New("/nonexistent/tty", 0, nil); b.MTU() != binding.BaselineMTU {
		t.Errorf("New: MTU %d, want the baseline", b.MTU())
	}
	for _, mtu := range []int{0, 63, MaxMTU + 1, 1 << 20} {
		if _, err := NewMTU("/nonexistent/tty", 0, mtu, nil); err == nil {
			t.Errorf("NewMTU %d accepted", mtu)
		}
	}
}

// TestLargeMTUOverPty sends packets of every size up to 255 bytes from a
// binding at MaxMTU to one at the baseline MTU, which still receives
// them: the receive side accepts what the length byte allows.
func TestLargeMTUOverPty(t *testing.T) {
	pair := newPtyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big, err := NewMTU(pair.a, 0, MaxMTU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go big.Run(ctx, func([]byte) {})
	small := startBinding(t, ctx, pair.b)
	testutil.WaitFor(t, "both ends open", 5*time.Second, func() bool { return big.port.Load() != nil && small.port.Load() != nil })
	var want [][]byte
	for n := minPacket; n <= maxPacket; n += 13 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*5 + n) // includes 7E and 7D
		}
		want = append(want, p)
	}
	want = append(want, bytes.Repeat([]byte{0x7e}, maxPacket))
	for _, p := range want {
		if err := big.Send(p); err != nil {
			t.Fatalf("Send %d bytes: %v", len(p), err)
		}
	}
	for i := 0; i < len(want); i += 16 {
		expectPackets(t, small, want[i:min(i+16, len(want))])
	}
	if s := small.Stats(); s["rx_bad_length"] != 0 || s["rx_frames"] != uint64(len(want)) {
		t.Errorf("receiver stats: %v", s)
	}
	if err := small.Send(make([]byte, maxPacket)); err == nil {
		t.Error("the baseline binding sent a 255-byte packet")
	}
}

func TestQueueOverflow(t *testing.T) {
	pair := newPtyPair(t)
	b := New(pair.a, 0, slog.New(slog.DiscardHandler))
	f := openPort(t, b)
	defer f.Close()
	// No writer is running, and a frame counted as being written holds
	// off direct writes, so the queue fills and Send must fail fast.
	b.queued.Store(1)
	var full int
	start := time.Now()
	for range sendQueueLen(binding.BaselineMTU) + 9 {
		if err := b.Send(make([]byte, 68)); errors.Is(err, ErrQueueFull) {
			full++
		}
	}
	if full != 10 || b.Stats()["tx_queue_full"] != 10 {
		t.Fatalf("queue full %d times, stats %d; want 10", full, b.Stats()["tx_queue_full"])
	}
	if time.Since(start) > time.Second {
		t.Fatalf("Send blocked")
	}
}

// openPort opens dev as Run would and makes it the binding's port,
// without starting Run's reader or writer.
func openPort(t *testing.T, b *Binding) *os.File {
	t.Helper()
	f, err := b.open()
	if err != nil {
		t.Fatal(err)
	}
	tt, err := newTTY(f)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	b.port.Store(tt)
	return f
}

func TestRunUnavailableDevice(t *testing.T) {
	b := New(filepath.Join(t.TempDir(), "missing"), 0, slog.New(slog.DiscardHandler))
	b.minRetry, b.maxRetry = time.Millisecond, 4*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Run(ctx, func([]byte) {}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := b.Stats()
	if s["outages"] != 1 || s["open_errors"] < 3 {
		t.Fatalf("stats %v: want one outage and repeated open attempts", s)
	}
}

// TestRunBatches receives through the batched path: the batches, joined,
// are exactly the packets sent, in order, and none is empty.
func TestRunBatches(t *testing.T) {
	pair := newPtyPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx := startBinding(t, ctx, pair.a)
	rx, err := NewMTU(pair.b, 0, MaxMTU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	batches := make(chan [][]byte, 1024)
	done := make(chan error, 1)
	go func() {
		done <- rx.RunBatches(ctx, func(pkts [][]byte) {
			// The slice is reused after the call; the packets are ours.
			batches <- append([][]byte(nil), pkts...)
		})
	}()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "both ends open", 5*time.Second, func() bool { return tx.port.Load() != nil && rx.port.Load() != nil })
	var want [][]byte
	for i := range 200 {
		p := []byte{1, 9, 8, 0xc0, byte(i), 0x7e, byte(i >> 8)}
		want = append(want, p)
		if err := tx.Send(p); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	var got [][]byte
	deadline := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case b := <-batches:
			if len(b) == 0 {
				t.Fatal("empty batch delivered")
			}
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("received %d of %d packets", len(got), len(want))
		}
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: % x, want % x", i, got[i], want[i])
		}
	}
}

// TestSendBatch queues a message's packets all or none: a bad length
// anywhere refuses the batch, a batch bigger than the room left is
// refused whole (and counted per frame), and what is queued crosses a
// pty byte-exact, counted as frames.
func TestSendBatch(t *testing.T) {
	pair := newPtyPair(t)
	b, err := NewMTU(pair.a, 0, MaxMTU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	good := [][]byte{{1, 9, 8, 0x80, 0x7e}, {1, 9, 8, 0x10, 0x7d}, {1, 9, 8, 0x60, 5}}
	if err := b.SendBatch(good); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("SendBatch before open: %v, want ErrLinkDown", err)
	}
	f := openPort(t, b)
	defer f.Close()
	// No writer runs yet, and one frame counted as being written holds
	// off direct writes: the queue only fills.
	b.queued.Store(1)
	if err := b.SendBatch([][]byte{good[0], make([]byte, MaxMTU+5)}); err == nil || b.queued.Load() != 1 {
		t.Fatalf("batch with an oversized packet: %v, %d frames queued", err, b.queued.Load())
	}
	room := int(b.maxQueued) - 3
	for range room {
		if err := b.Send(good[2]); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SendBatch(good); !errors.Is(err, ErrQueueFull) || b.queued.Load() != int64(room+1) || b.Stats()["tx_queue_full"] != 3 {
		t.Fatalf("batch of 3 with room for 2: %v, %d queued, stats %v", err, b.queued.Load(), b.Stats())
	}
	if err := b.SendBatch(good[:2]); err != nil || b.queued.Load() != b.maxQueued {
		t.Fatalf("batch of 2 with room for 2: %v, %d queued", err, b.queued.Load())
	}

	// Drain through a running binding pair and check the bytes.
	b2, err := NewMTU(pair.a, 0, MaxMTU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rx := startBinding(t, ctx, pair.b)
	go b2.Run(ctx, func([]byte) {})
	testutil.WaitFor(t, "both ends open", 5*time.Second, func() bool { return b2.port.Load() != nil && rx.port.Load() != nil })
	big := make([][]byte, 40)
	for i := range big {
		big[i] = bytes.Repeat([]byte{byte(i), 0x7e}, 30)
	}
	if err := b2.SendBatch(big); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(big); i += 20 {
		expectPackets(t, rx, big[i:i+20])
	}
	testutil.WaitFor(t, "frames counted", 5*time.Second, func() bool { return b2.Stats()["tx_frames"] == uint64(len(big)) && b2.queued.Load() == 0 })
}
