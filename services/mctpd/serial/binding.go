package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goserial "github.com/jacobsa/go-serial/serial"
	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/internal/ctxtime"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// Defaults for New. The queue holds four full-size messages' worth of
// packets at the binding's MTU (a 64 KiB message is 1025 baseline
// packets, or 262 of 251 bytes), so a burst from the core does not fail
// while one frame is on the wire, but a dead line cannot hoard memory (at
// most about 600 KiB of escaped frames at any MTU).
const (
	DefaultBaud = 115200
	// writeTimeout is how long the writer waits for a line that takes
	// nothing (flow control holding it, a peer that stopped reading)
	// before it drops what it is writing. It counts from the last
	// progress, so a slow line (a 16 KiB batch takes 17 s at 9600 baud)
	// is never cut off while it moves.
	writeTimeout     = 5 * time.Second
	defaultMinRetry  = 100 * time.Millisecond
	defaultMaxRetry  = 5 * time.Second
	readBufferLength = 4096
	// writeBatchLength bounds one write of queued frames (a batch may
	// end one frame past it): a 4 KiB message's 64 frames are about
	// 4.7 KiB.
	writeBatchLength = 16 << 10
	// maxKeptEncode bounds the encoding buffer kept between direct
	// writes: a 64 KiB message at the baseline MTU frames to about
	// 77 KiB; a bigger batch gets a buffer of its own.
	maxKeptEncode = 128 << 10
	// directMinLength is the smallest batch written directly: a lone
	// frame or two go to the writer, which coalesces the frames queued
	// behind each other into one write. Written directly, pipelined
	// 64-byte messages cost a write(2) each and ran at two thirds of
	// the rate end to end (mctpbench, 66k against 97k-101k msgs/s).
	directMinLength = 256
)

var (
	// ErrQueueFull is returned by Send when the writer is behind by a
	// whole queue. It wraps binding.ErrBusy: the core waits on Room and
	// tries again rather than drop a local client's message.
	ErrQueueFull = fmt.Errorf("serial: %w", binding.ErrBusy)
	// ErrLinkDown is returned by Send while the device is not open. It
	// wraps binding.ErrLinkDown.
	ErrLinkDown = fmt.Errorf("serial: %w", binding.ErrLinkDown)
)

// Binding is the DSP0253 binding on one tty (or pty). Run owns the device:
// it opens it, reads and deframes, and reopens it with backoff whenever it
// fails or disappears. Send encodes and, when nothing is queued or being
// written, makes one non-blocking write itself; whatever that write did
// not take is queued for a writer goroutine started by Run, so the core's
// loop never waits for the UART.
type Binding struct {
	device string
	baud   int
	log    *slog.Logger
	mtu    int

	minRetry, maxRetry time.Duration

	// queue carries encoded frames, one message's worth or one packet
	// per element; queued counts the frames in it or being written by
	// the writer against maxQueued, the bound Send and SendBatch
	// reserve from. The writer releases frames only once their write
	// returned, so queued == 0 means no write of the writer's is in
	// flight either.
	queue     chan txItem
	queued    atomic.Int64
	maxQueued int64
	// txMu serialises the direct writes of Send and SendBatch and every
	// enqueue: a caller writes directly only while holding it with
	// nothing queued, and queues only while holding it, so no frame can
	// overtake an earlier one and two callers' writes never interleave.
	// It is never held across a wait: a direct write is one
	// non-blocking write(2).
	txMu sync.Mutex
	// encBuf is the encoding buffer of direct writes, reused (guarded
	// by txMu): after a complete write nothing refers to it.
	encBuf []byte
	// queueOnly turns the direct write off, so that benchmarks can
	// compare the two send paths in one run.
	queueOnly bool
	deframer  *Deframer
	port      atomic.Pointer[tty]
	running   atomic.Bool
	// room is woken whenever the writer releases frames or
	// the device opens (see Room).
	room binding.RoomSignal

	txFrames, txBytes, rxBytes, txQueueFull, txLinkDown, txBadLength atomic.Uint64
	txErrors, outages, reconnects, openErrors, readErrors            atomic.Uint64
}

var (
	_ binding.BatchBinding = (*Binding)(nil)
	_ binding.Backpressure = (*Binding)(nil)
)

// Room implements binding.Backpressure.
func (b *Binding) Room() <-chan struct{} { return b.room.Wait() }

// New returns a serial binding for device at baud (DefaultBaud if baud is
// not positive), carrying the baseline MTU: the wire bytes of libmctp and
// the Linux mctp-serial driver. Nothing is opened until Run.
func New(device string, baud int, log *slog.Logger) *Binding {
	b, err := NewMTU(device, baud, binding.BaselineMTU, log)
	if err != nil {
		// Unreachable: the baseline MTU is always in range.
		panic(err)
	}
	return b
}

// NewMTU is New with a send MTU of mtu payload bytes per packet,
// binding.BaselineMTU (64) to MaxMTU (251). Packets bigger than the
// baseline reach only a peer that accepts them, so both ends of a line
// must be configured alike; this binding's receiver accepts every
// well-formed frame up to MaxMTU whatever its own MTU, so that a peer
// with a larger MTU is understood rather than counted as bad length.
func NewMTU(device string, baud, mtu int, log *slog.Logger) (*Binding, error) {
	if mtu < binding.BaselineMTU || mtu > MaxMTU {
		return nil, fmt.Errorf("serial: MTU %d outside %d..%d", mtu, binding.BaselineMTU, MaxMTU)
	}
	if baud <= 0 {
		baud = DefaultBaud
	}
	if log == nil {
		log = slog.Default()
	}
	return &Binding{
		device:    device,
		baud:      baud,
		log:       log.With("binding", "serial:"+device),
		mtu:       mtu,
		minRetry:  defaultMinRetry,
		maxRetry:  defaultMaxRetry,
		queue:     make(chan txItem, sendQueueLen(mtu)),
		maxQueued: int64(sendQueueLen(mtu)),
		deframer:  NewDeframer(MaxMTU),
	}, nil
}

// sendQueueLen is the send queue's length in frames for mtu: four 64 KiB
// messages' worth of packets.
func sendQueueLen(mtu int) int { return 4 * (64<<10/mtu + 1) }

// Name implements binding.Binding.
func (b *Binding) Name() string { return "serial:" + b.device }

// MTU implements binding.Binding.
func (b *Binding) MTU() int { return b.mtu }

// tty is the open device: the file, which the writer and the read loop
// use through the runtime poller, and its raw descriptor access for the
// direct write, whose single write(2) must not park the caller.
type tty struct {
	f  *os.File
	rc syscall.RawConn
	// The direct write's argument and results, and the callback that
	// uses them, made once so that a write allocates nothing. Guarded
	// by Binding.txMu.
	p     []byte
	n     int
	err   error
	write func(fd uintptr)
}

func newTTY(f *os.File) (*tty, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	t := &tty{f: f, rc: rc}
	t.write = func(fd uintptr) {
		t.n, t.err = unix.Write(int(fd), t.p)
	}
	return t, nil
}

// writeNow makes one non-blocking write of p and returns how much of it
// went out. A full device (EAGAIN) or an interrupted write is not an
// error: the caller queues the rest for the writer, which waits. It goes
// through Control rather than RawConn.Write, which would fail once the
// writer's last write deadline has passed: the descriptor is held open
// for the call, and the Binding's queue accounting, not the poller's
// write lock, keeps it from overlapping a write of the writer's.
func (t *tty) writeNow(p []byte) (int, error) {
	t.p = p
	err := t.rc.Control(t.write)
	n, werr := max(t.n, 0), t.err
	t.p, t.n, t.err = nil, 0, nil
	if err != nil {
		return 0, err // closed under us
	}
	if errors.Is(werr, unix.EAGAIN) || errors.Is(werr, unix.EINTR) {
		return n, nil
	}
	return n, werr
}

// txItem is one element of the send queue: encoded frames, back to back.
type txItem struct {
	buf    []byte
	frames int
}

// enqueue reserves room for item's frames and queues it, or counts it
// as a full queue. Every element holds at least one frame, so a
// successful reservation always finds room in the channel. The caller
// holds txMu.
func (b *Binding) enqueue(item txItem) error {
	n := int64(item.frames)
	if b.queued.Add(n) > b.maxQueued {
		b.queued.Add(-n)
		b.txQueueFull.Add(uint64(n))
		return ErrQueueFull
	}
	select {
	case b.queue <- item:
		return nil
	default:
		b.queued.Add(-n)
		b.txQueueFull.Add(uint64(n))
		return ErrQueueFull
	}
}

// SendBatch implements binding.BatchSender: every packet is checked,
// then all are framed into one buffer and sent together, or none is.
//
// When nothing is queued or being written and the batch is more than a
// frame or two (directMinLength), the frames are written here,
// in one non-blocking write, and only what the device did not take is
// queued for the writer: the hand-off to the writer goroutine (a channel
// operation and a wake-up per message) was the largest cost left on the
// send side of a pty. Otherwise the frames are queued behind the rest.
// Either way the caller never waits for the device.
func (b *Binding) SendBatch(pkts [][]byte) error {
	size := 0
	for _, pkt := range pkts {
		if len(pkt) < minPacket || len(pkt) > b.mtu+minPacket {
			b.txBadLength.Add(1)
			return fmt.Errorf("serial: packet of %d bytes outside 4..%d", len(pkt), b.mtu+minPacket)
		}
		size += len(pkt) + len(pkt)/8 + 7
	}
	if len(pkts) == 0 {
		return nil
	}
	frames := int64(len(pkts))
	if frames > b.maxQueued {
		// Refused before anything is written: a direct write that
		// left a remainder the queue cannot hold would put half a
		// message on the wire. It is not ErrQueueFull: waiting
		// would never make room for it.
		b.txQueueFull.Add(uint64(frames))
		return fmt.Errorf("serial: %d frames exceed the send queue of %d", frames, b.maxQueued)
	}
	b.txMu.Lock()
	defer b.txMu.Unlock()
	t := b.port.Load()
	if t == nil {
		b.txLinkDown.Add(uint64(frames))
		return ErrLinkDown
	}
	if b.queued.Load() != 0 || b.queueOnly || size < directMinLength {
		buf := make([]byte, 0, size)
		for _, pkt := range pkts {
			buf = appendFrame(buf, pkt)
		}
		return b.enqueue(txItem{buf: buf, frames: len(pkts)})
	}
	buf := b.encBuf[:0]
	for _, pkt := range pkts {
		buf = appendFrame(buf, pkt)
	}
	if cap(buf) <= maxKeptEncode {
		b.encBuf = buf
	}
	n, err := t.writeNow(buf)
	b.txBytes.Add(uint64(n))
	if err != nil {
		// The frames are lost, as a failed write of the writer's
		// loses them; the read loop notices a vanished device.
		b.txErrors.Add(uint64(frames))
		b.log.Debug("serial write failed", "err", err, "frames", frames)
		return fmt.Errorf("serial: write %s: %w", b.device, err)
	}
	if n == len(buf) {
		b.txFrames.Add(uint64(frames))
		return nil
	}
	// The device took part (or none) of it: the writer finishes the
	// rest, in order, since nothing else is queued and every later
	// frame queues behind it. The queue is empty, so it has room.
	return b.enqueue(txItem{buf: bytes.Clone(buf[n:]), frames: len(pkts)})
}

// Send implements binding.Binding: it frames pkt and writes or queues the
// frame without blocking, as SendBatch does. Packets are refused while
// the device is down, because delivering them minutes later after a
// reconnect would only confuse the peer's reassembly and tag tracking.
func (b *Binding) Send(pkt []byte) error {
	return b.SendBatch([][]byte{pkt})
}

// Run implements binding.Binding. It returns nil once ctx ends; it
// refuses to run twice concurrently because both would own the device.
func (b *Binding) Run(ctx context.Context, deliver func(pkt []byte)) error {
	return b.RunBatches(ctx, func(pkts [][]byte) {
		for _, p := range pkts {
			deliver(p)
		}
	})
}

// RunBatches implements binding.BatchBinding: Run, with the packets of
// each read delivered together.
func (b *Binding) RunBatches(ctx context.Context, deliver func(pkts [][]byte)) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("serial: Run already active")
	}
	defer b.running.Store(false)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		b.writer(ctx)
	}()
	defer func() { <-writerDone }()

	retry := b.minRetry
	down := false
	for ctx.Err() == nil {
		f, err := b.open()
		if err != nil {
			b.openErrors.Add(1)
			if !down {
				// Log once per outage: a missing USB adapter would
				// otherwise fill the log at the retry rate.
				down = true
				b.outages.Add(1)
				b.log.Warn("serial device unavailable, retrying", "err", err)
			}
			if !ctxtime.Sleep(ctx, retry) {
				break
			}
			retry = min(retry*2, b.maxRetry)
			continue
		}
		if down {
			b.reconnects.Add(1)
			b.log.Info("serial device reconnected")
		}
		down, retry = false, b.minRetry
		t, err := newTTY(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("serial: %s: %w", b.device, err)
		}
		b.port.Store(t)
		b.room.Wake()
		stop := context.AfterFunc(ctx, func() { f.Close() })
		err = b.read(f, deliver)
		stop()
		b.port.Store(nil)
		f.Close()
		if ctx.Err() != nil {
			break
		}
		b.readErrors.Add(1)
		b.outages.Add(1)
		down = true
		b.log.Warn("serial device failed, reopening", "err", err)
	}
	return nil
}

// open opens and configures the tty through go-serial (raw, 8N1), then
// re-wraps the descriptor in non-blocking mode so the runtime poller owns
// it: go-serial leaves it blocking, and a blocked read could then never be
// interrupted by Close on shutdown or outage.
func (b *Binding) open() (*os.File, error) {
	rwc, err := goserial.Open(goserial.OpenOptions{
		PortName:        b.device,
		BaudRate:        uint(b.baud),
		DataBits:        8,
		StopBits:        1,
		MinimumReadSize: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", b.device, err)
	}
	f, ok := rwc.(*os.File)
	if !ok {
		rwc.Close()
		return nil, fmt.Errorf("open %s: unexpected port type %T", b.device, rwc)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", b.device, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set non-blocking %s: %w", b.device, err)
	}
	return os.NewFile(uintptr(fd), b.device), nil
}

// read deframes until the device fails, delivering the packets of each
// read together. A zero-byte read on a tty means hangup, so it counts as
// a failure like EIO from a vanished pty.
func (b *Binding) read(f *os.File, deliver func([][]byte)) error {
	buf := make([]byte, readBufferLength)
	var batch [][]byte
	collect := func(p []byte) { batch = append(batch, p) }
	for {
		n, err := f.Read(buf)
		if n > 0 {
			b.rxBytes.Add(uint64(n))
			b.deframer.Feed(buf[:n], collect)
			if len(batch) > 0 {
				deliver(batch)
				clear(batch) // the packets are the callee's; drop our references
				batch = batch[:0]
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s: hangup", b.device)
			}
			return fmt.Errorf("read %s: %w", b.device, err)
		}
	}
}

// writer drains the send queue onto whichever port is open. Frames
// already queued are written together, up to writeBatchLength bytes per
// write: one write per 70-byte frame made the syscalls (and, on a pty,
// the relay on the other side) cost more than the bytes, so a 4 KiB
// message ran at a fraction of the line's speed. It never waits for more
// frames, so a lone frame goes out as soon as before. A frame that cannot
// be written (device gone, or stuck for writeTimeout with flow control
// holding it) is dropped and counted; MCTP has no link-level
// retransmission and the requester's own timeout covers the loss.
func (b *Binding) writer(ctx context.Context) {
	batch := make([]byte, 0, writeBatchLength)
	for {
		select {
		case <-ctx.Done():
			return
		case item := <-b.queue:
			frames := uint64(item.frames)
			out := item.buf
			// A lone item (often a whole message's frames) is written
			// as it is; only several are copied into one buffer.
			if len(out) < writeBatchLength && len(b.queue) > 0 {
				batch = append(batch[:0], out...)
			more:
				for len(batch) < writeBatchLength {
					select {
					case it := <-b.queue:
						batch = append(batch, it.buf...)
						frames += uint64(it.frames)
					default:
						break more
					}
				}
				out = batch
			}
			b.writeFrames(out, frames)
			// Only now may a sender write directly again: releasing
			// the frames before their write returned would let a
			// later message overtake them.
			b.queued.Add(-int64(frames))
			b.room.Wake()
		}
	}
}

// writeFrames writes a batch of frames to the open port, counting them.
func (b *Binding) writeFrames(batch []byte, frames uint64) {
	t := b.port.Load()
	if t == nil {
		b.txLinkDown.Add(frames)
		return
	}
	f := t.f
	total := len(batch)
	for len(batch) > 0 {
		if err := f.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			b.txErrors.Add(frames)
			return
		}
		n, err := f.Write(batch)
		batch = batch[n:]
		if err == nil {
			break
		}
		if n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			continue // the line moved: wait again
		}
		b.txErrors.Add(frames)
		b.log.Debug("serial write failed", "err", err, "frames", frames)
		return
	}
	b.txFrames.Add(frames)
	b.txBytes.Add(uint64(total))
}

// Stats implements binding.Binding.
func (b *Binding) Stats() map[string]uint64 {
	d := b.deframer.Stats()
	return map[string]uint64{
		"rx_frames":        d.Frames,
		"rx_bytes":         b.rxBytes.Load(),
		"rx_bad_fcs":       d.BadFCS,
		"rx_bad_length":    d.BadLength,
		"rx_bad_escape":    d.BadEscape,
		"rx_bad_revision":  d.BadRevision,
		"rx_overrun":       d.Overrun,
		"rx_truncated":     d.Truncated,
		"rx_garbage_bytes": d.Garbage,
		"tx_frames":        b.txFrames.Load(),
		"tx_bytes":         b.txBytes.Load(),
		"tx_queue_full":    b.txQueueFull.Load(),
		"tx_link_down":     b.txLinkDown.Load(),
		"tx_bad_length":    b.txBadLength.Load(),
		"tx_errors":        b.txErrors.Load(),
		"outages":          b.outages.Load(),
		"reconnects":       b.reconnects.Load(),
		"open_errors":      b.openErrors.Load(),
		"read_errors":      b.readErrors.Load(),
	}
}
