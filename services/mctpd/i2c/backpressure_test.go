package i2c

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// fakeBus is an I2C bus whose peer always has an empty mailbox and
// records every block write. Writes can be slowed (delay), held until
// release (a stuck bus: clock stretching without end, say), and every
// transaction can fail (a peer that stopped answering).
type fakeBus struct {
	mu     sync.Mutex
	writes [][]byte
	delay  time.Duration
	fail   bool
	gate   chan struct{}
}

func (f *fakeBus) String() string                  { return "fake" }
func (f *fakeBus) SetSpeed(physic.Frequency) error { return nil }

func (f *fakeBus) Tx(addr uint16, w, r []byte) error {
	f.mu.Lock()
	fail, gate, delay := f.fail, f.gate, f.delay
	f.mu.Unlock()
	if fail {
		return errors.New("fake: address NACK")
	}
	if addr != peer {
		return errors.New("fake: wrong address")
	}
	if r != nil {
		clear(r) // byte count 0: nothing pending
		return nil
	}
	if gate != nil {
		<-gate
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	f.mu.Lock()
	f.writes = append(f.writes, bytes.Clone(w))
	f.mu.Unlock()
	return nil
}

func (f *fakeBus) hold() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeBus) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

func (f *fakeBus) setFail(fail bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func (f *fakeBus) written() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.writes...)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// packets returns n baseline packets of 8 bytes.
func packets(n int) [][]byte {
	p := make([][]byte, n)
	for i := range p {
		p[i] = []byte{1, 9, 8, 0xc8, 1, 2, 3, byte(i)}
	}
	return p
}

// TestSendBatch: a batch goes into the queue whole or not at all; a
// message bigger than the queue goes only into an empty one; what does
// not fit is ErrBusy, a failing bus ErrLinkDown, and what could never
// be sent is neither.
func TestSendBatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		queued     int // single packets queued first
		down       bool
		batch      [][]byte
		want       error // nil, binding.ErrBusy, binding.ErrLinkDown, or errOther
		wantQueued int64
		stat       string
		statN      uint64
	}{
		{name: "empty batch", batch: nil},
		{name: "fits", queued: 10, batch: packets(54), wantQueued: 64},
		{name: "one too many", queued: 10, batch: packets(55), want: binding.ErrBusy, wantQueued: 10, stat: "tx_queue_full", statN: 55},
		{name: "64 KiB message into an empty queue", batch: packets(1024), wantQueued: 1024},
		{name: "64 KiB message behind one packet", queued: 1, batch: packets(1024), want: binding.ErrBusy, wantQueued: 1, stat: "tx_queue_full", statN: 1024},
		{name: "over a 64 KiB message", batch: packets(maxBatch + 1), want: errOther, stat: "tx_too_big", statN: maxBatch + 1},
		{name: "bad packet refuses the batch", batch: append(packets(3), []byte{1, 9, 8}), want: errOther, stat: "tx_bad_length", statN: 1},
		{name: "link down", down: true, batch: packets(2), want: binding.ErrLinkDown, stat: "tx_link_down", statN: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(&fakeBus{}, own, peer, 0, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for range tc.queued {
				if err := b.Send(packets(1)[0]); err != nil {
					t.Fatal(err)
				}
			}
			b.down.Store(tc.down)
			err = b.SendBatch(tc.batch)
			switch {
			case tc.want == nil && err != nil, tc.want != nil && err == nil:
				t.Fatalf("SendBatch: %v, want %v", err, tc.want)
			case tc.want == errOther && (errors.Is(err, binding.ErrBusy) || errors.Is(err, binding.ErrLinkDown)):
				t.Fatalf("SendBatch: %v is worth waiting for, want a refusal for good", err)
			case tc.want != nil && tc.want != errOther && !errors.Is(err, tc.want):
				t.Fatalf("SendBatch: %v, want %v", err, tc.want)
			}
			if q := b.queued.Load(); q != tc.wantQueued {
				t.Errorf("queued %d, want %d", q, tc.wantQueued)
			}
			// The channel holds exactly what was admitted, in order.
			var n int64
			for len(b.queue) > 0 {
				n += int64(len(<-b.queue))
			}
			if n != tc.wantQueued {
				t.Errorf("%d writes in the queue, want %d", n, tc.wantQueued)
			}
			if tc.stat != "" && b.Stats()[tc.stat] != tc.statN {
				t.Errorf("%s = %d, want %d (%v)", tc.stat, b.Stats()[tc.stat], tc.statN, b.Stats())
			}
		})
	}
}

var errOther = errors.New("refused for good")

// TestRoom: Room's channel closes when a write frees queue room and when
// the failing bus recovers, and not before.
func TestRoom(t *testing.T) {
	for _, tc := range []struct {
		name string
		down bool // the bus fails first; else the queue is full
	}{
		{name: "write frees room"},
		{name: "bus recovers", down: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := &fakeBus{}
			b, err := New(bus, own, peer, time.Millisecond, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			want := binding.ErrBusy
			if tc.down {
				bus.setFail(true)
				want = binding.ErrLinkDown
			} else {
				bus.hold()
				if err := b.SendBatch(packets(sendQueueLen)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx, func([]byte) { t.Error("unexpected packet") }) }()
			defer func() {
				bus.release()
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			if tc.down {
				testutil.WaitFor(t, "bus failing", 5*time.Second, func() bool { return b.Stats()["outages"] == 1 })
			}
			room := b.Room()
			if err := b.Send(packets(1)[0]); !errors.Is(err, want) {
				t.Fatalf("Send: %v, want %v", err, want)
			}
			time.Sleep(20 * time.Millisecond)
			if closed(room) {
				t.Fatal("Room closed while nothing changed")
			}
			if tc.down {
				bus.setFail(false)
			} else {
				bus.release()
			}
			select {
			case <-room:
			case <-time.After(5 * time.Second):
				t.Fatal("Room not closed")
			}
			if err := b.Send(packets(1)[0]); err != nil {
				t.Fatalf("Send after Room: %v", err)
			}
		})
	}
}

// wantWrites is every block write the messages (type byte first) from
// EID 8 to EID 9 make, built here from DSP0236 and DSP0237 rather than
// by the router: baseline packets, TO set, tag 0, the sequence number
// running on from message to message.
func wantWrites(msgs [][]byte) [][]byte {
	var out [][]byte
	seq := 0
	for _, m := range msgs {
		n := (len(m) + binding.BaselineMTU - 1) / binding.BaselineMTU
		for i := range n {
			flags := byte(seq%4)<<4 | 0x08
			if i == 0 {
				flags |= 0x80
			}
			if i == n-1 {
				flags |= 0x40
			}
			pkt := append([]byte{0x01, 9, 8, flags}, m[i*binding.BaselineMTU:min(len(m), (i+1)*binding.BaselineMTU)]...)
			out = append(out, EncodeWrite(own, peer, pkt))
			seq++
		}
	}
	return out
}

// TestRouterBackpressure runs mctpd's router with the I2C binding behind
// a demux and sends a client's messages to EID 9. Messages that do not
// fit, even bigger ones than the whole queue, wait for the bus and go
// out complete and in order, with no drop; a bus that stays stuck or
// down past the send timeout drops the waiting message as send-timeout,
// counted, and the messages already queued still go out whole.
func TestRouterBackpressure(t *testing.T) {
	const typ = 1
	for _, tc := range []struct {
		name  string
		sizes []int // message sizes, type byte included
		delay time.Duration
		// before the client sends: hold the writes (stuck) or fail
		// every transaction (down); released after waits are counted,
		// or only after the drop when drop is set.
		stuck, down bool
		timeout     time.Duration
		drop        bool
		sent        int // messages that reach the bus, when drop
	}{
		{name: "two 64 KiB messages, slow bus", sizes: []int{64 << 10, 64 << 10}, delay: 300 * time.Microsecond},
		{name: "4 KiB burst, bus held then drained", sizes: repeat(4<<10, 20), stuck: true},
		{name: "mixed sizes, bus held then drained", sizes: []int{2, 64 << 10, 65, 4 << 10, 64 << 10, 3}, stuck: true},
		{name: "link down, then up", sizes: []int{4 << 10}, down: true},
		{name: "bus stuck past the timeout", sizes: []int{4 << 10, 4 << 10}, stuck: true, timeout: 300 * time.Millisecond, drop: true, sent: 1},
		{name: "link down past the timeout", sizes: []int{100}, down: true, timeout: 300 * time.Millisecond, drop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := &fakeBus{delay: tc.delay}
			b, err := New(bus, own, peer, time.Millisecond, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			r, err := mctp.New(mctp.Options{EID: 8, Bindings: []binding.Binding{b}, SendTimeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			srv := ctl.NewServer(ctl.NewRegistry(ctl.Options{Name: "t", Logger: slog.New(slog.DiscardHandler)}))
			name := "tbi2c-" + rand.Text()[:12]
			dm, err := srv.ServeDemux([]string{name}, ctl.DemuxOptions{Router: r})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, dm) }()
			defer func() {
				bus.release() // a held write must return for Run to end
				cancel()
				if err := <-done; err != nil {
					t.Errorf("router Run: %v", err)
				}
				srv.Close(context.Background())
			}()
			if tc.stuck {
				bus.hold()
			}
			if tc.down {
				bus.setFail(true)
				testutil.WaitFor(t, "bus failing", 5*time.Second, func() bool { return b.Stats()["outages"] == 1 })
			}

			c, err := ctl.DialDemux(name, typ)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			testutil.WaitFor(t, "client registered", 5*time.Second, func() bool { return dm.Registered(typ) == 1 })
			msgs := make([][]byte, len(tc.sizes))
			for i, n := range tc.sizes {
				msgs[i] = make([]byte, n)
				msgs[i][0] = typ
				for j := 1; j < n; j++ {
					msgs[i][j] = byte(i*31 + j*7)
				}
			}
			sendErr := make(chan error, 1)
			go func() {
				// The client's socket pushes back while the router
				// waits, so it sends from a goroutine of its own.
				for _, m := range msgs {
					if err := c.Send(9, m[1:]); err != nil {
						sendErr <- err
						return
					}
				}
				sendErr <- nil
			}()

			sent := msgs // the messages that must reach the bus
			start := time.Now()
			testutil.WaitFor(t, "a send waiting", 10*time.Second, func() bool { return r.Stats().SendWaits > 0 })
			if tc.drop {
				testutil.WaitFor(t, "the drop", 10*time.Second, func() bool { return r.Stats().Drops[mctp.DropSendTimeout] == 1 })
				if el := time.Since(start); el < tc.timeout {
					t.Errorf("dropped after %v, send timeout %v", el, tc.timeout)
				}
				sent = msgs[:tc.sent]
			}
			bus.release()
			bus.setFail(false)
			if err := <-sendErr; err != nil {
				t.Fatalf("client send: %v", err)
			}

			want := wantWrites(sent)
			testutil.WaitFor(t, "every write", 60*time.Second, func() bool { return len(bus.written()) >= len(want) })
			// Anything further would be a message that should have
			// been dropped, or a duplicate.
			time.Sleep(50 * time.Millisecond)
			got := bus.written()
			if len(got) != len(want) {
				t.Fatalf("%d writes on the bus, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("write %d of %d:\n got % x\nwant % x", i, len(want), got[i], want[i])
				}
			}

			st, bs, ds := r.Stats(), b.Stats(), dm.Stats()
			wantDrops := 0
			if tc.drop {
				wantDrops = 1
			}
			if len(st.Drops) != wantDrops || st.Drops[mctp.DropSendTimeout] != uint64(wantDrops) || ds.DropRoute != uint64(wantDrops) {
				t.Errorf("drops: router %v, demux route %d; want %d send-timeout", st.Drops, ds.DropRoute, wantDrops)
			}
			if st.SendWaits == 0 || st.SendWaits > uint64(len(tc.sizes)) {
				t.Errorf("send-waits %d, want 1..%d", st.SendWaits, len(tc.sizes))
			}
			if st.MessagesOut != uint64(len(sent)) || bs["tx_packets"] != uint64(len(want)) || bs["tx_errors"] != 0 {
				t.Errorf("router %+v, binding %v: want %d messages, %d packets, no write error", st, bs, len(sent), len(want))
			}
			if tc.down && bs["tx_link_down"] == 0 || tc.stuck && bs["tx_queue_full"] == 0 {
				t.Errorf("binding %v: the refusals that made the router wait are not counted", bs)
			}
		})
	}
}

func repeat(n, count int) []int {
	s := make([]int, count)
	for i := range s {
		s[i] = n
	}
	return s
}
