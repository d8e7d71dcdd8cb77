package kea

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ErrNoReply is a connection the server closed without answering.
var ErrNoReply = errors.New("closed the connection without a reply")

// keaMaxReply bounds what Call reads, so that a broken server cannot
// exhaust the client's memory.
const keaMaxReply = 256 << 20

// Call sends one request to the Kea control channel at path (a socket
// path or "@name" for an abstract socket) and returns the reply.
//
// It writes the request and then reads until the server closes, which a
// Kea server does after its reply. It does not half-close first: Kea
// treats EOF after a partial request as an abandoned command and closes
// without answering, so a half-close would only lose replies. If the
// server answered early (too many connections, a framing error) and the
// write or the end of the read fails with EPIPE or ECONNRESET, a complete
// reply already received is still returned. Without a deadline on ctx the
// call waits as long as the server keeps the connection open.
func Call(ctx context.Context, path string, req []byte) ([]byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	// A unix socket whose accept backlog is full refuses with EAGAIN
	// rather than queueing the connect; retry briefly, as a TCP client's
	// SYN retransmission would.
	for wait := time.Millisecond; err != nil && errors.Is(err, syscall.EAGAIN) && wait < time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kea: %w (%v)", err, context.Cause(ctx))
		case <-time.After(wait):
		}
		conn, err = d.DialContext(ctx, "unix", path)
	}
	if err != nil {
		return nil, fmt.Errorf("kea: %w", err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	_, werr := c.Write(req)
	if werr != nil && !isPeerGone(werr) {
		return nil, fmt.Errorf("kea: write request to %s: %w", path, ctxErr(ctx, werr))
	}
	var reply []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		reply = append(reply, buf[:n]...)
		if len(reply) > keaMaxReply {
			return nil, fmt.Errorf("kea: reply from %s exceeds %d bytes", path, keaMaxReply)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if isPeerGone(err) && keaComplete(reply) {
			break
		}
		return nil, fmt.Errorf("kea: read reply from %s: %w", path, ctxErr(ctx, err))
	}
	if len(reply) == 0 {
		if werr != nil {
			return nil, fmt.Errorf("kea: write request to %s: %w", path, werr)
		}
		return nil, fmt.Errorf("kea: %s: %w", path, ErrNoReply)
	}
	return reply, nil
}

func isPeerGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// ctxErr names the context's end when it caused err, keeping err's text.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return err
}

// keaComplete reports whether b starts with one complete JSON value.
func keaComplete(b []byte) bool {
	f := newKeaFeed(len(b) + 1)
	f.Write(b)
	return f.Status() == feedComplete
}
