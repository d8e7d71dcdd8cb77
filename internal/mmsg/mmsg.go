// Package mmsg batches datagram socket calls: sendmmsg(2) and
// recvmmsg(2) on a raw descriptor, over vectors a caller sets up once
// and reuses, so that a batch allocates nothing. The calls never wait:
// they are meant for syscall.RawConn's Read and Write, whose functions
// report EAGAIN by returning false and so park on the runtime's poller.
// Because they cannot block, they are made without telling the
// scheduler (syscall.RawSyscall6), which saves its bookkeeping on each
// call.
package mmsg

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Hdr is the kernel's struct mmsghdr: one message's header and, after a
// call, its length.
type Hdr struct {
	unix.Msghdr
	Len uint32
}

// Vec is a batch of single-buffer messages.
type Vec struct {
	Hdrs []Hdr
	iovs []unix.Iovec
}

// NewVec returns a batch of n messages with no buffers yet.
func NewVec(n int) *Vec {
	v := &Vec{Hdrs: make([]Hdr, n), iovs: make([]unix.Iovec, n)}
	for i := range v.Hdrs {
		v.Hdrs[i].Iov = &v.iovs[i]
		v.Hdrs[i].SetIovlen(1)
	}
	return v
}

// Set points message i at b (the data to send, or the room to receive
// into) and clears its length and flags.
func (v *Vec) Set(i int, b []byte) {
	v.iovs[i] = Iovec(b)
	v.Hdrs[i].Len, v.Hdrs[i].Flags = 0, 0
}

// Clear drops every buffer reference, so that the batch keeps no memory
// alive.
func (v *Vec) Clear() { clear(v.iovs) }

// Truncated reports whether message i of the last receive was longer
// than its buffer (the kernel discarded the rest).
func (v *Vec) Truncated(i int) bool { return v.Hdrs[i].Flags&unix.MSG_TRUNC != 0 }

// Iovec returns the I/O vector of b.
func Iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return v
}

// Send sends the first n messages of v on fd without waiting and
// returns how many the socket took; EINTR is retried.
func Send(fd uintptr, v *Vec, n int) (int, syscall.Errno) {
	return call(unix.SYS_SENDMMSG, fd, v, n, unix.MSG_DONTWAIT)
}

// Recv receives up to n messages into v from fd without waiting and
// returns how many arrived; EINTR is retried.
func Recv(fd uintptr, v *Vec, n int) (int, syscall.Errno) {
	for i := range n {
		v.Hdrs[i].Len, v.Hdrs[i].Flags = 0, 0
	}
	return call(unix.SYS_RECVMMSG, fd, v, n, unix.MSG_DONTWAIT)
}

func call(trap, fd uintptr, v *Vec, n, flags int) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&v.Hdrs[0])), uintptr(n), uintptr(flags), 0, 0)
		switch e {
		case 0:
			return int(r), 0
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}
