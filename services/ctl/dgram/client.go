package dgram

import (
	"errors"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Error is a datagram client failure. Its text is exactly what
// sfptpdctl prints ("connect: Connection refused", "address too long:
// PATH"), so scripts that match sfptpdctl's messages keep working; the
// errno stays reachable with errors.Is.
type Error struct {
	// Op is "socket", "connect" or "write" (the names sfptpdctl passes to
	// perror); empty for a path that does
	// not fit in sun_path.
	Op   string
	Path string
	Err  error
}

// ErrAddressTooLong is wrapped by Error for a socket path longer
// than sun_path allows.
var ErrAddressTooLong = errors.New("address too long")

func (e *Error) Error() string {
	if errors.Is(e.Err, ErrAddressTooLong) {
		return "address too long: " + e.Path
	}
	return e.Op + ": " + strerror(e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// strerror spells an errno the way glibc's strerror does. Go's texts are
// glibc's with the first letter lowered.
func strerror(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	s := errno.Error()
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// Send sends each command to the datagram socket at path as its own
// datagram, in order, as sfptpdctl does. Writes block while the daemon's
// queue is full, so nothing is dropped on the client side. It returns
// once every datagram is queued; there is no reply.
func Send(path string, cmds ...string) error {
	// sun_path holds 108 bytes including the terminating NUL; abstract
	// names ("@name") have no NUL but the same limit on the name.
	if len(path) >= 108 {
		return &Error{Path: path, Err: ErrAddressTooLong}
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: "socket", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return &Error{Op: "connect", Path: path, Err: err}
	}
	for _, c := range cmds {
		for {
			_, err = syscall.Write(fd, []byte(c))
			if err != syscall.EINTR {
				break
			}
		}
		if err != nil {
			return &Error{Op: "write", Path: path, Err: err}
		}
	}
	return nil
}
