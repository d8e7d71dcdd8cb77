package unixsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is the default limit of concurrent connections on one
// listener.
const DefaultMaxConns = 1024

// StreamOptions are the limits of a connection-oriented listener.
type StreamOptions struct {
	// MaxConns limits concurrent connections; 0 means DefaultMaxConns.
	// Connections beyond it get the framing's error reply and are closed.
	MaxConns int
	// Peers restricts who may connect to an abstract socket.
	Peers PeerPolicy
}

// Files is what a closing listener passes to the next image on a
// re-exec: its socket, whether a tickbox process created the socket
// file, and the connections to resume.
type Files struct {
	Sock  *os.File
	Owned bool
	Conns []HandoffConn
}

// Acceptor is the accept loop shared by the stream and seqpacket
// servers: peer checks on abstract sockets, the connection limit, and
// tracking of connections for shutdown and handoff.
type Acceptor struct {
	log  *slog.Logger
	kind string
	ln   *net.UnixListener
	sock *Socket
	opts StreamOptions

	// handle serves one connection; it returns when the connection is
	// done or ctx is cancelled.
	handle func(ctx context.Context, c *net.UnixConn)
	// reject answers a connection over the limit with the framing's
	// error. It runs with a write deadline set.
	reject func(c *net.UnixConn)
	// inline: the accepting goroutine serves the connection and a new
	// one accepts (AcceptInline).
	inline bool

	ctx    context.Context
	cancel context.CancelFunc
	active atomic.Int64
	// accepted counts the connections this listener accepted and
	// served (not those refused or adopted).
	accepted atomic.Uint64
	wg       sync.WaitGroup
	// done is closed when the accept loop ends.
	done chan struct{}

	mu    sync.Mutex
	conns map[*net.UnixConn]struct{}
}

// Accept listens on spec (adopting a socket from in, which may be nil)
// and serves each connection with handle until closed. kind names the
// server in log lines. reject, if set, answers a connection over the
// limit with the framing's error; it runs with a write deadline set.
func Accept(in *Inheritance, log *slog.Logger, kind, network string, spec Spec, opts StreamOptions,
	handle func(context.Context, *net.UnixConn), reject func(*net.UnixConn)) (*Acceptor, error) {
	return accept(in, log, kind, network, spec, opts, handle, reject, false)
}

// AcceptInline is Accept for a protocol of one short exchange per
// connection, such as Kea's: the goroutine that accepts a connection
// serves it, and a new goroutine takes over accepting. The connection is
// served at once, while the next accept (which usually finds nothing and
// waits) runs beside it; with Accept the connection's goroutine is
// scheduled only after that accept. Handlers run exactly as with Accept,
// one goroutine per connection, with the same limits and shutdown.
func AcceptInline(in *Inheritance, log *slog.Logger, kind, network string, spec Spec, opts StreamOptions,
	handle func(context.Context, *net.UnixConn), reject func(*net.UnixConn)) (*Acceptor, error) {
	return accept(in, log, kind, network, spec, opts, handle, reject, true)
}

func accept(in *Inheritance, log *slog.Logger, kind, network string, spec Spec, opts StreamOptions,
	handle func(context.Context, *net.UnixConn), reject func(*net.UnixConn), inline bool) (*Acceptor, error) {
	ln, sock, err := ListenStream(in, log, network, spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	a := &Acceptor{
		log: log, kind: kind, ln: ln, sock: sock, opts: opts,
		handle: handle, reject: reject, inline: inline,
		done:  make(chan struct{}),
		conns: make(map[*net.UnixConn]struct{}),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	go a.loop()
	log.Info("listening", "frontend", kind, "addr", spec.Addr)
	return a, nil
}

// Addr returns the listening address.
func (a *Acceptor) Addr() string { return a.sock.Addr }

// Socket returns the bound socket.
func (a *Acceptor) Socket() *Socket { return a.sock }

// Active returns the number of connections being served.
func (a *Acceptor) Active() int { return int(a.active.Load()) }

// Accepted returns the number of connections accepted and served since
// the listener started (refused ones and adopted ones not included).
func (a *Acceptor) Accepted() uint64 { return a.accepted.Load() }

// loop accepts connections until the listener is closed; exactly one
// goroutine runs it at a time. With inline set, the goroutine that
// accepts a connection to serve starts the next accepting goroutine and
// serves the connection itself.
func (a *Acceptor) loop() { a.acceptLoop(0) }

func (a *Acceptor) acceptLoop(backoff time.Duration) {
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				close(a.done)
				return
			}
			// EMFILE and friends: keep the listener, back off, as
			// net/http does, rather than spin or exit.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			a.log.Error("accept failed; retrying", "frontend", a.kind, "addr", a.sock.Addr, "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if IsAbstract(a.sock.Addr) {
			cred, err := PeerCred(c)
			if err != nil || !a.opts.Peers.Allows(cred) {
				a.log.Warn("refused peer", "frontend", a.kind, "addr", a.sock.Addr, "pid", cred.PID, "uid", cred.UID, "gid", cred.GID, "err", err)
				c.Close()
				continue
			}
		}
		if a.active.Add(1) > int64(a.opts.MaxConns) {
			a.active.Add(-1)
			a.log.Warn("connection limit reached; rejecting", "frontend", a.kind, "addr", a.sock.Addr, "limit", a.opts.MaxConns)
			go func() {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if a.reject != nil {
					a.reject(c)
				}
				c.Close()
			}()
			continue
		}
		a.accepted.Add(1)
		if !a.inline {
			a.track(c, a.handle)
			continue
		}
		a.register(c)
		go a.acceptLoop(0)
		a.serveRegistered(c, a.handle)
		return
	}
}

// track serves c with serve on its own goroutine, counted as active
// (the caller has added it) and known for Finish to force-close.
func (a *Acceptor) track(c *net.UnixConn, serve func(ctx context.Context, c *net.UnixConn)) {
	a.register(c)
	go a.serveRegistered(c, serve)
}

// register makes c known for Finish to wait for and force-close.
func (a *Acceptor) register(c *net.UnixConn) {
	a.mu.Lock()
	a.conns[c] = struct{}{}
	a.mu.Unlock()
	a.wg.Add(1)
}

// serveRegistered serves a registered connection, then forgets it.
func (a *Acceptor) serveRegistered(c *net.UnixConn, serve func(ctx context.Context, c *net.UnixConn)) {
	defer a.wg.Done()
	defer a.active.Add(-1)
	defer func() {
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}()
	serve(a.ctx, c)
}

// Adopt serves a connection that did not come from this listener (one
// handed over by a re-exec) as if it had: it counts as active, gets the
// connections' context, and is waited for and force-closed on shutdown.
func (a *Acceptor) Adopt(c *net.UnixConn, serve func(ctx context.Context, c *net.UnixConn)) {
	a.active.Add(1)
	a.track(c, serve)
}

// EachConn calls f for every connection being served (accepted or
// adopted and not yet done). A connection whose handler starts after
// EachConn has returned is not among them.
func (a *Acceptor) EachConn(f func(c *net.UnixConn)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c := range a.conns {
		f(c)
	}
}

// CancelConns cancels the context every connection's handler runs with.
func (a *Acceptor) CancelConns() { a.cancel() }

// Wait waits for every connection's handler to return.
func (a *Acceptor) Wait() { a.wg.Wait() }

// StopAccepting closes the listener (keeping a dup of it if handoff is
// set) and waits for the accept loop to end.
func (a *Acceptor) StopAccepting(handoff bool) (*os.File, error) {
	var f *os.File
	var err error
	if handoff {
		f, err = a.ln.File()
	}
	a.ln.Close()
	<-a.done
	return f, err
}

// Finish cancels the connections' context, waits for their handlers up
// to ctx's deadline, then force-closes what is left.
func (a *Acceptor) Finish(ctx context.Context) {
	a.cancel()
	waited := make(chan struct{})
	go func() { a.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return
	case <-ctx.Done():
	}
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	<-waited
}

// Close stops a listener whose connections are not handed over:
// in-flight work gets until ctx's deadline. With handoff set it returns
// the socket for a re-exec; otherwise it removes a socket file it
// created.
func (a *Acceptor) Close(ctx context.Context, handoff bool) (*Files, error) {
	f, err := a.StopAccepting(handoff)
	a.Finish(ctx)
	if handoff {
		if err != nil {
			return nil, err
		}
		return &Files{Sock: f, Owned: a.sock.Created}, nil
	}
	a.sock.Remove()
	return nil, nil
}
