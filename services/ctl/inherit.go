package ctl

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

// handoffEnv carries a re-exec's state to the new image: which inherited
// fds are listeners, which are console connections to resume, and the
// daemon's start time and reload count.
const handoffEnv = "TICKBOX_CTL_HANDOFF"

// listenFDsStart is the first fd systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

type handoff struct {
	Started   int64         `json:"started"`
	Reloads   int           `json:"reloads"`
	Listeners []handoffSock `json:"listeners,omitempty"`
	Conns     []HandoffConn `json:"conns,omitempty"`
}

type handoffSock struct {
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

// File returns the inherited connection's file.
func (h *HandoffConn) File() *os.File { return h.file }

type inheritedSock struct {
	file   *os.File
	addr   string
	name   string
	sotype int
	owned  bool
}

// inheritance is the set of sockets a process received at start, from
// systemd socket activation (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES) or
// from a re-exec of itself.
type inheritance struct {
	mu      sync.Mutex
	socks   []*inheritedSock
	conns   []*HandoffConn
	started time.Time
	reloads int
	reexec  bool
}

// readInheritance parses the environment and unsets the variables so
// that child processes do not inherit them.
func readInheritance(log *slog.Logger) *inheritance {
	in := &inheritance{}
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

	if v := os.Getenv(handoffEnv); v != "" {
		os.Unsetenv(handoffEnv)
		var h handoff
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

// take returns the inherited socket bound to addr with the given type,
// removing it from the set, and whether a tickbox process created its
// file (so that a clean shutdown removes it). A systemd socket may also
// be matched by its FileDescriptorName equal to addr.
func (in *inheritance) take(addr string, sotype int) (*os.File, bool) {
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

// takeConns returns the connections handed over for the front end
// listening on addr.
func (in *inheritance) takeConns(addr string) []*HandoffConn {
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

// closeUnused closes inherited fds no front end adopted.
func (in *inheritance) closeUnused(log *slog.Logger) {
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
