package kea

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// errWouldBlock is a write the socket could not take at all without
// waiting.
var errWouldBlock = errors.New("kea: would block")

// errClosingConn is a read given up before waiting, the channel closing.
var errClosingConn = errors.New("kea: channel closing")

// connIO reads and writes a connection so that the common exchange (the
// request already queued when it is read, the reply fitting the
// socket's buffer) sets no deadline: each deadline set and cleared is a
// runtime timer added and removed. A read that has to wait sets the idle
// deadline first, as the net.Conn's would be set before every read; a
// write the socket does not take whole falls back to the net.Conn with
// its deadline. Errors read as the net.Conn's would.
type connIO struct {
	c  *net.UnixConn
	rc syscall.RawConn
	// idle is the read deadline set before a wait; closing is checked
	// after setting it (see serve).
	idle    time.Duration
	closing *atomic.Bool
	// deadline is set once a read deadline has been set.
	deadline bool
	// p, n, err and waited carry one operation through rc's callback;
	// read and write are those callbacks, made once per connection.
	p           []byte
	n           int
	err         error
	waited      bool
	read, write func(fd uintptr) bool
}

// init makes the callbacks; a connIO is then started for each
// connection it serves.
func (cio *connIO) init() {
	cio.read = func(fd uintptr) bool {
		cio.n, cio.err = ignoringEINTR(syscall.Read, int(fd), cio.p)
		if cio.err != syscall.EAGAIN {
			return true
		}
		if !cio.waited {
			// About to wait: restart the idle deadline, then look at
			// closing (Stop sets it before its wake-up's past deadline).
			cio.waited = true
			cio.c.SetReadDeadline(time.Now().Add(cio.idle))
			cio.deadline = true
			if cio.closing.Load() {
				cio.err = errClosingConn
				return true
			}
		}
		return false
	}
	cio.write = func(fd uintptr) bool {
		cio.n, cio.err = ignoringEINTR(syscall.Write, int(fd), cio.p)
		return true
	}
}

// start points an initialised connIO at a connection (nil to let it go).
func (cio *connIO) start(c *net.UnixConn, rc syscall.RawConn, idle time.Duration, closing *atomic.Bool) {
	cio.c, cio.rc, cio.idle, cio.closing = c, rc, idle, closing
	cio.deadline, cio.waited = false, false
	cio.p, cio.n, cio.err = nil, 0, nil
}

func ignoringEINTR(op func(int, []byte) (int, error), fd int, p []byte) (int, error) {
	for {
		n, err := op(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// readWait reads into p, waiting (with the idle deadline) when nothing
// is queued: n > 0 bytes, io.EOF, errClosingConn, or an error as
// net.Conn.Read words it.
func (cio *connIO) readWait(p []byte) (int, error) {
	cio.p, cio.waited = p, false
	err := cio.rc.Read(cio.read)
	n, errno := cio.n, cio.err
	cio.p, cio.n, cio.err = nil, 0, nil
	switch {
	case err != nil:
		// Closed, or the deadline passed (Stop's wake-up included): as
		// Read says it.
		return 0, cio.opError("read", rawErr(err))
	case errno == errClosingConn:
		return 0, errno
	case errno != nil:
		return 0, cio.opError("read", os.NewSyscallError("read", errno))
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// clearDeadline removes a read deadline readWait has set.
func (cio *connIO) clearDeadline() {
	if cio.deadline {
		cio.c.SetReadDeadline(time.Time{})
		cio.deadline = false
	}
}

// tryWrite writes as much of p as the socket takes now. A short write
// returns the count and no error; errWouldBlock means nothing was taken.
func (cio *connIO) tryWrite(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cio.p = p
	err := cio.rc.Write(cio.write)
	n, errno := cio.n, cio.err
	cio.p, cio.n, cio.err = nil, 0, nil
	switch {
	case err != nil:
		return 0, cio.opError("write", rawErr(err))
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock
	case errno != nil:
		return 0, cio.opError("write", os.NewSyscallError("write", errno))
	}
	return max(n, 0), nil
}

// rawErr is the cause of a RawConn error, which net wraps as a
// "raw-read" or "raw-write" operation.
func rawErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// opError wraps err as net.Conn's methods do.
func (cio *connIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "unix", Source: cio.c.LocalAddr(), Addr: cio.c.RemoteAddr(), Err: err}
}
