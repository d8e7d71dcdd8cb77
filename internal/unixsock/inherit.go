package unixsock

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HandoffEnv carries a re-exec's state (a JSON Handoff) to the new image:
// which inherited fds are listeners, which are connections to resume, and
// the daemon's start time and reload count.
const HandoffEnv = "TICKBOX_CTL_HANDOFF"

// listenFDsStart is the first fd systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// Handoff is the state a re-exec passes in HandoffEnv.
type Handoff struct {
	// Started is the daemon's first start, in Unix nanoseconds.
	Started int64 `json:"started"`
	// Reloads counts the re-execs before this one.
	Reloads   int           `json:"reloads"`
	Listeners []HandoffSock `json:"listeners,omitempty"`
	Conns     []HandoffConn `json:"conns,omitempty"`
}

// HandoffSock is a listening socket handed across a re-exec.
type HandoffSock struct {
	FD   int    `json:"fd"`
	Addr string `json:"addr"`
	// Owned marks a socket file created by a tickbox process, to be
	// removed on clean shutdown.
	Owned bool `json:"owned,omitempty"`
}

// HandoffConn is a live connection handed across a re-exec.
type HandoffConn struct {
	FD int `json:"fd"`
	// Listener is the address of the front end the connection belongs to.
	Listener string `json:"listener"`
	// Replay is the persistent command line to run again, if any.
	Replay string `json:"replay,omitempty"`
	// Pending holds input already read from the connection but not yet
	// processed, so no line is lost.
	Pending []byte `json:"pending,omitempty"`

	file *os.File
}

// NewHandoffConn describes connection f for a handoff: the persistent
// command to replay and the input read but not yet processed.
func NewHandoffConn(f *os.File, replay string, pending []byte) HandoffConn {
	return HandoffConn{Replay: replay, Pending: pending, file: f}
}

// File returns the connection's file.
func (h *HandoffConn) File() *os.File { return h.file }

type inheritedSock struct {
	file   *os.File
	addr   string
	name   string
	sotype int
	owned  bool
}

// Inheritance is the set of sockets a process received at start, from
// systemd socket activation (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES) or
// from a re-exec of itself. A nil Inheritance holds nothing.
type Inheritance struct {
	mu      sync.Mutex
	socks   []*inheritedSock
	conns   []*HandoffConn
	started time.Time
	reloads int
	reexec  bool
}

// ReadEnv parses the environment and unsets the variables so that child
// processes do not inherit them. A process calls it once.
func ReadEnv(log *slog.Logger) *Inheritance {
	in := &Inheritance{}
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err == nil && pid == os.Getpid() {
		n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
		for i := 0; i < n; i++ {
			fd := listenFDsStart + i
			syscall.CloseOnExec(fd)
			s := describeFD(fd)
			if i < len(names) {
				s.name = names[i]
			}
			in.socks = append(in.socks, s)
			log.Info("socket activation: inherited fd", "fd", fd, "addr", s.addr, "name", s.name)
		}
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")

	if v := os.Getenv(HandoffEnv); v != "" {
		os.Unsetenv(HandoffEnv)
		var h Handoff
		if err := json.Unmarshal([]byte(v), &h); err != nil {
			log.Error("re-exec handoff: bad state; starting fresh", "err", err)
			return in
		}
		in.reexec = true
		in.started = time.Unix(0, h.Started)
		in.reloads = h.Reloads
		for _, l := range h.Listeners {
			syscall.CloseOnExec(l.FD)
			s := describeFD(l.FD)
			s.owned = l.Owned
			in.socks = append(in.socks, s)
		}
		for i := range h.Conns {
			c := h.Conns[i]
			syscall.CloseOnExec(c.FD)
			c.file = os.NewFile(uintptr(c.FD), fmt.Sprintf("handoff-conn-%d", c.FD))
			in.conns = append(in.conns, &c)
		}
		log.Info("resumed after re-exec", "listeners", len(h.Listeners), "conns", len(h.Conns), "reloads", h.Reloads+1)
	}
	return in
}

// describeFD wraps fd and reads its bound address and socket type.
func describeFD(fd int) *inheritedSock {
	s := &inheritedSock{file: os.NewFile(uintptr(fd), "inherited-"+strconv.Itoa(fd))}
	if sa, err := syscall.Getsockname(fd); err == nil {
		if ua, ok := sa.(*syscall.SockaddrUnix); ok {
			s.addr = ua.Name
		}
	}
	s.sotype, _ = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	return s
}

// Take returns the inherited socket bound to addr with the given type,
// removing it from the set, and whether a tickbox process created its
// file (so that a clean shutdown removes it). A systemd socket may also
// be matched by its FileDescriptorName equal to addr.
func (in *Inheritance) Take(addr string, sotype int) (*os.File, bool) {
	if in == nil {
		return nil, false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, s := range in.socks {
		if (s.addr == addr || (s.name != "" && s.name == addr)) && s.sotype == sotype {
			in.socks = append(in.socks[:i], in.socks[i+1:]...)
			return s.file, s.owned
		}
	}
	return nil, false
}

// TakeConns returns the connections handed over for the listener on
// addr.
func (in *Inheritance) TakeConns(addr string) []*HandoffConn {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var out, rest []*HandoffConn
	for _, c := range in.conns {
		if c.Listener == addr {
			out = append(out, c)
		} else {
			rest = append(rest, c)
		}
	}
	in.conns = rest
	return out
}

// CloseUnused closes inherited fds no listener adopted.
func (in *Inheritance) CloseUnused(log *slog.Logger) {
	if in == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.socks {
		log.Warn("inherited socket not used by any front end; closing it", "addr", s.addr, "name", s.name)
		s.file.Close()
	}
	for _, c := range in.conns {
		log.Warn("handed-over connection has no front end; closing it", "listener", c.Listener)
		c.file.Close()
	}
	in.socks, in.conns = nil, nil
}

// Resumed reports whether the process was started by a re-exec, and if
// so the first start time and the number of re-execs before this one.
func (in *Inheritance) Resumed() (started time.Time, reloads int, ok bool) {
	if in == nil || !in.reexec {
		return time.Time{}, 0, false
	}
	return in.started, in.reloads, true
}

// Hold returns an Inheritance holding the listening socket f and the
// connections conns, as a re-exec passes them, so that one process can
// hand a server's sockets to another server (the in-process form of a
// re-exec). f stays open; conns must name their Listener.
func Hold(f *os.File, owned bool, conns ...HandoffConn) *Inheritance {
	s := &inheritedSock{file: f, owned: owned}
	fd := int(f.Fd())
	if sa, err := syscall.Getsockname(fd); err == nil {
		if ua, ok := sa.(*syscall.SockaddrUnix); ok {
			s.addr = ua.Name
		}
	}
	s.sotype, _ = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	in := &Inheritance{socks: []*inheritedSock{s}, reexec: true}
	for i := range conns {
		in.conns = append(in.conns, &conns[i])
	}
	return in
}
