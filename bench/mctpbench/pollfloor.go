package main

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// pollFloorEnv names the environment variable that turns this program
// (or its test binary) into the libmctp-shaped floor on the abstract
// name it holds.
const pollFloorEnv = "MCTPBENCH_POLLFLOOR"

// pollFloorMain is the second baseline: a relay shaped like libmctp's
// mctp-demux-daemon delivering to its own EID, in Go on raw system calls
// (golang.org/x/sys/unix, no runtime poller). One locked thread polls the
// listener and every client; for each readable client it reads one
// datagram, and writes it, unchanged, to every client registered for
// the datagram's type byte, with blocking writes. Nothing else: no
// queues, no bounds, no checks beyond the type, so a slow client stalls
// everyone, as it does libmctp's daemon. It returns the exit status.
func pollFloorMain(name string) int {
	runtime.LockOSThread()
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "poll floor: socket:", err)
		return 1
	}
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		fmt.Fprintln(os.Stderr, "poll floor: bind:", err)
		return 1
	}
	if err := unix.Listen(lfd, 64); err != nil {
		fmt.Fprintln(os.Stderr, "poll floor: listen:", err)
		return 1
	}
	// pfds[0] is the listener; types[i] is pfds[i]'s registered type,
	// 0 until the client's first datagram registers one.
	pfds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	types := []byte{0}
	buf := make([]byte, 64<<10+2)
	drop := func(i int) {
		unix.Close(int(pfds[i].Fd))
		pfds = append(pfds[:i], pfds[i+1:]...)
		types = append(types[:i], types[i+1:]...)
	}
	for {
		if _, err := unix.Poll(pfds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "poll floor: poll:", err)
			return 1
		}
		if pfds[0].Revents&unix.POLLIN != 0 {
			if fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC); err == nil {
				pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
				types = append(types, 0)
			}
		}
		for i := len(pfds) - 1; i > 0; i-- {
			if pfds[i].Revents == 0 {
				continue
			}
			n, err := unix.Read(int(pfds[i].Fd), buf)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			if err != nil || n == 0 {
				drop(i)
				continue
			}
			if types[i] == 0 {
				types[i] = buf[0]
				continue
			}
			if n < 2 {
				continue
			}
			for j := 1; j < len(pfds); j++ {
				if types[j] == buf[1] {
					unix.Write(int(pfds[j].Fd), buf[:n])
				}
			}
		}
	}
}
