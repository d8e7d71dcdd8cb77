package demux

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readBatch is the most datagrams one recvmmsg call reads from a client.
const readBatch = 8

// reader reads one client's datagrams in batches: one recvmmsg call
// takes every datagram waiting, up to readBatch, each into a slot of its
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
	mm    [readBatch]mmsghdr
	iov   [readBatch]unix.Iovec
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
	r := &reader{rc: rc, slab: slab, slot: slot}
	for i := range readBatch {
		r.iov[i] = iovec(slab[i*slot : i*slot+max])
		r.mm[i].hdr.Iov = &r.iov[i]
		r.mm[i].hdr.SetIovlen(1)
	}
	r.readF = r.recvmmsg
	return r, nil
}

// close unmaps the slots; the reader must not be used afterwards.
func (r *reader) close() {
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
	return r.n, nil
}

// msg returns datagram i of the last read, and whether it was longer
// than a slot (the kernel then discarded the rest).
func (r *reader) msg(i int) (b []byte, truncated bool) {
	m := &r.mm[i]
	return r.slab[i*r.slot : i*r.slot+int(m.len)], m.hdr.Flags&unix.MSG_TRUNC != 0
}

// recvmmsg is read's raw call: false (wait until readable) on EAGAIN.
func (r *reader) recvmmsg(fd uintptr) bool {
	for i := range r.mm {
		r.mm[i].len, r.mm[i].hdr.Flags = 0, 0
	}
	for {
		n, _, e := syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.mm[0])), readBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), e
		return true
	}
}
