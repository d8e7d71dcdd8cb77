package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMaxConns is the default limit of concurrent connections per
// front end.
const DefaultMaxConns = 1024

// Server runs a daemon's front ends over one Daemon registry. It adopts
// sockets inherited through socket activation or a re-exec, and can
// re-exec the daemon in place, handing its sockets and console
// connections to the new image.
type Server struct {
	d       *Daemon
	log     *slog.Logger
	inherit *inheritance

	mu     sync.Mutex
	fronts []frontend
	closed bool
	// reexecing is set while Reexec hands the front ends over, so that a
	// second request (signal and command at once) cannot exec with no
	// sockets left to hand over.
	reexecing bool
	// failed records why the server cannot go on (a re-exec that closed
	// the front ends and then could not exec); Run returns it.
	failed error

	// ipc holds every IPC connection (listened or dialled out), so that
	// log events reach all of them whichever front end they came from.
	ipc ipcHub
}

// frontend is a running front end.
type frontend interface {
	// addr is the listening address.
	addr() string
	// close stops the front end within ctx. With handoff set it keeps
	// the socket and returns it, and any connections to resume, for a
	// re-exec; otherwise it removes a socket file it created.
	close(ctx context.Context, handoff bool) (*handoffFiles, error)
}

// handoffFiles is what a front end passes to the next image.
type handoffFiles struct {
	sock  *os.File
	owned bool
	conns []HandoffConn
}

// NewServer returns a server for d. It reads inherited sockets from the
// environment (and unsets those variables) once, here.
func NewServer(d *Daemon) *Server {
	s := &Server{d: d, log: d.Logger(), inherit: readInheritance(d.Logger())}
	if s.inherit.reexec {
		d.restoreState(s.inherit.started, s.inherit.reloads)
	}
	return s
}

// Daemon returns the server's registry.
func (s *Server) Daemon() *Daemon { return s.d }

// Resumed reports whether this process was started by a re-exec.
func (s *Server) Resumed() bool { return s.inherit.reexec }

func (s *Server) add(f frontend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	s.fronts = append(s.fronts, f)
	return nil
}

// remove forgets a front end that ended on its own (an outgoing
// connection), so a daemon that reconnects in a loop does not grow the
// list.
func (s *Server) remove(f frontend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.fronts {
		if g == f {
			s.fronts = append(s.fronts[:i], s.fronts[i+1:]...)
			return
		}
	}
}

// Run serves until ctx is cancelled or a shutdown command arrives, then
// closes every front end (giving in-flight commands up to 5 s) and
// returns. Inherited sockets no front end adopted are closed first.
func (s *Server) Run(ctx context.Context) error {
	s.inherit.closeUnused(s.log)
	select {
	case <-ctx.Done():
	case <-s.d.ShutdownRequested():
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Close(cctx)
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	return errors.Join(failed, err)
}

// fail records a fatal error and makes Run return it, so that the
// program exits non-zero and its supervisor restarts it.
func (s *Server) fail(err error) {
	s.log.Error("server failed", "err", err)
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	s.d.RequestShutdown()
}

// Close stops every front end and removes the socket files it created.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	fronts := s.fronts
	s.fronts, s.closed = nil, true
	s.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.close(ctx, false); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", f.addr(), err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reexec replaces the running program with the executable at its path,
// keeping the PID, so that a supervisor such as gokrazy's does not see a
// restart. Listening sockets are handed over (queued datagrams and
// pending connections stay in the kernel), console connections survive
// and their persistent commands are replayed, and in-flight Kea commands
// finish first. It returns only on failure; the front ends are closed by
// then and the caller should exit non-zero so that the supervisor
// restarts it.
func (s *Server) Reexec() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("re-exec: %w", err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if err := syscall.Access(exe, 1 /* X_OK */); err != nil {
		return fmt.Errorf("re-exec %s: %w", exe, err)
	}
	s.mu.Lock()
	if s.closed || s.reexecing {
		s.mu.Unlock()
		return errors.New("re-exec: server is closed or already re-executing")
	}
	fronts := s.fronts
	s.fronts, s.closed, s.reexecing = nil, true, true
	s.mu.Unlock()

	started, reloads := s.d.state()
	h := handoff{Started: started.UnixNano(), Reloads: reloads}
	var keep []*os.File
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, f := range fronts {
		hf, err := f.close(ctx, true)
		if err != nil {
			s.log.Error("re-exec: front end handoff failed", "addr", f.addr(), "err", err)
			continue
		}
		if hf == nil {
			continue
		}
		if hf.sock != nil {
			keep = append(keep, hf.sock)
			h.Listeners = append(h.Listeners, handoffSock{FD: int(hf.sock.Fd()), Addr: f.addr(), Owned: hf.owned})
		}
		for _, c := range hf.conns {
			keep = append(keep, c.file)
			c.FD = int(c.file.Fd())
			c.Listener = f.addr()
			h.Conns = append(h.Conns, c)
		}
	}
	for _, f := range keep {
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); e != 0 {
			return fmt.Errorf("re-exec: clear close-on-exec: %w", e)
		}
	}
	state, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("re-exec: %w", err)
	}
	env := []string{handoffEnv + "=" + string(state)}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, handoffEnv+"=") {
			env = append(env, e)
		}
	}
	s.log.Info("re-executing in place", "exe", exe, "listeners", len(h.Listeners), "conns", len(h.Conns))
	err = syscall.Exec(exe, os.Args, env)
	runtime.KeepAlive(keep)
	return fmt.Errorf("re-exec %s: %w", exe, err)
}

// StreamOptions are the limits of a connection-oriented front end.
type StreamOptions struct {
	// MaxConns limits concurrent connections; 0 means DefaultMaxConns.
	// Connections beyond it get the framing's error reply and are closed.
	MaxConns int
	// Peers restricts who may connect to an abstract socket.
	Peers PeerPolicy
}

// acceptor is the accept loop shared by the stream and seqpacket front
// ends: peer checks on abstract sockets, the connection limit, tracking
// for shutdown and handoff.
type acceptor struct {
	s    *Server
	kind string
	ln   *net.UnixListener
	sock *unixSocket
	opts StreamOptions

	// handle serves one connection; it returns when the connection is
	// done or ctx is cancelled.
	handle func(ctx context.Context, c *net.UnixConn)
	// reject answers a connection over the limit with the framing's
	// error. It runs with a write deadline set.
	reject func(c *net.UnixConn)

	ctx    context.Context
	cancel context.CancelFunc
	active atomic.Int64
	wg     sync.WaitGroup
	done   chan struct{}

	mu    sync.Mutex
	conns map[*net.UnixConn]struct{}
}

// startAcceptor listens on spec and serves connections until closed.
func (s *Server) startAcceptor(kind, network string, spec SocketSpec, opts StreamOptions,
	handle func(context.Context, *net.UnixConn), reject func(*net.UnixConn)) (*acceptor, error) {
	ln, sock, err := s.listenStream(network, spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	a := &acceptor{
		s: s, kind: kind, ln: ln, sock: sock, opts: opts,
		handle: handle, reject: reject,
		done:  make(chan struct{}),
		conns: make(map[*net.UnixConn]struct{}),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	go a.loop()
	s.log.Info("listening", "frontend", kind, "addr", spec.Addr)
	return a, nil
}

func (a *acceptor) addr() string { return a.sock.addr }

// Active returns the number of connections being served.
func (a *acceptor) Active() int { return int(a.active.Load()) }

func (a *acceptor) loop() {
	defer close(a.done)
	var backoff time.Duration
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: keep the listener, back off, as
			// net/http does, rather than spin or exit.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			a.s.log.Error("accept failed; retrying", "frontend", a.kind, "addr", a.sock.addr, "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if IsAbstract(a.sock.addr) {
			cred, err := peerCred(c)
			if err != nil || !a.opts.Peers.allows(cred) {
				a.s.log.Warn("refused peer", "frontend", a.kind, "addr", a.sock.addr, "pid", cred.PID, "uid", cred.UID, "gid", cred.GID, "err", err)
				c.Close()
				continue
			}
		}
		if a.active.Add(1) > int64(a.opts.MaxConns) {
			a.active.Add(-1)
			a.s.log.Warn("connection limit reached; rejecting", "frontend", a.kind, "addr", a.sock.addr, "limit", a.opts.MaxConns)
			go func() {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if a.reject != nil {
					a.reject(c)
				}
				c.Close()
			}()
			continue
		}
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer a.active.Add(-1)
			defer func() {
				a.mu.Lock()
				delete(a.conns, c)
				a.mu.Unlock()
			}()
			a.handle(a.ctx, c)
		}()
	}
}

// stopAccepting closes the listener (keeping a dup of it if handoff is
// set) and waits for the accept loop to end.
func (a *acceptor) stopAccepting(handoff bool) (*os.File, error) {
	var f *os.File
	var err error
	if handoff {
		f, err = a.ln.File()
	}
	a.ln.Close()
	<-a.done
	return f, err
}

// finish cancels the connections' context, waits for their handlers up
// to ctx's deadline, then force-closes what is left.
func (a *acceptor) finish(ctx context.Context) {
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

// close is the frontend method for front ends whose connections are not
// handed over: in-flight work gets until ctx's deadline.
func (a *acceptor) close(ctx context.Context, handoff bool) (*handoffFiles, error) {
	f, err := a.stopAccepting(handoff)
	a.finish(ctx)
	if handoff {
		if err != nil {
			return nil, err
		}
		return &handoffFiles{sock: f, owned: a.sock.created}, nil
	}
	a.sock.remove()
	return nil, nil
}
