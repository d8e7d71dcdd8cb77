package demux

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tickbox-fw/tickbox/internal/mmsg"
)

// readBatch is the most datagrams one recvmmsg call reads from a client.
const readBatch = 8

// batchUnder is the largest datagram after which the next read is
// batched. Measured (mctpbench, server CPU per message): batches pay for
// small messages, while for 4 KiB ones eight slots' worth of data and
// the kernel's buffers for it no longer fit the first-level cache, and a
// batch costs more per message than reading them one at a time.
const batchUnder = 1024

// reader reads one client's datagrams in batches: one recvmmsg call
// takes every datagram waiting, up to readBatch (one at a time after a
// datagram over batchUnder bytes), each into a slot of its
// own that holds the largest datagram accepted (Options.MaxMessage), so
// that no datagram is cut short by the batching. The slots are mapped
// outside the Go heap: only the pages datagrams actually reach become
// resident (a client of 64-byte messages costs a page per slot), and the
// collector never scans or zeroes them. A batch is valid until the next
// read.
type reader struct {
	rc    syscall.RawConn
	slab  []byte
	slot  int
	max   int // a slot's room
	mm    *mmsg.Vec
	vlen  int // datagrams the next call asks for
	n     int
	errno syscall.Errno
	readF func(fd uintptr) bool
}

func newReader(rc syscall.RawConn, max int) (*reader, error) {
	page := os.Getpagesize()
	slot := (max + page - 1) / page * page
	slab, err := unix.Mmap(-1, 0, slot*readBatch, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map read buffers: %w", err)
	}
	r := &reader{rc: rc, slab: slab, slot: slot, max: max, mm: mmsg.NewVec(readBatch), vlen: 1}
	for i := range readBatch {
		r.mm.Set(i, slab[i*slot:i*slot+max])
	}
	r.readF = r.recvmmsg
	return r, nil
}

// recv1 reads one datagram with recvfrom, a lighter call than
// recvmmsg (no message header to copy in and out). MSG_TRUNC makes it
// return the datagram's whole length, which tells a datagram cut short.
// It never waits, so it is made without telling the scheduler.
func (r *reader) recv1(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.slab[0])), uintptr(r.max),
			syscall.MSG_DONTWAIT|syscall.MSG_TRUNC, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			h := &r.mm.Hdrs[0]
			h.Len, h.Flags = uint32(min(int(n), r.max)), 0
			if int(n) > r.max {
				h.Flags = unix.MSG_TRUNC
			}
			r.n, r.errno = 1, 0
		default:
			r.n, r.errno = 0, e
		}
		return true
	}
}

// close unmaps the slots; the reader must not be used afterwards.
func (r *reader) close() {
	r.mm.Clear()
	unix.Munmap(r.slab)
	r.slab = nil
}

// read waits for datagrams and returns how many it read, at least one.
// A datagram of length 0 is the client's end of file.
func (r *reader) read() (int, error) {
	if err := r.rc.Read(r.readF); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	r.vlen = readBatch
	for i := range r.n {
		if r.mm.Hdrs[i].Len > batchUnder {
			r.vlen = 1
			break
		}
	}
	return r.n, nil
}

// msg returns datagram i of the last read, and whether it was longer
// than a slot (the kernel then discarded the rest).
func (r *reader) msg(i int) (b []byte, truncated bool) {
	return r.slab[i*r.slot : i*r.slot+int(r.mm.Hdrs[i].Len)], r.mm.Truncated(i)
}

// recvmmsg is read's raw call: false (wait until readable) on EAGAIN.
func (r *reader) recvmmsg(fd uintptr) bool {
	if r.vlen == 1 {
		return r.recv1(fd)
	}
	n, e := mmsg.Recv(fd, r.mm, r.vlen)
	if e == syscall.EAGAIN {
		return false
	}
	r.n, r.errno = n, e
	return true
}
