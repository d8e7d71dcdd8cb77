package demux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Conn is a demux client connection registered for one message type, as
// a libmctp client (a PLDM or NVMe-MI handler) holds it.
type Conn struct {
	conn   *net.UnixConn
	typ    byte
	tagged bool
	buf    []byte
}

// errTaggedConn and errPlainConn refuse the methods of the other frame
// format: a frame without its tag byte would be misread by the demux.
var (
	errTaggedConn = errors.New("demux: tagged connection: use SendTag and RecvTag")
	errPlainConn  = errors.New("demux: connection without tags: use Send and Recv")
)

// Dial connects to the demux on the abstract name (with or without its
// leading '@') and registers for message type typ. Type 0 is refused:
// the demux would close the connection.
func Dial(name string, typ byte) (*Conn, error) {
	return dial(name, typ, false)
}

// DialTagged is Dial for a demux served with Options.Tagged: its frames
// carry a tag byte, sent with SendTag and received with RecvTag.
func DialTagged(name string, typ byte) (*Conn, error) {
	return dial(name, typ, true)
}

func dial(name string, typ byte, tagged bool) (*Conn, error) {
	if typ == 0 {
		return nil, errors.New("demux: type 0 cannot be registered")
	}
	addr := "@" + strings.TrimPrefix(name, "@")
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: addr, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("demux: %w", err)
	}
	if _, err := c.Write([]byte{typ}); err != nil {
		c.Close()
		return nil, fmt.Errorf("demux: register type %d: %w", typ, err)
	}
	return &Conn{conn: c, typ: typ, tagged: tagged}, nil
}

// Tagged reports whether the connection uses tagged frames.
func (c *Conn) Tagged() bool { return c.tagged }

// Type returns the registered message type.
func (c *Conn) Type() byte { return c.typ }

// Send sends body, as a message of the registered type, to addr.
func (c *Conn) Send(addr byte, body []byte) error {
	return c.SendType(addr, c.typ, body)
}

// SendType sends a message of any type; the demux does not require it
// to match the registered one.
func (c *Conn) SendType(addr, typ byte, body []byte) error {
	if c.tagged {
		return errTaggedConn
	}
	b := make([]byte, 2+len(body))
	b[0], b[1] = addr, typ
	copy(b[2:], body)
	return c.write(b)
}

// SendTag sends [addr][tag][typ][body] on a tagged connection.
func (c *Conn) SendTag(addr, tag, typ byte, body []byte) error {
	if !c.tagged {
		return errPlainConn
	}
	b := make([]byte, 3+len(body))
	b[0], b[1], b[2] = addr, tag, typ
	copy(b[3:], body)
	return c.write(b)
}

func (c *Conn) write(b []byte) error {
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("demux: send: %w", err)
	}
	return nil
}

// Recv returns the next message: its source address, type and body.
// The body is a fresh slice. A closed connection gives io.EOF.
func (c *Conn) Recv() (addr, typ byte, body []byte, err error) {
	if c.tagged {
		return 0, 0, nil, errTaggedConn
	}
	m, err := c.recv()
	return m.Addr, m.Type, m.Body, err
}

// RecvTag is Recv on a tagged connection: the next message's address,
// tag byte, type and body (a fresh slice).
func (c *Conn) RecvTag() (addr, tag, typ byte, body []byte, err error) {
	if !c.tagged {
		return 0, 0, 0, nil, errPlainConn
	}
	m, err := c.recv()
	return m.Addr, m.Tag, m.Type, m.Body, err
}

func (c *Conn) recv() (Message, error) {
	if c.buf == nil {
		c.buf = make([]byte, DefaultMaxMessage+1)
	}
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Message{}, io.EOF
			}
			return Message{}, fmt.Errorf("demux: recv: %w", err)
		}
		if n == 0 {
			return Message{}, io.EOF
		}
		m, err := ParseFrame(c.buf[:n], c.tagged)
		if err != nil {
			// The demux never sends these; skip rather than fail.
			continue
		}
		m.Body = append([]byte(nil), m.Body...)
		return m, nil
	}
}

// SyscallConn returns the connection's raw socket, for a client that
// batches its own system calls (mctpbench's streams). Frames read or
// written through it bypass Send and Recv and their checks.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.conn.SyscallConn() }

// SetDeadline sets the read and write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close closes the connection; the demux sees a disconnect.
func (c *Conn) Close() error { return c.conn.Close() }

// Finish ends the connection once the demux has taken everything sent on
// it: it half-closes, which the demux reads as a disconnect after the
// messages before it, and waits up to timeout for the demux to close its
// side (messages arriving meanwhile are discarded). A program that sends
// and exits calls it so that its messages are routed before a later
// program's: each connection is read on its own, so a plain Close gives
// no order across connections.
func (c *Conn) Finish(timeout time.Duration) error {
	return c.FinishFunc(timeout, nil)
}

// FinishFunc is Finish that hands each message arriving meanwhile to fn
// (when not nil) instead of discarding it: a router's answer to what
// was sent last, such as mctpd's error frames to tagged clients.
func (c *Conn) FinishFunc(timeout time.Duration, fn func(Message)) error {
	defer c.conn.Close()
	if err := c.conn.CloseWrite(); err != nil {
		return fmt.Errorf("demux: half-close: %w", err)
	}
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		m, err := c.recv()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("demux: no disconnect within %v: %w", timeout, err)
			}
			return nil
		}
		if fn != nil {
			fn(m)
		}
	}
}
