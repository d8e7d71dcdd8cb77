package unixsock

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestAcceptor runs the accept loop, served the usual way and inline,
// through its limit (which needs accepting to go on while handlers are
// busy), an adopted connection, and both ways of closing.
func TestAcceptor(t *testing.T) {
	for _, acc := range []struct {
		name   string
		accept acceptFunc
	}{{"Accept", Accept}, {"AcceptInline", AcceptInline}} {
		for _, handoff := range []bool{false, true} {
			name := acc.name + "/close"
			if handoff {
				name = acc.name + "/handoff"
			}
			t.Run(name, func(t *testing.T) { testAcceptor(t, acc.accept, handoff) })
		}
	}
}

// acceptFunc is Accept or AcceptInline.
type acceptFunc func(*Inheritance, *slog.Logger, string, string, Spec, StreamOptions,
	func(context.Context, *net.UnixConn), func(*net.UnixConn)) (*Acceptor, error)

func testAcceptor(t *testing.T, accept acceptFunc, handoff bool) {
	path := filepath.Join(testutil.ShortDir(t), "a.sock")
	release := make(chan struct{})
	served := make(chan struct{}, 4)
	handle := func(ctx context.Context, c *net.UnixConn) {
		defer c.Close()
		served <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	reject := func(c *net.UnixConn) { c.Write([]byte("busy\n")) }
	a, err := accept(nil, quietLogger(), "test", "unix", Spec{Addr: path}, StreamOptions{MaxConns: 2}, handle, reject)
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	for range 2 {
		<-served
	}
	// The third is over the limit: it gets the framing's
	// refusal and is closed.
	c3 := dial()
	c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 16)
	n, _ := c3.Read(b)
	if string(b[:n]) != "busy\n" {
		t.Fatalf("over the limit: read %q", b[:n])
	}
	// An adopted connection counts as active like the others.
	p1, p2, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	a.Adopt(p1, handle)
	<-served
	testutil.WaitFor(t, "three active", 10*time.Second, func() bool { return a.Active() == 3 })
	if n := a.Accepted(); n != 2 {
		t.Errorf("accepted %d, want 2 (the refused and the adopted one are not counted)", n)
	}
	each := 0
	a.EachConn(func(*net.UnixConn) { each++ })
	if each != 3 {
		t.Errorf("EachConn saw %d connections, want 3", each)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	files, err := a.Close(ctx, handoff)
	if err != nil {
		t.Fatal(err)
	}
	if a.Active() != 0 {
		t.Errorf("after Close: %d active", a.Active())
	}
	_, statErr := os.Stat(path)
	if handoff {
		if files == nil || files.Sock == nil || !files.Owned {
			t.Fatalf("handoff files %+v", files)
		}
		files.Sock.Close()
		if statErr != nil {
			t.Errorf("socket file gone on handoff: %v", statErr)
		}
	} else {
		if files != nil {
			t.Errorf("close without handoff returned %+v", files)
		}
		if !errors.Is(statErr, fs.ErrNotExist) {
			t.Errorf("socket file kept after close: %v", statErr)
		}
	}
}

// socketPair returns two connected unix stream sockets.
func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "sp")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	c, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, nil, err
	}
	s, err := ln.AcceptUnix()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return s, c, nil
}
