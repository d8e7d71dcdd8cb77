package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	goserial "github.com/jacobsa/go-serial/serial"
	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
)

// lane is one message stream: tx sends messages of type typ to dest and
// rx receives them with source src. For demux loopback tx and rx are the
// same connection; across the serial link they sit on the two daemons.
type lane struct {
	tx, rx   *demux.Conn
	dest     byte
	src, typ byte
}

// sample is one measurement: messages and message bytes delivered over
// elapsed, plus round-trip latencies for ping-pong.
type sample struct {
	msgs    int
	bytes   int64
	elapsed time.Duration
	lat     []time.Duration
	lost    int
	// perLane counts the messages each lane received (pipelined).
	perLane []int
}

func (s sample) rate() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.msgs) / s.elapsed.Seconds()
}

func (s sample) mbps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.bytes) / s.elapsed.Seconds() / 1e6
}

// add merges another round of the same measurement.
func (s *sample) add(o sample) {
	s.msgs += o.msgs
	s.bytes += o.bytes
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	s.lost += o.lost
	if s.perLane == nil {
		s.perLane = make([]int, len(o.perLane))
	}
	for i, n := range o.perLane {
		s.perLane[i] += n
	}
}

// shares returns the smallest and largest lane's share of the messages
// received, each relative to an equal share (1 is exactly fair).
func (s sample) shares() (lo, hi float64) {
	if len(s.perLane) == 0 || s.msgs == 0 {
		return 0, 0
	}
	fair := float64(s.msgs) / float64(len(s.perLane))
	return float64(slices.Min(s.perLane)) / fair, float64(slices.Max(s.perLane)) / fair
}

// percentile returns the p-th percentile latency in µs (0 without
// latencies); it sorts s.lat.
func (s *sample) percentile(p float64) float64 {
	if len(s.lat) == 0 {
		return 0
	}
	slices.Sort(s.lat)
	i := min(int(float64(len(s.lat))*p/100), len(s.lat)-1)
	return float64(s.lat[i]) / 1e3
}

// body returns the demux body of a size-byte MCTP message: the message
// less its type byte, a byte ramp.
func body(size int) []byte {
	b := make([]byte, size-1)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// check validates a received message against the lane and the size.
func (l lane) check(addr, typ byte, b []byte, size int) error {
	if addr != l.src || typ != l.typ || len(b) != size-1 || (len(b) > 0 && b[len(b)-1] != byte(len(b)-1)) {
		return fmt.Errorf("lane type %#x: got addr %d type %#x, %d bytes; want addr %d type %#x, %d bytes of ramp",
			l.typ, addr, typ, len(b), l.src, l.typ, size-1)
	}
	return nil
}

// pipelined runs every lane for d with up to window messages in flight
// on each (sent but not yet received), so that the sender can never
// overrun a bounded queue on the way. A lane that makes no progress for
// stall counts what is missing as lost and ends.
func pipelined(lanes []lane, size, window int, d, stall time.Duration) (sample, error) {
	payload := body(size)
	// Each field is written by one goroutine only: the receiver sets
	// last and rxErr, the sender the rest once the receiver is done.
	type laneState struct {
		recvd, lost  int
		last         time.Time
		txErr, rxErr error
	}
	results := make([]laneState, len(lanes))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, l := range lanes {
		l.tx.SetDeadline(time.Time{})
		l.rx.SetDeadline(time.Time{})
		slots := make(chan struct{}, window)
		var recvd atomic.Int64
		var sendDone atomic.Bool
		rxDone := make(chan struct{})
		res := &results[i]
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(rxDone)
			for {
				l.rx.SetDeadline(time.Now().Add(stall))
				addr, typ, b, err := l.rx.Recv()
				if err != nil {
					// A timeout is a stall: the sender counts what is
					// missing as lost. Anything else is a failure.
					if !sendDone.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
						res.rxErr = fmt.Errorf("receive: %w", err)
					}
					return
				}
				if err := l.check(addr, typ, b, size); err != nil {
					res.rxErr = err
					return
				}
				res.last = time.Now()
				recvd.Add(1)
				<-slots
			}
		}()
		go func() {
			defer wg.Done()
			sent := 0
			timer := time.NewTimer(stall)
			defer timer.Stop()
			acquire := func() bool {
				timer.Reset(stall)
				select {
				case slots <- struct{}{}:
					return true
				case <-timer.C:
					return false
				case <-rxDone:
					return false
				}
			}
			for time.Now().Before(deadline) {
				if !acquire() {
					break
				}
				if err := l.tx.Send(l.dest, payload); err != nil {
					res.txErr = err
					break
				}
				sent++
			}
			// Filling the window again means every message sent has
			// been received.
			for range window {
				if !acquire() {
					break
				}
			}
			sendDone.Store(true)
			// Wake the receiver, whether it waits for a message
			// that is lost or for one that will never be sent.
			l.rx.SetDeadline(time.Now())
			<-rxDone
			res.recvd = int(recvd.Load())
			res.lost = sent - res.recvd
		}()
	}
	wg.Wait()
	lanesDone := make([]laneResult, len(results))
	for i, r := range results {
		lanesDone[i] = laneResult{recvd: r.recvd, lost: r.lost, last: r.last, err: errors.Join(r.txErr, r.rxErr)}
	}
	return collect(lanesDone, size, start)
}

// laneResult is what one lane of a pipelined or stream measurement
// received and lost, and when its last message arrived.
type laneResult struct {
	recvd, lost int
	last        time.Time
	err         error
}

// collect adds the lanes of a measurement started at start up into one
// sample, which ends with the last message any lane received.
func collect(lanes []laneResult, size int, start time.Time) (sample, error) {
	s := sample{perLane: make([]int, len(lanes))}
	var last time.Time
	for i, r := range lanes {
		if r.err != nil {
			return sample{}, r.err
		}
		s.perLane[i] = r.recvd
		s.msgs += r.recvd
		s.lost += r.lost
		if r.last.After(last) {
			last = r.last
		}
	}
	s.bytes = int64(s.msgs) * int64(size)
	if s.msgs > 0 {
		s.elapsed = last.Sub(start)
	}
	return s, nil
}

// pingPong runs every lane for d, one message in flight on each, and
// records each round trip.
func pingPong(lanes []lane, size int, d, stall time.Duration) (sample, error) {
	payload := body(size)
	lats := make([][]time.Duration, len(lanes))
	errs := make([]error, len(lanes))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(deadline) {
				l.rx.SetDeadline(time.Now().Add(stall))
				t0 := time.Now()
				if err := l.tx.Send(l.dest, payload); err != nil {
					errs[i] = err
					return
				}
				addr, typ, b, err := l.rx.Recv()
				if err != nil {
					errs[i] = fmt.Errorf("ping-pong receive: %w", err)
					return
				}
				lat = append(lat, time.Since(t0))
				if err := l.check(addr, typ, b, size); err != nil {
					errs[i] = err
					return
				}
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return sample{}, err
	}
	s := sample{elapsed: elapsed}
	for _, l := range lats {
		s.lat = append(s.lat, l...)
	}
	s.msgs = len(s.lat)
	s.bytes = int64(s.msgs) * int64(size)
	return s, nil
}

// ptyPort opens a tty the way the serial binding does: go-serial for
// raw 8N1, then the descriptor re-wrapped non-blocking so the runtime
// poller owns it. The raw baseline so pays the same line discipline and
// read path as the binding.
func ptyPort(path string) (*os.File, error) {
	p, err := goserial.Open(goserial.OpenOptions{
		PortName: path, BaudRate: 115200, DataBits: 8, StopBits: 1, MinimumReadSize: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f, ok := p.(*os.File)
	if !ok {
		p.Close()
		return nil, fmt.Errorf("open %s: unexpected port type %T", path, p)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", path, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set non-blocking %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// rawPty moves total bytes from w to r in writes of chunk bytes, read
// in 4 KiB buffers as the binding reads, and returns how long it took:
// the pty pair's capacity with no framing.
func rawPty(w, r *os.File, total int64, chunk int, stall time.Duration) (sample, error) {
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	r.SetReadDeadline(time.Time{})
	var got atomic.Int64
	// A watchdog instead of a deadline per read: if the pair stops
	// moving data, the blocked read fails rather than hanging, and the
	// hot loop pays nothing for it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(stall)
		defer t.Stop()
		prev := int64(-1)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n := got.Load(); n == prev {
					r.SetReadDeadline(time.Now())
					return
				} else {
					prev = n
				}
			}
		}
	}()
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		for left := total; left > 0; {
			n := min(int64(chunk), left)
			if _, err := w.Write(buf[:n]); err != nil {
				werr <- err
				return
			}
			left -= n
		}
		werr <- nil
	}()
	rbuf := make([]byte, 4096)
	for got.Load() < total {
		n, err := r.Read(rbuf)
		if err != nil {
			return sample{}, fmt.Errorf("raw pty: read after %d of %d bytes: %w", got.Load(), total, err)
		}
		got.Add(int64(n))
	}
	el := time.Since(start)
	if err := <-werr; err != nil {
		return sample{}, fmt.Errorf("raw pty write: %w", err)
	}
	return sample{msgs: int(total / int64(chunk)), bytes: total, elapsed: el}, nil
}
