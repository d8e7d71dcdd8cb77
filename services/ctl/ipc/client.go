package ipc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// DefaultClientMaxLine bounds a line the IPC client reads. Replies are
// not limited by the server's request limit, so this is generous; it
// only protects the client from a peer that never sends a newline.
const DefaultClientMaxLine = 16 << 20

// Client talks to an IPC front end (or to nose itself): it sends
// request lines and reads reply and event lines.
type Client struct {
	c *net.UnixConn
	r *bufio.Reader
	// MaxLine bounds the lines ReadLine returns; 0 means
	// DefaultClientMaxLine.
	MaxLine int
}

// Dial connects to the IPC socket at path (resolve names with
// Addr first; "@name" is an abstract socket).
func Dial(path string) (*Client, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ipc dial: %w", err)
	}
	return &Client{c: c, r: bufio.NewReader(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// CloseWrite tells the server no more requests follow; it answers what
// it has and then closes.
func (c *Client) CloseWrite() error { return c.c.CloseWrite() }

// SetDeadline sets the read and write deadline of the connection.
func (c *Client) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Send sends one request line; the newline is added. A line containing
// a newline would be two requests and is refused.
func (c *Client) Send(line string) error {
	line = strings.TrimSuffix(line, "\n")
	if strings.ContainsRune(line, '\n') {
		return errors.New("ipc send: line contains a newline")
	}
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		return fmt.Errorf("ipc send: %w", err)
	}
	return nil
}

// ReadLine returns the next line the server sent, without its newline.
// The slice is the caller's.
func (c *Client) ReadLine() ([]byte, error) {
	max := c.MaxLine
	if max <= 0 {
		max = DefaultClientMaxLine
	}
	var line []byte
	for {
		part, err := c.r.ReadSlice('\n')
		if len(line)+len(part) > max+1 {
			return nil, fmt.Errorf("ipc read: line longer than %d bytes", max)
		}
		line = append(line, part...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(line) > 0 {
				return nil, fmt.Errorf("ipc read: connection ended inside a line: %w", err)
			}
			return nil, fmt.Errorf("ipc read: %w", err)
		}
		return bytes.TrimSuffix(line[:len(line)-1], []byte("\r")), nil
	}
}

// Event reports whether line is a log event, and returns its message.
func Event(line []byte) (msg string, ok bool) {
	if !bytes.Contains(line, []byte(`"type"`)) {
		return "", false
	}
	var ev struct {
		Type *string `json:"type"`
		Msg  string  `json:"msg"`
	}
	if json.Unmarshal(line, &ev) != nil || ev.Type == nil || *ev.Type != "log" {
		return "", false
	}
	return ev.Msg, true
}

// Do sends line and reads until the next non-event line, its reply.
// Events before the reply are passed to onEvent, which may be nil.
func (c *Client) Do(line string, onEvent func(msg string)) ([]byte, error) {
	if err := c.Send(line); err != nil {
		return nil, err
	}
	for {
		l, err := c.ReadLine()
		if err != nil {
			return nil, err
		}
		if msg, ok := Event(l); ok {
			if onEvent != nil {
				onEvent(msg)
			}
			continue
		}
		return l, nil
	}
}
