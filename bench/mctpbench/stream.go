package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/mmsg"
)

// stream runs every demux loopback lane for d with up to window messages
// in flight on each, as pipelined does, but with a client that costs the
// server as little as it can: one goroutine per lane that refills the
// window in one sendmmsg call and takes every reply waiting in one
// recvmmsg call. A client as costly as the server it drives would hide
// the differences between servers (at 64 bytes every server measured the
// same through demux.Conn's one call per message). Every reply is still
// checked. A lane that makes no progress for stall counts what is missing
// as lost and ends.
func stream(lanes []lane, size, window int, d, stall time.Duration) (sample, error) {
	results := make([]laneResult, len(lanes))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, l := range lanes {
		if l.tx != l.rx {
			return sample{}, errors.New("stream: the lane's sender and receiver differ")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.recvd, res.lost, res.last, res.err = streamLane(l, size, window, deadline, stall)
		}()
	}
	wg.Wait()
	return collect(results, size, start)
}

// streamLane is one lane of stream.
func streamLane(l lane, size, window int, deadline time.Time, stall time.Duration) (recvd, lost int, last time.Time, err error) {
	rc, err := l.tx.SyscallConn()
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	frame := append([]byte{l.dest, l.typ}, body(size)...)
	out := mmsg.NewVec(window)
	for i := range window {
		out.Set(i, frame)
	}
	in := mmsg.NewVec(window)
	bufs := make([]byte, window*(size+2))
	for i := range window {
		in.Set(i, bufs[i*(size+2):(i+1)*(size+2)])
	}
	var (
		inflight, n int
		errno       syscall.Errno
	)
	send := func(fd uintptr) bool {
		n, errno = mmsg.Send(fd, out, window-inflight)
		return errno != syscall.EAGAIN
	}
	recv := func(fd uintptr) bool {
		n, errno = mmsg.Recv(fd, in, window)
		return errno != syscall.EAGAIN
	}
	defer l.tx.SetDeadline(time.Time{})
	for {
		sending := time.Now().Before(deadline)
		if !sending && inflight == 0 {
			return recvd, 0, last, nil
		}
		if sending && inflight < window {
			l.tx.SetDeadline(time.Now().Add(stall))
			if err := rc.Write(send); err != nil {
				return 0, 0, time.Time{}, fmt.Errorf("lane type %#x: send: %w", l.typ, err)
			}
			if errno != 0 {
				return 0, 0, time.Time{}, fmt.Errorf("lane type %#x: send: %w", l.typ, errno)
			}
			inflight += n
		}
		l.tx.SetDeadline(time.Now().Add(stall))
		if err := rc.Read(recv); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A stall: what is in flight is lost.
				return recvd, inflight, last, nil
			}
			return 0, 0, time.Time{}, fmt.Errorf("lane type %#x: receive: %w", l.typ, err)
		}
		if errno != 0 {
			return 0, 0, time.Time{}, fmt.Errorf("lane type %#x: receive: %w", l.typ, errno)
		}
		for i := range n {
			b := bufs[i*(size+2) : i*(size+2)+int(in.Hdrs[i].Len)]
			if len(b) < 2 {
				return 0, 0, time.Time{}, fmt.Errorf("lane type %#x: %d-byte frame", l.typ, len(b))
			}
			if err := l.check(b[0], b[1], b[2:], size); err != nil {
				return 0, 0, time.Time{}, err
			}
		}
		recvd += n
		inflight -= n
		last = time.Now()
	}
}
