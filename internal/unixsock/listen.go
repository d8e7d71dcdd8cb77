package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultMode is the mode of socket files tickbox creates.
const DefaultMode fs.FileMode = 0o660

// maxPathLen is the longest sun_path Linux accepts for a named socket
// (108 bytes including the terminating NUL).
const maxPathLen = 107

// IsAbstract reports whether addr names an abstract socket ("@name").
func IsAbstract(addr string) bool { return strings.HasPrefix(addr, "@") }

// ErrInUse is wrapped by listen errors when a live process owns the
// socket.
var ErrInUse = errors.New("address already in use by a running process")

// prepareSocketPath applies tickbox's socket-file rules before bind:
// parents are created at 0755; a stale socket (nothing answers) is
// removed; a live socket, a directory or any other kind of file is an
// error. sfptpd and nose delete whatever is at the path; we refuse, so a
// typo in a path cannot destroy a file.
func prepareSocketPath(network, path string) error {
	if len(path) > maxPathLen {
		return fmt.Errorf("%s: socket path too long (%d bytes, at most %d)", path, len(path), maxPathLen)
	}
	if path == "" {
		return errors.New("empty socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case fi.IsDir():
		return fmt.Errorf("%s: is a directory, not a socket; refusing to replace it", path)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("%s: exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	}
	if live, err := socketLive(network, path); err != nil {
		return err
	} else if live {
		return fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketLive reports whether a process listens on the socket at path.
// A socket of another type than ours answers EPROTOTYPE: it is live too.
func socketLive(network, path string) (bool, error) {
	c, err := net.DialTimeout(network, path, time.Second)
	if err == nil {
		c.Close()
		return true, nil
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		return false, nil
	case errors.Is(err, syscall.EPROTOTYPE), errors.Is(err, syscall.EAGAIN):
		return true, nil
	}
	return false, fmt.Errorf("probe existing socket: %w", err)
}

// Spec says where and how a socket listens.
type Spec struct {
	// Addr is a path, or "@name" for an abstract socket.
	Addr string
	// Mode of a socket file; 0 means DefaultMode.
	Mode fs.FileMode
}

// Socket is a bound socket, inherited or created.
type Socket struct {
	// Addr is the path or "@name" it is bound to.
	Addr string
	// Network is "unix", "unixpacket" or "unixgram".
	Network string
	// Created marks a socket file a tickbox process created; Remove
	// deletes it on a clean shutdown.
	Created bool
}

// ListenStream returns a stream or seqpacket listener for spec, adopting
// a socket from in (which may be nil) when one matches.
func ListenStream(in *Inheritance, log *slog.Logger, network string, spec Spec) (*net.UnixListener, *Socket, error) {
	if f, owned := in.Take(spec.Addr, sotype(network)); f != nil {
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("adopt inherited socket %s: %w", spec.Addr, err)
		}
		ul, ok := l.(*net.UnixListener)
		if !ok {
			l.Close()
			return nil, nil, fmt.Errorf("adopt inherited socket %s: not a unix listener", spec.Addr)
		}
		// The socket file belongs to whoever created it (systemd, or the
		// image we were re-executed from, which handed ownership to us).
		ul.SetUnlinkOnClose(false)
		log.Info("adopted inherited socket", "addr", spec.Addr, "network", network)
		return ul, &Socket{Addr: spec.Addr, Network: network, Created: owned}, nil
	}
	if !IsAbstract(spec.Addr) {
		if err := prepareSocketPath(network, spec.Addr); err != nil {
			return nil, nil, err
		}
	}
	ul, err := net.ListenUnix(network, &net.UnixAddr{Name: spec.Addr, Net: network})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("%s: %w", spec.Addr, ErrInUse)
		}
		return nil, nil, fmt.Errorf("listen %s: %w", spec.Addr, err)
	}
	ul.SetUnlinkOnClose(false)
	if !IsAbstract(spec.Addr) {
		if err := chmodSocket(spec); err != nil {
			ul.Close()
			os.Remove(spec.Addr)
			return nil, nil, err
		}
	}
	return ul, &Socket{Addr: spec.Addr, Network: network, Created: !IsAbstract(spec.Addr)}, nil
}

// ListenDgram returns a bound datagram socket for spec, adopting one from
// in (which may be nil) when it matches.
func ListenDgram(in *Inheritance, log *slog.Logger, spec Spec) (*net.UnixConn, *Socket, error) {
	if f, owned := in.Take(spec.Addr, syscall.SOCK_DGRAM); f != nil {
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("adopt inherited socket %s: %w", spec.Addr, err)
		}
		uc, ok := pc.(*net.UnixConn)
		if !ok {
			pc.Close()
			return nil, nil, fmt.Errorf("adopt inherited socket %s: not a unix datagram socket", spec.Addr)
		}
		log.Info("adopted inherited socket", "addr", spec.Addr, "network", "unixgram")
		return uc, &Socket{Addr: spec.Addr, Network: "unixgram", Created: owned}, nil
	}
	if !IsAbstract(spec.Addr) {
		if err := prepareSocketPath("unixgram", spec.Addr); err != nil {
			return nil, nil, err
		}
	}
	uc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: spec.Addr, Net: "unixgram"})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("%s: %w", spec.Addr, ErrInUse)
		}
		return nil, nil, fmt.Errorf("listen %s: %w", spec.Addr, err)
	}
	if !IsAbstract(spec.Addr) {
		if err := chmodSocket(spec); err != nil {
			uc.Close()
			os.Remove(spec.Addr)
			return nil, nil, err
		}
	}
	return uc, &Socket{Addr: spec.Addr, Network: "unixgram", Created: !IsAbstract(spec.Addr)}, nil
}

func chmodSocket(spec Spec) error {
	mode := spec.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if err := os.Chmod(spec.Addr, mode); err != nil {
		return fmt.Errorf("chmod socket: %w", err)
	}
	return nil
}

// Remove deletes the socket file if a tickbox process created it.
func (u *Socket) Remove() {
	if u != nil && u.Created && !IsAbstract(u.Addr) {
		os.Remove(u.Addr)
	}
}

func sotype(network string) int {
	switch network {
	case "unixgram":
		return syscall.SOCK_DGRAM
	case "unixpacket":
		return syscall.SOCK_SEQPACKET
	}
	return syscall.SOCK_STREAM
}

// PeerPolicy decides which peers may use an abstract socket, whose
// access no file mode can restrict.
type PeerPolicy struct {
	// UIDs and GIDs that may connect. uid 0 and the daemon's own uid are
	// always allowed.
	UIDs []uint32
	GIDs []uint32
}

// Cred is a peer's SO_PEERCRED identity.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// PeerCred reads SO_PEERCRED from a unix connection.
func PeerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var uc *syscall.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		uc, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}

// Allows reports whether cred may connect.
func (p PeerPolicy) Allows(cred Cred) bool {
	if cred.UID == 0 || cred.UID == uint32(os.Geteuid()) {
		return true
	}
	for _, u := range p.UIDs {
		if u == cred.UID {
			return true
		}
	}
	for _, g := range p.GIDs {
		if g == cred.GID {
			return true
		}
	}
	return false
}
