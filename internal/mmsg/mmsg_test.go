package mmsg

import (
	"bytes"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func seqpacketPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// TestSendRecv sends batches over a seqpacket pair and receives them
// into buffers of several sizes: every datagram keeps its boundary and
// bytes, a buffer too small reports truncation, and an empty socket
// reports EAGAIN without waiting.
func TestSendRecv(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int // datagrams sent, in one batch
		room  int   // receive buffer per message
		batch int   // messages asked for per receive
		trunc []bool
	}{
		{name: "one", sizes: []int{5}, room: 64, batch: 4, trunc: []bool{false}},
		{name: "several in one call", sizes: []int{1, 64, 300, 2}, room: 512, batch: 8, trunc: []bool{false, false, false, false}},
		{name: "fewer asked than sent", sizes: []int{10, 20, 30}, room: 64, batch: 2, trunc: []bool{false, false, false}},
		{name: "truncated", sizes: []int{100, 8}, room: 16, batch: 4, trunc: []bool{true, false}},
		{name: "empty datagram", sizes: []int{0, 3}, room: 16, batch: 4, trunc: []bool{false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := seqpacketPair(t)
			out := NewVec(len(tc.sizes))
			var want [][]byte
			for i, n := range tc.sizes {
				d := bytes.Repeat([]byte{byte(i + 1)}, n)
				want = append(want, d)
				out.Set(i, d)
			}
			n, e := Send(uintptr(a), out, len(tc.sizes))
			if e != 0 || n != len(tc.sizes) {
				t.Fatalf("send: %d of %d, %v", n, len(tc.sizes), e)
			}
			in := NewVec(tc.batch)
			bufs := make([][]byte, tc.batch)
			for i := range bufs {
				bufs[i] = make([]byte, tc.room)
				in.Set(i, bufs[i])
			}
			got := 0
			for got < len(want) {
				n, e := Recv(uintptr(b), in, tc.batch)
				if e != 0 {
					t.Fatalf("recv after %d: %v", got, e)
				}
				if n < 1 || n > tc.batch {
					t.Fatalf("recv returned %d messages, asked %d", n, tc.batch)
				}
				for i := range n {
					w := want[got]
					l := int(in.Hdrs[i].Len)
					if in.Truncated(i) != tc.trunc[got] {
						t.Errorf("message %d: truncated %v, want %v", got, in.Truncated(i), tc.trunc[got])
					}
					if tc.trunc[got] {
						w = w[:tc.room]
					}
					if !bytes.Equal(bufs[i][:l], w) {
						t.Errorf("message %d: got %d bytes %x, want %x", got, l, bufs[i][:l], w)
					}
					got++
				}
			}
			if _, e := Recv(uintptr(b), in, tc.batch); e != syscall.EAGAIN {
				t.Errorf("recv on an empty socket: %v, want EAGAIN", e)
			}
		})
	}
}

// TestSendFull fills a socket: sendmmsg takes what fits and then
// reports EAGAIN rather than waiting.
func TestSendFull(t *testing.T) {
	a, _ := seqpacketPair(t)
	v := NewVec(64)
	d := make([]byte, 4096)
	for i := range 64 {
		v.Set(i, d)
	}
	total := 0
	for range 1000 {
		n, e := Send(uintptr(a), v, 64)
		if e == syscall.EAGAIN {
			if total == 0 {
				t.Fatal("EAGAIN before anything was sent")
			}
			return
		}
		if e != 0 {
			t.Fatalf("send: %v", e)
		}
		total += n
	}
	t.Fatalf("sent %d datagrams of 4 KiB without the socket filling", total)
}

// TestErrors: a failed call reports the socket's error, not a count.
func TestErrors(t *testing.T) {
	a, b := seqpacketPair(t)
	if err := unix.Shutdown(b, unix.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
	v := NewVec(1)
	v.Set(0, []byte("x"))
	n, e := Send(uintptr(a), v, 1)
	if e != syscall.EPIPE || n != 0 {
		t.Errorf("send to a closed peer: %d, %v; want 0, EPIPE", n, e)
	}
}
