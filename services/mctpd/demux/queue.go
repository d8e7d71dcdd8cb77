package demux

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/internal/mmsg"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// The write path. A message for clients starts as an outMsg: its header
// and a body that belongs to the caller. A client whose queue is empty
// takes it at once, in one writev of header and body straight from the
// caller's buffer: no copy in user space and no goroutine hand-off. Only
// a client that cannot take it now (its socket buffer is full, or older
// messages wait) needs a copy of its own: the message is then laid out
// once, in one slice shared by every queue it joins, and the client's
// writer goroutine sends its queue in sendmmsg batches.

// maxBatch is the most queued messages one sendmmsg call writes.
const maxBatch = 64

// outMsg is one message on its way to clients.
type outMsg struct {
	hdr  [3]byte
	hlen int
	body []byte
	// frame is header and body in one slice of their own, made the first
	// time a client has to queue the message, then shared read-only.
	frame []byte
}

// typ is the message type: the last header byte.
func (o *outMsg) typ() byte { return o.hdr[o.hlen-1] }

// size is the frame length.
func (o *outMsg) size() int { return o.hlen + len(o.body) }

// owned returns the message as one slice that no caller will modify.
func (o *outMsg) owned() []byte {
	if o.frame == nil {
		f := make([]byte, o.size())
		copy(f, o.hdr[:o.hlen])
		copy(f[o.hlen:], o.body)
		o.frame = f
	}
	return o.frame
}

// client is one registered connection and its outgoing queue.
type client struct {
	d    *Server
	conn *net.UnixConn
	rc   syscall.RawConn
	typ  byte
	pid  int32
	id   mctp.ClientID
	// counts are this client's Stats: messages it sent, copies written
	// to it, deliveries it was the first to take.
	counts clientCounts

	mu      sync.Mutex
	q       [][]byte
	spare   [][]byte // writer-owned, reused as the next queue
	msgs    int      // queued plus being written by the writer
	bytes   int
	writing bool // a direct write or the writer holds the socket
	closed  bool

	// Owned by whoever set writing: the direct write's iovecs, the
	// writer's sendmmsg vectors, and the raw calls' results. The raw
	// calls are bound once, so that a write allocates nothing.
	hdr     [3]byte
	iov     [2]unix.Iovec
	niov    int
	mm      *mmsg.Vec
	nmm     int
	sent    int
	errno   syscall.Errno
	writevF func(fd uintptr) bool
	mmsgF   func(fd uintptr) bool

	wake     chan struct{}
	dead     chan struct{}
	killOnce sync.Once
}

func newClient(d *Server, conn *net.UnixConn, rc syscall.RawConn, typ byte, pid int32) *client {
	c := &client{
		d: d, conn: conn, rc: rc, typ: typ, pid: pid,
		id:   mctp.ClientID(d.lastID.Add(1)),
		wake: make(chan struct{}, 1),
		dead: make(chan struct{}),
	}
	c.writevF = c.writev
	c.mmsgF = c.sendmmsg
	return c
}

// enqueue hands m to the client without blocking. When nothing is
// queued or being written it writes m straight away; on EAGAIN, or when
// messages are already waiting, m is queued for the writer. On overflow
// the client is disconnected and its queue discarded.
func (c *client) enqueue(m *outMsg) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if !c.writing && len(c.q) == 0 {
		c.writing = true
		c.mu.Unlock()
		done, err := c.writeNow(m)
		c.mu.Lock()
		c.writing = false
		switch {
		case err != nil:
			c.mu.Unlock()
			c.writeFailed(err)
			return false
		case done:
			more := len(c.q) > 0
			c.mu.Unlock()
			c.counts.out.Add(1)
			if more {
				c.signal()
			}
			return true
		case c.closed:
			c.mu.Unlock()
			return false
		}
		// EAGAIN: queue it, ahead of anything queued meanwhile.
		c.q = append(c.q, nil)
		copy(c.q[1:], c.q)
		c.q[0] = m.owned()
		c.msgs++
		c.bytes += m.size()
		c.mu.Unlock()
		c.signal()
		return true
	}
	if c.msgs+1 > c.d.opts.QueueMsgs || c.bytes+m.size() > c.d.opts.QueueBytes {
		lost := c.msgs + 1
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		c.d.overflows.Add(1)
		c.d.dropQ.Add(uint64(lost))
		c.d.log.Warn("demux: client queue overflow; disconnecting it",
			"type", c.typ, "pid", c.pid, "lost", lost,
			"max_msgs", c.d.opts.QueueMsgs, "max_bytes", c.d.opts.QueueBytes)
		c.kill()
		return false
	}
	c.q = append(c.q, m.owned())
	c.msgs++
	c.bytes += m.size()
	c.mu.Unlock()
	c.signal()
	return true
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeNow makes one non-blocking write of m, header and body gathered
// from where they are. done is false when the socket buffer is full.
// The caller holds the writing token.
func (c *client) writeNow(m *outMsg) (done bool, err error) {
	if m.frame != nil {
		c.iov[0] = mmsg.Iovec(m.frame)
		c.niov = 1
	} else {
		copy(c.hdr[:], m.hdr[:m.hlen])
		c.iov[0] = mmsg.Iovec(c.hdr[:m.hlen])
		c.niov = 1
		if len(m.body) > 0 {
			c.iov[1] = mmsg.Iovec(m.body)
			c.niov = 2
		}
	}
	cerr := c.rc.Write(c.writevF)
	// Keep no reference to the caller's buffer.
	c.iov[0], c.iov[1] = unix.Iovec{}, unix.Iovec{}
	if cerr != nil {
		return false, cerr
	}
	switch c.errno {
	case 0:
		return true, nil
	case syscall.EAGAIN:
		return false, nil
	default:
		return false, fmt.Errorf("write: %w", c.errno)
	}
}

// writev is writeNow's raw call: it never waits, because the caller
// must not block; so it is made without telling the scheduler.
func (c *client) writev(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(c.niov))
		if e != syscall.EINTR {
			c.errno = e
			return true
		}
	}
}

// sendmmsg is the writer's raw call: it sends the first c.nmm messages
// of c.mm, or waits for room when the socket buffer is full (by
// returning false).
func (c *client) sendmmsg(fd uintptr) bool {
	n, e := mmsg.Send(fd, c.mm, c.nmm)
	if e == syscall.EAGAIN {
		return false
	}
	c.errno, c.sent = e, n
	return true
}

func (c *client) writeFailed(err error) {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		// The client closed its end. Stop writing to it but leave the
		// connection to the reader: what the client sent before closing
		// is still queued for us, and the reader ends at its EOF.
		c.mu.Lock()
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		return
	}
	if !c.killed() {
		c.d.log.Info("demux: write to client failed; disconnecting", "type", c.typ, "pid", c.pid, "err", err)
	}
	c.kill()
}

// write drains the queue to the socket until the client dies. It holds
// the writing token while it writes, so that enqueue's direct writes
// never overtake queued messages.
func (c *client) write() {
	for {
		select {
		case <-c.wake:
		case <-c.dead:
			return
		}
		for {
			c.mu.Lock()
			if c.closed || c.writing || len(c.q) == 0 {
				c.mu.Unlock()
				break
			}
			batch := c.q
			c.q = c.spare[:0]
			c.writing = true
			c.mu.Unlock()
			if err := c.writeBatch(batch); err != nil {
				c.writeFailed(err)
				return
			}
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			clear(batch)
			c.spare = batch[:0]
		}
	}
}

// writeBatch writes frames in order, up to maxBatch per sendmmsg call,
// waiting while the socket buffer is full.
func (c *client) writeBatch(frames [][]byte) error {
	if c.mm == nil {
		c.mm = mmsg.NewVec(maxBatch)
	}
	for len(frames) > 0 {
		n := min(len(frames), maxBatch)
		for i, f := range frames[:n] {
			c.mm.Set(i, f)
		}
		c.nmm, c.sent = n, 0
		err := c.rc.Write(c.mmsgF)
		c.mm.Clear()
		if err != nil {
			return err
		}
		if c.errno != 0 {
			return fmt.Errorf("write: %w", c.errno)
		}
		size := 0
		for _, f := range frames[:c.sent] {
			size += len(f)
		}
		c.counts.out.Add(uint64(c.sent))
		c.mu.Lock()
		c.msgs -= c.sent
		c.bytes -= size
		c.mu.Unlock()
		frames = frames[c.sent:]
	}
	return nil
}

// kill closes the connection once; the reader and writer then end.
func (c *client) kill() {
	c.killOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.q = nil
		c.mu.Unlock()
		close(c.dead)
		c.conn.Close()
	})
}

func (c *client) killed() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}
