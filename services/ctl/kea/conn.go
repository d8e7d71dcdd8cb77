package kea

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrNotKeptOpen is a server that refused KeepOpenCommand: a Kea
// daemon, or another server that answers one request per connection.
var ErrNotKeptOpen = errors.New("the server answers one request per connection")

// keptOpen is the server's answer to KeepOpenCommand.
var keptOpen = keaReply(okKeptOpen)

// Conn is a kept-open connection to a tickbox Kea channel: many
// requests, one at a time, each answered by one JSON value. It is not
// safe for concurrent use.
type Conn struct {
	c    *net.UnixConn
	path string
	buf  []byte
	// pending holds bytes read past the last reply; a server sends
	// none, so they only ever show a broken server.
	pending []byte
}

// DialKeepOpen connects to the Kea channel at path and asks for the
// connection to be kept open (KeepOpenCommand). A server that refuses
// gives an error wrapping ErrNotKeptOpen; the caller then uses Call, a
// connection per request.
func DialKeepOpen(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("kea: %w", err)
	}
	c := &Conn{c: nc.(*net.UnixConn), path: path, buf: make([]byte, 4096)}
	reply, err := c.Call(ctx, []byte(`{ "command": "`+KeepOpenCommand+`" }`))
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.Equal(reply, keptOpen) {
		c.Close()
		return nil, fmt.Errorf("kea: %s: %w", path, ErrNotKeptOpen)
	}
	return c, nil
}

// Call sends one request and returns the one JSON value that answers
// it. A connection the server closed before answering gives an error
// wrapping ErrNoReply (or the write's EPIPE or ECONNRESET): the request
// was not run, or its answer was lost with the server. After any error
// the connection must be closed.
func (c *Conn) Call(ctx context.Context, req []byte) ([]byte, error) {
	if len(c.pending) > 0 {
		return nil, fmt.Errorf("kea: %s sent %d bytes nobody asked for", c.path, len(c.pending))
	}
	dl, _ := ctx.Deadline()
	c.c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.c.Write(req); err != nil {
		return nil, fmt.Errorf("kea: write request to %s: %w", c.path, ctxErr(ctx, err))
	}
	feed := newKeaFeed(keaMaxReply)
	var raw []byte
	for feed.Status() == feedNeedMore {
		n, err := c.c.Read(c.buf)
		if n > 0 {
			used := feed.Write(c.buf[:n])
			raw = append(raw, c.buf[:used]...)
			c.pending = append(c.pending, c.buf[used:n]...)
			if n == len(c.buf) && len(c.buf) < 256<<10 {
				c.buf = make([]byte, 4*len(c.buf))
			}
			continue
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) && len(raw) == 0:
			return nil, fmt.Errorf("kea: %s: %w", c.path, ErrNoReply)
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("kea: %s closed the connection inside a reply, after %d bytes", c.path, len(raw))
		default:
			return nil, fmt.Errorf("kea: read reply from %s: %w", c.path, ctxErr(ctx, err))
		}
	}
	if feed.Status() == feedFailed {
		return nil, fmt.Errorf("kea: reply from %s: %s", c.path, feed.Err())
	}
	return raw, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }
